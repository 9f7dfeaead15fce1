import gzip
from pathlib import Path

import numpy as np
import pytest

from cvae.core.errors import CVAEError
from cvae.data import fashion

FIX = "re-run fashion_data (dvc repro fashion_data)"


def test_reads_the_real_files(fashion_root) -> None:
    x, y = fashion.load_split(fashion_root, "train")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10
    xt, yt = fashion.load_split(fashion_root, "test")
    assert xt.shape == (10000, 28, 28) and np.bincount(yt).tolist() == [1000] * 10
    # First training label of Fashion-MNIST is 9 (ankle boot), first test is 9 too.
    assert y[0] == 9 and yt[0] == 9


def test_missing_folder_names_the_apt_command(tmp_path) -> None:
    with pytest.raises(CVAEError, match="apt-get install -y dataset-fashion-mnist"):
        fashion.load_split(tmp_path / "nope", "train")
    with pytest.raises(CVAEError, match="apt-get install"):
        fashion.load_split(tmp_path, "train")


def test_truncated_and_foreign_files(tmp_path) -> None:
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100)
    with pytest.raises(CVAEError, match="truncated"):
        fashion.read_idx(bad)
    other = tmp_path / "y"
    other.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(CVAEError, match="not a uint8 IDX"):
        fashion.read_idx(other)


def test_subset_is_seeded(fashion_root) -> None:
    x, y = fashion.load_split(fashion_root, "test")
    a = fashion.subset(x, y, 100, seed=3)
    b = fashion.subset(x, y, 100, seed=3)
    assert np.array_equal(a[0], b[0]) and len(a[1]) == 100
    assert fashion.subset(x, y, None)[0] is x


def rewrite(src: Path, to: Path, **changes: object) -> Path:
    """The dataset ``src`` saved to ``to`` with arrays replaced (None: dropped)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(to, **arrays)
    return to


def test_dataset_is_checked_at_load(tiny_fashion, tmp_path) -> None:
    """A dataset.npz lacking an array, with labels outside 0..9 or images of
    another shape or type: one line naming the fix, before any reader indexes it."""
    d = fashion.load_dataset(tiny_fashion)
    assert d["test_labels"].dtype == np.int64
    assert d["train_images"].shape[1:] == (28, 28)
    y = d["test_labels"].copy()
    y[3] = 10
    cases = [
        (dict(test_labels=None), "lacks test_labels: re-run fashion_data"),
        (
            dict(train_images=None, train_labels=None),
            "lacks train_images, train_labels: re-run fashion_data",
        ),
        (dict(test_labels=y), "1 test_labels outside 0..9 (e.g. 10): re-run"),
        (dict(train_labels=-d["train_labels"] - 1), "train_labels outside 0..9"),
        (
            dict(test_images=d["test_images"].astype(np.float32)),
            "test_images is float32 (256, 28, 28), not uint8 (N, 28, 28)",
        ),
        (
            dict(train_images=d["train_images"][:, :14]),
            "train_images is uint8 (512, 14, 28), not uint8 (N, 28, 28)",
        ),
        (
            dict(test_labels=d["test_labels"][:-1]),
            "test_labels is int64 (255,), not 256 integer labels",
        ),
        (dict(test_labels=d["test_labels"] + 0.5), "not 256 integer labels"),
    ]
    for k, (changes, message) in enumerate(cases):
        bad = rewrite(tiny_fashion, tmp_path / f"{k}.npz", **changes)
        with pytest.raises(CVAEError) as e:
            fashion.load_dataset(bad)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
        assert str(e.value).endswith(FIX)


def test_a_stage_reading_a_bad_dataset_prints_one_line(
    tiny_fashion, tmp_path, capsys
) -> None:
    from conftest import fails, one_line, write_params

    from stages import fashion_train

    params = write_params(tmp_path / "p.yaml", {"fashion": {"train": {"epochs": 1}}})
    bad = rewrite(tiny_fashion, tmp_path / "bad.npz", test_labels=None)
    out = tmp_path / "out"
    err = one_line(
        fails(
            capsys,
            fashion_train.main,
            arch="fc",
            data=bad,
            model_out=out / "m.safetensors",
            history=out / "h.json",
            state=out / "s.pt",
            params=params,
        )
    )
    assert err == f"error: {bad} lacks test_labels: {FIX}\n"
    assert not out.exists() or not any(out.iterdir())
