import json

import pytest
import torch
from conftest import make_model
from safetensors.torch import load_file, save_file

from cvae.core.errors import CVAEError
from cvae.models.checkpoint import load_model, read_metadata, save_model
from cvae.training.state import load_state, save_state


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = make_model("conv", latent_dim=8, conditioning="add").eval()
    path = tmp_path / "m.safetensors"
    save_model(path, model, "conv", {"condition": "label"})
    return model, path


def test_round_trip_rebuilds_from_the_file_alone(saved) -> None:
    model, path = saved
    loaded, meta = load_model(path)
    assert meta["arch"] == "conv" and meta["config"]["conditioning"] == "add"
    assert meta["info"] == {"condition": "label"}
    z, c = torch.randn(3, 8), torch.tensor([1, 2, 3])
    assert torch.equal(model.decode(z, c), loaded.decode(z, c))
    assert not list(path.parent.glob(".tmp-*"))  # nothing half-written left


def test_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(CVAEError, match="not found: run `dvc repro`"):
        load_model(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CVAEError, match="not a readable safetensors"):
        load_model(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CVAEError, match="not a cvae model file"):
        load_model(plain)


def test_tampered_config_is_refused(saved, tmp_path) -> None:
    _, path = saved
    meta = read_metadata(path)
    state = load_file(str(path))
    cfg = meta["config"] | {"latent_dim": 16}  # config no longer matches the weights
    bad = tmp_path / "bad.safetensors"
    save_file(
        state,
        str(bad),
        metadata={
            "format": "cvae-model-v1",
            "arch": "conv",
            "config": json.dumps(cfg),
            "info": "{}",
        },
    )
    with pytest.raises(
        CVAEError, match=r"tensor 'cond_dec.net.weight' is \(10, 8\), the config needs"
    ):
        load_model(bad)
    with pytest.raises(CVAEError, match="holds a 'conv' model, expected 'fc'"):
        load_model(path, expect_arch="fc")


def test_training_state_loads_weights_only(tmp_path) -> None:
    path = tmp_path / "s.pt"
    save_state(path, {"epoch": 3, "w": torch.ones(2), "h": "[]"})
    assert load_state(path)["epoch"] == 3

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Evil()}, path)
    with pytest.raises(CVAEError, match="unreadable"):
        load_state(path)  # weights_only=True refuses to unpickle code


def test_equal_weights_give_equal_bytes(saved, tmp_path) -> None:
    """safetensors writes its metadata in HashMap order; ours is canonical."""
    model, path = saved
    blobs = set()
    for i in range(6):
        p = tmp_path / f"again{i}.safetensors"
        save_model(p, model, "conv", {"condition": "label"})
        blobs.add(p.read_bytes())
    assert blobs == {path.read_bytes()}
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert n % 8 == 0
    header = json.loads(data[8 : 8 + n])
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    # still a valid file for the reference reader
    assert set(load_file(str(path))) == set(model.state_dict())
