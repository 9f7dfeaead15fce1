import gzip

import numpy as np
import pytest

from cvae.core.errors import CVAEError
from cvae.data import fashion


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
