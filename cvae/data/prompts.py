"""Short text -> Fashion-MNIST label.

A prompt such as "Make a dress" is matched, whole-word and case-insensitively,
against the class names and synonyms below (plural forms included). Longer
phrases win over the words inside them ("t-shirt" over "shirt", "ankle boot"
over "boot", "dress shirt" over "dress"), so every word maps to one class only.
A prompt naming no class, or two different classes, is a CVAEError.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from cvae.core.errors import UsageError

# Fashion-MNIST label order (Xiao et al., 2017).
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def by_class(values: list) -> dict[str, Any]:
    """Per-label values keyed by class name (a metrics file holds no lists)."""
    if len(values) != len(CLASS_NAMES):
        raise ValueError(f"{len(values)} values for {len(CLASS_NAMES)} classes")
    return dict(zip(CLASS_NAMES, values))


# label -> words (lower case, singular). Each word belongs to exactly one label.
SYNONYMS: dict[int, tuple[str, ...]] = {
    0: ("t-shirt", "t shirt", "tshirt", "tee", "tee-shirt", "top", "tank top"),
    1: ("trouser", "pants", "jeans", "slacks", "leggings"),
    2: ("pullover", "sweater", "hoodie", "jumper", "sweatshirt", "cardigan"),
    3: ("dress", "gown", "frock"),
    4: ("coat", "jacket", "parka", "blazer", "overcoat", "raincoat"),
    5: ("sandal", "flip-flop", "flip flop"),
    6: ("shirt", "blouse", "dress shirt", "button-down", "polo"),
    7: ("sneaker", "shoe", "trainer", "running shoe"),
    8: ("bag", "handbag", "purse", "backpack", "tote"),
    9: ("ankle boot", "boot", "bootie"),
}


def _plural(word: str) -> str:
    """Regex for ``word`` and its plural (-s, -es; 'pants'/'jeans' already are)."""
    return re.escape(word).replace(r"\ ", r"[\s-]+") + r"(?:e?s)?"


@lru_cache(maxsize=1)
def _pattern() -> tuple[re.Pattern[str], dict[str, int]]:
    word_to_label = {w: label for label, words in SYNONYMS.items() for w in words}
    if len(word_to_label) != sum(len(w) for w in SYNONYMS.values()):
        raise AssertionError("a synonym is listed under two classes")
    # Longest first: regex alternation takes the first alternative that matches.
    words = sorted(word_to_label, key=len, reverse=True)
    alternation = "|".join(_plural(w) for w in words)
    # Whole word: no letter/digit on either side. '-' counts as a separator so
    # "t-shirt" is one word only because it is listed as one.
    pattern = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)
    return pattern, word_to_label


def _canonical(match: str, word_to_label: dict[str, int]) -> int:
    """Label of a matched span: the first word (longest first) whose own pattern
    matches the whole span, under the same case folding as the search ('ſ' is
    's', 'K' is 'k' for ``re.IGNORECASE``, which ``str.lower`` does not undo)."""
    for word in sorted(word_to_label, key=len, reverse=True):
        if re.fullmatch(_plural(word), match, re.IGNORECASE):
            return word_to_label[word]
    raise AssertionError(f"matched {match!r} but found no label")  # pragma: no cover


def known_words() -> list[str]:
    """All words the parser understands, sorted."""
    return sorted(w for words in SYNONYMS.values() for w in words)


def find_classes(prompt: str) -> list[tuple[str, int]]:
    """All (matched text, label) pairs in ``prompt``, left to right."""
    pattern, word_to_label = _pattern()
    return [
        (m.group(0), _canonical(m.group(0), word_to_label))
        for m in pattern.finditer(prompt)
    ]


def prompt_to_label(prompt: str) -> int:
    """Map a short prompt to one Fashion-MNIST label (0..9).

    >>> prompt_to_label("Make a dress")
    3
    >>> prompt_to_label("two pairs of SNEAKERS")
    7
    """
    if not prompt or not prompt.strip():
        raise UsageError("empty prompt: name a clothing item, e.g. 'Make a dress'")
    hits = find_classes(prompt)
    labels = sorted({label for _, label in hits})
    if not labels:
        raise UsageError(
            f"no Fashion-MNIST class in {prompt!r}: use one of "
            + ", ".join(known_words())
        )
    if len(labels) > 1:
        named = ", ".join(f"{text!r}->{CLASS_NAMES[lab]}" for text, lab in hits)
        raise UsageError(
            f"prompt {prompt!r} names more than one class ({named}): name one item"
        )
    return labels[0]
