"""DVC pipeline stages: thin glue that reads params and calls the `cvae` library.

CPU numerics are pinned here, before any stage imports torch, so that the same
inputs and params give the same bytes on any x86-64 machine with AVX2: PyTorch's
own kernels, oneDNN and MKL otherwise pick AVX-512 or AVX2 code paths by CPU,
and their float sums come out in a different order. The thread count, which
splits reductions too, is the `cpu_threads` param (``stages._common.load``).
"""

import os

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"  # PyTorch's vectorised CPU kernels
os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # oneDNN convolutions
os.environ["MKL_CBWR"] = "AVX2"  # MKL BLAS: conditional numerical reproducibility
