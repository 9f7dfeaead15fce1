"""CPU numerics pins: set before the libraries load, reported when late, and
the record of the machine an output came from."""

import json
import os
import subprocess
import sys

import pytest

from cvae.core import numerics


def _py(code: str) -> dict:
    """Run ``code`` in a fresh interpreter whose environment holds no pins (this
    process may have set them: children inherit them)."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINS}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_pins_take_effect_in_torch_mkl_and_openblas() -> None:
    out = _py(
        "import json; from cvae.core import numerics; ok = numerics.pin(); "
        "import torch; numerics.set_threads(1); "
        "print(json.dumps({'ok': ok, 'record': numerics.machine_record()}))"
    )
    assert out["ok"] is True
    rec = out["record"]
    for key, value in numerics.PINS.items():
        if key != "OPENBLAS_CORETYPE" or numerics._has_avx2():
            assert rec["numerics"][key] == value
    assert rec["threads"] == 1
    if numerics._has_avx2():  # every x86-64 CPU of the last decade
        assert rec["numerics"]["cpu_capability"] == "AVX2"
        assert rec["numerics"]["openblas_core"] == ["Haswell"]
    assert rec["cpu"] and rec["cpu_vendor"] and rec["torch"]


def test_a_late_pin_says_so() -> None:
    out = _py(
        "import json, torch; from cvae.core import numerics; "
        "print(json.dumps(numerics.pin()))"
    )
    assert out is False


def test_set_threads_limits_openblas_too() -> None:
    out = _py(
        "import json; from cvae.core import numerics; numerics.pin(); "
        "import numpy, torch; from threadpoolctl import threadpool_info; "
        "numerics.set_threads(1); "
        "print(json.dumps([i['num_threads'] for i in threadpool_info()] "
        "+ [torch.get_num_threads()]))"
    )
    assert out and set(out) == {1}


def test_cpu_model_reads_the_os() -> None:
    name = numerics.cpu_model()
    assert isinstance(name, str) and name
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return
    if "model name" in text:
        assert name in text


def test_info_files_carry_the_machine(tmp_path) -> None:
    from cvae.core.files import write_record

    write_record(tmp_path / "m.json", tmp_path / "i.json", {"a": 1.0, "b": "x"})
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["b"] == "x"
    assert set(info["machine"]) == {"cpu", "cpu_vendor", "torch", "threads", "numerics"}
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.0}


@pytest.mark.parametrize("late", [False, True])
def test_pin_sets_the_environment_for_children(late: bool) -> None:
    pre = "import torch; " if late else ""
    out = _py(
        f"{pre}import json, os, subprocess, sys; from cvae.core import numerics; "
        "numerics.pin(); print(json.dumps(subprocess.run([sys.executable, '-c', "
        "'import os; print(os.environ[\"MKL_CBWR\"])'], capture_output=True, "
        "text=True).stdout.strip()))"
    )
    assert out == "COMPATIBLE"


def test_adam_is_the_fused_kernel_and_steps_like_adam() -> None:
    import torch

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    ref = torch.nn.Parameter(w.detach().clone())
    opt, naive = numerics.adam([w], lr=0.1), torch.optim.Adam([ref], lr=0.1)
    assert opt.defaults["fused"] is True
    for _ in range(3):
        for p in (w, ref):
            p.grad = torch.tensor([0.5, -1.0, 2.0])
        opt.step()
        naive.step()
    torch.testing.assert_close(w.detach(), ref.detach(), rtol=1e-6, atol=1e-7)
