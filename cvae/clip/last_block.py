"""CLIP's last transformer block at the pooled token only: the same features,
less work.

Each CLIP tower reads one token of its last block's output: the class token
(ViT with ``pool_type 'tok'``) or the end-of-text token (text, argmax or eos
pooling). A block is attention, the only part that mixes positions, then
position-wise layer norms and an MLP. So in the last block the keys and values
are needed at every position, but the query, the attention output, the MLP and
the norms only at the pooled one. For ViT-B-32's 50 tokens that is 18% of the
last block's matrix work, about 7% of either tower. ``tests/unit/clip/test_clip.py``
checks the features against open_clip's own to float rounding.
"""

from __future__ import annotations

import torch


def blocks_ok(transformer: torch.nn.Module | None) -> bool:
    """Whether an open_clip ``Transformer`` is batch first, has blocks, and all
    are ones ``block_at`` can run (so its blocks can be called one by one)."""
    blocks = getattr(transformer, "resblocks", None)
    return (
        bool(getattr(transformer, "batch_first", False))
        and bool(blocks)
        and all(block_ok(b) for b in blocks)
    )


def block_ok(block: torch.nn.Module) -> bool:
    """Whether ``block`` is open_clip's plain pre-norm block (batch first, self
    attention), whose parts ``block_at`` calls one by one."""
    from open_clip.transformer import ResidualAttentionBlock

    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and bool(getattr(block.attn, "batch_first", False))
    )


def block_at(
    block: torch.nn.Module,
    x: torch.Tensor,
    index: torch.Tensor,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """One row of ``block(x)``: its output at position ``index[b]`` of row b.

    x: (B, L, W) block input; index: (B,) the position read from each row;
    key_mask: (B, L) bool, True where a key is hidden from that row's query
    (the causal mask's row at ``index``), or None. -> (B, W)
    """
    rows = torch.arange(x.shape[0], device=x.device)
    h = block.ln_1(x)  # (B, L, W): keys and values at every position
    q = h[rows, index].unsqueeze(1)  # (B, 1, W): the one query
    a = block.attn(q, h, h, need_weights=False, key_padding_mask=key_mask)[0]
    y = x[rows, index] + block.ls_1(a[:, 0])  # (B, W)
    return y + block.ls_2(block.mlp(block.ln_2(y)))


def image_ok(model: torch.nn.Module) -> bool:
    """Whether ``encode_image_pooled`` computes ``model.encode_image``: an
    open_clip ViT pooled at its class token, without attention pooling, that
    returns the pooled feature alone."""
    from open_clip.transformer import VisionTransformer

    v = getattr(model, "visual", None)
    return (
        isinstance(v, VisionTransformer)
        and v.attn_pool is None
        and v.pool_type == "tok"
        and not getattr(v, "output_tokens", False)
        and hasattr(v, "_embeds")
        and blocks_ok(v.transformer)
    )


def encode_image_pooled(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """``model.encode_image(pixels)`` (B, 3, R, R) -> (B, D), the last block
    computed at the class token only (eval mode: no patch dropout)."""
    v = model.visual
    x = v._embeds(pixels)  # (B, 1 + grid², W): class token first, ln_pre applied
    *blocks, last = v.transformer.resblocks
    for block in blocks:
        x = block(x)
    pooled = v.ln_post(
        block_at(last, x, torch.zeros_like(x[:, 0, 0], dtype=torch.long))
    )
    return pooled @ v.proj if v.proj is not None else pooled
