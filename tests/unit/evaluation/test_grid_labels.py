"""Grid labels: ASCII text in Pillow's bundled font (the pipeline's grids keep
their bytes), any other text in DejaVu Sans, which draws accented letters where
the bundled font draws the same box for each."""

from __future__ import annotations

import torch
from PIL import Image, ImageFont

from cvae.evaluation.sampling import LABEL_FONT_SIZE, label_font, save_grid


def _mask(font, text: str) -> tuple:
    m = font.getmask(text)
    return m.size, bytes(m)


def test_ascii_labels_keep_pillows_bundled_font() -> None:
    bundled = ImageFont.load_default(size=LABEL_FONT_SIZE)
    for text in ["T-shirt/top", "Ankle boot", "A cow grazing."]:
        assert _mask(label_font(text), text) == _mask(bundled, text)


def test_accented_letters_are_drawn_not_boxed() -> None:
    font = label_font("Un café crème, Größe")
    box = _mask(font, "\ue000")  # a private-use character: no glyph, the box
    glyphs = {c: _mask(font, c) for c in "éèöüßçñ"}
    assert box not in glyphs.values()
    assert len(set(glyphs.values())) == len(glyphs)  # each letter its own shape
    bundled = ImageFont.load_default(size=LABEL_FONT_SIZE)
    assert _mask(bundled, "é") == _mask(bundled, "ß")  # the box it replaces


def test_a_grid_labelled_in_two_scripts_differs(tmp_path) -> None:
    """With boxes, one-letter labels é and ß would give the same picture."""
    images = torch.zeros(2, 1, 8, 8)
    for name, label in [("e", "é"), ("s", "ß")]:
        save_grid(
            images, tmp_path / f"{name}.png", nrow=2, row_labels=[label], label_width=40
        )
    e, s = (Image.open(tmp_path / f"{n}.png").convert("L") for n in "es")
    assert e.size == s.size and e.tobytes() != s.tobytes()
