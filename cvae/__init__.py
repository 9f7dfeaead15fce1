"""cvae: conditional variational autoencoders for text-to-image generation.

The library: models, losses, data, text, CLIP, metrics and sampling. It never
imports the pipeline (`stages/`), typer or dvc.
"""

__version__ = "0.1.0"
