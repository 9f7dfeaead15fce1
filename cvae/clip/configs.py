"""open_clip's model configs, read without building a model: what the
conditions of a CLIP-conditioned model must look like."""

from __future__ import annotations

from cvae.core.errors import CVAEError


def clip_width(model_name: str) -> int:
    """The embedding width D of an open_clip config (no model is built)."""
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise CVAEError(
            f"unknown CLIP model {model_name!r}: set embed.model to one of "
            "open_clip.list_models() (e.g. ViT-B-32)"
        )
    return int(cfg["embed_dim"])
