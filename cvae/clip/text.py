"""CLIP text features without the padding: the same vectors, a fraction of the work.

open_clip pads every sentence to 77 tokens. A COCO sentence is 10-20 tokens, so
most of the text transformer's work is on padding. CLIP's text transformer is
causal (position i attends to positions <= i only) and its feature is read at
the end-of-text token (``argmax``/``eos`` pooling), so nothing after that token
can change it: cutting a batch to its longest sentence gives the same vectors
(to float rounding; ``tests/unit/clip/test_clip.py`` checks both facts). Sentences are
also sorted by token count before batching, so each batch is cut nearly as
short as it can. The last block runs at the end-of-text token only
(``cvae.clip.last_block``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cvae.clip.last_block import block_at, blocks_ok

POOLS_AT_EOT = ("argmax", "eos")  # pooling read at the end-of-text token


def trimmable(model: torch.nn.Module) -> bool:
    """Whether ``model`` is an open_clip CLIP whose text features can be
    computed on trimmed tokens: a causal mask and end-of-text pooling."""
    return (
        getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) in POOLS_AT_EOT
        and hasattr(model, "token_embedding")
        and hasattr(model, "positional_embedding")
    )


def used_length(tokens: torch.Tensor) -> int:
    """Columns up to the last non-padding token of any row (padding is id 0)."""
    nonzero = (tokens != 0).any(dim=0).nonzero()
    return int(nonzero[-1]) + 1 if len(nonzero) else 1


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed on the first ``used_length`` columns:
    open_clip's CLIP.encode_text with the positions and causal mask sliced, and
    its last block at the end-of-text token only where its blocks allow
    (``cvae.clip.last_block.blocks_ok``)."""
    n = used_length(tokens)
    text = tokens[:, :n]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)  # (B, n, width)
    x = x + model.positional_embedding[:n].to(cast_dtype)
    mask = model.attn_mask[:n, :n]
    end = end_positions(text, model.text_pool_type, getattr(model, "text_eos_id", None))
    if blocks_ok(model.transformer):
        *blocks, last = model.transformer.resblocks
        for block in blocks:
            x = block(x, attn_mask=mask)
        hidden = torch.arange(n, device=text.device)[None, :] > end[:, None]  # (B, n)
        x = block_at(last, x, end, hidden)  # (B, width)
    else:
        x = model.transformer(x, attn_mask=mask)[torch.arange(len(x)), end]
    x = model.ln_final(x)
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


def end_positions(text: torch.Tensor, pool: str, eos_id: int | None) -> torch.Tensor:
    """(B, n) tokens -> (B,) the position each row's feature is read at, as
    open_clip's ``text_global_pool`` picks it (argmax: the end-of-text token has
    the highest id; eos: the first ``eos_id``)."""
    if pool == "argmax":
        return text.argmax(dim=-1)
    return (text == eos_id).int().argmax(dim=-1)


# Sentences tokenized at once while counting tokens (bounds the token array).
COUNT_CHUNK = 4096


def length_order(
    sentences: list[str], tokenizer: Callable[[list[str]], torch.Tensor]
) -> torch.Tensor:
    """Sentence order by token count (stable), so each batch of neighbours is
    cut to nearly its own length: on COCO captions in batches of 64 the batches
    encode 0.8% more positions than the sentences hold, against 22% when sorted
    by characters.
    Only the counts are kept (a chunk of sentences is tokenized at a time); each
    batch is tokenized again when encoded, a small cost next to the encoding."""
    counts = [
        (tokenizer(sentences[i : i + COUNT_CHUNK]) != 0).sum(dim=1)
        for i in range(0, len(sentences), COUNT_CHUNK)
    ]
    if not counts:
        return torch.zeros(0, dtype=torch.long)
    return torch.argsort(torch.cat(counts), stable=True)
