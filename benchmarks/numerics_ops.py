"""Which library's float results depend on the CPU: the md5 of single operations.

    python -m benchmarks.numerics_ops                      # the environment as it is
    MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
        qemu-x86_64 -cpu EPYC-Milan-v1 .venv/bin/python -m benchmarks.numerics_ops

Unlike the pipeline, this sets no numerics itself: the environment decides
(``MKL_CBWR``, ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``OPENBLAS_CORETYPE``, ``OPENBLAS_NUM_THREADS``), so two runs that differ in one
setting, or in the CPU (a CPU emulator's ``-cpu`` model), show which operations
move. Prints one JSON object: each operation's md5 (8 hex digits), grouped by the
library that computes it on the CPU, and the code paths in force. Seeded inputs,
2 threads (``T`` to change); about 2 s natively, 90 s under QEMU.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def _h(x: Any) -> str:
    import numpy as np

    a = x.detach().contiguous().numpy() if hasattr(x, "detach") else np.asarray(x)
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()[:8]


def torch_ops() -> dict[str, dict[str, str]]:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("T", "2")))
    torch.set_flush_denormal(True)
    g = torch.Generator().manual_seed(0)
    mkl: dict[str, str] = {}
    a, b = torch.randn(256, 784, generator=g), torch.randn(784, 400, generator=g)
    mkl["matmul 256x784x400"] = _h(a @ b)
    lin = torch.nn.Linear(784, 400)
    x = torch.randn(128, 784, generator=g, requires_grad=True)
    lin(x).relu().sum().backward()
    mkl["linear forward"] = _h(lin(x))
    mkl["linear weight grad"] = _h(lin.weight.grad)
    mkl["linear input grad"] = _h(x.grad)
    mkl["batched matmul"] = _h(
        torch.randn(8, 77, 64, generator=g) @ torch.randn(8, 64, 77, generator=g)
    )
    s = torch.randn(1_000_000, generator=g)
    mkl["exp"] = _h(s.exp())
    dnn: dict[str, str] = {}
    conv = torch.nn.Conv2d(32, 64, 3, padding=1)
    xc = torch.randn(64, 32, 14, 14, generator=g, requires_grad=True)
    y = conv(xc)
    y.square().sum().backward()
    dnn["conv forward"] = _h(y)
    dnn["conv weight grad"] = _h(conv.weight.grad)
    dnn["conv input grad"] = _h(xc.grad)
    ct = torch.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    yt = ct(torch.randn(64, 64, 7, 7, generator=g))
    yt.square().sum().backward()
    dnn["transposed conv forward"] = _h(yt)
    dnn["transposed conv weight grad"] = _h(ct.weight.grad)
    aten = {
        "sum": _h(s.sum()),
        "tanh": _h(s.tanh()),
        "log_softmax": _h(torch.log_softmax(s.view(1000, 1000), 1)),
        "layer norm": _h(torch.nn.LayerNorm(512)(torch.randn(77, 512, generator=g))),
    }
    return {"MKL (torch)": mkl, "oneDNN": dnn, "ATen": aten}


def numpy_ops() -> dict[str, str]:
    import numpy as np

    r = np.random.default_rng(0)
    a, b = r.standard_normal((2000, 512)), r.standard_normal((512, 512))
    cov = np.cov(a, rowvar=False)
    w, v = np.linalg.eigh(cov)
    return {
        "covariance": _h(cov),
        "eigh": _h(w),
        "float32 matmul": _h(a.astype(np.float32) @ b.astype(np.float32)),
    }


def main() -> None:
    import torch
    from threadpoolctl import threadpool_info

    out: dict[str, Any] = torch_ops()
    out["OpenBLAS (NumPy)"] = numpy_ops()
    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    out["in force"] = {
        k: os.environ.get(k)
        for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    } | {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "openblas": [f"{i.get('architecture')}/{i.get('num_threads')}" for i in blas],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
