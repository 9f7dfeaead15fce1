"""Device choice: only auto, cpu, cuda and cuda:N get past ``resolve_device``
(every other name torch knows is one usage line), a GPU that is not here is one
runtime line, and params.yaml accepts exactly the names resolve_device does."""

from __future__ import annotations

import pytest
import torch

from cvae.core import device as core_device
from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError, UsageError
from cvae.params import schema

# Names torch parses but this project cannot run on.
UNSUPPORTED = ["mps", "xpu", "meta", "hpu", "vulkan", "lazy", "privateuseone", "cpu:0"]
UNKNOWN = ["foo", "gpu", "CUDA", "", " cpu", "cuda:-1", "cuda:01"]  # torch refuses
NAMES = ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:12", *UNSUPPORTED, *UNKNOWN]


@pytest.fixture()
def gpus(monkeypatch):
    """Pretend this machine has ``n`` CUDA GPUs (0: none)."""

    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return have


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_a_device_torch_knows_but_we_do_not_run_on_is_a_usage_line(name, gpus):
    gpus(2)
    with pytest.raises(UsageError) as e:
        resolve_device(name)
    assert str(e.value) == f"device {name!r} is not supported: use auto, cpu or cuda"


@pytest.mark.parametrize("name", UNKNOWN)
def test_a_name_torch_does_not_know_is_a_usage_line(name) -> None:
    with pytest.raises(UsageError, match="unknown: use auto, cpu or cuda"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_a_gpu_is_a_runtime_line(name, gpus) -> None:
    gpus(0)
    with pytest.raises(CVAEError) as e:
        resolve_device(name)
    assert not isinstance(e.value, UsageError)  # the command is right elsewhere
    assert str(e.value) == f"device {name!r} but no CUDA GPU here: use auto or cpu"
    assert resolve_device("auto") == torch.device("cpu")


def test_a_gpu_index_past_the_count_names_the_ones_here(gpus) -> None:
    gpus(2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(CVAEError) as e:
        resolve_device("cuda:7")
    assert str(e.value) == (
        "device 'cuda:7' but only 2 CUDA GPUs here: use cuda:0 to cuda:1, or auto"
    )
    gpus(1)
    with pytest.raises(CVAEError, match="only 1 CUDA GPU here: use cuda, or auto"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("name", NAMES)
def test_params_accept_exactly_the_names_resolve_device_accepts(name, gpus) -> None:
    gpus(16)
    try:
        resolve_device(name)
        resolved = True
    except UsageError:
        resolved = False
    assert bool(schema.DEVICE_RE.fullmatch(name)) is resolved
    assert schema.DEVICE_RE.pattern == core_device.DEVICE_RE.pattern
