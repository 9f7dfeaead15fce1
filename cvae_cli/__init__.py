"""The `cvae` command line (typer). Kept outside the library on purpose.

CPU numerics are pinned before torch is imported, as in the pipeline's stages,
so `cvae generate` writes the same image bytes on any x86-64 CPU.
"""

from cvae.core import numerics

numerics.pin()
