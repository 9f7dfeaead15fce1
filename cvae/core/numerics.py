"""CPU numerics: the settings that decide the bytes of a float result, and a
record of the machine a result was computed on.

Three libraries do the float work of a CPU run, and each picks its code path
from the CPU it finds:

- PyTorch's own vectorised kernels (sums, activations, norms):
  ``ATEN_CPU_CAPABILITY`` fixes the instruction set (AVX2);
- oneDNN (convolutions): ``ONEDNN_MAX_CPU_ISA`` caps it at AVX2;
- MKL (torch's matrix products, ``exp``/``log``, LAPACK): ``MKL_CBWR=COMPATIBLE``,
  the one conditional-numerical-reproducibility branch MKL gives the same
  results on every x86-64 CPU, Intel or not. Its AVX2 branch holds on Intel
  CPUs only: on others MKL falls back to its own CPU dispatch;
- OpenBLAS (NumPy and SciPy: FID's covariances and eigenvalues, t-SNE):
  ``OPENBLAS_CORETYPE=Haswell``, the AVX2 kernels it also picks on AMD CPUs
  (it would pick SkylakeX ones on AVX-512 CPUs).

docs/pipeline.md ("Same bytes") has the measurements. The thread count splits
reductions too: :func:`set_threads` gives torch, OpenMP and OpenBLAS the
``cpu_threads`` param. :func:`pin` must run before torch or NumPy is imported
(``stages`` and ``cvae_cli`` call it first): the libraries read these variables
once, when they load.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",
}


_pinned_in_time: bool | None = None  # None: pin() not called in this process


def pin() -> bool:
    """Set :data:`PINS` in this process's environment (children inherit them).

    Returns whether they came in time, that is before torch or NumPy was
    imported: the libraries keep the code paths they chose when they loaded
    (:func:`machine_record` says which was the case).
    """
    global _pinned_in_time
    pins = dict(PINS)
    if not _has_avx2():  # OpenBLAS's Haswell kernels would not run here
        pins.pop("OPENBLAS_CORETYPE")
    late = any(m in sys.modules for m in ("torch", "numpy")) and any(
        os.environ.get(k) != v for k, v in pins.items()
    )
    os.environ.update(pins)
    if _pinned_in_time is None or late:
        _pinned_in_time = not late
    return not late


def set_threads(n: int) -> None:
    """Give torch, every OpenMP runtime and OpenBLAS ``n`` threads (a result's
    float sums are split by thread, so ``n`` is part of the result)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # NumPy/SciPy's OpenBLAS, scikit-learn's OpenMP


def adam(params: Any, **options: Any) -> Any:
    """``torch.optim.Adam`` with its fused kernel, on the CPU as on CUDA.

    The fused kernel takes the square root of the second moment with the CPU's
    own exact instruction. The default per-tensor path calls MKL's vector square
    root, which under ``MKL_CBWR=COMPATIBLE`` is a software routine that gave
    other bytes on another CPU (benchmarks/same-bytes.md); every other float of a
    training step was the same there.
    """
    import torch

    return torch.optim.Adam(params, fused=True, **options)


def _has_avx2() -> bool:
    return "avx2" in (_cpuinfo("flags") or "").split()


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in ``/proc/cpuinfo`` (None off Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (``/proc/cpuinfo`` on Linux)."""
    return (
        _cpuinfo("model name")
        or platform.processor()
        or platform.machine()
        or "unknown"
    )


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... (``unknown`` off Linux/x86)."""
    return _cpuinfo("vendor_id") or "unknown"


def machine_record() -> dict[str, Any]:
    """Where and how this process computes: the CPU, torch's version and
    threads, and the numerics settings in force (for info files)."""
    import torch
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return {
        "cpu": cpu_model(),
        "cpu_vendor": cpu_vendor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "numerics": {k: os.environ.get(k) for k in PINS}
        | {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
        | {"openblas_core": sorted({str(i.get("architecture")) for i in blas})},
    }
