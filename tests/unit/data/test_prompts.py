import pytest

from cvae.core.errors import CVAEError
from cvae.data.prompts import (
    CLASS_NAMES,
    SYNONYMS,
    find_classes,
    known_words,
    prompt_to_label,
)


@pytest.mark.parametrize(
    "prompt, label",
    [
        ("Make a dress", 3),
        ("make a DRESS", 3),
        ("dresses for summer", 3),
        ("a T-shirt", 0),
        ("T-shirts", 0),
        ("a tank top", 0),
        ("a plain shirt", 6),
        ("a dress shirt", 6),  # the longer phrase wins over 'dress'
        ("blue jeans", 1),
        ("Trousers", 1),
        ("a warm hoodie", 2),
        ("winter coat", 4),
        ("a leather jacket", 4),
        ("beach sandals", 5),
        ("running shoes", 7),
        ("Sneaker", 7),
        ("a handbag", 8),
        ("ankle boots", 9),
        ("boot", 9),
        ("Pullover.", 2),
        ("(coat)", 4),
    ],
)
def test_prompt_to_label(prompt: str, label: int) -> None:
    assert prompt_to_label(prompt) == label


def test_every_class_name_maps_to_itself() -> None:
    for label, name in enumerate(CLASS_NAMES):
        first = name.split("/")[0]
        assert prompt_to_label(first) == label, name


def test_each_word_has_one_class() -> None:
    words = [w for ws in SYNONYMS.values() for w in ws]
    assert len(words) == len(set(words))
    # The seed's table listed 'Shirt' under two classes; here it has one.
    assert prompt_to_label("shirt") == 6


@pytest.mark.parametrize(
    "prompt",
    ["cowboy", "topology", "bagel", "bootstrap", "coats-of-arms", "dressing room"],
)
def test_whole_words_only(prompt: str) -> None:
    with pytest.raises(CVAEError, match="no Fashion-MNIST class"):
        prompt_to_label(prompt)


def test_two_classes_is_an_error_naming_both() -> None:
    with pytest.raises(CVAEError, match="more than one class") as e:
        prompt_to_label("a shirt and a dress")
    assert "Shirt" in str(e.value) and "Dress" in str(e.value)


def test_same_class_twice_is_fine() -> None:
    assert prompt_to_label("a coat, or rather a jacket") == 4


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt(prompt: str) -> None:
    with pytest.raises(CVAEError, match="empty prompt"):
        prompt_to_label(prompt)


def test_unknown_lists_known_words() -> None:
    with pytest.raises(CVAEError) as e:
        prompt_to_label("a spaceship")
    msg = str(e.value)
    assert "\n" not in msg
    for w in ("dress", "sneaker", "ankle boot"):
        assert w in msg
    assert known_words() == sorted(known_words())


def test_find_classes_positions() -> None:
    assert find_classes("T-shirt and ankle boots") == [
        ("T-shirt", 0),
        ("ankle boots", 9),
    ]
