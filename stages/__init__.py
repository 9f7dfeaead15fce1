"""DVC pipeline stages: thin glue that reads params and calls the `cvae` library.

CPU numerics are pinned here, before any stage imports torch, so that a re-run
on the same CPU model gives the same bytes whatever the machine's core count:
PyTorch's own kernels, oneDNN and MKL otherwise pick AVX-512 or AVX2 code paths
by CPU, and their float sums come out in a different order. The thread count,
which splits reductions too, is the `cpu_threads` param (``stages._common.load``).
Across CPU models (Intel and AMD, say) the pins are not enough: docs/pipeline.md
says what moves.
"""

import os

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"  # PyTorch's vectorised CPU kernels
os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # oneDNN convolutions
os.environ["MKL_CBWR"] = "AVX2"  # MKL BLAS: conditional numerical reproducibility
