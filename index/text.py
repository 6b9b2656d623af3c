"""Cleaning and normalization: scraped text in, boilerplate-free lines and a matching form out.

Cleaning (:func:`clean`) works line by line on the original text and keeps the original
characters of every kept line. Its rules are data: the tuples below name each kind of
boilerplate the real data shows (navigation, tag lists, read-also and related lists,
comment forms, consent dialogs, disclaimers, author boxes, source lines, bylines, dates,
contact lines, blocked pages) and :func:`clean` applies them in three steps:

1. every line is classified on its *match form* (NFKC, case folded, Arabic letters
   folded, punctuation kept), so one pattern covers أ/ا, ة/ه, tashkeel and tatweel;
2. lines that are boilerplate wherever they stand are removed;
3. *markers* decide about blocks. A tail marker (a tag list, a comment form, an author
   box, the wire's end mark) in the tail of the article cuts everything from it on;
   elsewhere only the marker line goes. A list marker ("اقرأ أيضاً", "مقالات ذات صلة",
   "Read more", "Related articles", ...) goes with the headlines that follow it when it
   stands alone on its line, and with its own headline when one follows it on the line.
   It cuts everything from it on only in the tail, and only when no prose follows its
   headlines or when a date line is among them (a teaser of another article, as in the
   seeds). Bulleted headline lines in the tail go too.

A text with a *blocked-page* line (a bot check, a rate-limit notice, a script wall, an
ad-blocker wall: what a site serves a blocked crawler) or a *site-header* line (a site's
name, motto or donation appeal above every article) and less than
:data:`BLOCKED_PAGE_REST_CHARS` of anything else is all boilerplate: the crawl got no
article, and such pages would otherwise be stored as near-duplicates of each other and
form a "story" of their own.

"In the tail" means that at least :data:`TAIL_FRACTION` of the article's prose comes
before the line. Prose is counted in characters of kept lines that are not headline-like
(at most :data:`HEADLINE_MAX_CHARS` characters without sentence-final punctuation), so
that a long list of other stories' headlines after a short article does not move the
article's end towards its start. BBC Arabic and CNN Arabic put read-also and related
lists in the middle of their articles, followed by more of the article (a few hundred
such articles in ANT), which is why a list marker alone never cuts prose that follows.

Normalization (:func:`normalize`) is for matching only: Unicode NFKC, case folding,
Arabic and Persian letter folding, tashkeel, tatweel and format characters removed,
every decimal digit made ASCII, punctuation and symbols made spaces, whitespace
collapsed. It is idempotent, which the tests check with hypothesis.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import logging
import re
import sys
import tempfile
import unicodedata
import zipfile
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from index.native import native

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Normalization tables
# ---------------------------------------------------------------------------------------

# Letter variants that news sites write interchangeably (hamza seats, alef maqsura,
# teh marbuta, Persian/Urdu forms pasted into Arabic text).
ARABIC_LETTER_FOLDS: tuple[tuple[str, str], ...] = (
    ("أإآٱٲٳ", "ا"),
    ("ىیېۍێےۓئ", "ي"),
    ("ةۀەہۂھۃ", "ه"),
    ("ؤ", "و"),
    ("کڪ", "ك"),
)

# Code point ranges (inclusive) removed outright: Arabic signs and harakat, superscript
# alef, Quranic annotation marks, tatweel, high hamza, extended Arabic marks and
# variation selectors. Every format character (category Cf: ZWNJ, ZWJ, BOM, LRM, RLM,
# soft hyphen, bidi controls) is removed as well.
DELETED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0610, 0x061A),
    (0x064B, 0x065F),
    (0x0640, 0x0640),
    (0x0670, 0x0670),
    (0x0674, 0x0674),
    (0x06D6, 0x06ED),
    (0x08CA, 0x08FF),
    (0xFE00, 0xFE0F),
    (0xE0100, 0xE01EF),
)

_SPACE = 0x20
_DELETED = 0xFFFFFFFF
# The code points the tables are built from (half-open ranges): planes 4 to 13 hold no
# assigned characters, and planes 15 and 16 only private-use ones (category Co, which the
# Unicode stability policy fixes) and noncharacters; neither kind is mapped.
_SCANNED_RANGES = ((0, 0x40000), (0xE0000, 0xF0000))
# The categories that map a code point by themselves (to a digit, a space or nothing, or
# to a space in the normalize table only); a code point of any other category maps only
# when it is folded or deleted.
_MAPPED_CATEGORIES = frozenset(
    {"Cc", "Cf", "Cs", "Nd", "Zl", "Zp", "Zs"}
    | {"Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So"}
)
# Below this length str.translate beats the fixed cost of the numpy path (measured).
_NUMPY_MIN_CHARS = 256
# UTF-32 in the machine's byte order, so that its code units are numpy's native uint32.
_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
# NFKC, case folding and deletion can each expose work for the others (a deleted
# joiner lets two characters compose), so passes repeat until nothing changes: one or two
# in practice; the bound only guards against a cycle no test has found.
_MAX_PASSES = 8


@dataclass(frozen=True)
class _Translation:
    """One character mapping, both as a str.translate table and as a numpy lookup table.

    str.translate costs ~40 ns a character on Arabic text (a dict lookup each); the lookup
    table over UTF-32 code units is ~6 times faster on SaudiNewsNet articles but has a
    fixed cost of some microseconds, so short texts take the table.
    """

    table: dict[int, str | None]
    lut: npt.NDArray[np.uint32]

    def __call__(self, text: str) -> str:
        """Map every character, then collapse whitespace to single spaces and strip."""
        if len(text) < _NUMPY_MIN_CHARS:
            return " ".join(text.translate(self.table).split())
        units = np.frombuffer(text.encode(_UTF32, "surrogatepass"), dtype=np.uint32)
        codes: npt.NDArray[np.uint32] = self.lut[units]
        codes = codes[codes != _DELETED]
        space = codes == _SPACE
        drop = space.copy()
        drop[1:] &= space[:-1]
        codes = codes[~drop]
        if codes.size and codes[-1] == _SPACE:
            codes = codes[:-1]
        return bytes(codes.tobytes()).decode(_UTF32)


def _scanned() -> Iterator[int]:
    return itertools.chain.from_iterable(range(low, high) for low, high in _SCANNED_RANGES)


def _candidates(listed: set[int]) -> list[int]:
    """The scanned code points, ascending, that are listed or of a mapped category.

    The others are left as they are by :func:`_build_translations`; filtering them out
    with C-level iteration (no Python code per code point) makes the build ~3x faster.
    """
    categorized = itertools.compress(
        _scanned(),
        map(_MAPPED_CATEGORIES.__contains__, map(unicodedata.category, map(chr, _scanned()))),
    )
    found = set(categorized)
    found.update(
        code for code in listed if any(low <= code < high for low, high in _SCANNED_RANGES)
    )
    return sorted(found)


def _build_translations(codes: Iterable[int] | None = None) -> tuple[_Translation, _Translation]:
    """The normalize mapping and the match mapping (the same, with punctuation kept).

    Each code point becomes itself, another code point, a space or nothing; whitespace
    and control characters become spaces. ``codes``: the code points to look at, in
    ascending order; by default only those that can map (:func:`_candidates`), which gives
    the same tables as all of Unicode (tested).
    """
    folds = {
        ord(source): ord(target) for sources, target in ARABIC_LETTER_FOLDS for source in sources
    }
    deleted = {code for low, high in DELETED_RANGES for code in range(low, high + 1)}
    normalize_table: dict[int, str | None] = {}
    match_table: dict[int, str | None] = {}
    normalize_lut = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    for code in _candidates(set(folds) | deleted) if codes is None else codes:
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Cn":
            continue
        if code in folds:
            target = folds[code]
        elif code in deleted or category == "Cf":
            target = _DELETED
        elif category == "Nd":
            target = ord("0") + unicodedata.decimal(char)
        elif category[0] == "Z" or category in ("Cc", "Cs"):
            target = _SPACE
        elif category[0] in "PS":
            normalize_table[code] = " "
            normalize_lut[code] = _SPACE
            continue
        else:
            continue
        if target != code:
            normalize_table[code] = match_table[code] = None if target == _DELETED else chr(target)
            normalize_lut[code] = target
    match_lut = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    for code, replacement in match_table.items():
        match_lut[code] = _DELETED if replacement is None else ord(replacement)
    return _Translation(normalize_table, normalize_lut), _Translation(match_table, match_lut)


def _translation_of(lut: npt.NDArray[np.uint32]) -> _Translation:
    """The :class:`_Translation` whose lookup table is ``lut``: its str.translate table
    holds the code points the table moves (what :func:`_build_translations` records)."""
    (moved,) = np.nonzero(lut != np.arange(lut.shape[0], dtype=np.uint32))
    table: dict[int, str | None] = {
        code: None if image == _DELETED else chr(image)
        for code, image in zip(moved.tolist(), lut[moved].tolist(), strict=True)
    }
    return _Translation(table, lut)


# ---------------------------------------------------------------------------------------
# The fast path: one native pass for texts whose characters all map alone
# ---------------------------------------------------------------------------------------

# Blocks whose characters may take the fast path (Latin, Greek, Cyrillic, Armenian,
# Hebrew, Arabic, Syriac, Thaana, N'Ko; punctuation and symbols that news text uses;
# Arabic presentation forms; CJK punctuation; fullwidth forms). A text with any other
# character, or with a character of these blocks that fails the tests in
# :func:`_build_fast_luts`, goes the general way.
_FAST_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x0000, 0x08FF),
    (0x2000, 0x20CF),
    (0x3000, 0x303F),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFF),
    (0xFF00, 0xFFEF),
)
# Marks a code point that the fast path cannot map alone.
_SLOW = 0xFFFFFFFE


def _composing_seconds(blocks: tuple[tuple[int, int], ...]) -> set[int]:
    """Code points that NFC may compose onto the character before them.

    The second characters of the canonical two-character decompositions of ``blocks``,
    and the Hangul vowels and trailing consonants.
    """
    seconds: set[int] = set()
    for low, high in blocks:
        for code in range(low, high + 1):
            decomposition = unicodedata.decomposition(chr(code))
            if decomposition and decomposition[0] != "<":
                parts = decomposition.split()
                if len(parts) == 2:
                    seconds.add(int(parts[1], 16))
    # Hangul syllables compose algorithmically, with no decomposition data: a leading
    # consonant with a vowel, a syllable with a trailing consonant.
    return seconds | set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))


def _build_fast_luts(
    normalize_lut: npt.NDArray[np.uint32], match_lut: npt.NDArray[np.uint32]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Per-character lookup tables for :func:`normalize` and :func:`_match_form`, given the
    lookup tables of their general mappings (:func:`_build_translations`).

    A code point gets an entry (its image: a code point, ``_SPACE`` or ``_DELETED``) only
    when a text made of such code points is mapped character by character, with no
    context: NFKC maps it to one character ``d`` that neither takes part in a canonical
    composition as its second character nor (unless the table deletes it) is a combining
    mark, so NFKC of the text is the concatenation and no mark is reordered past a kept
    one; case folding ``d`` gives one character; and for :func:`normalize` the image is a
    fixed point of the same table, so one pass is the whole of it. Every other code
    point is ``_SLOW``. ``tests/test_text.py`` checks these conditions against a scan of
    all of Unicode and the fast path against the general one.
    """
    seconds = _composing_seconds(_FAST_BLOCKS)
    fast_normalize = np.full(sys.maxunicode + 1, _SLOW, dtype=np.uint32)
    fast_match = np.full(sys.maxunicode + 1, _SLOW, dtype=np.uint32)
    for low, high in _FAST_BLOCKS:
        for code in range(low, high + 1):
            char = chr(code)
            if unicodedata.category(char) in ("Cn", "Cs"):
                continue
            composed = unicodedata.normalize("NFKC", char)
            if len(composed) != 1:
                continue
            folded = composed.casefold()
            if len(folded) != 1:
                continue
            first = unicodedata.normalize("NFKD", char)[0]
            marks = {char, composed, folded, first}
            if any(ord(mark) in seconds for mark in marks):
                continue
            folded_code = ord(folded)
            combining = any(unicodedata.combining(mark) for mark in marks)
            if unicodedata.normalize("NFKC", folded) != folded:
                continue
            for lut, fast in ((normalize_lut, fast_normalize), (match_lut, fast_match)):
                image = int(lut[folded_code])
                if combining and image != _DELETED:
                    continue
                fast[code] = image
    # normalize() repeats passes until nothing changes: the fast image must be final.
    images = fast_normalize.copy()
    for low, high in _FAST_BLOCKS:
        for code in range(low, high + 1):
            image = int(images[code])
            if image in (_SLOW, _DELETED, _SPACE):
                continue
            if image > sys.maxunicode or int(images[image]) != image:
                fast_normalize[code] = _SLOW
    return fast_normalize, fast_match


def _build_tables() -> tuple[npt.NDArray[np.uint32], ...]:
    """The lookup tables of :func:`_build_translations` and :func:`_build_fast_luts`:
    normalize, match, fast normalize, fast match."""
    normalize, match = _build_translations()
    return (normalize.lut, match.lut, *_build_fast_luts(normalize.lut, match.lut))


# The tables are a function of this file and of Python's Unicode database; building them
# looks at every assigned code point (some 50 ms of every start-up), so they are kept in
# __pycache__ beside the bytecode, as what each table changes: (code points, images).
_TABLE_DEFAULTS = ("identity", "identity", "slow", "slow")


def _table_cache() -> Path | None:
    try:
        source = Path(__file__).read_bytes()
    except OSError:
        return None
    key = hashlib.sha256(
        b"\0".join([source, unicodedata.unidata_version.encode(), str(sys.maxunicode).encode()])
    ).hexdigest()[:20]
    return Path(__file__).parent / "__pycache__" / f"text-tables.{key}.npz"


def _default_table(kind: str) -> npt.NDArray[np.uint32]:
    if kind == "identity":
        return np.arange(sys.maxunicode + 1, dtype=np.uint32)
    return np.full(sys.maxunicode + 1, _SLOW, dtype=np.uint32)


def _load_tables(path: Path) -> tuple[npt.NDArray[np.uint32], ...] | None:
    """The tables stored at ``path``, or None where it is missing or not whole."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            changes = [(stored[f"codes{i}"], stored[f"images{i}"]) for i in range(4)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    tables = []
    for kind, (codes, images) in zip(_TABLE_DEFAULTS, changes, strict=True):
        table = _default_table(kind)
        if codes.dtype != np.int64 or images.dtype != np.uint32 or codes.shape != images.shape:
            return None
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) > sys.maxunicode):
            return None
        table[codes] = images
        tables.append(table)
    return tuple(tables)


def _save_tables(path: Path, tables: Sequence[npt.NDArray[np.uint32]]) -> None:
    """Store ``tables`` at ``path`` atomically; where it cannot be written, nothing is."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    for i, (kind, table) in enumerate(zip(_TABLE_DEFAULTS, tables, strict=True)):
        (codes,) = np.nonzero(table != _default_table(kind))
        arrays[f"codes{i}"] = codes.astype(np.int64)
        arrays[f"images{i}"] = table[codes]
    temporary: Path | None = None
    try:
        path.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out:
            temporary = Path(out.name)
            np.savez(out, **arrays)  # type: ignore[arg-type]
        temporary.chmod(0o644)  # readable like the bytecode beside it
        temporary.replace(path)
    except OSError:
        logger.debug("the text tables cannot be cached at %s", path, exc_info=True)
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return
    for stale in path.parent.glob("text-tables.*.npz"):  # those of earlier versions
        if stale != path:
            with contextlib.suppress(OSError):
                stale.unlink()


def _tables() -> tuple[npt.NDArray[np.uint32], ...]:
    """The four lookup tables, from the cache where it holds them, else built (and cached)."""
    path = _table_cache()
    loaded = None if path is None else _load_tables(path)
    if loaded is not None:
        return loaded
    built = _build_tables()
    if path is not None:
        _save_tables(path, built)
    return built


_NORMALIZE_LUT, _MATCH_LUT, _FAST_NORMALIZE, _FAST_MATCH = _tables()
_NORMALIZE, _MATCH = _translation_of(_NORMALIZE_LUT), _translation_of(_MATCH_LUT)


@native
def _fold_segment(
    units: npt.NDArray[np.uint32],
    start: int,
    end: int,
    lut: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint32],
    first: int,
) -> int:
    """Map ``units[start:end]`` through ``lut`` into ``out`` from ``first`` on, with
    whitespace collapsed and trimmed. Returns where it ends in ``out``, or -1 when a code
    point the table marks slow is there.

    Every image is written and the count moves past the ones kept: a space only after a
    kept image that is not one, nothing deleted or slow. Branches on the kind of each
    image, which spaces make unpredictable, took 2.9 ns a code point, this 2.2 (a trailing
    space is written and then taken back; writes stay within ``out`` where it is as long
    as ``units``, since nothing maps to more than one code point).
    """
    count = first
    after_space = True  # leading spaces are dropped
    slow = False
    for k in range(start, end):
        image = lut[units[k]]
        slow |= image == _SLOW
        is_space = image == _SPACE
        keep = image < _SLOW and not (is_space and after_space)
        out[count] = image
        count += keep
        after_space = is_space if keep else after_space
    if slow:
        return -1
    return count - 1 if after_space and count > first else count


def _fast_fold(text: str, lut: npt.NDArray[np.uint32]) -> str | None:
    """``text`` mapped by one of the fast tables, or None when it needs the general way."""
    units = np.frombuffer(text.encode(_UTF32, "surrogatepass"), dtype=np.uint32)
    out = np.empty(units.shape[0], dtype=np.uint32)
    count = _fold_segment(units, 0, units.shape[0], lut, out, 0)
    if count < 0:
        return None
    return out[:count].tobytes().decode(_UTF32)


@native
def _fold_many_kernel(
    units: npt.NDArray[np.uint32],
    ends: npt.NDArray[np.int64],
    lut: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint32],
    out_ends: npt.NDArray[np.int64],
) -> int:
    """:func:`_fold_segment` of each segment ``units[ends[i - 1]:ends[i]]``, written one
    after another into ``out``; ``out_ends[i]`` is where segment ``i`` ends there, or -1
    when it holds a code point the table marks slow (it then takes no room). Returns the
    length written."""
    count = 0
    start = 0
    for segment in range(ends.shape[0]):
        end = ends[segment]
        folded = _fold_segment(units, start, end, lut, out, count)
        out_ends[segment] = folded
        if folded >= 0:
            count = folded
        start = end
    return count


def _joined_code_points(
    texts: Sequence[str],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The code points of ``texts`` one after another, and where each text ends among them."""
    units = np.frombuffer("".join(texts).encode(_UTF32, "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    return units, ends


def _fast_fold_many(texts: Sequence[str], lut: npt.NDArray[np.uint32]) -> list[str | None]:
    """:func:`_fast_fold` of each of ``texts``, with one native call and one decode for all
    (cleaning folds every line of an article: ~5 us a call saved per line)."""
    return _fold_many_units(texts, lut)[0]


def _fold_many_units(
    texts: Sequence[str], lut: npt.NDArray[np.uint32]
) -> tuple[list[str | None], npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """:func:`_fast_fold_many`, and the folded code points with each text's end among them
    (-1 for a text that needs the general way, which takes no room there)."""
    if not texts:
        return [], np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.int64)
    units, ends = _joined_code_points(texts)
    out = np.empty(units.shape[0], dtype=np.uint32)
    out_ends = np.empty(len(texts), dtype=np.int64)
    count = _fold_many_kernel(units, ends, lut, out, out_ends)
    folded = out[:count].tobytes().decode(_UTF32)
    results: list[str | None] = []
    position = 0
    for end in out_ends.tolist():
        if end < 0:
            results.append(None)
        else:
            results.append(folded[position:end])
            position = end
    return results, out, out_ends


def _normalize_pass(text: str) -> str:
    # NFKC would turn the no-break space into a space too; replacing it first spares the
    # full NFKC of a third of SaudiNewsNet articles, whose only unnormalized character it is.
    text = text.replace("\xa0", " ")
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.casefold()
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _NORMALIZE(text)


def _is_fixed_point(text: str) -> bool:
    """Whether :func:`_normalize_pass` leaves a pass's output as it is.

    A pass output holds no key of the table (its values are never keys), so only NFKC and
    case folding could change it. Case folding alone may: "ΐ" folds to three code points
    that NFKC composes back, so the fold is checked through NFKC.
    """
    if text.isascii():
        return True
    if not unicodedata.is_normalized("NFKC", text):
        return False
    folded = text.casefold()
    return folded == text or unicodedata.normalize("NFKC", folded) == text


def normalize(text: str) -> str:
    """The matching form of a text (the original is kept elsewhere).

    Unicode NFKC and case folding; Arabic folding (tashkeel, Quranic marks and tatweel
    removed; أ إ آ ٱ → ا, ى ئ → ي, ة → ه, ؤ → و; Persian and Urdu ک → ك, ی ې → ي,
    ە ۀ → ه); every decimal digit (Arabic-Indic and Persian included) to ASCII;
    format characters (ZWNJ, ZWJ, BOM, LRM, RLM, ...) removed; punctuation and symbols
    to spaces; whitespace collapsed to single spaces and stripped.

    Idempotent: ``normalize(normalize(x)) == normalize(x)`` for every string.

    Args:
        text: any text.

    Returns:
        The normalized text; words are separated by single ASCII spaces.
    """
    fast = _fast_fold(text, _FAST_NORMALIZE)
    return _normalize_general(text) if fast is None else fast


def _normalize_general(text: str) -> str:
    """:func:`normalize` without the fast path: passes until nothing changes."""
    result = _normalize_pass(text)
    for _ in range(_MAX_PASSES):
        if _is_fixed_point(result):
            break
        result = _normalize_pass(result)
    return result


def words(normalized: str) -> list[str]:
    """The tokens of a text produced by :func:`normalize`.

    Args:
        normalized: output of :func:`normalize` (its only separators are single spaces).

    Returns:
        The words in order.
    """
    return normalized.split()


def _match_form(line: str) -> str:
    """NFKC, case folded, Arabic folded, punctuation kept: what the cleaning rules read."""
    fast = _fast_fold(line, _FAST_MATCH)
    return _match_form_general(line) if fast is None else fast


def normalize_many(texts: Sequence[str]) -> list[str]:
    """:func:`normalize` of each of ``texts``, the fast ones in one native call."""
    return _normalized(texts, _fast_fold_many(texts, _FAST_NORMALIZE))


def _normalized(texts: Sequence[str], fast: Sequence[str | None]) -> list[str]:
    """Each of ``texts`` normalized: its fast form, or the general way where it has none."""
    return [
        _normalize_general(text) if form is None else form
        for text, form in zip(texts, fast, strict=True)
    ]


def normalize_many_spaceless(texts: Sequence[str]) -> tuple[list[str], list[bool]]:
    """:func:`normalize_many` of ``texts``, and :func:`is_spaceless` of each result.

    A text whose normalized code points, read off the native call's output, are all below
    the first spaceless script holds none of their characters and is not spaceless
    without a scan (4 us an article saved over SaudiNewsNet).
    """
    fast, folded, ends = _fold_many_units(texts, _FAST_NORMALIZE)
    normalized = _normalized(texts, fast)
    fast_ends = ends[ends >= 0]
    highest = np.zeros(fast_ends.shape[0], dtype=np.uint32)
    starts = np.zeros_like(fast_ends)
    starts[1:] = fast_ends[:-1]
    filled = fast_ends > starts
    if filled.any():
        # Empty texts are left out: each start then ends where the next filled one starts.
        highest[filled] = np.maximum.reduceat(folded[: int(fast_ends[-1])], starts[filled])
    below = iter((highest < _SPACELESS_LOWEST).tolist())
    spaceless = [
        False if form is not None and next(below) else is_spaceless(text)
        for text, form in zip(normalized, fast, strict=True)
    ]
    return normalized, spaceless


def _match_form_general(line: str) -> str:
    """:func:`_match_form` without the fast path."""
    if not unicodedata.is_normalized("NFKC", line):
        line = unicodedata.normalize("NFKC", line)
    return _MATCH(line.casefold())


# ---------------------------------------------------------------------------------------
# Scripts written without spaces between words
# ---------------------------------------------------------------------------------------

# Thai, Lao, Tibetan, Myanmar, Khmer, Tai scripts, Balinese, Javanese, kana, Bopomofo,
# CJK ideographs, Yi. Hangul is absent: Korean separates words with spaces.
SPACELESS_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),
    (0x0F00, 0x0FFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x1950, 0x19FF),
    (0x1A20, 0x1AAF),
    (0x1B00, 0x1B7F),
    (0x3040, 0x312F),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA000, 0xA4CF),
    (0xA980, 0xA9FF),
    (0xAA60, 0xAA7F),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x20000, 0x3134F),
)
_SPACELESS_SAMPLE_CHARS = 2000
_SPACELESS_CLASS = (
    "["
    + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in SPACELESS_RANGES)
    + "]"
)
_SPACELESS_CHAR_RE = re.compile(_SPACELESS_CLASS)
_SPACELESS_LOWEST = min(low for low, _high in SPACELESS_RANGES)
_SPACELESS_LETTER_RE = re.compile("(?=[^\\W\\d_])" + _SPACELESS_CLASS)
_LETTER_RE = re.compile(r"[^\W\d_]")


def is_spaceless(text: str) -> bool:
    """Whether a text is mostly written in a script without spaces between words.

    Such texts (Chinese, Japanese, Thai, Khmer, ...) are shingled by characters, since
    splitting them on spaces yields whole sentences.

    Args:
        text: raw or normalized text; its first 2,000 characters are sampled.

    Returns:
        True when more than half of the sampled letters are in such scripts.
    """
    sample = text[:_SPACELESS_SAMPLE_CHARS]
    # Most texts hold no character of these scripts at all, and one scan that builds no
    # list settles that: 110 us down to a few per SaudiNewsNet article.
    if _SPACELESS_CHAR_RE.search(sample) is None:
        return False
    letters = len(_LETTER_RE.findall(sample))
    if not letters:
        return False
    return 2 * len(_SPACELESS_LETTER_RE.findall(sample)) > letters


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

_HTML_SNIFF_CHARS = 4096
_HTML_DOCUMENT_RE = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_TAG_RE = re.compile(
    r"</?(?:html|head|body|div|p|article|section|main|header|footer|nav|span|br|a|h[1-6]"
    r"|table|tr|td|ul|ol|li|script|style|meta|title|img|figure|blockquote)\b[^<>]*>",
    re.IGNORECASE,
)


def looks_like_html(text: str) -> bool:
    """Whether a text is an HTML page or fragment rather than plain text.

    Args:
        text: the article text as received.

    Returns:
        True for a document (doctype or ``<html>``) or for text carrying at least three
        common tags, one of them a closing tag.
    """
    sample = text[:_HTML_SNIFF_CHARS]
    if "<" not in sample:
        return False
    if _HTML_DOCUMENT_RE.search(sample):
        return True
    tags = _HTML_TAG_RE.findall(sample)
    return len(tags) >= 3 and any(tag.startswith("</") for tag in tags)


class _PlainTextParser(HTMLParser):
    """The visible text of a page, one block element a line (the extractor's fallback)."""

    _SKIPPED = frozenset(
        {"script", "style", "noscript", "template", "svg", "nav", "footer", "aside", "form"}
    )
    _BLOCKS = frozenset(
        {
            "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "main",
            "header", "blockquote", "figure", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6",
            "title", "pre", "hr", "dd", "dt",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data).strip() or None
        elif not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def extract_html(html: str) -> tuple[str, str | None]:
    """The main text and the title of an HTML page.

    trafilatura extracts the main text (comments excluded, tables included). When it
    finds nothing, which it does for short pages, the visible text of the page is used
    instead (scripts, styles, navigation, footers, asides and forms left out); either
    way :func:`clean` still removes boilerplate lines afterwards.

    Args:
        html: an HTML document or fragment.

    Returns:
        ``(text, title)``: the text has one paragraph a line; the title is ``None`` when
        the page has none.
    """
    # Imported here: trafilatura takes ~0.3 s to import and plain-text callers never need it.
    import trafilatura
    from trafilatura.settings import Document

    document = trafilatura.bare_extraction(
        html, with_metadata=True, include_comments=False, include_tables=True, favor_recall=True
    )
    text = ""
    title: str | None = None
    if isinstance(document, Document):
        text = (document.text or "").strip()
        title = (document.title or "").strip() or None
    if text and title:
        return text, title
    parser = _PlainTextParser()
    parser.feed(html)
    parser.close()
    if not text:
        logger.debug("trafilatura found no main text; using the page's visible text")
        text = parser.text()
    return text, title or parser.title


# ---------------------------------------------------------------------------------------
# Cleaning rules (patterns are written in natural spelling and folded at import, so that
# "إقرأ أيضاً" also matches "اقرا ايضا"; they are matched against the match form of a line)
# ---------------------------------------------------------------------------------------

# Share of the article's prose that must come before a marker for it to stand in the tail.
TAIL_FRACTION = 0.3
# Lines up to this long without sentence-final punctuation read as headlines.
HEADLINE_MAX_CHARS = 150
# Headlines dropped after a bare list marker in the middle of an article.
LIST_MAX_TITLES = 8
# Lines up to this long are candidates for per-source boilerplate learning.
LEARNABLE_MAX_CHARS = 120
# Navigation, bylines and dates are looked for only in lines up to this long.
SHORT_LINE_CHARS = 200
# Markers stand at the start of a line: this much of a long line is read for them.
MARKER_PREFIX_CHARS = 100
# A text with a blocked-page line (bot check, script wall) and less than this much else
# is the page a blocked crawler got, not an article: all of it is boilerplate.
BLOCKED_PAGE_REST_CHARS = 300

_START = r"^[\W_]*"
_END = r"[\W_]*$"

# Whole lines (compared after normalize) that are site navigation or widgets.
NAVIGATION_LINES: tuple[str, ...] = (
    # English
    "skip to content", "skip to main content", "skip to navigation", "jump to content",
    "scroll to top", "back to top", "go to top", "top", "menu", "main menu", "open menu",
    "close menu", "toggle navigation", "navigation", "search", "home", "homepage", "share",
    "share this", "share this article", "share this story", "share this post", "tweet",
    "email", "print", "print this page", "print this article", "copy link", "link copied",
    "next", "previous", "next previous", "previous next", "next article",
    "previous article", "next post", "previous post", "read more", "continue reading",
    "see more", "show more", "load more", "view comments", "comments", "advertisement",
    "sponsored", "loading", "subscribe", "sign in", "log in", "login", "register",
    "sign up", "close", "article continues below", "story continues below",
    "continue reading below", "article content", "listen to this article", "font size",
    "jetzt teilen",
    # Arabic
    "انتقل إلى المحتوى", "تخطى إلى المحتوى", "تخط إلى المحتوى", "الانتقال إلى المحتوى",
    "العودة إلى الأعلى", "العودة للأعلى", "إلى الأعلى", "للأعلى", "القائمة",
    "القائمة الرئيسية", "الرئيسية", "الصفحة الرئيسية", "بحث", "ابحث", "شارك", "شاركها",
    "مشاركة", "شارك الخبر", "شارك المقال", "شارك هذا المقال", "شارك هذا الخبر", "طباعة",
    "اطبع", "طباعة الخبر", "أرسل لصديق", "التالي", "السابق", "الخبر التالي",
    "الخبر السابق", "المقال التالي", "المقال السابق", "المزيد", "اقرأ المزيد",
    "عرض المزيد", "تحميل المزيد", "إعلان", "مساحة إعلانية", "تعليقات", "التعليقات",
    "إغلاق", "تسجيل الدخول", "اشترك", "اشترك الآن", "حجم الخط", "استمع", "استمع للمقال",
    "نسخ الرابط", "تم نسخ الرابط", "رابط مختصر", "الرابط المختصر",
)  # fmt: skip

# A line made only of these words (at least two) is a row of share buttons.
SHARE_WORDS: tuple[str, ...] = (
    "share", "tweet", "email", "print", "facebook", "twitter", "x", "whatsapp", "telegram",
    "linkedin", "pinterest", "reddit", "messenger", "copy", "link", "شارك", "مشاركة",
    "طباعة", "فيسبوك", "فيس", "بوك", "تويتر", "واتساب", "واتس", "اب", "تيليجرام", "تلغرام",
    "لينكدإن", "بريد", "إلكتروني", "نسخ", "الرابط",
)  # fmt: skip

# Tail markers: in the tail they cut the rest of the text, elsewhere only their own line.
TAIL_MARKERS: tuple[tuple[str, str], ...] = (
    (
        "tags",
        _START + r"(?:كلمات دلالية|الكلمات الدلالية|كلمات مفتاحية|الكلمات المفتاحية|الوسوم"
        r"|وسوم|tags|tagged|tagged with|topics|keywords)\s*(?:[:：]|$)",
    ),
    (
        "comments",
        _START + r"(?:اترك تعليقا|اترك تعليق|اترك ردا|اترك رد|أضف تعليقا|أضف تعليق"
        r"|أضف تعليقك|أكتب تعليقك|اكتب تعليقك|تعليقات القراء|leave a reply|leave a comment"
        r"|post a comment|add a comment|join the discussion|join the conversation"
        r"|\d+ comments?|\d+ تعليقات?)" + _END,
    ),
    ("author-box", _START + r"about (?:the )?(?:post )?author\b"),
    ("wire-end", _START + r"/*\s*انتهى\s*/*" + _END),
)

# List markers introduce other stories' headlines: read-also lines and "related" headers.
# The match is the marker; what follows it on the line, if anything, is one headline.
LIST_MARKERS: tuple[tuple[str, str], ...] = (
    ("read-also", _START + r"(?:اقرأ|طالع|شاهد|تابع|انظر) (?:أيضا|كذلك)"),
    ("read-also", _START + r"(?:اقرأ|طالع) المزيد"),
    ("read-also", _START + r"(?:اقرأ|طالع|شاهد)\s*(?:[:|]|\.\.)"),
    (
        "read-also",
        _START + r"(?:للمزيد|لمزيد من التفاصيل|قد يهمك|قد يعجبك|يهمك أيضا|ذو صلة)\s*[:|.\-–—]",
    ),
    (
        "read-also",
        _START + r"(?:read also|also read|read more|read next|see also|related|more|watch"
        r"|related story|related article)\s*[:|\-–—]",
    ),
    ("read-also", _START + r"(?:read also|also read|see also)" + _END),
    (
        "related",
        _START + r"(?:مقالات|أخبار|الأخبار|مواضيع|موضوعات|قصص|تقارير|روابط)\s+(?:مشابهة"
        r"|ذات صلة|ذات الصلة|متعلقة|مقترحة|ذات علاقة|قد تهمك|قد تعجبك|أخرى)" + _END,
    ),
    (
        "related",
        _START + r"(?:ذات صلة|اخترنا لك|اخترنا لكم|قد يعجبك أيضا|الأكثر قراءة|الأكثر مشاهدة"
        r"|الأكثر تداولا|related|related articles|related posts|related stories"
        r"|related news|related content|related coverage|related topics|similar articles"
        r"|similar posts|recommended|recommended for you|recommended articles"
        r"|more stories|more articles|more news|most read|most popular|most viewed"
        r"|you may also like|you might also like|you may be interested in"
        r"|trending now)" + _END,
    ),
)

# Boilerplate lines removed wherever they stand: (name, longest line it applies to, pattern).
LINE_RULES: tuple[tuple[str, int, str], ...] = (
    ("navigation", 100, _START + r"(?:share|شارك|شاركها)\s+(?:on|via|with|على|عبر)\b"),
    ("navigation", 160, r"(?:click|tap) here\b|اضغط هنا|إضغط هنا|انقر هنا|اضغط على الرابط"),
    ("navigation", 150, _START + r"(?:follow us|تابعونا|تابعنا|تابعوا)\b"),
    ("promo", 200, r"إشعارات بأهم الموضوعات|تحميل أحدث نسخة من تطبيق"),
    ("promo", 200, r"download (?:our|the) app"),
    ("promo", 200, r"\bwe(?:['’]ll| will) send (?:you )?(?:breaking news|news alerts"
        r"|the latest news)"),
    ("promo", 200, r"(?:sign up|subscribe) (?:to|for) (?:our|the)\b.{0,30}newsletter"),
    ("promo", 200, r"اشترك (?:في|ب) (?:النشرة|نشرتنا)"),
    ("comment-form", 300, r"لن يتم نشر (?:عنوان )?بريدك الإلكتروني"),
    ("comment-form", 300, r"الحقول (?:الإلزامية|المطلوبة) (?:مشار إليها|مميزة)"),
    ("comment-form", 300, r"your email address will not be published|required fields are marked"),
    ("comment-form", 300, r"save my name,? email|احفظ اسمي"),
    # "I have read and accept the terms": the consent box of a comment or login form.
    ("comment-form", 300, r"\bi have read and (?:agree|accept) (?:to )?(?:the|your)"
        r" (?:privacy|terms|netiquette|comment|community)|\bich habe die (?:.{0,60}\W)?"
        r"(?:netiquette|datenschutz\w*|nutzungsbedingungen|agb|richtlinien)\W.{0,60}gelesen"
        r" und (?:akzeptiere|stimme)|\bj[’']ai lu et (?:j[’'])?accepte|\bhe leído y acepto"
        r"|\b(?:przeczytałem|przeczytałam|zapoznałem się|zapoznałam się) (?:.{0,60}\W)?"
        r"(?:regulamin|polityk|zasad)\w*\W.{0,60}i akceptuję"
        r"|\bokudum,? (?:ve )?kabul ediyorum"),
    (
        "comment-form",
        40,
        _START + r"(?:cancel reply|post comment|submit comment|إرسال التعليق|إلغاء الرد"
        r"|الاسم|البريد الإلكتروني|الموقع الإلكتروني|التعليق|name|email|website|comment)"
        r"\s*\*" + _END,
    ),
    ("disclaimer", 600, r"(?:ي|ت)(?:عبر|عكس|مثل)\w* بالضرورة (?:عن )?(?:وجهة نظر|رأي|آراء|موقف)"),
    ("disclaimer", 600, r"الآراء الواردة (?:في|أدناه|أعلاه|هنا)|المصدر هو المسؤول عن المحتوى"),
    ("disclaimer", 600, r"تمثل (?:رأي|آراء) (?:كتابها|كاتبها|أصحابها)"),
    ("disclaimer", 600, r"(?:do|does) not necessarily (?:reflect|represent)"),
    ("disclaimer", 600, r"views expressed (?:here|in)"),
    # A syndicator's no-warranty notice (MENAFN's, in Arabic and English).
    ("disclaimer", 600, r"على توفير المعلومات\W{0,3}كما هي\W{0,3} دون أي (?:تعهدات|ضمانات)"),
    ("disclaimer", 600, r"provides? the information\W{0,3}as is\W{0,3} without (?:any )?warrant"),
    # A cookie or data-processing consent dialog's sentences ("by continuing to browse this
    # site you agree"; the consent walls glued to an article's line are WALL_RULES).
    ("consent", 600, r"\bby (?:clicking|continuing to (?:use|browse)|using) (?:this site"
        r"|this website|our site|our website)\b.{0,80}(?:agree|consent|accept)"
        r"|\bby clicking .{0,40}\W(?:accept|agree|ok)\W.{0,80}(?:you (?:agree|consent)|cookies"
        r"|personal data)"
        r"|\bindem sie .{0,120}stimmen sie .{0,80}(?:daten|cookies)|\bihre (?:zustimmung"
        r"|einwilligung) können sie .{0,80}widerrufen|\ben (?:poursuivant|continuant) (?:votre"
        r" navigation|à naviguer)|\ben cliquant sur .{0,40}accepte.{0,80}(?:cookies|données)"
        r"|\b(?:al|si) (?:continuar|seguir|continúa|sigue) navegando\b|\bkontynuując"
        r" (?:przeglądanie|korzystanie z) (?:serwisu|strony|witryny)|\b(?:sitemizi|siteyi)"
        r" (?:kullanmaya|gezinmeye) devam ederek"),
    ("copyright", 200, r"جميع الحقوق محفوظة|حقوق النشر محفوظة|all rights reserved"),
    ("copyright", 200, _START + r"(?:©|copyright\b)"),
    ("author-box", 120, r"see (?:the )?author[’']?s? posts"),
    ("author-box", 120, _START + r"(?:view|more) (?:all )?posts by\b"),
    ("author-box", 80, _START + r"(?:عن الكاتب|كل مقالات الكاتب|جميع مقالات الكاتب|مقالات الكاتب)"),
    ("source", 80, _START + r"(?:المصدر|المصادر|مصدر الخبر|source|sources)\s*[:：]"),
    ("source", 80, _START + r"(?:kaynak|fuente|quelle)\s*[:：]"),
    ("source", 80, _START + r"نقلا عن\b"),
    ("source", 60, _START + r"(?:خدمة|بالاتفاق مع)\s*[«\"]"),
    ("source", 200, _START + r"رابط الخبر\b"),
    ("source", 200, _START + r"\(?(?:reporting|writing|editing|additional reporting) by\b"),
    ("contact", 150, _START + r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+" + _END),
    ("contact", 60, _START + r"(?:تويتر|twitter|x)?\s*:?\s*@\w+" + _END),
    ("contact", 200, r"لمراسلة الكاتب|للتواصل مع الكاتب|تبدأ بالرمز"),
    ("contact", 200, _START + r"للتواصل\b.{0,40}(?:sms|رسالة)"),
    ("contact", 120, r"\d{5,6}\W*(?:mobily|zain|stc|موبايلي|زين)"),
    ("contact", 120, r"(?:موبايلي|زين|الاتصالات)\W*\d{5,6}"),
    ("contact", 40, _START + r"ثم (?:مسافة ثم )?(?:نص )?الرسالة" + _END),
    ("wire", 40, _START + r"/+\s*يتبع\s*/*" + _END),
    # What a site serves a blocked crawler instead of the article: bot checks, rate limits,
    # script walls. A page made only of these is refused as boilerplate, not stored.
    ("blocked-page", 700, r"\b(?:i\W?m|i am) not a robot|nie jestem robotem|ich bin kein roboter"
        r"|je ne suis pas un robot|no soy un robot|non sono un robot|robot değilim"
        r"|لست روبوت|لست برنامج روبوت"),
    ("blocked-page", 700, r"verify (?:that )?you are (?:a )?human|are you a robot"
        r"|unusual traffic from your (?:computer )?network|checking your browser before"
        r"|why have i been blocked|this request was blocked|request blocked by"),
    ("blocked-page", 300, r"(?:please )?(?:enable|turn on) javascript|javascript is (?:disabled"
        r"|required)|bitte aktivieren sie javascript|javascript aktivieren|activer javascript"
        r"|(?:activa|habilita) javascript|javascript'?i etkinleştir"
        r"|(?:تفعيل|بتفعيل) (?:ال)?جافا ?سكري?بت"),
    ("blocked-page", 700, r"(?:your|twój|twoj|ihre|votre|tu) (?:ip|adres ip|ip-adresse"
        r"|adresse ip|dirección ip)\s*(?:address|adres|adresse)?\s*(?:is|to|lautet|est|es)?"
        r"\s*:?\s*\d{1,3}\.\d"),
    ("blocked-page", 60, _START + r"(?:access denied|403 forbidden|forbidden|error 403"
        r"|attention required|just a moment|تم رفض الوصول)" + _END),
    # An ad-blocker wall: what a site shows a reader (or a crawler) that blocks its ads, in
    # the second person ("you are using", "turn off your"), so that a report about ad
    # blockers is not taken for one. A page made only of this is refused, as above.
    ("blocked-page", 700, r"\bwe (?:noticed|detected|see) (?:that )?you[’']?(?:re| are)"
        r" (?:using an? ad ?-?block|blocking ads)|\byou[’']?(?:re| are) using an? ad ?-?block"
        r"|\b(?:turn(?:ing)? off|disabl(?:e|ing)|deactivat(?:e|ing)|paus(?:e|ing)|whitelist"
        r"(?:ing)?) your ad ?-?block|\bad ?-?block(?:er)? detected"),
    # (Imperatives and the second person only: "sie nutzen", "está usando" can be a report.)
    ("blocked-page", 700, r"\bwyłącz(?:cie)? (?:adblock|ublock)|\b(?:używasz|korzystasz z)"
        r" (?:adblock|ublock|programu blokującego|blokady reklam)"
        r"|\bdeaktivieren sie (?:bitte )?(?:ihren|den) (?:werbe|ad-?)blocker"
        r"|\bvous utilisez (?:un bloqueur de pub|adblock)|\b(?:désactivez (?:votre|le)"
        r"|désactiver votre) (?:bloqueur de pub|adblock)|\b(?:estás|usted está) usando un"
        r" (?:bloqueador de (?:anuncios|publicidad)|adblock)|\b(?:desactiva tu|desactive su)"
        r" (?:bloqueador de (?:anuncios|publicidad)|adblock)|\breklam engelleyici(?:nizi"
        r" (?:kapat|devre dışı)| kullan(?:ıyorsunuz|dığınızı))"),
    # (Written so that its one literal is the rare "إعلانات": the rule's search runs only on
    # the lines that hold it.)
    ("blocked-page", 700, r"(?:(?:يرجى|الرجاء|نرجو|من فضلك|قم ب)\W*(?:تعطيل|إيقاف)|(?:أنت|أنك)"
        r" (?:تستخدم|تستعمل)) (?:برنامج |أداة )?(?:مانع|حاجب) (?:ال)?إعلانات"),
    # What a site puts above every article (its name, motto and donation appeal): ahewar.org
    # (الحوار المتمدن), whose crawled pages in SemEval's Arabic pairs are often only this.
    # A page with one and less than BLOCKED_PAGE_REST_CHARS else is refused, as above.
    ("site-header", 120, r"(?:ال)?تبرع(?:وا)? للموقع"),
    ("site-header", 300, r"الموقع الرئيسي لمؤسسة|مؤسسة الحوار (?:المتمدن|الحضاري)"),
    ("site-header", 600, r"(?:حاز|فاز)\W+(?:\w+\W+){0,4}ب?جائزة ابن رشد للفكر الحر"),
    ("site-header", 300, _START + r"من أجل مجتمع مدني علماني"),
    ("site-header", 80, _START + r"يساري(?:ة)?\W+علماني(?:ة)?\W+ديمقراطي(?:ة)?" + _END),
    ("site-header", 40, _START + r"الحوار المتمدن" + _END),
)  # fmt: skip

# Walls: a cookie-consent, paywall or login notice that a page put where the article should
# be, often glued to the headline on one line. From the match to the end of its line is
# removed (what stands before it on the line is kept). (name, literals one of which the
# line holds as it stands: from a word's second letter, so that a capital first letter
# matches too; pattern searched on the original line, case ignored.)
WALL_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("consent", ("ookie",),
        r"\b(?:we|this (?:site|website)) uses? cookies (?:to|and (?:similar|other)"
        r"|on (?:this|our))|\bwir (?:verwenden|nutzen|setzen)\b.{0,40}cookies"
        r"|\b(?:diese|dieses) (?:seite|website|webseite) (?:verwendet|nutzt) cookies"
        r"|\bcookie-informationen|\b(?:utilizamos|usamos) cookies|\bnous utilisons des cookies"
        r"|\bce site utilise des cookies|\bużywamy (?:plików )?cookie|\bta strona (?:używa"
        r"|korzysta z) (?:plików )?cookie|\bno cookies to use this website"
        r"|\bcookies must be enabled"),
    ("consent", ("erez",), r"\bçerez\w* (?:faydalanıyoruz|kullanıyoruz|kullanılmaktadır)"),
    ("consent", ("تعريف الارتباط", "الكوكيز"),
        r"نستخدم (?:ملفات )?(?:تعريف الارتباط|الكوكيز)"),
    # "We collect technical information to improve our site", a consent wall in many
    # languages (Sputnik's among others).
    ("consent", ("zu verbessern", "witryn", "unctionality of our", "uncionamiento de",
                 "onctionnement de notre"),
        r"\bum die funktion unserer website zu verbessern|\baby poprawić swoją witrynę"
        r"|\bto improve the functionality of our website|\bpara mejorar el funcionamiento de"
        r" (?:nuestra|nuestro|este) (?:web|sitio)|\bafin d'améliorer le fonctionnement de"
        r" notre site"),
    ("paywall", ("ree trial", "REE TRIAL", "egistered users", "EGISTERED USERS", "egistrieren",
                 "ubscribe to", "og out", "ubscribers only", "bonnenten"),
        r"\btake a free trial\b|\bregistered users can read\b|\bbitte registrieren\b"
        r"|\bsubscribe to (?:continue|keep) reading\b|\bare you sure you want to log out\b"
        r"|\bthis (?:article|content|story) is (?:only available )?(?:for|to) subscribers only"
        r"|\bnur für abonnenten\b"),
)  # fmt: skip

# Inline promos: a widget's sentence set into a line of the article (often between the
# headline and the lead); only the match is removed, the text on both sides stays.
# (name, literals as for WALL_RULES, pattern searched on the original line, case ignored.)
INLINE_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("promo", ("اشترك ل",), r"اشترك (?:لتصلك|ليصلك|لك) (?:أهم|اهم|آخر|أحدث) الأخبار"),
    ("promo", ("بالفعل، هذه الرسالة", "بالفعل , هذه الرسالة"),
        r"أنا معجب ب\S* ?\S* بالفعل\s*[،,]\s*هذه الرسالة لا تظهر مرة أخرى\.?"
        r"(?:\s*سجل الإعجاب الخاص بك(?: مع صفحتنا)?(?: على facebook)+ للحصول على المزيد من)?"),
)  # fmt: skip

# Agency and desk words that make a short dash-separated line a byline
# ("المسلة – متابعة – وكالات", "فرانس24/ أ ف ب").
BYLINE_WORDS: tuple[str, ...] = (
    "متابعات", "متابعة", "وكالات", "وكالات الأنباء", "واس", "أ ف ب", "رويترز", "الأناضول",
    "د ب أ", "أ ش أ", "خاص", "agencies", "reuters", "afp", "ap", "dpa", "staff",
)  # fmt: skip
BYLINE_MAX_CHARS = 60
# What separates a byline's parts (a character class's contents).
_BYLINE_MARKS = r"–—\-ـ/|"
_BYLINE_SPLIT_RE = re.compile(rf"\s*[{_BYLINE_MARKS}]+\s*")
# A line without one is one part, no byline: found without splitting it.
_BYLINE_MARK_RE = re.compile(rf"[{_BYLINE_MARKS}]")

MONTH_WORDS: tuple[str, ...] = (
    "يناير", "فبراير", "مارس", "أبريل", "إبريل", "مايو", "يونيو", "يونيه", "يوليو", "يوليه",
    "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر", "ديسمبر", "جانفي", "فيفري", "أفريل", "ماي",
    "جوان", "جويلية", "أوت", "كانون", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز",
    "آب", "أيلول", "تشرين", "محرم", "صفر", "ربيع", "جمادى", "رجب", "شعبان", "رمضان", "شوال",
    "القعدة", "الحجة", "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
)  # fmt: skip
DATE_WORDS: tuple[str, ...] = (
    "الأحد", "الاثنين", "الإثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت",
    "الأول", "الثاني", "الآخر", "الآخرة", "الأولى", "ذو", "هـ", "م", "ت", "ص", "الموافق",
    "آخر", "تحديث", "نشر", "نشرت", "بتاريخ", "تاريخ", "النشر", "monday", "tuesday",
    "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue", "wed", "thu",
    "fri", "sat", "sun", "updated", "published", "posted", "last", "on", "at", "am", "pm",
    "gmt", "utc", "edt", "est", "bst", "cet", "cest",
)  # fmt: skip
# "الموافق" joins a Hijri and a Gregorian date in wire datelines, which also name a city
# and the agency ("الرياض 26 شوال 1436 هـ الموافق 11 أغسطس 2015 م واس").
_DATE_JOINER = "الموافق"
DATE_LINE_MAX_TOKENS = 16
DATELINE_MAX_OTHER_WORDS = 3
_DATE_SHAPE_RE = re.compile(
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b|\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b|\b\d{1,2}:\d{2}\b"
)
_DATE_TOKEN_RE = re.compile(r"\d+|[^\W\d_]+")

_BULLET_RE = re.compile(r"^[•●▪◦▸►■◆·]")
# A sentence ends in one of these, then any of the closers. Read off the end of the line
# (``rstrip``) rather than by a regex search, which tries every position of the line: 164
# -> 14 ms over SaudiNewsNet's lines.
_SENTENCE_ENDS = ".!?؟…:؛"
_SENTENCE_CLOSERS = "\"'”’»)]"
_WORD_RE = re.compile(r"\w")
_ALPHANUMERIC_RE = re.compile(r"[^\W_]")
_ASCII_LETTER_RE = re.compile(r"[A-Za-z]")


def _has_ascii_letter(text: str) -> bool:
    """Whether ``text`` holds an ASCII letter (``_ASCII_LETTER_RE.search(text)``): its
    ASCII characters, lowercased, hold a lower-case letter. Over Arabic text, dropping the
    rest in one encoding pass takes half the time of the regular expression's scan."""
    return text.encode("ascii", "ignore").lower().islower()


# Where str.splitlines splits besides "\n". It looks each character up in the Unicode
# database: 0.25 s over SaudiNewsNet's texts, where split("\n") takes 0.07 s and
# searching for these nine (none is there) 0.08 s.
_OTHER_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _stripped_lines(text: str) -> list[str]:
    """The non-empty lines of ``text``, surrounding whitespace trimmed: what
    ``[line for line in (raw.strip() for raw in text.splitlines()) if line]`` gives."""
    # Without another line break, splitting at "\n" gives the same lines but for empty
    # ones (a final newline's), which are left out either way.
    if any(mark in text for mark in _OTHER_LINE_BREAKS):
        raws = text.splitlines()
    else:
        raws = text.split("\n")
    return [line for line in (raw.strip() for raw in raws) if line]


# Every character for which ``str.isdigit`` holds is a decimal digit (``\d``), a
# superscript 1, 2 or 3, or lies outside Latin and Arabic (a test checks all of Unicode):
# a line without a match of this has no digit token and so is no date line, found without
# tokenizing it. One character class (the decimal digits of Latin and Arabic written out,
# which a test checks too): an alternation cost five times as much over SaudiNewsNet.
_MAYBE_DIGIT_RE = re.compile(
    "[0-9\u00b2\u00b3\u00b9\u0660-\u0669\u06f0-\u06f9\u0250-\u05ff\u0700-\U0010ffff]"
)


_IN_CLASS_I_RE = re.compile(r"(?<!\\)\[[^\]]*i")
_INLINE_FLAGS_RE = re.compile(r"(?<!\\)\(\?[aiLmsux-]")


def _fold_pattern(pattern: str) -> re.Pattern[str]:
    """A cleaning rule compiled to read match forms, which are case folded already.

    IGNORECASE would cost a third of each search. On a folded text all it adds is the
    dotless ``ı`` matching ``i`` (every other case variant of the rules' letters, such as
    ``K`` or ``ſ``, is folded away by NFKC and case folding, and Arabic has no case), so
    ``i`` is spelt ``[iı]`` instead; tests compare both ways on real lines and on every
    case variant.
    """
    # The match table maps no printable ASCII character, so regex syntax survives folding.
    folded = pattern.translate(_MATCH.table)
    if _IN_CLASS_I_RE.search(folded) or _INLINE_FLAGS_RE.search(folded):
        raise ValueError(f"cleaning rule {pattern!r}: no 'i' in a class and no inline flags")
    return re.compile(folded.replace("i", "[iı]"))


def _matcher(pattern: re.Pattern[str], *, anchored: bool) -> Callable[[str], re.Match[str] | None]:
    return pattern.match if anchored else pattern.search


_NAVIGATION_SET = frozenset(normalize(line) for line in NAVIGATION_LINES)
_SHARE_SET = frozenset(normalize(word) for word in SHARE_WORDS)
_TAIL_RULES = tuple((name, _fold_pattern(pattern)) for name, pattern in TAIL_MARKERS)
_LIST_RULES = tuple((name, _fold_pattern(pattern)) for name, pattern in LIST_MARKERS)


def _any_of(patterns: Sequence[re.Pattern[str]]) -> Callable[[str], re.Match[str] | None]:
    """A matcher that matches where any of ``patterns`` matches (all anchored at the start).

    One alternation in C instead of a Python loop of ``match`` calls: most lines match no
    rule, and for them this one call settles it. Which rule matched is then found by the
    rules' own loop, in their order (where the match ends is not that rule's).
    """
    for pattern in patterns:
        if _GROUP_REFERENCE_RE.search(pattern.pattern):
            raise ValueError(f"cleaning rule {pattern.pattern!r}: no group references")
    sources = [pattern.pattern for pattern in patterns]
    prefix = ""
    if sources and all(source.startswith(_LEADING_NON_WORD) for source in sources):
        # The leading run of non-word characters that every rule allows, matched once
        # rather than once per rule: 40 % of the call over SaudiNewsNet's lines.
        prefix = _LEADING_NON_WORD
        sources = [source[len(prefix) :] for source in sources]
    return re.compile(prefix + "(?:" + "|".join(f"(?:{source})" for source in sources) + ")").match


_GROUP_REFERENCE_RE = re.compile(r"\\[1-9]|\(\?P[<=]")
_LEADING_NON_WORD = r"^[\W_]*"
_ANY_TAIL_MARKER = _any_of([pattern for _name, pattern in _TAIL_RULES])
_ANY_LIST_MARKER = _any_of([pattern for _name, pattern in _LIST_RULES])


def _required_literals(pattern: str) -> tuple[str, ...] | None:
    """Strings of which every match of ``pattern`` contains one, or None if none are known.

    Read from the parsed pattern: a run of literal characters, or one from each branch of
    an alternation, a group or a repeat of at least one. ``x in line`` is some hundred
    times cheaper than a search, so a rule is searched for only in lines that hold one.
    """
    try:
        # Private, so untyped and looked up at run time: a change only loses the prefilter.
        _parser = importlib.import_module("re._parser")
        tree = _parser.parse(pattern)
    except Exception:
        return None

    def best_of(candidates: list[set[str]]) -> set[str] | None:
        usable = [found for found in candidates if found and all(found)]
        return max(usable, key=lambda found: (min(map(len, found)), -len(found)), default=None)

    def sequence(items: Any) -> set[str] | None:
        candidates: list[set[str]] = []
        run: list[str] = []
        for op, value in items:
            if op is _parser.LITERAL:
                run.append(chr(value))
                continue
            if run:
                candidates.append({"".join(run)})
                run = []
            found: set[str] | None = None
            if op is _parser.SUBPATTERN:
                found = sequence(value[-1])
            elif op is _parser.BRANCH:
                branches = [sequence(branch) for branch in value[1]]
                if all(branches):
                    found = set().union(*(branch for branch in branches if branch))
            elif op in (_parser.MAX_REPEAT, _parser.MIN_REPEAT) and value[0] >= 1:
                found = sequence(value[2])
            if found:
                candidates.append(found)
        if run:
            candidates.append({"".join(run)})
        return best_of(candidates)

    try:
        found = sequence(tree)
    except Exception:
        return None
    return tuple(sorted(found)) if found else None


# (name, longest line, matcher, literals one of which a match holds: None for rules
# anchored at the start, which fail at once anyway)
_LINE_RULES = tuple(
    (
        name,
        max_chars,
        _matcher(_fold_pattern(pattern), anchored=pattern.startswith("^")),
        None if pattern.startswith("^") else _required_literals(pattern.translate(_MATCH.table)),
    )
    for name, max_chars, pattern in LINE_RULES
)
_LONGEST_RULE_CHARS = max(max_chars for _name, max_chars, _pattern in LINE_RULES)


def _literal_automaton(
    literals_by_rule: Sequence[tuple[str, ...] | None],
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.int32], npt.NDArray[np.uint64]]:
    """An Aho-Corasick automaton over every rule's literals, as tables for a native scan.

    Returns ``(symbols, moves, found)``: ``symbols[c]`` is the input symbol of code point
    ``c`` (0 for every character no literal holds, and for code points past the table);
    ``moves[state, symbol]`` the next state (a complete automaton: failure links are folded
    in); ``found[state]`` the bits (``1 << i``) of the rules ``i`` one of whose literals
    ends at that state, suffixes included. ``ı`` reads as ``i``, as the literals are
    searched for in a text with ``ı`` spelt ``i``.
    """
    if len(literals_by_rule) > 64:
        raise ValueError("more than 64 line rules: the literal masks hold 64 bits")
    characters = sorted({char for found in literals_by_rule if found for char in "".join(found)})
    symbol_of = {char: number for number, char in enumerate(characters, start=1)}
    if len(symbol_of) + 1 > np.iinfo(np.uint16).max:
        raise ValueError("too many distinct characters in the line rules' literals")
    children: list[dict[int, int]] = [{}]
    ends = [0]
    for bit, found in enumerate(literals_by_rule):
        for literal in found or ():
            state = 0
            for char in literal:
                symbol = symbol_of[char]
                following = children[state].get(symbol)
                if following is None:
                    children.append({})
                    ends.append(0)
                    following = children[state][symbol] = len(children) - 1
                state = following
            ends[state] |= 1 << bit
    moves = np.zeros((len(children), len(symbol_of) + 1), dtype=np.int32)
    found_at = np.zeros(len(children), dtype=np.uint64)
    failure = [0] * len(children)
    queue: deque[int] = deque()
    for symbol, child in children[0].items():
        moves[0, symbol] = child
        queue.append(child)
    while queue:  # breadth first: a state's failure is shallower, so done before it
        state = queue.popleft()
        found_at[state] = ends[state] | int(found_at[failure[state]])
        for symbol, child in children[state].items():
            failure[child] = int(moves[failure[state], symbol])
            queue.append(child)
        moves[state] = moves[failure[state]]
        for symbol, child in children[state].items():
            moves[state, symbol] = child
    symbols = np.zeros(max(map(ord, [*characters, "ı"])) + 1, dtype=np.uint16)
    for char, symbol in symbol_of.items():
        symbols[ord(char)] = symbol
    symbols[ord("ı")] = symbol_of.get("i", 0)
    return symbols, moves, found_at


@native
def _literal_masks_kernel(
    units: npt.NDArray[np.uint32],
    ends: npt.NDArray[np.int64],
    symbols: npt.NDArray[np.uint16],
    moves: npt.NDArray[np.int32],
    found: npt.NDArray[np.uint64],
    masks: npt.NDArray[np.uint64],
    letters: npt.NDArray[np.bool_],
) -> None:
    """``masks[i]``: the rules' bits of every literal in ``units[ends[i - 1]:ends[i]]``,
    and ``letters[i]`` whether that holds an ASCII letter (0 and False where ``ends[i]`` is
    -1: that segment takes no room in ``units``).

    Each step of the automaton waits for the one before it (its table, 350 KB, is read
    from the L2 cache): the segments are taken as two lanes, the first half of the code
    points and the second, stepped together so that the two waits overlap (3.6 -> 2.0 ns
    a code point).
    """
    n = ends.shape[0]
    size = symbols.shape[0]
    # Lane a takes segments [0, split), lane b [split, n); b starts at the first segment
    # that starts at or past half of the code points.
    total = 0
    for segment in range(n):
        total = max(total, ends[segment])
    split = n
    start_b = total
    start = 0
    for segment in range(n):
        if start >= total // 2:
            split = segment
            start_b = start
            break
        if ends[segment] >= 0:
            start = ends[segment]
    # Each lane: its segment, where it has got to and where the segment ends, the state.
    # Each starts at the end of the segment before its first.
    ia, ka, ea = -1, 0, 0
    ib, kb, eb = split - 1, start_b, start_b
    state_a, mask_a, letter_a = 0, np.uint64(0), False
    state_b, mask_b, letter_b = 0, np.uint64(0), False
    while True:
        if ka == ea:  # lane a is at the end of its segment (or before its first)
            if ia >= 0:
                masks[ia], letters[ia] = mask_a, letter_a
            state_a, mask_a, letter_a = 0, np.uint64(0), False
            ia = _next_segment(ends, ia, split, masks, letters)
            if ia >= split:
                break
            ea = int(ends[ia])
        if kb == eb:
            if ib >= split:
                masks[ib], letters[ib] = mask_b, letter_b
            state_b, mask_b, letter_b = 0, np.uint64(0), False
            ib = _next_segment(ends, ib, n, masks, letters)
            if ib >= n:
                break
            eb = int(ends[ib])
        steps = min(ea - ka, eb - kb)
        for j in range(steps):
            unit_a = units[ka + j]
            unit_b = units[kb + j]
            state_a = moves[state_a, symbols[unit_a] if unit_a < size else 0]
            state_b = moves[state_b, symbols[unit_b] if unit_b < size else 0]
            mask_a |= found[state_a]
            mask_b |= found[state_b]
            letter_a |= bool(np.uint32((unit_a | 32) - 97) < 26)
            letter_b |= bool(np.uint32((unit_b | 32) - 97) < 26)
        ka += steps
        kb += steps
    # One lane is done; the other finishes alone, its current segment first.
    lane_a = (ia, 0, split, ka, state_a, mask_a, letter_a)
    lane_b = (ib, split, n, kb, state_b, mask_b, letter_b)
    _finish_lane(units, ends, *lane_a, symbols, moves, found, masks, letters)
    _finish_lane(units, ends, *lane_b, symbols, moves, found, masks, letters)


@native
def _finish_lane(
    units: npt.NDArray[np.uint32],
    ends: npt.NDArray[np.int64],
    index: int,
    first: int,
    last: int,
    position: int,
    state: int,
    mask: np.uint64,
    letter: bool,
    symbols: npt.NDArray[np.uint16],
    moves: npt.NDArray[np.int32],
    found: npt.NDArray[np.uint64],
    masks: npt.NDArray[np.uint64],
    letters: npt.NDArray[np.bool_],
) -> None:
    """The rest of a lane's segments ``[first, last)`` one at a time: segment ``index``
    from ``position`` with the automaton's ``state`` and what it found so far, where the
    lane stopped inside it (``index >= first``), then the segments after it."""
    if index >= last:
        return
    if index >= first:
        rest_mask, rest_letter = _literal_scan_from(
            units, position, ends[index], state, symbols, moves, found
        )
        masks[index] = mask | rest_mask
        letters[index] = letter or rest_letter
        position = ends[index]
    index = _next_segment(ends, index, last, masks, letters)
    while index < last:
        end = ends[index]
        masks[index], letters[index] = _literal_scan_from(
            units, position, end, 0, symbols, moves, found
        )
        position = end
        index = _next_segment(ends, index, last, masks, letters)


@native
def _next_segment(
    ends: npt.NDArray[np.int64],
    index: int,
    last: int,
    masks: npt.NDArray[np.uint64],
    letters: npt.NDArray[np.bool_],
) -> int:
    """The first segment after ``index`` (before ``last``) that takes room in the code
    points, or ``last``; those skipped get no bits and no letter."""
    index += 1
    while index < last and ends[index] < 0:
        masks[index], letters[index] = 0, False
        index += 1
    return index


@native
def _literal_scan_from(
    units: npt.NDArray[np.uint32],
    start: int,
    end: int,
    state: int,
    symbols: npt.NDArray[np.uint16],
    moves: npt.NDArray[np.int32],
    found: npt.NDArray[np.uint64],
) -> tuple[np.uint64, bool]:
    """The rules' bits of every literal ending in ``units[start:end]``, read from the
    automaton's ``state``, and whether that holds an ASCII letter."""
    size = symbols.shape[0]
    mask = np.uint64(0)
    letter = False
    for k in range(start, end):
        unit = units[k]
        state = moves[state, symbols[unit] if unit < size else 0]
        mask |= found[state]
        letter |= bool(np.uint32((unit | 32) - 97) < 26)  # [A-Za-z], without a branch
    return mask, letter


_LITERAL_SYMBOLS, _LITERAL_MOVES, _LITERAL_FOUND = _literal_automaton(
    [literals for _name, _max_chars, _matches, literals in _LINE_RULES]
)
# The bits of the rules anchored at the start (tried whenever the alternation of those
# matches), of the rules searched anywhere whose literals could not be read off (tried on
# every line), and each rule by its bit.
_ANCHORED_BITS = sum(
    1 << bit for bit, (_n, _c, pattern) in enumerate(LINE_RULES) if pattern.startswith("^")
)
_ALWAYS_BITS = sum(
    1 << bit
    for bit, ((_n, _c, pattern), rule) in enumerate(zip(LINE_RULES, _LINE_RULES, strict=True))
    if rule[3] is None and not pattern.startswith("^")
)
_RULE_OF_BIT = {1 << bit: rule[:3] for bit, rule in enumerate(_LINE_RULES)}


def _literal_masks(folded: Sequence[str]) -> list[int]:
    """For each of ``folded`` (match forms), the bits of the line rules (``1 << i`` for
    ``_LINE_RULES[i]``) one of whose literals it holds: one native scan for all of them,
    where a substring search per literal and line cost a third of cleaning."""
    if not folded:
        return []
    return _masks_of_units(*_joined_code_points(folded))[0]


def _masks_of_units(
    units: npt.NDArray[np.uint32], ends: npt.NDArray[np.int64]
) -> tuple[list[int], list[bool]]:
    masks = np.empty(ends.shape[0], dtype=np.uint64)
    letters = np.empty(ends.shape[0], dtype=np.bool_)
    _literal_masks_kernel(
        units, ends, _LITERAL_SYMBOLS, _LITERAL_MOVES, _LITERAL_FOUND, masks, letters
    )
    return masks.tolist(), letters.tolist()


def _match_forms_and_masks(lines: Sequence[str]) -> tuple[list[str], list[int], list[bool]]:
    """:func:`_match_form` of each of ``lines``, :func:`_literal_masks` of those, and whether each
    line holds an ASCII letter; the masks are read off the folded code points the fast
    way leaves (no second encoding)."""
    fast, units, ends = _fold_many_units(lines, _FAST_MATCH)
    masks, letters = _masks_of_units(units, ends)
    folded: list[str] = []
    for index, (line, form) in enumerate(zip(lines, fast, strict=True)):
        if form is None:
            form = _match_form_general(line)
            masks[index] = _literal_masks([form])[0]
            # Composition can take an ASCII letter into another (e + U+0301 -> é).
            letters[index] = _ASCII_LETTER_RE.search(line) is not None
        folded.append(form)
    return folded, masks, letters


_ANCHORED_LINE_RULES = [
    _fold_pattern(pattern) for _name, _max_chars, pattern in LINE_RULES if pattern.startswith("^")
]
_ANY_ANCHORED_LINE_RULE = _any_of(_ANCHORED_LINE_RULES)
# Whether a tail marker, a list marker or an anchored line rule may match: one call that
# settles all three for most lines (~0.5 us a call saved twice per line).
_ANY_MARKER_OR_ANCHORED_RULE = _any_of(
    [
        *(pattern for _name, pattern in _TAIL_RULES),
        *(pattern for _name, pattern in _LIST_RULES),
        *_ANCHORED_LINE_RULES,
    ]
)
_WALL_RULES = tuple(
    (name, literals, re.compile(pattern, re.IGNORECASE)) for name, literals, pattern in WALL_RULES
)
_INLINE_RULES = tuple(
    (name, literals, re.compile(pattern, re.IGNORECASE)) for name, literals, pattern in INLINE_RULES
)
_INLINE_LITERALS = tuple(
    sorted({literal for _name, literals, _pattern in INLINE_RULES for literal in literals})
)
_WALL_LITERALS = tuple(
    sorted({literal for _name, literals, _pattern in WALL_RULES for literal in literals})
)
# Those of the two above that a text without an ASCII letter can hold.
_INLINE_LITERALS_NO_ASCII_LETTER, _WALL_LITERALS_NO_ASCII_LETTER = (
    tuple(literal for literal in literals if not _ASCII_LETTER_RE.search(literal))
    for literals in (_INLINE_LITERALS, _WALL_LITERALS)
)
_BYLINE_SET = frozenset(normalize(word) for word in BYLINE_WORDS)
_MONTH_SET = frozenset(normalize(word) for word in MONTH_WORDS)
_DATE_WORD_SET = frozenset(normalize(word) for word in DATE_WORDS)
_DATE_JOINER_NORMALIZED = normalize(_DATE_JOINER)


@dataclass(frozen=True)
class CleanText:
    """A text with its boilerplate removed.

    Attributes:
        body: the kept lines joined with ``"\\n"``.
        lines: the kept lines: original characters, surrounding whitespace trimmed.
        removed: the removed non-empty lines, in order, and what walls and inline promos
            (:data:`WALL_RULES`, :data:`INLINE_RULES`) took from kept lines (for debugging
            and tests).
    """

    body: str
    lines: tuple[str, ...]
    removed: tuple[str, ...]


class _Line(NamedTuple):
    text: str
    reason: str | None
    tail_marker: bool
    list_marker: bool
    bare: bool
    headline_like: bool


def _is_headline_like(line: str) -> bool:
    return len(line) <= HEADLINE_MAX_CHARS and not _ends_a_sentence(line)


def _ends_a_sentence(line: str) -> bool:
    """Whether ``line`` ends (before one final newline, if any) in a sentence end followed
    only by closing quotes and brackets."""
    ends = (line, line[:-1]) if line.endswith("\n") else (line,)
    for text in ends:
        bare = text.rstrip(_SENTENCE_CLOSERS)
        if bare and bare[-1] in _SENTENCE_ENDS:
            return True
    return False


def _is_byline(line: str) -> bool:
    if len(line) > BYLINE_MAX_CHARS or not _BYLINE_MARK_RE.search(line):
        return False
    parts = [part for part in _BYLINE_SPLIT_RE.split(line) if part.strip()]
    return len(parts) >= 2 and any(normalize(part) in _BYLINE_SET for part in parts)


def _is_date_line(normalized: str, folded: str) -> bool:
    if not _MAYBE_DIGIT_RE.search(normalized):
        return False
    tokens = _DATE_TOKEN_RE.findall(normalized)
    if not tokens or len(tokens) > DATE_LINE_MAX_TOKENS:
        return False
    if not any(token.isdigit() for token in tokens):
        return False
    has_month = any(token in _MONTH_SET for token in tokens)
    if not has_month and not _DATE_SHAPE_RE.search(folded):
        return False
    others = sum(
        1
        for token in tokens
        if not token.isdigit() and token not in _MONTH_SET and token not in _DATE_WORD_SET
    )
    if others == 0:
        return True
    return _DATE_JOINER_NORMALIZED in tokens and others <= DATELINE_MAX_OTHER_WORDS


def _line_reason(
    line: str,
    folded: str,
    learned: Collection[str],
    normalized: str | None = None,
    *,
    mask: int | None = None,
    anchored: bool = True,
) -> str | None:
    """Why a line is boilerplate wherever it stands, or None.

    ``normalized`` is ``normalize(line)`` when the caller has it (for short lines);
    ``mask`` is ``_literal_masks([folded])[0]`` when the caller has it; without
    ``anchored`` no rule anchored at the start matches ``folded`` (the caller knows).
    """
    if not _ALPHANUMERIC_RE.search(line):
        return "separator"
    short = len(line) <= SHORT_LINE_CHARS
    if not short:
        normalized = ""
    elif normalized is None:
        normalized = normalize(line)
    if (
        learned
        and len(line) <= LEARNABLE_MAX_CHARS
        and _key_of_normalized(normalized if short else normalize(line)) in learned
    ):
        return "learned"
    if short:
        if not normalized:
            return "separator"
        if normalized in _NAVIGATION_SET:
            return "navigation"
        # Only a line of share words, two or more: most lines fail at the first word,
        # found without splitting the line. A normal form's only separators are single
        # spaces, which str.find finds without looking each character up in the Unicode
        # database as str.split(None, 1) does.
        space = normalized.find(" ")
        if (
            space > 0
            and normalized[:space] in _SHARE_SET
            and all(token in _SHARE_SET for token in normalized.split(" "))
        ):
            return "navigation"
    if mask is None:
        mask = _literal_masks([folded])[0]
    # The rules to try, in order: those one of whose literals the line holds, those
    # without literals, and those anchored at the start when the alternation of those
    # matches.
    mask |= _ALWAYS_BITS
    if anchored and _ANY_ANCHORED_LINE_RULE(folded):
        mask |= _ANCHORED_BITS
    while mask:
        bit = mask & -mask
        mask ^= bit
        name, max_chars, matches = _RULE_OF_BIT[bit]
        if len(line) <= max_chars and matches(folded):
            return name
    if short and _is_byline(line):
        return "byline"
    if short and _is_date_line(normalized, folded):
        return "date"
    return None


def _probe(line: str) -> str:
    # Past the longest line rule only the markers, anchored at the start, are looked for.
    return line[:MARKER_PREFIX_CHARS] if len(line) > _LONGEST_RULE_CHARS else line


def _classify(
    line: str,
    learned: Collection[str],
    folded: str | None = None,
    normalized: str | None = None,
    *,
    mask: int | None = None,
) -> _Line:
    """One line classified; ``folded`` is ``_match_form(_probe(line))``, ``normalized``
    is ``normalize(line)`` of a short line and ``mask`` is ``_literal_masks([folded])[0]``
    when the caller has them."""
    long = len(line) > _LONGEST_RULE_CHARS
    if folded is None:
        folded = _match_form(_probe(line))
    headline_like = _is_headline_like(line)
    # Most lines hold no marker and match no anchored rule: one call settles all three.
    anchored = _ANY_MARKER_OR_ANCHORED_RULE(folded) is not None
    if anchored and _ANY_TAIL_MARKER(folded):
        for name, pattern in _TAIL_RULES:
            if pattern.match(folded):
                return _Line(line, name, True, False, False, headline_like)
    if anchored and _ANY_LIST_MARKER(folded):
        for name, pattern in _LIST_RULES:
            match = pattern.match(folded)
            if match:
                bare = not long and not _WORD_RE.search(folded[match.end() :])
                return _Line(line, name, False, True, bare, headline_like)
    reason = "separator" if long and not _ALPHANUMERIC_RE.search(line) else None
    if not long:
        reason = _line_reason(line, folded, learned, normalized, mask=mask, anchored=anchored)
    return _Line(line, reason, False, False, False, headline_like)


class _Tail:
    """Whether a line stands in the tail: enough of the article's prose comes before it."""

    def __init__(self, lines: list[_Line]) -> None:
        # Most texts never ask (no line of theirs is a marker or a bullet): the sums are
        # taken at the first question.
        self._lines = lines
        self._sums: tuple[int, list[int]] | None = None

    @staticmethod
    def _sum(lines: list[_Line]) -> tuple[int, list[int]]:
        """The prose of the whole text, and the prose before each line."""
        content = [0 if line.reason is not None else len(line.text) for line in lines]
        prose = [
            0 if line.headline_like else size for line, size in zip(lines, content, strict=True)
        ]
        # Short texts of headline-like lines only (lists, poems) fall back to all content.
        weights = prose if sum(prose) else content
        before: list[int] = []
        running = 0
        for weight in weights:
            before.append(running)
            running += weight
        return running, before

    def __call__(self, index: int) -> bool:
        sums = self._sums
        if sums is None:
            sums = self._sums = self._sum(self._lines)
        total, before = sums
        return not total or before[index] >= TAIL_FRACTION * total


def clean(text: str, *, learned: Collection[str] = ()) -> CleanText:
    """Remove boilerplate lines and trailing blocks from an article's text.

    See the module docstring for the rules. HTML is accepted: when
    :func:`looks_like_html`, the main text is extracted first (:func:`extract_html`).

    Args:
        text: the article text (plain text with one paragraph a line, or HTML).
        learned: keys (:func:`line_key`) of lines the article's source is known to repeat
            across its articles (site names, desk bylines); such lines are removed too.

    Returns:
        The kept and the removed lines. ``body`` is empty when the text was only
        boilerplate; rejecting such an article is the caller's decision.
    """
    return clean_lines(split_lines(text), learned=learned)


@dataclass(frozen=True)
class Lines:
    """A text split for :func:`clean_lines` (HTML extracted first).

    Attributes:
        lines: its non-empty lines, surrounding whitespace trimmed.
        normal_forms: :func:`normalize` of each line of at most :data:`SHORT_LINE_CHARS`
            characters, in order.
    """

    lines: list[str]
    normal_forms: list[str]


def split_lines(text: str) -> Lines:
    """What :func:`clean` and :func:`learnable_lines` read of a text, computed once."""
    return split_lines_many([text])[0]


def split_lines_many(texts: Sequence[str]) -> list[Lines]:
    """:func:`split_lines` of each of ``texts``, the short lines of all of them normalized
    in one call (a native call per text cost more than folding its lines)."""
    split: list[list[str]] = []
    for text in texts:
        if looks_like_html(text):
            text, _title = extract_html(text)
        split.append(_stripped_lines(text))
    forms = iter(
        normalize_many(
            [line for stripped in split for line in stripped if len(line) <= SHORT_LINE_CHARS]
        )
    )
    return [
        Lines(
            stripped,
            [next(forms) for line in stripped if len(line) <= SHORT_LINE_CHARS],
        )
        for stripped in split
    ]


def learnable_keys_of(lines: Lines) -> list[str]:
    """:func:`learnable_line_keys` of the text that ``lines`` were split from."""
    seen: set[str] = set()
    keys: list[str] = []
    short = (line for line in lines.lines if len(line) <= SHORT_LINE_CHARS)
    for line, normalized in zip(short, lines.normal_forms, strict=True):
        if len(line) <= LEARNABLE_MAX_CHARS and normalized and normalized not in seen:
            seen.add(normalized)
            keys.append(_key_of_normalized(normalized))
    return keys


def clean_lines(split: Lines, *, learned: Collection[str] = ()) -> CleanText:
    """:func:`clean` of the text that ``split`` (:func:`split_lines`) was made from."""
    return clean_lines_many([split], [learned])[0]


def clean_lines_many(
    splits: Sequence[Lines], learned: Sequence[Collection[str]]
) -> list[CleanText]:
    """:func:`clean_lines` of each of ``splits`` with its ``learned`` keys, the lines of
    all of them folded and scanned for the rules' literals in one call."""
    if len(learned) != len(splits):
        raise ValueError(f"{len(learned)} learned key sets for {len(splits)} texts")
    folded, masks, letters = _match_forms_and_masks(
        [_probe(line) for split in splits for line in split.lines]
    )
    cleaned: list[CleanText] = []
    start = 0
    for split, keys in zip(splits, learned, strict=True):
        end = start + len(split.lines)
        cleaned.append(
            _clean_folded(split, keys, folded[start:end], masks[start:end], any(letters[start:end]))
        )
        start = end
    return cleaned


def _clean_folded(
    split: Lines,
    learned: Collection[str],
    folded: list[str],
    masks: list[int],
    folded_letters: bool,
) -> CleanText:
    """:func:`clean_lines`, given each line's match form, its literal mask and whether any
    of those forms holds an ASCII letter."""
    learned_keys: Collection[str] = (
        learned if isinstance(learned, (set, frozenset, dict)) else frozenset(learned)
    )
    stripped = split.lines
    normal_forms = iter(split.normal_forms)
    lines = [
        _classify(
            line,
            learned_keys,
            form,
            next(normal_forms) if len(line) <= SHORT_LINE_CHARS else None,
            mask=mask,
        )
        for line, form, mask in zip(stripped, folded, masks, strict=True)
    ]
    in_tail = _Tail(lines)
    reasons = [line.reason for line in lines]
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.tail_marker and in_tail(index):
            _cut(reasons, index, "tail")
            break
        if line.list_marker and line.bare:
            end, teaser = _headline_run(lines, index + 1)
            if in_tail(index) and (teaser or _no_prose_after(lines, end)):
                _cut(reasons, index, "tail")
                break
            for run_index in range(index + 1, end):
                if reasons[run_index] is None:
                    reasons[run_index] = line.reason
            index = end
            continue
        if (
            reasons[index] is None
            and line.headline_like
            and _BULLET_RE.match(line.text)
            and in_tail(index)
        ):
            reasons[index] = "bullet"
        index += 1
    # Walls and inline promos change a kept line's text; what they take is listed as removed.
    texts = [line.text for line in lines]
    taken: dict[int, list[str]] = {}
    whole = "\n".join(stripped)
    # Most Arabic texts hold no ASCII letter and are spared the Latin literals' searches.
    # Folding keeps every ASCII letter one (lower case), so the scan of the match forms
    # tells, but for what lines past the longest rule keep beyond their probe.
    if folded_letters or any(
        _has_ascii_letter(line[MARKER_PREFIX_CHARS:])
        for line in stripped
        if len(line) > _LONGEST_RULE_CHARS
    ):
        wall_literals, inline_literals = _WALL_LITERALS, _INLINE_LITERALS
    else:
        wall_literals = _WALL_LITERALS_NO_ASCII_LETTER
        inline_literals = _INLINE_LITERALS_NO_ASCII_LETTER
    if _holds_any(whole, wall_literals):
        for index, line in enumerate(lines):
            if reasons[index] is None and (start := _wall_start(line.text)) is not None:
                if line.text[:start].strip():
                    texts[index] = line.text[:start].rstrip()
                    taken[index] = [line.text[start:]]
                else:
                    reasons[index] = "wall"
    if _holds_any(whole, inline_literals):
        for index in range(len(lines)):
            if reasons[index] is None:
                kept_text, spans = _without_inline_promos(texts[index])
                if spans:
                    taken.setdefault(index, []).extend(spans)
                    if kept_text:
                        texts[index] = kept_text
                    else:
                        reasons[index] = "promo"
    if ("blocked-page" in reasons or "site-header" in reasons) and (
        sum(len(texts[index]) for index, reason in enumerate(reasons) if reason is None)
        < BLOCKED_PAGE_REST_CHARS
    ):
        # A bot check with a sentence or two around it: the crawl got no article.
        reasons = [reason or "blocked-page" for reason in reasons]
    kept = tuple(texts[index] for index, reason in enumerate(reasons) if reason is None)
    removed: list[str] = []
    for index, (line, reason) in enumerate(zip(lines, reasons, strict=True)):
        if reason is not None:
            removed.append(line.text)
        elif index in taken:
            removed.extend(taken[index])
    if removed:
        logger.debug("cleaning removed %d of %d lines", len(removed), len(lines))
    return CleanText(body="\n".join(kept), lines=kept, removed=tuple(removed))


def _holds_any(text: str, literals: Sequence[str]) -> bool:
    """Whether ``text`` holds one of ``literals`` (one substring search each)."""
    return any(literal in text for literal in literals)


def _without_inline_promos(line: str) -> tuple[str, list[str]]:
    """``line`` without the matches of :data:`INLINE_RULES`, and the matches."""
    spans: list[str] = []
    for _name, literals, pattern in _INLINE_RULES:
        if any(literal in line for literal in literals):
            spans.extend(found.group() for found in pattern.finditer(line))
            line = pattern.sub(" ", line)
    return (" ".join(line.split()) if spans else line), spans


def _wall_start(line: str) -> int | None:
    """Where a wall (:data:`WALL_RULES`) starts in ``line``, if one does."""
    starts = [
        found.start()
        for _name, literals, pattern in _WALL_RULES
        if any(literal in line for literal in literals) and (found := pattern.search(line))
    ]
    return min(starts) if starts else None


def _cut(reasons: list[str | None], start: int, reason: str) -> None:
    for index in range(start, len(reasons)):
        if reasons[index] is None:
            reasons[index] = reason
    reasons[start] = reasons[start] or reason


def _headline_run(lines: list[_Line], start: int) -> tuple[int, bool]:
    """Where the headlines after a list marker end, and whether a date line is among them.

    Lines already known as boilerplate are passed over; the run stops at a marker, at the
    first line of prose, or after :data:`LIST_MAX_TITLES` headlines.
    """
    titles = 0
    teaser = False
    index = start
    while index < len(lines):
        line = lines[index]
        if line.tail_marker or line.list_marker:
            break
        if line.reason is not None:
            teaser = teaser or line.reason == "date"
        elif line.headline_like and titles < LIST_MAX_TITLES:
            titles += 1
        else:
            break
        index += 1
    return index, teaser


def _no_prose_after(lines: list[_Line], start: int) -> bool:
    return all(line.reason is not None or line.headline_like for line in lines[start:])


# ---------------------------------------------------------------------------------------
# Per-source boilerplate learning
# ---------------------------------------------------------------------------------------


def line_key(line: str) -> str:
    """A stable key for a line, equal for lines that normalize alike.

    Args:
        line: one line of text.

    Returns:
        16 hex digits (BLAKE2b over the normalized line).
    """
    return _key_of_normalized(normalize(line))


def _key_of_normalized(normalized: str) -> str:
    """:func:`line_key` of a line whose :func:`normalize` is ``normalized``."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).hexdigest()


def learnable_lines(body_or_text: str) -> list[str]:
    """The lines of a text that may be its source's boilerplate.

    The caller counts, per source, how many articles contain each line's
    :func:`line_key`; keys seen in enough articles are passed to :func:`clean` as
    ``learned``. Only short lines qualify (at most :data:`LEARNABLE_MAX_CHARS`
    characters), so that a paragraph repeated by copies of one story is never learned.

    Args:
        body_or_text: raw article text or a cleaned body (HTML is extracted first).

    Returns:
        The distinct (by normalized form) non-empty short lines, trimmed, in order.
    """
    text = extract_html(body_or_text)[0] if looks_like_html(body_or_text) else body_or_text
    return [line for line, _normalized in _learnable(text)]


def learnable_line_keys(body_or_text: str) -> list[str]:
    """:func:`line_key` of each of :func:`learnable_lines`, normalizing each line once."""
    text = extract_html(body_or_text)[0] if looks_like_html(body_or_text) else body_or_text
    return [_key_of_normalized(normalized) for _line, normalized in _learnable(text)]


def _learnable(text: str) -> list[tuple[str, str]]:
    """(line, its normal form) of :func:`learnable_lines`."""
    candidates = [line for line in _stripped_lines(text) if len(line) <= LEARNABLE_MAX_CHARS]
    seen: set[str] = set()
    lines: list[tuple[str, str]] = []
    for line, normalized in zip(candidates, normalize_many(candidates), strict=True):
        if normalized and normalized not in seen:
            seen.add(normalized)
            lines.append((line, normalized))
    return lines
