"""Shingles: a normalized text as a sorted set of 32-bit hashes of its word (or character) k-grams.

The hashes are persisted (signatures are built from them and stored), so they must never
depend on the process: each token (word, or character for spaceless scripts) is hashed
with FNV-1a over its UTF-8 bytes and the splitmix64 mixer, never with Python's salted
``hash()``; a shingle is the polynomial of its k token hashes, mixed again, upper 32 bits.
Changing anything here changes every stored signature; ``tests/test_shingles.py`` pins
known values and checks the kernel against a plain-Python rendering of this paragraph.

The work runs in one numba kernel over many texts at once (concatenated bytes plus
offsets) that releases the GIL, so a batch costs one native call and threads can share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from index.errors import ParameterError
from index.native import native

__all__ = [
    "shingle_hashes",
    "shingle_hashes_encoded",
    "shingle_hashes_many",
    "shingles_and_terms_encoded",
]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
# splitmix64 (Steele, Lea and Flood 2014): its increment and finalizer multipliers.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)
# Odd multiplier of the polynomial that combines a shingle's token hashes (order matters).
_COMBINE = np.uint64(0x9E3779B97F4A7C15)
# Below this many shingles insertion sort beats the four radix passes.
_INSERTION_SORT_MAX = 32


@native
def _mix(value: np.uint64) -> np.uint64:
    # The gamma is added first because the bare finalizer maps 0 to 0.
    z = value + _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@native
def _is_space(byte: np.uint8) -> bool:
    # ASCII whitespace only: normalized text has no other separators, and every byte of a
    # multi-byte UTF-8 character is >= 0x80, so no character is ever split.
    return bool(byte == 32 or 9 <= byte <= 13)


@native
def _token_hashes(
    data: npt.NDArray[np.uint8], spaceless: bool, tokens: npt.NDArray[np.uint64]
) -> int:
    """Hash each word (or, spaceless, each non-space character) of ``data`` into ``tokens``."""
    count = 0
    inside = False
    h = _FNV_OFFSET
    for byte in data:
        if _is_space(byte):
            if inside:
                tokens[count] = _mix(h)
                count += 1
                inside = False
            continue
        # A UTF-8 lead byte (not 0b10xxxxxx) starts a new character.
        if spaceless and inside and (byte & 0xC0) != 0x80:
            tokens[count] = _mix(h)
            count += 1
            inside = False
        if not inside:
            h = _FNV_OFFSET
            inside = True
        h = (h ^ np.uint64(byte)) * _FNV_PRIME
    if inside:
        tokens[count] = _mix(h)
        count += 1
    return count


@native
def _sort(values: npt.NDArray[np.uint32], scratch: npt.NDArray[np.uint32]) -> None:
    """Sort in place; LSD radix sort (4 byte-wide passes) for all but tiny inputs.

    numba's quicksort took over half of the shingling time on news articles.
    """
    n = values.shape[0]
    if n <= _INSERTION_SORT_MAX:
        for i in range(1, n):
            value = values[i]
            j = i - 1
            while j >= 0 and values[j] > value:
                values[j + 1] = values[j]
                j -= 1
            values[j + 1] = value
        return
    counts = np.empty(256, dtype=np.int64)
    source = values
    target = scratch[:n]
    for shift in range(0, 32, 8):
        counts[:] = 0
        for value in source:
            counts[(value >> shift) & 255] += 1
        total = 0
        for digit in range(256):
            count = counts[digit]
            counts[digit] = total
            total += count
        for value in source:
            digit = (value >> shift) & 255
            target[counts[digit]] = value
            counts[digit] += 1
        source, target = target, source
    # An even number of passes leaves the result back in ``values``.


@native
def _shingle_document(
    data: npt.NDArray[np.uint8],
    k: int,
    spaceless: bool,
    tokens: npt.NDArray[np.uint64],
    scratch: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint32],
) -> int:
    """Write the sorted unique shingle hashes of one text to ``out``; return their count."""
    return _kgrams(tokens, _token_hashes(data, spaceless, tokens), k, scratch, out)


@native
def _kgrams(
    tokens: npt.NDArray[np.uint64],
    count: int,
    k: int,
    scratch: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint32],
) -> int:
    """Write the sorted unique hashes of the k-grams of ``tokens[:count]`` to ``out``;
    return their count."""
    if count == 0:
        return 0
    # A text shorter than k tokens is one shingle of all its tokens.
    span = min(k, count)
    shingles = count - span + 1
    segment = out[:shingles]
    for start in range(shingles):
        h = _ZERO
        for t in range(start, start + span):
            h = h * _COMBINE + tokens[t]
        segment[start] = np.uint32(_mix(h) >> _S32)
    _sort(segment, scratch)
    unique = 1
    for i in range(1, shingles):
        if segment[i] != segment[unique - 1]:
            segment[unique] = segment[i]
            unique += 1
    return unique


@native
def _shingle_one(data: npt.NDArray[np.uint8], k: int, spaceless: bool) -> npt.NDArray[np.uint32]:
    # A text of n bytes has at most n tokens, hence at most n shingles.
    out = np.empty(data.shape[0], dtype=np.uint32)
    count = _shingle_document(
        data,
        k,
        spaceless,
        np.empty(data.shape[0], dtype=np.uint64),
        np.empty(data.shape[0], dtype=np.uint32),
        out,
    )
    return out[:count].copy()


@native
def _shingle_many(
    data: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    spaceless: npt.NDArray[np.bool_],
    size: int,
    char_size: int,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    documents = offsets.shape[0] - 1
    out = np.empty(data.shape[0], dtype=np.uint32)
    out_offsets = np.zeros(documents + 1, dtype=np.int64)
    longest = 0
    for d in range(documents):
        longest = max(longest, offsets[d + 1] - offsets[d])
    tokens = np.empty(longest, dtype=np.uint64)
    scratch = np.empty(longest, dtype=np.uint32)
    position = 0
    for d in range(documents):
        position += _shingle_document(
            data[offsets[d] : offsets[d + 1]],
            char_size if spaceless[d] else size,
            spaceless[d],
            tokens,
            scratch,
            out[position:],
        )
        out_offsets[d + 1] = position
    return out[:position].copy(), out_offsets


@native
def _shingles_and_terms_many(
    data: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    title_data: npt.NDArray[np.uint8],
    title_offsets: npt.NDArray[np.int64],
    spaceless: npt.NDArray[np.bool_],
    size: int,
    char_size: int,
) -> tuple[
    npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.int64]
]:
    documents = offsets.shape[0] - 1
    shingles = np.empty(data.shape[0], dtype=np.uint32)
    shingle_offsets = np.zeros(documents + 1, dtype=np.int64)
    terms = np.empty(data.shape[0] + title_data.shape[0], dtype=np.uint32)
    term_offsets = np.zeros(documents + 1, dtype=np.int64)
    longest = 0
    for d in range(documents):
        both = offsets[d + 1] - offsets[d] + title_offsets[d + 1] - title_offsets[d]
        longest = max(longest, both)
    tokens = np.empty(longest, dtype=np.uint64)
    scratch = np.empty(longest, dtype=np.uint32)
    shingled = 0
    termed = 0
    for d in range(documents):
        # The title's tokens, then the body's: the terms are those of "title body".
        in_title = _token_hashes(
            title_data[title_offsets[d] : title_offsets[d + 1]], spaceless[d], tokens
        )
        in_body = _token_hashes(data[offsets[d] : offsets[d + 1]], spaceless[d], tokens[in_title:])
        shingled += _kgrams(
            tokens[in_title:],
            in_body,
            char_size if spaceless[d] else size,
            scratch,
            shingles[shingled:],
        )
        shingle_offsets[d + 1] = shingled
        termed += _kgrams(
            tokens, in_title + in_body, char_size if spaceless[d] else 1, scratch, terms[termed:]
        )
        term_offsets[d + 1] = termed
    return shingles[:shingled].copy(), shingle_offsets, terms[:termed].copy(), term_offsets


def _concatenated(encoded: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _flags(spaceless: Sequence[bool] | None, count: int) -> npt.NDArray[np.bool_]:
    if spaceless is not None and len(spaceless) != count:
        raise ParameterError(
            f"spaceless has {len(spaceless)} entries for {count} texts; give one per text"
        )
    if spaceless is None:
        return np.zeros(count, dtype=np.bool_)
    return np.fromiter(spaceless, dtype=np.bool_, count=count)


def _split(
    values: npt.NDArray[np.uint32], bounds: npt.NDArray[np.int64]
) -> list[npt.NDArray[np.uint32]]:
    edges = bounds.tolist()
    return [values[edges[i] : edges[i + 1]] for i in range(len(edges) - 1)]


def shingles_and_terms_encoded(
    encoded: Sequence[bytes],
    titles: Sequence[bytes],
    *,
    size: int = 5,
    char_size: int = 5,
    spaceless: Sequence[bool] | None = None,
) -> tuple[list[npt.NDArray[np.uint32]], list[npt.NDArray[np.uint32]]]:
    """Each text's shingles and terms in one pass over its bytes.

    The shingles are ``shingle_hashes_encoded(encoded, size=size, char_size=char_size,
    spaceless=spaceless)``; the terms are ``shingle_hashes_encoded([title + b" " + text
    ...], size=1, char_size=char_size, spaceless=spaceless)``: the hashed words (for a
    spaceless text, character ``char_size``-grams) of the title and the text together.
    Both encoded as ``text.encode("utf-8", "surrogatepass")``; a title may be ``b""``.

    Raises:
        ParameterError: a size is below 1, or ``titles`` or ``spaceless`` do not have one
            entry per text.
    """
    _check_sizes(size, char_size)
    if len(titles) != len(encoded):
        raise ParameterError(f"{len(titles)} titles for {len(encoded)} texts; give one per text")
    flags = _flags(spaceless, len(encoded))
    data, offsets = _concatenated(encoded)
    title_data, title_offsets = _concatenated(titles)
    shingles, shingle_bounds, terms, term_bounds = _shingles_and_terms_many(
        data, offsets, title_data, title_offsets, flags, size, char_size
    )
    return _split(shingles, shingle_bounds), _split(terms, term_bounds)


def _check_sizes(size: int, char_size: int) -> None:
    if size < 1 or char_size < 1:
        raise ParameterError(
            f"shingle sizes must be at least 1, got size={size} and char_size={char_size}"
        )


def shingle_hashes(
    normalized: str, *, size: int = 5, char_size: int = 5, spaceless: bool = False
) -> npt.NDArray[np.uint32]:
    """The sorted unique 32-bit hashes of a normalized text's shingles.

    Args:
        normalized: text already normalized (case-folded, punctuation replaced by spaces,
            whitespace collapsed). Words are separated by ASCII whitespace.
        size: words per shingle. A text of fewer words gives one shingle of all of them.
        char_size: characters (code points) per shingle when ``spaceless``.
        spaceless: shingle characters instead of words, ignoring whitespace (for scripts
            written without spaces, such as Chinese, Japanese or Thai).

    Returns:
        A sorted ``uint32`` array without repeats; empty for a text without tokens.

    Raises:
        ParameterError: ``size`` or ``char_size`` is below 1.
    """
    _check_sizes(size, char_size)
    data = np.frombuffer(normalized.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return _shingle_one(data, char_size if spaceless else size, spaceless)


def shingle_hashes_many(
    texts: Sequence[str],
    *,
    size: int = 5,
    char_size: int = 5,
    spaceless: Sequence[bool] | None = None,
) -> list[npt.NDArray[np.uint32]]:
    """:func:`shingle_hashes` of many texts in one native call.

    Args:
        texts: normalized texts.
        size: words per shingle.
        char_size: characters per shingle for the spaceless texts.
        spaceless: per text, whether to shingle characters; all ``False`` when omitted.

    Returns:
        One array per text, equal to ``shingle_hashes(text, ...)`` for that text. They are
        views into one shared buffer.

    Raises:
        ParameterError: ``size`` or ``char_size`` is below 1, or ``spaceless`` does not
            have one entry per text.
    """
    # surrogatepass: a lone surrogate (possible in JSON input) still has stable bytes.
    return shingle_hashes_encoded(
        [text.encode("utf-8", "surrogatepass") for text in texts],
        size=size,
        char_size=char_size,
        spaceless=spaceless,
    )


def shingle_hashes_encoded(
    encoded: Sequence[bytes],
    *,
    size: int = 5,
    char_size: int = 5,
    spaceless: Sequence[bool] | None = None,
) -> list[npt.NDArray[np.uint32]]:
    """:func:`shingle_hashes_many` of texts already encoded, each as
    ``text.encode("utf-8", "surrogatepass")`` (for a caller that hashes the bytes too)."""
    _check_sizes(size, char_size)
    flags = _flags(spaceless, len(encoded))
    data, offsets = _concatenated(encoded)
    values, bounds = _shingle_many(data, offsets, flags, size, char_size)
    return _split(values, bounds)
