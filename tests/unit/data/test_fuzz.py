"""Property tests (hypothesis) of the two text matchers.

- ``cvae.data.prompts.prompt_to_label``: total (a label 0..9 or a CVAEError, nothing
  else), blind to unrelated words and to letter case.
- ``cvae.data.coco`` keyword filter: never raises on any caption, a keyword inside a
  longer word never matches, every plural form matches.
"""

from __future__ import annotations

import re
import string

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from cvae.core.errors import CVAEError
from cvae.data.coco import DEFAULT_KEYWORDS, compile_keywords, match_subsets, word_forms
from cvae.data.prompts import SYNONYMS, find_classes, prompt_to_label

FUZZ = settings(max_examples=120, deadline=None)

WORD_LABEL = [(w, label) for label, words in SYNONYMS.items() for w in words]
# Every word of every phrase ("t", "tank", "button", ...): next to another word
# it could form a phrase, so it is never an "unrelated" word.
PHRASE_TOKENS = {t for w, _ in WORD_LABEL for t in re.split(r"[\s-]+", w)}
KEYWORDS = sorted({k for words in DEFAULT_KEYWORDS.values() for k in words})

letters = st.characters(categories=["Lu", "Ll"])  # \w, never a separator
ascii_word = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)


def _unrelated(word: str) -> bool:
    """True when ``word`` names no class and cannot be part of a class phrase."""
    return not find_classes(word) and not any(
        re.fullmatch(re.escape(t), word, re.IGNORECASE) for t in PHRASE_TOKENS
    )


unrelated_word = st.one_of(ascii_word, st.text(letters, min_size=1, max_size=8)).filter(
    _unrelated
)


@st.composite
def class_word(draw) -> tuple[str, int]:
    """A synonym as a user might type it (plural, upper or title case)."""
    word, label = draw(st.sampled_from(WORD_LABEL))
    form = draw(st.sampled_from([str, str.upper, str.title, lambda w: w + "s"]))
    return form(word), label


# Prompts that often name a class: synonyms glued to arbitrary text.
mixed_prompt = st.lists(
    st.one_of(class_word().map(lambda p: p[0]), st.text(max_size=6)), max_size=5
).flatmap(
    lambda parts: st.sampled_from([" ", "", "-", ", "]).map(lambda s: s.join(parts))
)


def _outcome(prompt: str) -> int | None:
    try:
        label = prompt_to_label(prompt)
    except CVAEError:
        return None
    assert isinstance(label, int) and 0 <= label <= 9
    return label


@FUZZ
@given(prompt=st.one_of(st.text(max_size=40), mixed_prompt))
@example(prompt="dre\u017fs")  # long s: re.IGNORECASE matches it to 's'
@example(prompt="T-\u017fHIRT")
@example(prompt="hood\u0131e")  # dotless i
@example(prompt="a jac\u212aet")  # Kelvin sign
@example(prompt="\x00\ud800")
def test_prompt_to_label_is_total(prompt: str) -> None:
    _outcome(prompt)  # only a label 0..9 or CVAEError; anything else fails
    for text, label in find_classes(prompt):
        assert text and 0 <= label <= 9


@FUZZ
@given(
    word=class_word(),
    before=st.lists(unrelated_word, max_size=3),
    after=st.lists(unrelated_word, max_size=3),
    extra=st.lists(st.tuples(st.integers(0, 8), unrelated_word), max_size=4),
)
def test_unrelated_words_never_change_the_label(word, before, after, extra) -> None:
    text, label = word
    words = [*before, text, *after]
    assert prompt_to_label(" ".join(words)) == label
    for pos, w in extra:  # inserted between words, never inside a phrase
        words.insert(min(pos, len(words)), w)
    assert prompt_to_label(" ".join(words)) == label
    assert prompt_to_label(", ".join(words) + ".") == label


@FUZZ
@given(prompt=st.one_of(st.text(string.printable, max_size=40), mixed_prompt))
def test_case_insensitive(prompt: str) -> None:
    assume(prompt.isascii())  # unicode case maps change lengths ('ß' -> 'SS')
    got = _outcome(prompt)
    for variant in (prompt.upper(), prompt.lower(), prompt.swapcase()):
        assert _outcome(variant) == got


@FUZZ
@given(captions=st.lists(st.text(max_size=60), max_size=4))
@example(captions=["COWS\u017f", "", "\u0130\u0131 tree\ud800"])
def test_match_subsets_never_raises(captions: list[str]) -> None:
    got = match_subsets(captions, DEFAULT_KEYWORDS)
    assert got == sorted(got) and set(got) <= set(DEFAULT_KEYWORDS)


@FUZZ
@given(keyword=st.text(max_size=20), caption=st.text(max_size=40))
def test_any_keyword_compiles_or_is_refused(keyword: str, caption: str) -> None:
    try:
        pattern = compile_keywords([keyword])
    except CVAEError:
        assert not keyword.split()  # only empty keywords are refused
        return
    pattern.search(caption)  # regex metacharacters are escaped: never raises
    assert pattern.search(f"x {keyword.strip()} y") or not keyword.strip()


@FUZZ
@given(
    keyword=st.one_of(st.sampled_from(KEYWORDS), ascii_word.map(str.lower)),
    prefix=st.text(letters, max_size=3),
    suffix=st.text(letters, max_size=3),
)
@example(keyword="cow", prefix="", suffix="boy")
@example(keyword="ox", prefix="b", suffix="")
@example(keyword="ankle boot", prefix="", suffix="leg")
def test_keyword_inside_a_longer_word_never_matches(keyword, prefix, suffix) -> None:
    assume(prefix or suffix)
    words = keyword.split()
    last = words[-1]
    forms = "|".join(re.escape(f) for f in word_forms(last))
    # "cow" + "s" (or "s" after "s") is a plural form, not a longer word.
    whole = (prefix if len(words) == 1 else "") + last + suffix
    assume(not re.fullmatch(forms, whole, re.IGNORECASE))
    assume(not re.search(rf"\b(?:{forms})\b", "A here.", re.IGNORECASE))
    longer = " ".join([prefix + words[0], *words[1:]])
    longer = longer[: len(longer) - len(last)] + last + suffix
    assert not compile_keywords([keyword]).search(f"A {longer} here.")


@FUZZ
@given(
    keyword=st.sampled_from(KEYWORDS),
    case=st.sampled_from([str, str.upper, str.title, str.swapcase]),
    before=st.sampled_from(["", "Two ", "(", "a big, "]),
    after=st.sampled_from(["", ".", " graze", "!", "'s", ")"]),
    sep=st.sampled_from([" ", "-", "  "]),
)
def test_every_plural_form_matches(keyword, case, before, after, sep) -> None:
    *head, last = keyword.split()
    pattern = compile_keywords([keyword])
    for form in word_forms(last):
        text = case(sep.join([*head, form]))
        assert pattern.search(f"{before}{text}{after}"), (keyword, text)
    assert match_subsets([f"{before}{case(keyword)}{after}"], DEFAULT_KEYWORDS)
