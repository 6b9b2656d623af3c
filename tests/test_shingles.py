"""Shingle hashes: pinned values, a pure-Python oracle, and batch == one at a time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.errors import ParameterError
from index.shingles import (
    shingle_hashes,
    shingle_hashes_encoded,
    shingle_hashes_many,
    shingles_and_terms_encoded,
)

_MASK = (1 << 64) - 1


def _mix(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _token_hash(token: str) -> int:
    h = 0xCBF29CE484222325
    for byte in token.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & _MASK
    return _mix(h)


def _reference(
    text: str, *, size: int = 5, char_size: int = 5, spaceless: bool = False
) -> list[int]:
    """The documented algorithm, written plainly: the oracle for the numba kernel."""
    if spaceless:
        tokens = [char for char in text if char not in " \t\n\r\x0b\x0c"]
        k = char_size
    else:
        tokens = text.split()
        k = size
    hashes = [_token_hash(token) for token in tokens]
    span = min(k, len(hashes))
    shingles = set()
    for start in range(len(hashes) - span + 1) if hashes else ():
        h = 0
        for value in hashes[start : start + span]:
            h = (h * 0x9E3779B97F4A7C15 + value) & _MASK
        shingles.add(_mix(h) >> 32)
    return sorted(shingles)


def test_hashes_are_pinned() -> None:
    # Stored signatures are built from these values: a change here invalidates every store.
    assert shingle_hashes("the quick brown fox jumps over the lazy dog").tolist() == [
        353865646,
        460097764,
        509968242,
        1051474007,
        3428666139,
    ]
    assert shingle_hashes("موسكو وطهران توقعان اتفاقية شراكة استراتيجية شاملة").tolist() == [
        73890200,
        1356868354,
        1420556955,
    ]
    assert shingle_hashes("东京大学 研究所", spaceless=True, char_size=3).tolist() == [
        679871299,
        1312619143,
        1545228490,
        2357261592,
        2802015651,
    ]


def test_result_is_sorted_unique_uint32() -> None:
    words = [f"w{i % 37}" for i in range(2000)]
    hashes = shingle_hashes(" ".join(words), size=3)
    assert hashes.dtype == np.uint32
    assert np.all(np.diff(hashes.astype(np.int64)) > 0)
    assert hashes.tolist() == _reference(" ".join(words), size=3)


def test_empty_and_whitespace_texts_have_no_shingles() -> None:
    for text in ("", " ", "  \t\n "):
        assert shingle_hashes(text).size == 0
        assert shingle_hashes(text, spaceless=True).size == 0


def test_short_text_is_one_shingle_of_all_words() -> None:
    short = shingle_hashes("breaking news today", size=5)
    assert short.size == 1
    # The same three words are also a 3-gram of a longer text.
    assert short[0] in shingle_hashes("breaking news today in riyadh", size=3)


def test_any_ascii_whitespace_separates_words() -> None:
    assert np.array_equal(shingle_hashes("a  b\tc\nd e f"), shingle_hashes("a b c d e f"))


def test_spaceless_shingles_characters_ignoring_spaces() -> None:
    joined = shingle_hashes("东京大学研究所", spaceless=True, char_size=2)
    spaced = shingle_hashes("东京 大学 研究所", spaceless=True, char_size=2)
    assert np.array_equal(joined, spaced)
    # Seven characters give six distinct character bigrams.
    assert joined.size == 6
    assert shingle_hashes("ab", spaceless=True, char_size=5).size == 1


def test_lone_surrogates_are_hashed_not_rejected() -> None:
    assert shingle_hashes("broken \ud800 text", size=2).size == 2


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ParameterError, match="at least 1"):
        shingle_hashes("a b c", size=0)
    with pytest.raises(ParameterError, match="at least 1"):
        shingle_hashes_many(["a b c"], char_size=0)
    with pytest.raises(ParameterError, match="one per text"):
        shingle_hashes_many(["a", "b"], spaceless=[True])


def test_many_with_no_texts() -> None:
    assert shingle_hashes_many([]) == []


_WORDS = st.sampled_from(["news", "riyadh", "خبر", "الرياض", "x", "东京", "a", "ยินดี"])
_TEXTS = st.lists(_WORDS, max_size=60).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.tuples(_TEXTS, st.booleans()), max_size=12),
    size=st.integers(1, 6),
    char_size=st.integers(1, 6),
)
def test_batch_equals_single_and_reference(
    texts: list[tuple[str, bool]], size: int, char_size: int
) -> None:
    batch = shingle_hashes_many(
        [text for text, _ in texts],
        size=size,
        char_size=char_size,
        spaceless=[flag for _, flag in texts],
    )
    assert len(batch) == len(texts)
    encoded = shingle_hashes_encoded(
        [text.encode("utf-8", "surrogatepass") for text, _ in texts],
        size=size,
        char_size=char_size,
        spaceless=[flag for _, flag in texts],
    )
    assert [hashes.tolist() for hashes in encoded] == [hashes.tolist() for hashes in batch]
    for (text, flag), hashes in zip(texts, batch, strict=True):
        single = shingle_hashes(text, size=size, char_size=char_size, spaceless=flag)
        assert np.array_equal(hashes, single)
        assert single.tolist() == _reference(text, size=size, char_size=char_size, spaceless=flag)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.tuples(_TEXTS, _TEXTS, st.booleans()), max_size=12),
    size=st.integers(1, 6),
    char_size=st.integers(1, 6),
)
def test_shingles_and_terms_in_one_pass_equal_the_reference(
    texts: list[tuple[str, str, bool]], size: int, char_size: int
) -> None:
    # The terms are the words (spaceless: character char_size-grams) of "title text".
    shingles, terms = shingles_and_terms_encoded(
        [text.encode() for _title, text, _flag in texts],
        [title.encode() for title, _text, _flag in texts],
        size=size,
        char_size=char_size,
        spaceless=[flag for _title, _text, flag in texts],
    )
    assert len(shingles) == len(terms) == len(texts)
    for (title, text, flag), found, words in zip(texts, shingles, terms, strict=True):
        expected = _reference(text, size=size, char_size=char_size, spaceless=flag)
        assert found.tolist() == expected
        both = _reference(f"{title} {text}", size=1, char_size=char_size, spaceless=flag)
        assert words.tolist() == both


def test_shingles_and_terms_want_one_title_per_text() -> None:
    with pytest.raises(ParameterError, match="1 titles for 2 texts"):
        shingles_and_terms_encoded([b"a", b"b"], [b""])
    with pytest.raises(ParameterError, match="spaceless has 1 entries"):
        shingles_and_terms_encoded([b"a", b"b"], [b"", b""], spaceless=[True])
    with pytest.raises(ParameterError):
        shingles_and_terms_encoded([b"a"], [b""], size=0)
    assert shingles_and_terms_encoded([], []) == ([], [])
