"""cvae: conditional variational autoencoders for text-to-image generation.

The library, by concept, each subpackage importing only those below it:
``core`` (errors, files, device, progress, torchrun); ``params``, ``data``,
``clip``, ``models`` (on ``core`` alone); ``embedding`` (CLIP over a data set);
``training``; ``evaluation``; ``experiments``. It never imports the pipeline
(``stages/``), typer or dvc. docs/architecture.md has the map.
"""

__version__ = "0.1.0"
