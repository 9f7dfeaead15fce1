"""DVC pipeline stages: thin glue that reads params and calls the `cvae` library.

CPU numerics are pinned here, before any stage imports torch, so that the same
inputs and params give the same bytes on any x86-64 CPU, Intel or AMD, whatever
its core count (`cvae.core.numerics` says which settings and why; the thread
count is the `cpu_threads` param, set by ``stages._common.load``).
"""

from cvae.core import numerics

numerics.pin()
