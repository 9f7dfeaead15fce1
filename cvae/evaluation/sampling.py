"""Reconstruction and generation helpers, and PNG grids."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from cvae.core.errors import UsageError
from cvae.core.files import atomic_path
from cvae.models import ConditionalVAE
from cvae.models.base import to_float_images


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def generate(
    model: ConditionalVAE, cond: torch.Tensor, n: int, *, seed: int = 0
) -> torch.Tensor:
    """n images for one condition (label () or vector (D,)), (n, C, H, W) on CPU.

    z is drawn on the CPU from a generator seeded with ``seed``, so a seed gives
    the same images on any device.
    """
    device = next(model.parameters()).device
    c = cond.unsqueeze(0).expand(n, *cond.shape).to(device)
    gen = torch.Generator().manual_seed(seed)
    return model.sample(c, generator=gen).float().cpu()


@torch.no_grad()
def reconstruct(
    model: ConditionalVAE,
    images: torch.Tensor,
    conds: torch.Tensor,
    *,
    batch_size: int = 512,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield (slice, originals in [0,1], decode(mu, c)) on CPU, batched."""
    device = next(model.parameters()).device
    for sl in batches(len(images), batch_size):
        x = to_float_images(images[sl]).to(device)
        r = model.reconstruct(x, conds[sl].to(device))
        yield sl, x.cpu(), r.float().cpu()


IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def image_format(path: str | os.PathLike) -> str:
    """The PIL format a file name's extension names (one-line error otherwise)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in IMAGE_FORMATS:
        raise UsageError(
            f"{path}: unknown image extension {ext or '(none)'!r}: use one of "
            f"{', '.join(IMAGE_FORMATS)}"
        )
    return IMAGE_FORMATS[ext]


MAX_GRID_PIXELS = 64_000_000  # an upscaled grid beyond this is refused
GRID_PADDING = 2  # pixels between tiles (white)
LABEL_FONT_SIZE = 11  # both label fonts ship with a dependency: same pixels anywhere
# DejaVu Sans (accented Latin, Greek, Cyrillic...) as matplotlib ships it, for
# labels beyond ASCII: Pillow's bundled font draws most of those as boxes.
UNICODE_FONT = Path("mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
TITLE_LINES = 3  # a longer title is cut, its last line ending in an ellipsis


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    *,
    nrow: int = 8,
    row_labels: list[str] | None = None,
    label_width: int = 0,
    scale: int = 1,
    title: str | None = None,
) -> None:
    """Write images (N, C, H, W) in [0, 1] as one grid, atomically, in the format
    the extension names (.png, .jpg/.jpeg, .webp).

    ``row_labels``: one text per grid row (class names, prompts, "original"),
    written word-wrapped in a white column ``label_width`` pixels wide on the left.
    ``scale``: every pixel of the grid repeated ``scale`` x ``scale`` times
    (nearest neighbour: no new pixel values, 28 px tiles stay crisp).
    ``title``: word-wrapped text (at most TITLE_LINES lines of the grid's width)
    in a white band above the grid.
    """
    if scale < 1:
        raise UsageError(f"scale must be >= 1, got {scale}")
    fmt = image_format(path)
    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=GRID_PADDING, pad_value=1.0)
    h, w = grid.shape[-2] * scale, grid.shape[-1] * scale
    if h * w > MAX_GRID_PIXELS:
        raise UsageError(
            f"a {w}x{h} px grid is too large (at most {MAX_GRID_PIXELS:,} pixels): "
            "lower --scale or -n"
        )
    if scale == 1 and row_labels is None and title is None:
        with atomic_path(path) as tmp:
            save_image(grid, tmp, format=fmt)
        return
    picture = to_pil(grid)
    if scale > 1:  # after uint8: no float copy of the enlarged grid
        picture = picture.resize((w, h), Image.Resampling.NEAREST)
    if row_labels is not None:
        tile = images.shape[-2] * scale  # tile height
        picture = labelled(
            picture, row_labels, tile=tile, width=label_width, pad=GRID_PADDING * scale
        )
    if title is not None:
        picture = titled(picture, title)
    with atomic_path(path) as tmp:
        picture.save(tmp, format=fmt)


def to_pil(grid: torch.Tensor):
    """(C, H, W) in [0, 1] -> PIL RGB, rounded as torchvision's save_image does."""
    from PIL import Image

    arr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0)
    return Image.fromarray(arr.to("cpu", torch.uint8).numpy()).convert("RGB")


def labelled(picture, labels: list[str], *, tile: int, width: int, pad: int):
    """``picture`` (a grid of rows ``tile`` px high, ``pad`` px apart) with
    ``labels`` in a column on its left, one per row, word-wrapped to ``width``
    and clipped to the row."""
    from PIL import Image, ImageDraw

    out = Image.new("RGB", (width + picture.width, picture.height), "white")
    out.paste(picture, (width, 0))
    draw = ImageDraw.Draw(out)
    line_h = LABEL_FONT_SIZE + 1
    for row, text in enumerate(labels):
        top = pad + row * (tile + pad)
        font = label_font(text)
        lines = wrap(text, font, width - 2 * GRID_PADDING)[: max(1, tile // line_h)]
        for i, line in enumerate(lines):
            draw.text((GRID_PADDING, top + i * line_h), line, fill="black", font=font)
    return out


def titled(picture, text: str):
    """``picture`` below a white band holding ``text``, word-wrapped to its width
    in at most TITLE_LINES lines."""
    from PIL import Image, ImageDraw

    font = label_font(text)
    line_h = LABEL_FONT_SIZE + 1
    lines = wrap(text, font, picture.width - 2 * GRID_PADDING, TITLE_LINES)
    band = 2 * GRID_PADDING + line_h * len(lines)
    out = Image.new("RGB", (picture.width, band + picture.height), "white")
    out.paste(picture, (0, band))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text(
            (GRID_PADDING, GRID_PADDING + i * line_h), line, fill="black", font=font
        )
    return out


def label_font(text: str):
    """The font for one label: Pillow's bundled one for ASCII text, DejaVu Sans
    (``UNICODE_FONT``) for text with any other character, both LABEL_FONT_SIZE."""
    return _font(unicode=not text.isascii())


@functools.cache
def _font(*, unicode: bool):
    from PIL import ImageFont

    if unicode:
        spec = importlib.util.find_spec("matplotlib")  # found, not imported
        for folder in (spec and spec.submodule_search_locations) or []:
            if (path := Path(folder) / UNICODE_FONT).is_file():
                return ImageFont.truetype(str(path), LABEL_FONT_SIZE)
    return ImageFont.load_default(size=LABEL_FONT_SIZE)


def wrap(text: str, font, width: int, max_lines: int | None = None) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width`` pixels wide; past
    ``max_lines`` lines, the text is cut and the last line ends in an ellipsis."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
            continue
        while len(word) > 1 and font.getlength(word) > width:  # a word too long
            word = word[:-2] + "…"
        lines.append(word)
    if max_lines is not None and len(lines) > max_lines:
        last = lines[max_lines - 1] + "…"
        while len(last) > 1 and font.getlength(last) > width:
            last = last[:-2] + "…"
        lines = [*lines[: max_lines - 1], last]
    return lines
