"""The engine: composes cleaning, MinHash, embeddings, FAISS and the store into verdicts.

Typical use::

    from index.engine import Engine
    from index.article import Article

    with Engine.open(Path("samestory-data")) as engine:
        verdict = engine.ingest(Article(id="a1", text="...", title="..."))
        print(verdict.status, verdict.cluster.id, verdict.cluster.canonical.id)

One article flows through :meth:`Engine.ingest` as DESIGN.md lays out: clean → normalize →
exact hash → MinHash/LSH candidates verified by exact Jaccard and containment → (only if it
is no copy) embed → FAISS neighbours within the time window → calibrated story score →
join or open a story → update the canonical → commit to SQLite → update derived indexes.
All writes are serialised by one lock; the SQLite transaction commits before the derived
indexes change, so a crash can only leave indexes behind the record, never ahead of it, and
they are caught up from the record on the next open.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from index import dates
from index import text as textlib
from index.article import (
    MAX_LISTED_COPIES,
    Article,
    Canonical,
    Cluster,
    CopyOf,
    Similarity,
    Status,
    StoredArticle,
    Story,
    Verdict,
)
from index.closing import ClosedOnExit
from index.durable import fsync_directory, replacing
from index.embed import Embedder
from index.errors import (
    ArticleNotFoundError,
    BoilerplateOnlyError,
    ConflictError,
    DataDirectoryInUseError,
    IndexMismatchError,
    StoryNotFoundError,
)
from index.language import detect_language
from index.lexical import DocumentFrequencies, weighted_overlap
from index.minhash import LSHIndex, MinHasher, containment, jaccard
from index.params import Parameters
from index.shingles import shingle_hashes_encoded, shingles_and_terms_encoded
from index.store import (
    ArticleRow,
    CanonicalRow,
    DeletionRow,
    Store,
    StoryRow,
    Synchronous,
    VerdictRow,
    encode_embedding,
    encode_signature,
    frequent_line_pairs,
    open_read_only,
)
from index.stories import (
    CandidateStory,
    Neighbour,
    StoryQuery,
    candidate_stories,
    choose_story,
    clustering_probability,
    pair_conflicts,
    pair_features,
    story_probability,
    unit,
)

if TYPE_CHECKING:
    # Imported where an embedder needs it: FAISS's import (~0.04 s) is no use in dedup mode.
    from index.vectors import VectorIndex

logger = logging.getLogger(__name__)

Mode = Literal["stories", "dedup"]

Vector = npt.NDArray[np.float32]

STORE_FILE = "samestory.sqlite3"
"""The SQLite record's file name in a data directory."""
_SNAPSHOT_DIR = "snapshots"
# Each snapshot is a new directory snapshots/generation-NNNNNNNN holding the index files
# and, written last, state.json: a generation without it was cut short and is not read.
# The newest complete one is loaded; older ones are removed once a newer one is durable,
# so a snapshot that fails or is cut short leaves the previous one in place.
_GENERATION_PREFIX = "generation-"
_STATE_FILE = "state.json"
# Before generations, the files lay in snapshots/ itself; still read, removed on the next.
_FLAT_FILES = ("state.json", "lsh.bin", "frequencies.npz", "vectors.faiss")

# A periodic snapshot rewrites every index, so its cost grows with the store: one every
# fixed number of ingests makes a long run quadratic (a million-article batch wrote its
# snapshots a hundred times, most of the run's system time). Waiting until the ingests
# since the last one reach this share of the stored articles keeps the total written
# within a constant factor of the final snapshot (a geometric series); a restart after a
# crash re-adds at most that share from the record.
SNAPSHOT_GROWTH = 0.1

# Periodic snapshots come no sooner than this many ingests apart (Engine.open's default).
SNAPSHOT_EVERY = 10_000
_TERMS_LIMIT = 600


@dataclass
class _Prepared:
    """Everything computed from one article before any decision (pure, no state)."""

    article: Article
    text_hash: str
    body: str
    content_hash: str
    shingles: npt.NDArray[np.uint32]
    signature: npt.NDArray[np.uint64]
    terms: npt.NDArray[np.uint32]
    embed_text: str
    published_at: float
    received_at: float
    language: str | None
    line_keys: list[str]
    learned: list[str]
    # Event-time evidence (index.dates), read when story scoring first needs it.
    evidence: int | None = None


class _DirectoryLock:
    """An exclusive ``flock`` on ``<data_dir>/.samestory.lock`` while an engine has it open.

    Two engines writing one record would each miss the other's articles (every engine keeps
    its indexes in memory), so a second open fails at once instead. The lock belongs to
    the open file, so forked batch workers share it and it ends with the last of them; the
    file stays (removing it would race with the next open) and names the holder's pid.
    """

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / ".samestory.lock"
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip()
            os.close(self._fd)
            self._fd = None
            raise DataDirectoryInUseError(
                str(data_dir), f"pid {holder}" if holder else "pid unknown"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class SnapshotTimes(NamedTuple):
    """What one :meth:`Engine.snapshot` took.

    Attributes:
        locked_s: seconds the engine lock was held (waiting for a periodic snapshot still
            being written included), during which ingests and reads wait.
        written_s: seconds writing the files took after that, the engine going on.
    """

    locked_s: float
    written_s: float


class BriefVerdict(NamedTuple):
    """What a batch file records of a :class:`~index.article.Verdict`: its status and ids."""

    id: str
    status: str
    duplicate_of: str | None
    cluster_id: str
    canonical_id: str


_V = TypeVar("_V")


@dataclass
class _Decision:
    status: Status
    story_row: int | None
    original_row: int | None
    duplicate_similarity: float | None
    story_similarity: float | None
    embedding: Vector | None
    # (row, Jaccard, containment) of each earlier article verified a copy, best first.
    copies: tuple[_Copy, ...] = ()


_Copy = tuple[int, float, float]


class _ChunkWrites:
    """What a ``dedup`` mode batch writes, held in memory until its end (then one
    ``executemany`` per table, in the same transaction).

    Decisions inside the batch read earlier articles of the same batch from here and the
    store's committed articles from SQLite: together what the store would hold had each
    article been inserted at once. Rows are assigned as SQLite's AUTOINCREMENT would.
    """

    def __init__(self, store: Store, prepared: Sequence[_Prepared]) -> None:
        self.first_row = self.next_row = store.next_article_row()
        # The first stored article of each content hash in the batch (fewer queries).
        self.stored_hashes = store.first_by_content_hashes(item.content_hash for item in prepared)
        # Of the batch's own articles: first row of each content hash not stored before,
        # and (original row, story row, shingles) by row.
        self.hashes: dict[str, int] = {}
        self.rows: dict[int, tuple[int | None, int, npt.NDArray[np.uint32]]] = {}
        self.articles: list[tuple[Any, ...]] = []
        self.stories: dict[int, StoryRow] = {}
        self.lines: dict[tuple[str, str], int] = {}
        self.copies: list[tuple[int, int, float, float]] = []
        # The texts of the batch's articles, by content hash (is a copy exact?).
        self.texts: dict[str, list[str]] = {}
        # (original row, shingles) of the stored articles the batch's LSH candidates name,
        # read in one query (see read_candidates).
        self.stored_candidates: dict[int, tuple[int | None, npt.NDArray[np.uint32]]] = {}

    def read_candidates(self, store: Store, rows: Iterable[int]) -> None:
        """Read what copy checks need of the stored articles among ``rows``: one query for
        the batch (thousands of one-article queries cost 0.26 s over SaudiNewsNet)."""
        stored = {row for row in rows if row < self.first_row}
        if stored:
            self.stored_candidates = store.copy_candidates(stored)

    def flush(self, store: Store) -> None:
        store.insert_articles(self.articles)
        store.insert_copies(self.copies)
        store.save_stories(self.stories.values())
        store.count_lines_many(
            (source, key, count) for (source, key), count in sorted(self.lines.items())
        )


def _same_text(text: str, others: Iterable[str]) -> bool:
    """Whether ``text`` is one of ``others`` once both are normalized (case, letter forms,
    diacritics, punctuation and spacing: :func:`index.text.normalize`).

    What ``exact_duplicate`` means. An article whose cleaned body is that of an earlier one
    but whose text is not (another dateline, byline, link line or footer) is a copy with
    Jaccard 1.0 of its body, a ``near_duplicate``: "exact" is about the text as sent. Only
    the stored articles of the same cleaned body are compared (no query for the others):
    an identical text whose source learned other boilerplate lines is near, not exact.
    """
    normalized: str | None = None
    for other in others:
        if other == text:
            return True
        if normalized is None:
            normalized = textlib.normalize(text)
        if textlib.normalize(other) == normalized:
            return True
    return False


# At most this many stored articles of one cleaned body are compared with a new one's text
# (a body republished under ever new furniture is then a near-duplicate past these).
_SAME_BODY_COMPARED = 256


def _with_identical(copies: tuple[_Copy, ...], identical_row: int) -> tuple[_Copy, ...]:
    """``copies`` of an exact duplicate, with the identical earlier article first even where
    the text is too short to verify by shingles."""
    if any(row == identical_row for row, _similarity, _contained in copies):
        return copies
    return ((identical_row, 1.0, 1.0), *copies)[:MAX_LISTED_COPIES]


def _listed(copies: Iterable[_Copy], names: Mapping[int, str]) -> tuple[CopyOf, ...]:
    """Copies as the verdict lists them (rows no longer stored are left out)."""
    return tuple(
        CopyOf(id=names[row], jaccard=similarity, containment=contained)
        for row, similarity, contained in copies
        if row in names
    )


def _u4_bytes(values: npt.NDArray[np.uint32]) -> bytes:
    """``values.astype("<u4").tobytes()``, without the copy where they are that already."""
    return values.tobytes() if values.dtype == _U4 else values.astype(_U4).tobytes()


_U4 = np.dtype("<u4")


def story_id(row: int) -> str:
    """The public id of the story whose founding article has ``row``."""
    return f"s{row}"


def story_row_of(story_id_text: str) -> int:
    """The inverse of :func:`story_id`.

    Raises:
        StoryNotFoundError: the text is no story id.
    """
    digits = story_id_text[1:]
    # Only the form story_id writes (ASCII digits, no leading zero) of a SQLite integer
    # (below 2**63) names a story; "s01", "s٣" or a longer number name none.
    if (
        story_id_text[:1] != "s"
        or not (digits.isascii() and digits.isdigit())
        or len(digits) > _MAX_ROW_DIGITS
    ):
        raise StoryNotFoundError(story_id_text)
    row = int(digits)
    if str(row) != digits or row > _MAX_ROW:
        raise StoryNotFoundError(story_id_text)
    return row


_MAX_ROW = 2**63 - 1
_MAX_ROW_DIGITS = len(str(_MAX_ROW))


_NO_TERMS = np.empty(0, dtype=np.uint32)


def _timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _embed_text(title: str | None, body: str, params: Parameters) -> str:
    head = body if not title else f"{title}\n{body}"
    return head[: params.embed_max_chars]


def _prepare_articles(
    articles: Sequence[Article],
    params: Parameters,
    hasher: MinHasher,
    now: float,
    learned_of: Callable[[Sequence[tuple[str, list[str]]]], set[tuple[str, str]]],
    *,
    skip_boilerplate_only: bool = False,
    terms: bool = True,
) -> list[_Prepared]:
    """Everything computed from ``articles`` before any decision.

    Pure but for ``learned_of([(source, line_keys), ...])``: the (source, key) pairs of
    the lines that their sources are known to repeat (removed as boilerplate), asked once
    for all the articles.

    Without ``terms``, each article's terms are left empty (for an engine that never
    reads them: see :attr:`Engine.keeps_terms`); the rest is the same.

    Raises:
        BoilerplateOnlyError: nothing is left of an article after cleaning (the first
            such), unless ``skip_boilerplate_only``: such articles are then left out.
    """
    raws: list[str] = []
    originals: list[Article] = []
    for article in articles:
        raw = article.text
        title = article.title
        if textlib.looks_like_html(raw):
            raw, extracted_title = textlib.extract_html(raw)
            title = title or extracted_title
            article = Article(
                id=article.id,
                text=article.text,
                title=title,
                url=article.url,
                source=article.source,
                language=article.language,
                published_at=article.published_at,
            )
        raws.append(raw)
        originals.append(article)
    # Each step takes the whole batch in one call: a native call per article cost more
    # than its work on the article's few lines.
    split = [
        (article, lines, textlib.learnable_keys_of(lines) if article.source else [])
        for article, lines in zip(originals, textlib.split_lines_many(raws), strict=True)
    ]
    wanted = [(article.source, keys) for article, _lines, keys in split if article.source and keys]
    frequent = learned_of(wanted) if wanted else set()
    learned_sets = [
        {key for key in keys if (article.source, key) in frequent} if frequent else set()
        for article, _lines, keys in split
    ]
    bodies = textlib.clean_lines_many([lines for _article, lines, _keys in split], learned_sets)
    cleaned: list[tuple[Article, str, list[str], list[str]]] = []
    for (article, _lines, keys), learned, clean in zip(split, learned_sets, bodies, strict=True):
        body = clean.body
        if not body.strip():
            if skip_boilerplate_only:
                continue
            raise BoilerplateOnlyError(
                f"article {article.id!r}: nothing is left after removing boilerplate "
                "(navigation, tag lists, related-article lists, a bot check or script wall "
                "served instead of the article); send the article body",
                field="text",
                article_id=article.id,
            )
        cleaned.append((article, body, keys, sorted(learned)))
    normalized, spaceless = textlib.normalize_many_spaceless(
        [body for _article, body, _keys, _learned in cleaned]
    )
    # Each normalized body is encoded once: for its shingles, its terms and its hash.
    encoded = [text.encode("utf-8", "surrogatepass") for text in normalized]
    term_sets: list[npt.NDArray[np.uint32]]
    if terms:
        titles = textlib.normalize_many([article.title or "" for article, *_rest in cleaned])
        # The terms are the words of "title body"; both are hashed in the one pass.
        shingles, term_sets = shingles_and_terms_encoded(
            encoded,
            [title.encode("utf-8", "surrogatepass") for title in titles],
            size=params.shingle_size,
            char_size=params.char_shingle_size,
            spaceless=spaceless,
        )
    else:
        shingles = shingle_hashes_encoded(
            encoded,
            size=params.shingle_size,
            char_size=params.char_shingle_size,
            spaceless=spaceless,
        )
        term_sets = [_NO_TERMS] * len(shingles)
    signatures = hasher.signatures(shingles)
    prepared: list[_Prepared] = []
    for index, (article, body, keys, learned_keys) in enumerate(cleaned):
        published = article.published_at.timestamp() if article.published_at else now
        prepared.append(
            _Prepared(
                article=article,
                text_hash=article.text_hash,
                body=body,
                content_hash=hashlib.sha256(encoded[index]).hexdigest(),
                shingles=shingles[index],
                signature=signatures[index],
                terms=term_sets[index][:_TERMS_LIMIT],
                embed_text=_embed_text(article.title, body, params),
                published_at=published,
                received_at=now,
                language=article.language,
                line_keys=keys,
                learned=learned_keys,
            )
        )
    return prepared


@dataclass(frozen=True)
class Preparation:
    """Articles prepared apart from an engine (in a worker process), for :meth:`Engine.ingest_many`.

    Cleaning, normalizing, shingling and MinHashing are most of the CPU time of a copy
    check and need nothing of the engine's state but the boilerplate lines learned per
    source; :func:`prepare` does them with nothing learned, so batch work can run them in
    other processes. The engine uses an item only where the result cannot differ: same
    parameters, same text, title and source, and no line of the article learned since as
    its source's boilerplate; it prepares the others itself.

    Packed (arrays concatenated, one per kind) so that it pickles fast. Articles that are
    only boilerplate are left out: the engine prepares them itself and reports them.
    Without ``bodies`` (the cleaned texts, half of its bytes) it serves ``dedup`` mode only,
    which never reads them; a ``stories`` engine prepares such articles itself. Without
    ``terms`` it serves only an engine that does not keep them (:attr:`Engine.keeps_terms`).
    """

    params: Parameters
    ids: list[str]
    text_hashes: list[str]
    sources: list[str | None]
    titles: list[str | None]
    used_titles: list[str | None]
    bodies: list[str]
    content_hashes: list[str]
    line_keys: list[list[str]]
    learned: list[list[str]]
    shingles: npt.NDArray[np.uint32]
    shingle_ends: npt.NDArray[np.int64]
    signatures: npt.NDArray[np.uint64]
    terms: npt.NDArray[np.uint32]
    term_ends: npt.NDArray[np.int64]
    with_bodies: bool = True
    with_terms: bool = True

    @functools.cached_property
    def positions(self) -> dict[str, int]:
        """Each id's position."""
        return {article_id: index for index, article_id in enumerate(self.ids)}

    def item(self, article: Article, text_hash: str, now: float) -> _Prepared | None:
        """``article`` prepared, if this holds it as it is now, with nothing learned."""
        index = self.positions.get(article.id)
        if (
            index is None
            or self.text_hashes[index] != text_hash
            or self.sources[index] != article.source
            or self.titles[index] != article.title
        ):
            return None
        title = self.used_titles[index]
        if title != article.title:
            article = dataclasses.replace(article, title=title)
        body = self.bodies[index] if self.with_bodies else ""
        shingles_from = int(self.shingle_ends[index - 1]) if index else 0
        terms_from = int(self.term_ends[index - 1]) if index else 0
        return _Prepared(
            article=article,
            text_hash=text_hash,
            body=body,
            content_hash=self.content_hashes[index],
            shingles=self.shingles[shingles_from : int(self.shingle_ends[index])],
            signature=self.signatures[index],
            terms=self.terms[terms_from : int(self.term_ends[index])],
            embed_text=_embed_text(title, body, self.params),
            published_at=article.published_at.timestamp() if article.published_at else now,
            received_at=now,
            language=article.language,
            line_keys=self.line_keys[index],
            learned=self.learned[index],
        )


_HASHERS: dict[tuple[int, int], MinHasher] = {}
# Read-only connections of prepare() to the stores it reads, one per store and process.
_READERS: dict[Path, sqlite3.Connection] = {}


def _ends(arrays: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    return np.cumsum([array.shape[0] for array in arrays], dtype=np.int64)


def _nothing_learned(_wanted: Sequence[tuple[str, list[str]]]) -> set[tuple[str, str]]:
    return set()


def prepare(
    articles: Sequence[Article],
    params: Parameters,
    *,
    store: Path | None = None,
    bodies: bool = True,
    terms: bool = True,
) -> Preparation:
    """What :meth:`Engine.ingest_many` computes from ``articles`` alone.

    Pure: safe to call in another process (the result pickles).

    Args:
        articles: the articles to prepare.
        params: the engine's parameters.
        store: the engine's store file (:attr:`Engine.store_file`), read for the lines its
            sources are known to repeat as they stand now; nothing is learned without it.
        bodies: keep the cleaned texts; without them the result serves only a ``dedup``
            mode engine (which never reads them) and pickles in half the bytes.
        terms: compute the terms; without them the result serves only an engine that does
            not keep them (:attr:`Engine.keeps_terms`).
    """
    hasher = _HASHERS.get((params.num_perm, params.seed))
    if hasher is None:
        hasher = _HASHERS[params.num_perm, params.seed] = MinHasher(
            num_perm=params.num_perm, seed=params.seed
        )
    learned_of: Callable[[Sequence[tuple[str, list[str]]]], set[tuple[str, str]]]
    learned_of = _nothing_learned
    if store is not None:
        connection = _READERS.get(store)
        if connection is None:
            connection = _READERS[store] = open_read_only(store)
        minimum = params.learn_boilerplate_min_articles

        def learned_of(wanted: Sequence[tuple[str, list[str]]]) -> set[tuple[str, str]]:
            return frequent_line_pairs(connection, wanted, minimum)

    prepared = _prepare_articles(
        articles, params, hasher, 0.0, learned_of, skip_boilerplate_only=True, terms=terms
    )
    titles = {article.id: article.title for article in articles}
    empty_u32 = np.empty(0, dtype=np.uint32)
    return Preparation(
        params=params,
        ids=[item.article.id for item in prepared],
        text_hashes=[item.text_hash for item in prepared],
        sources=[item.article.source for item in prepared],
        titles=[titles[item.article.id] for item in prepared],
        used_titles=[item.article.title for item in prepared],
        bodies=[item.body for item in prepared] if bodies else [],
        content_hashes=[item.content_hash for item in prepared],
        line_keys=[item.line_keys for item in prepared],
        learned=[item.learned for item in prepared],
        shingles=np.concatenate([item.shingles for item in prepared]) if prepared else empty_u32,
        shingle_ends=_ends([item.shingles for item in prepared]),
        signatures=np.stack([item.signature for item in prepared])
        if prepared
        else np.empty((0, params.num_perm), dtype=np.uint64),
        terms=np.concatenate([item.terms for item in prepared]) if prepared else empty_u32,
        term_ends=_ends([item.terms for item in prepared]),
        with_bodies=bodies,
        with_terms=terms,
    )


def _generations(root: Path) -> list[tuple[int, Path]]:
    """The snapshot generation directories under ``root`` (complete or not), numbered."""
    found: list[tuple[int, Path]] = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        suffix = entry.name.removeprefix(_GENERATION_PREFIX)
        if suffix != entry.name and suffix.isdigit() and entry.is_dir():
            found.append((int(suffix), entry))
    return found


@dataclass(frozen=True)
class _SnapshotImage:
    """The indexes as they were when a snapshot was taken, ready to be written.

    Attributes:
        number: the how-manieth snapshot of this engine (an older one is never written
            after a newer).
        state: what ``state.json`` records (fingerprint, last row, deletions).
        version: what :meth:`Engine._indexes_version` was when it was taken.
        writers: per index file, the function that writes it to a path.
        seconds: how long taking it held the engine lock.
    """

    number: int
    state: dict[str, Any]
    version: tuple[int, int, int]
    writers: list[tuple[str, Callable[[Path], None]]]
    seconds: float


class Engine(ClosedOnExit):
    """samestory's engine over one data directory.

    Use :meth:`open`; the engine is a context manager and must be closed (which writes
    index snapshots). All public methods are thread-safe.
    """

    def __init__(
        self,
        store: Store,
        params: Parameters,
        embedder: Embedder | None,
        snapshot_dir: Path,
        *,
        mode: Mode,
        snapshot_every: int | None,
        fingerprint: str,
    ) -> None:
        self.params = params
        self._fingerprint = fingerprint
        self.mode: Mode = mode
        self._store = store
        self._embedder = embedder
        self._snapshot_dir = snapshot_dir
        self._snapshot_every = snapshot_every
        self._lock = threading.RLock()
        self._hasher = MinHasher(num_perm=params.num_perm, seed=params.seed)
        self._lsh = LSHIndex(threshold=params.lsh_threshold, num_perm=params.num_perm)
        self._vectors: VectorIndex | None = None
        self._frequencies = DocumentFrequencies()
        # A scratch record (make_store_scratch) is deleted after use: what only a later
        # reader of it would read is not written.
        self._scratch = False
        self._since_snapshot = 0
        # Snapshots are taken under the engine lock (an in-memory image, fast) and written
        # outside it, one at a time; periodic ones on a thread of their own, so that neither
        # ingests nor reads wait for the disk.
        self._snapshot_writing = threading.Lock()
        self._snapshot_thread: ThreadPoolExecutor | None = None
        self._snapshot_pending: Future[None] | None = None
        self._snapshots_taken = 0
        self._snapshot_written = 0
        # The store's deletion count in the newest snapshot on disk: the deletion log is
        # kept only after it.
        self._deletions_written = 0
        # _indexes_version() of the newest snapshot on disk, while the indexes in memory are
        # still what it holds; None when unknown.
        self._version_on_disk: tuple[int, int, int] | None = None
        self._directory_lock: _DirectoryLock | None = None
        self._closed = False

    # -- opening and closing ----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        params: Parameters | None = None,
        *,
        embedder: Embedder | None = None,
        mode: Mode = "stories",
        synchronous: Synchronous = "full",
        snapshot_every: int | None = SNAPSHOT_EVERY,
    ) -> Engine:
        """Open (or create) the engine's store under ``data_dir`` and load its indexes.

        Args:
            data_dir: directory holding the SQLite record and index snapshots.
            params: engine parameters; a store created with other stored parameters is
                refused with :class:`~index.errors.IndexMismatchError`.
            embedder: the sentence embedder; required in ``"stories"`` mode (see
                :class:`index.embed.SentenceTransformerEmbedder`), ignored in ``"dedup"``.
            mode: ``"stories"`` (duplicates and story clustering) or ``"dedup"`` (exact and
                near-duplicates only; each near-duplicate group is its own story, no model).
            synchronous: SQLite's durability: ``"full"`` survives power loss, ``"normal"``
                survives a process crash (faster for batch work).
            snapshot_every: write index snapshots after this many ingests, or after
                :data:`SNAPSHOT_GROWTH` of the stored articles where that is more (and on
                close); ``None``: only on close and :meth:`snapshot`.

        Raises:
            ValueError: ``"stories"`` mode without an embedder.
            IndexMismatchError: the store was built with other parameters.
        """
        params = params or Parameters()
        if mode == "stories" and embedder is None:
            raise ValueError(
                "mode='stories' needs an embedder (index.embed.SentenceTransformerEmbedder); "
                "use mode='dedup' for duplicate detection without a model"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        fields = params.stored_fields()
        fields["mode"] = mode
        fingerprint = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        lock = _DirectoryLock(data_dir)
        store: Store | None = None
        try:
            store = Store(
                data_dir / STORE_FILE,
                fingerprint=fingerprint,
                stored_fields=fields,
                synchronous=synchronous,
            )
            engine = cls(
                store,
                params,
                embedder if mode == "stories" else None,
                data_dir / _SNAPSHOT_DIR,
                mode=mode,
                snapshot_every=snapshot_every,
                fingerprint=fingerprint,
            )
            engine._directory_lock = lock
            engine._fill_evidence()
            engine._load_indexes()
        except BaseException:
            if store is not None:
                store.close()
            lock.release()
            raise
        return engine

    def _fill_evidence(self) -> None:
        """Read the event-time evidence of story articles stored before schema version 2."""
        store = self._store
        if store.meta("evidence_pending") is None:
            return
        filled = 0
        while rows := store.rows_without_evidence(2_000):
            values = []
            for row, text, title in rows:
                raw = text
                if textlib.looks_like_html(raw):
                    raw, _title = textlib.extract_html(raw)
                body = textlib.clean(raw).body
                evidence = dates.read_evidence(dates.evidence_text(raw, body, title))
                values.append((dates.to_bytes(evidence), row))
            with store.transaction():
                store.set_evidence(values)
            filled += len(values)
        with store.transaction():
            store.connection.execute("DELETE FROM meta WHERE key = 'evidence_pending'")
        logger.info("read the event-time evidence of %d stored articles", filled)

    def close(self, *, snapshot: bool = True) -> None:
        """Write index snapshots (unless the newest on disk is current) and close the store.
        Idempotent.

        Args:
            snapshot: ``False`` skips the snapshots (a store about to be deleted); the next
                open rebuilds what they lack from the record.
        """
        with self._lock:
            if self._closed:
                return
            try:
                # A periodic snapshot still being written finishes first (no thread touches
                # the directory once it is closed).
                if self._snapshot_thread is not None:
                    self._snapshot_thread.shutdown(wait=True)
                    self._snapshot_thread = None
                if self._vectors is not None:
                    # A background rebuild of the graph is dropped: the snapshot keeps the
                    # tombstones, and the next change after a restart starts it again. (A
                    # conversion from flat to HNSW is finished first.)
                    self._vectors.close()
                if snapshot and self._version_on_disk == self._indexes_version():
                    # Nothing changed since the newest snapshot on disk (read-only use, or
                    # closing right after a snapshot): writing the same again would cost
                    # as much as any snapshot (seconds for a large store) for nothing.
                    logger.debug("index snapshot on disk is current; none written at close")
                elif snapshot:
                    self._snapshot_or_warn()
            finally:
                self._store.close()
                self._closed = True
                if self._directory_lock is not None:
                    self._directory_lock.release()

    def _new_vectors(self) -> VectorIndex | None:
        if self._embedder is None:
            return None
        from index.vectors import VectorIndex

        return VectorIndex(self._embedder.dimension, exact_limit=self.params.exact_search_limit)

    def _load_indexes(self) -> None:
        started = time.perf_counter()
        max_row, deletions = self._store.generation()
        after_row = 0
        how = "record"
        for directory in self._snapshot_candidates():
            try:
                loaded = self._read_snapshot(directory, max_row, deletions)
            except (OSError, ValueError, KeyError, IndexMismatchError) as reason:
                logger.info("index snapshot %s not used (%s)", directory, reason)
                continue
            self._lsh, self._frequencies, self._vectors, after_row, replayed = loaded
            how = f"snapshot {directory.name}"
            if after_row == max_row and not replayed and directory != self._snapshot_dir:
                # Current to the record as it is (and not of the old flat layout, which
                # the next snapshot replaces).
                self._version_on_disk = self._indexes_version()
            if replayed:
                logger.info(
                    "%d deletions since snapshot %s replayed from the record",
                    replayed,
                    directory.name,
                )
            break
        else:
            logger.info("rebuilding indexes from the record (no usable snapshot)")
            self._lsh = LSHIndex(threshold=self.params.lsh_threshold, num_perm=self.params.num_perm)
            self._frequencies = DocumentFrequencies()
            self._vectors = self._new_vectors()
        caught_up = self._index_rows(after_row)
        logger.info(
            "indexes loaded from %s (+%d rows from the record) in %.2f s: %d articles",
            how,
            caught_up,
            time.perf_counter() - started,
            len(self._lsh),
        )

    def _snapshot_candidates(self) -> list[Path]:
        """Snapshot directories holding a state, newest first (a flat one of an older
        version last)."""
        root = self._snapshot_dir
        candidates = [
            directory
            for _number, directory in sorted(_generations(root), reverse=True)
            if (directory / _STATE_FILE).is_file()
        ]
        if (root / _STATE_FILE).is_file():
            candidates.append(root)
        return candidates

    def _read_snapshot(
        self, directory: Path, max_row: int, deletions: int
    ) -> tuple[LSHIndex, DocumentFrequencies, VectorIndex | None, int, int]:
        """The indexes a snapshot directory holds, brought up to the store's deletions; the
        last row they include and how many deletions were replayed."""
        state = json.loads((directory / _STATE_FILE).read_text())
        if state.get("fingerprint") != self._fingerprint:
            raise IndexMismatchError("snapshot built with other parameters")
        taken_max_row, taken_deletions = int(state["max_row"]), int(state["deletions"])
        if taken_deletions > deletions or taken_max_row > max_row:
            raise IndexMismatchError("snapshot is newer than the record")
        replay = self._store.deletions_after(taken_deletions)
        if len(replay) != deletions - taken_deletions:
            raise IndexMismatchError(
                "snapshot is stale: articles were deleted since, and the record's deletion "
                "log does not reach back to it"
            )
        lsh = LSHIndex.load(
            directory / "lsh.bin",
            fingerprint=self._fingerprint,
            threshold=self.params.lsh_threshold,
        )
        frequencies = DocumentFrequencies.load(
            directory / "frequencies.npz", fingerprint=self._fingerprint
        )
        vectors = None
        if self._embedder is not None:
            from index.vectors import VectorIndex

            vectors = VectorIndex.load(
                directory / "vectors.faiss",
                fingerprint=self._fingerprint,
                dimension=self._embedder.dimension,
                exact_limit=self.params.exact_search_limit,
            )
        self._replay_deletions(replay, taken_max_row, lsh, frequencies, vectors)
        self._deletions_written = taken_deletions
        return lsh, frequencies, vectors, taken_max_row, len(replay)

    def _replay_deletions(
        self,
        replay: Sequence[DeletionRow],
        max_row: int,
        lsh: LSHIndex,
        frequencies: DocumentFrequencies,
        vectors: VectorIndex | None,
    ) -> None:
        """Do to a snapshot's indexes what :meth:`delete` did to the live ones since it was
        taken. Rows after ``max_row`` are not in the snapshot: the record adds them later as
        they are now."""
        removed: set[int] = set()
        promoted: list[int] = []
        for deletion in replay:
            if deletion.row <= max_row:
                lsh.remove(deletion.row)
                if deletion.original:
                    frequencies.remove(deletion.terms)
                    removed.add(deletion.row)
            if deletion.promoted_row is not None and deletion.promoted_row <= max_row:
                assert deletion.promoted_terms is not None
                frequencies.add(deletion.promoted_terms)
                promoted.append(deletion.promoted_row)
        if vectors is None:
            return
        # A row is deleted once and promoted at most once, before that: it ends up indexed
        # if it was promoted and not deleted since.
        if removed:
            vectors.remove(np.array(sorted(removed), dtype=np.int64))
        stored = self._store.articles(row for row in promoted if row not in removed)
        embedded = [
            (row, article.embedding)
            for row, article in sorted(stored.items())
            if article.embedding is not None
        ]
        if embedded:
            vectors.add(
                np.array([row for row, _embedding in embedded], dtype=np.int64),
                np.stack([embedding for _row, embedding in embedded]),
                bulk=True,
            )

    def _index_rows(self, after_row: int) -> int:
        rows: list[int] = []
        signatures: list[npt.NDArray[np.uint64]] = []
        vector_rows: list[int] = []
        vectors: list[Vector] = []
        count = 0
        for row, signature, terms, embedding, is_original in self._store.iter_index_rows(
            after_row=after_row
        ):
            rows.append(row)
            signatures.append(signature)
            if is_original:
                self._frequencies.add(terms)
                if embedding is not None and self._vectors is not None:
                    vector_rows.append(row)
                    vectors.append(embedding)
            if len(rows) >= 5000:
                count += self._flush_index(rows, signatures, vector_rows, vectors)
        count += self._flush_index(rows, signatures, vector_rows, vectors)
        return count

    def _flush_index(
        self,
        rows: list[int],
        signatures: list[npt.NDArray[np.uint64]],
        vector_rows: list[int],
        vectors: list[Vector],
    ) -> int:
        count = len(rows)
        if rows:
            self._lsh.insert_many(np.array(rows, dtype=np.int64), np.stack(signatures))
        if vector_rows and self._vectors is not None:
            self._vectors.add(np.array(vector_rows, dtype=np.int64), np.stack(vectors), bulk=True)
        rows.clear()
        signatures.clear()
        vector_rows.clear()
        vectors.clear()
        return count

    def snapshot(self) -> SnapshotTimes:
        """Write the derived indexes to disk so the next open skips the rebuild.

        Returns once the snapshot is durable. The engine lock is held only while the
        indexes are copied in memory; ingests and reads go on while the files are written.

        Returns:
            How long the engine lock was held and how long the writing took.
        """
        # Always the engine lock first, then the writing lock (the snapshot thread takes
        # only the second): no order of calls can deadlock.
        started = time.perf_counter()
        with self._lock:
            self._snapshot_writing.acquire()  # waits for a periodic snapshot being written
            try:
                image = self._take_snapshot()
            except BaseException:
                self._snapshot_writing.release()
                raise
        unlocked = time.perf_counter()
        try:
            self._write_snapshot(image)
        finally:
            self._snapshot_writing.release()
        return SnapshotTimes(unlocked - started, time.perf_counter() - unlocked)

    def _take_snapshot(self) -> _SnapshotImage:
        """An in-memory image of the indexes as they are now (hold the engine lock)."""
        started = time.perf_counter()
        # Read before the indexes are copied: a rebuild of the vectors finishing meanwhile
        # makes the version older than the image, never newer.
        version = self._indexes_version()
        max_row, deletions = version[:2]
        writers = [
            ("lsh.bin", self._lsh.saver(self._fingerprint)),
            ("frequencies.npz", self._frequencies.saver(self._fingerprint)),
        ]
        if self._vectors is not None:
            writers.append(("vectors.faiss", self._vectors.saver(self._fingerprint)))
        self._snapshots_taken += 1
        self._since_snapshot = 0
        state = {"fingerprint": self._fingerprint, "max_row": max_row, "deletions": deletions}
        return _SnapshotImage(
            self._snapshots_taken,
            state,
            version,
            writers,
            time.perf_counter() - started,
        )

    def _indexes_version(self) -> tuple[int, int, int]:
        """What the indexes in memory are current to: the highest row ever assigned and
        the deletions (:meth:`Store.generation`, the record's side), and how many times the
        vector index was rebuilt or converted (the same vectors, held otherwise). Equal
        versions mean equal snapshots."""
        max_row, deletions = self._store.generation()
        replacements = 0 if self._vectors is None else self._vectors.replacements
        return max_row, deletions, replacements

    def _write_snapshot(self, image: _SnapshotImage) -> None:
        """Write ``image`` as a new generation and remove the older ones (hold
        ``_snapshot_writing``). An image older than one already written is dropped."""
        if image.number <= self._snapshot_written:
            return
        root = self._snapshot_dir
        root.mkdir(parents=True, exist_ok=True)
        number = 1 + max((number for number, _path in _generations(root)), default=0)
        target = root / f"{_GENERATION_PREFIX}{number:08d}"
        target.mkdir()
        try:
            for name, write in image.writers:
                write(target / name)
            # state.json last: until it is durable the generation does not count.
            with replacing(target / _STATE_FILE) as handle:
                handle.write(json.dumps(image.state).encode())
            fsync_directory(target)
            fsync_directory(root)
        except BaseException:
            # A full disk must not fill up further with every try.
            shutil.rmtree(target, ignore_errors=True)
            raise
        self._snapshot_written = image.number
        self._deletions_written = int(image.state["deletions"])
        self._version_on_disk = image.version
        for older, path in _generations(root):
            if older < number:
                shutil.rmtree(path, ignore_errors=True)
        for name in _FLAT_FILES:
            (root / name).unlink(missing_ok=True)

    def _snapshot_due(self) -> bool:
        if self._snapshot_every is None:
            return False
        due = max(self._snapshot_every, int(SNAPSHOT_GROWTH * len(self._lsh)))
        return self._since_snapshot >= due

    def _snapshot_or_warn(self) -> None:
        """:meth:`snapshot`, where a failure to write it must not undo what is committed.

        The record is the truth and the snapshot only saves the next start a rebuild, so a
        full or failing disk is logged and the snapshot tried again after as many ingests
        as a periodic one waits for (the previous snapshot stays, and the next open adds
        what it lacks from the record).
        """
        try:
            self.snapshot()
        except OSError as failure:
            logger.warning("index snapshot not written (%s); next try after more writes", failure)

    def _snapshot_in_background(self) -> None:
        """Take a periodic snapshot now and write it on the snapshot thread (hold the
        engine lock). While an earlier one is still being written, the next commit
        tries again."""
        if self._snapshot_pending is not None and not self._snapshot_pending.done():
            return
        image = self._take_snapshot()
        if self._snapshot_thread is None:
            self._snapshot_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="samestory-snapshot"
            )
        self._snapshot_pending = self._snapshot_thread.submit(self._write_in_background, image)

    def _write_in_background(self, image: _SnapshotImage) -> None:
        started = time.perf_counter()
        try:
            with self._snapshot_writing:
                self._write_snapshot(image)
        except Exception as failure:  # a thread's error would go unseen otherwise
            # A disk's failure is expected now and then; anything else is a fault to trace.
            logger.warning(
                "index snapshot not written (%s); next try after more writes",
                failure,
                exc_info=not isinstance(failure, OSError),
            )
        else:
            logger.info(
                "index snapshot of rows up to %d: %.3f s holding the engine lock, "
                "then written in %.2f s",
                image.state["max_row"],
                image.seconds,
                time.perf_counter() - started,
            )

    # -- preparing --------------------------------------------------------------------------

    def _prepare_many(
        self, articles: Sequence[Article], now: float, *, terms: bool | None = None
    ) -> list[_Prepared]:
        """``terms``: compute them; by default where the engine keeps them."""
        return _prepare_articles(
            articles,
            self.params,
            self._hasher,
            now,
            self._learned_lines,
            terms=self.keeps_terms if terms is None else terms,
        )

    def set_page_cache(self, mib: int) -> None:
        """Let the record keep up to ``mib`` MiB of its pages in memory.

        For batch work: inserting articles updates indexes on their ids and content
        hashes at random places, which SQLite's default 2 MiB cache rereads.
        """
        with self._lock:
            self._store.set_page_cache(mib)

    def make_store_scratch(self) -> bool:
        """Write the record for speed, not for surviving a crash or being opened again: for
        a store deleted after use, as ``samestory dedup`` makes without ``--store``.

        From now on the rollback journal is kept in memory
        (:meth:`index.store.Store.make_scratch`; returns whether SQLite agreed), and what
        only a later reader of the record would read is not written: the MinHash
        signatures (read to rebuild the indexes when a store is opened) and, in ``dedup``
        mode, the terms (read by nothing but :meth:`similarity`'s IDF weights, which then
        count no ingested article; see :attr:`keeps_terms`). Verdicts are the same.
        """
        with self._lock:
            self._scratch = True
            return self._store.make_scratch()

    def _signature_blob(self, prepared: _Prepared) -> bytes:
        """What the record stores of an article's MinHash signature: nothing on a scratch
        record, which is never opened again to rebuild the indexes from it."""
        return b"" if self._scratch else encode_signature(prepared.signature)

    def _count_terms(self, documents: list[npt.NDArray[np.uint32]]) -> None:
        """Count new originals' terms in the document frequencies, where they are kept."""
        if self.keeps_terms:
            self._frequencies.add_many(documents)

    def _forget_terms(self, terms: npt.NDArray[np.uint32]) -> None:
        """:meth:`_count_terms` undone for one article."""
        if self.keeps_terms:
            self._frequencies.remove(terms)

    @property
    def keeps_terms(self) -> bool:
        """Whether ingesting computes, stores and counts each article's terms (what story
        similarity and the IDF weights read): always but in ``dedup`` mode on a scratch
        record (:meth:`make_store_scratch`). :func:`prepare` may leave them out where not."""
        return self._embedder is not None or not self._scratch

    @property
    def store_file(self) -> Path:
        """The SQLite file of the engine's record (what :func:`prepare` may read)."""
        return self._store.path

    def _learned_lines(self, wanted: Sequence[tuple[str, list[str]]]) -> set[tuple[str, str]]:
        return self._store.frequent_lines_many(wanted, self.params.learn_boilerplate_min_articles)

    def _prepare_fresh(
        self,
        articles: Sequence[Article],
        digests: dict[str, str],
        now: float,
        preparation: Preparation | None,
    ) -> list[_Prepared]:
        """:meth:`_prepare_many`, taking what ``preparation`` holds where it cannot differ."""
        if (
            preparation is None
            or not preparation.ids
            or preparation.params != self.params
            or (not preparation.with_bodies and self.mode != "dedup")
            or (not preparation.with_terms and self.keeps_terms)
        ):
            return self._prepare_many(articles, now)
        items = [preparation.item(article, digests[article.id], now) for article in articles]
        frequent = self._store.frequent_lines_many(
            [
                (item.article.source, item.line_keys)
                for item in items
                if item is not None and item.article.source and item.line_keys
            ],
            self.params.learn_boilerplate_min_articles,
        )
        supplied: list[_Prepared | None] = []
        missing: list[Article] = []
        for article, item in zip(articles, items, strict=True):
            # A worker's item holds for the lines it found learned; redo where more are now.
            if item is not None and article.source and item.line_keys:
                learned = {key for key in item.line_keys if (article.source, key) in frequent}
                if learned != set(item.learned):
                    item = None
            if item is None:
                missing.append(article)
            supplied.append(item)
        done = iter(self._prepare_many(missing, now) if missing else ())
        return [item if item is not None else next(done) for item in supplied]

    # -- deciding ---------------------------------------------------------------------------

    def _is_copy(
        self, a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]
    ) -> tuple[bool, float, float]:
        params = self.params
        if min(a.size, b.size) < params.min_shingles:
            return False, 0.0, 0.0
        similarity = jaccard(a, b)
        contained = containment(a, b)
        ratio = min(a.size, b.size) / max(a.size, b.size)
        copy = similarity >= params.near_duplicate_threshold or (
            contained >= params.containment_threshold and ratio >= params.min_length_ratio
        )
        return copy, similarity, contained

    def _best_group(
        self,
        prepared: _Prepared,
        candidate_rows: Mapping[int, tuple[int | None, npt.NDArray[np.uint32]]],
    ) -> tuple[int | None, tuple[_Copy, ...]]:
        """The group (its original's row) of the best verified copy among the candidates
        (highest Jaccard, then containment, then the earliest group), and every verified
        copy, best first (at most ``MAX_LISTED_COPIES``)."""
        best: tuple[float, float, int] | None = None
        verified: list[_Copy] = []
        for row, (original, shingles) in candidate_rows.items():
            copy, similarity, contained = self._is_copy(prepared.shingles, shingles)
            if copy:
                verified.append((row, round(similarity, 6), round(contained, 6)))
                group = original if original is not None else row
                key = (similarity, contained, -group)
                if best is None or key > best:
                    best = key
        if best is None:
            return None, ()
        verified.sort(key=lambda item: (-item[1], -item[2], item[0]))
        return -best[2], tuple(verified[:MAX_LISTED_COPIES])

    def _verified_copies(self, prepared: _Prepared) -> tuple[int | None, tuple[_Copy, ...]]:
        """:meth:`_best_group` over the stored articles the LSH index names."""
        if prepared.shingles.size < self.params.min_shingles:
            return None, ()
        candidates = self._lsh.query(prepared.signature)
        if candidates.size == 0:
            return None, ()
        candidate_rows = self._store.copy_candidates(int(row) for row in candidates)
        return self._best_group(prepared, candidate_rows)

    def _find_copy(self, prepared: _Prepared) -> tuple[ArticleRow, float, tuple[_Copy, ...]] | None:
        """The original of the near-duplicate group this text verifies against, if any,
        its Jaccard similarity to it, and the verified copies."""
        group, copies = self._verified_copies(prepared)
        if group is None:
            return None
        found = self._store.article(group)
        if found is None:
            return None
        return found, jaccard(prepared.shingles, found.shingles), copies

    def _embed(self, texts: Sequence[str]) -> Vector:
        assert self._embedder is not None
        return self._embedder.embed(list(texts)).astype(np.float32)

    def _copy_status(
        self, prepared: _Prepared, pending: Sequence[str] = (), *, stored: bool = True
    ) -> Status:
        """The status of an article whose cleaned body an earlier one has: exact if its text
        is one of theirs (:func:`_same_text`), near otherwise. ``pending``: the texts of
        that body in the batch not yet written; ``stored``: whether the store holds the
        body (else it is not asked)."""
        texts = (
            self._store.texts_by_content_hash(prepared.content_hash, _SAME_BODY_COMPARED)
            if stored
            else []
        )
        same = _same_text(prepared.article.text, [*texts, *pending])
        return "exact_duplicate" if same else "near_duplicate"

    def _decide(self, prepared: _Prepared, embedding: Vector | None) -> _Decision:
        exact = self._store.first_by_content_hash(prepared.content_hash)
        if exact is not None:
            original_row = exact.original_row if exact.original_row is not None else exact.row
            original = exact if original_row == exact.row else self._store.article(original_row)
            assert original is not None
            _group, copies = self._verified_copies(prepared)
            return _Decision(
                self._copy_status(prepared),
                original.story_row,
                original.row,
                1.0,
                None,
                original.embedding,
                _with_identical(copies, exact.row),
            )
        copy = self._find_copy(prepared)
        if copy is not None:
            original, similarity, copies = copy
            return _Decision(
                "near_duplicate",
                original.story_row,
                original.row,
                round(similarity, 6),
                None,
                original.embedding,
                copies,
            )
        if self._embedder is None:
            return _Decision("new_story", None, None, None, None, None)
        if embedding is None:
            embedding = self._embed([prepared.embed_text])[0]
        story_row, probability = self._best_story(prepared, embedding)
        if story_row is None:
            return _Decision("new_story", None, None, None, probability, embedding)
        return _Decision("same_story", story_row, None, None, probability, embedding)

    def _best_story(
        self, prepared: _Prepared, embedding: Vector
    ) -> tuple[int | None, float | None]:
        if self._vectors is None or len(self._vectors) == 0:
            return None, None
        params = self.params
        scores, ids = self._vectors.search(embedding[None, :], params.story_neighbours)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not found:
            return None, None
        rows = self._store.articles(row for row, _score in found)
        neighbours = [
            Neighbour(
                story_row=rows[row].story_row,
                dense=score,
                published_at=rows[row].published_at,
                terms=rows[row].terms,
                language=rows[row].language,
                evidence=dates.from_bytes(rows[row].evidence),
            )
            for row, score in found
            if row in rows
        ]
        query = self._story_query(prepared, embedding)
        candidates = candidate_stories(query, neighbours, params)
        if not candidates:
            return None, None
        stored = self._store.stories(row for row, _members in candidates)
        stories = {
            row: CandidateStory(story.centroid, story.first_published_at, story.last_published_at)
            for row, story in stored.items()
        }
        return choose_story(query, candidates, stories, params, self._frequencies)

    def _story_query(self, prepared: _Prepared, embedding: Vector) -> StoryQuery:
        # Language is otherwise detected only on commit; scoring needs it to know when
        # missing term overlap is expected (a story reported in another language).
        language = prepared.language or detect_language(prepared.body)
        return StoryQuery(
            embedding, prepared.terms, language, prepared.published_at, self._evidence(prepared)
        )

    @staticmethod
    def _evidence(prepared: _Prepared) -> int:
        """The years and weekdays the article names (:mod:`index.dates`), read once."""
        if prepared.evidence is None:
            raw = prepared.article.text
            if textlib.looks_like_html(raw):
                raw = prepared.body  # the extracted text is not kept; the body has the lead
            prepared.evidence = dates.read_evidence(
                dates.evidence_text(raw, prepared.body, prepared.article.title)
            )
        return prepared.evidence

    # -- committing -------------------------------------------------------------------------

    def _commit(self, prepared: _Prepared, decision: _Decision) -> int:
        article = prepared.article
        store = self._store
        language = prepared.language
        if language is None and self.mode == "stories":
            # Detected only for what is stored: a match never needs it (~1 ms an article).
            language = detect_language(prepared.body)
        row = store.insert_article(
            {
                "id": article.id,
                "text": article.text,
                "title": article.title,
                "url": article.url,
                "source": article.source,
                "language": language,
                "published_at": prepared.published_at,
                "received_at": prepared.received_at,
                "text_hash": prepared.text_hash,
                "content_hash": prepared.content_hash,
                "shingles": prepared.shingles.astype("<u4").tobytes(),
                "signature": self._signature_blob(prepared),
                "terms": prepared.terms.astype("<u4").tobytes(),
                "embedding": encode_embedding(decision.embedding),
                "story_row": decision.story_row if decision.story_row is not None else 0,
                "original_row": decision.original_row,
                "status": decision.status,
                "duplicate_similarity": decision.duplicate_similarity,
                "story_similarity": decision.story_similarity,
                # Read for what can be a story neighbour: articles with their own vector.
                "evidence": dates.to_bytes(self._evidence(prepared))
                if decision.embedding is not None and decision.original_row is None
                else None,
            },
            own_story=decision.story_row is None,
        )
        if decision.copies:
            store.insert_copies((row, *copy) for copy in decision.copies)
        adds_vector = decision.original_row is None and decision.embedding is not None
        if decision.story_row is None:
            store.save_story(
                StoryRow(
                    row=row,
                    canonical_row=row,
                    canonical_score=1.0,
                    size=1,
                    vectors=1 if adds_vector else 0,
                    centroid=decision.embedding.copy()
                    if adds_vector and decision.embedding is not None
                    else None,
                    first_published_at=prepared.published_at,
                    last_published_at=prepared.published_at,
                    updated_at=prepared.received_at,
                )
            )
        else:
            story = store.story(decision.story_row)
            assert story is not None, "a decision named a story that is not stored"
            story.size += 1
            story.first_published_at = min(story.first_published_at, prepared.published_at)
            story.last_published_at = max(story.last_published_at, prepared.published_at)
            story.updated_at = prepared.received_at
            if adds_vector and decision.embedding is not None:
                story.vectors += 1
                story.centroid = (
                    decision.embedding.copy()
                    if story.centroid is None
                    else story.centroid + decision.embedding
                )
                self._update_canonical(story, row, decision.embedding, prepared.published_at)
            elif self.params.canonical_policy == "earliest" and decision.original_row is None:
                self._update_canonical(story, row, None, prepared.published_at)
            store.save_story(story)
        if article.source and prepared.line_keys:
            store.count_lines(article.source, prepared.line_keys)
        return row

    def _decide_and_commit_chunk(
        self, prepared: Sequence[_Prepared], applied: list[tuple[int, _Prepared, _Decision]]
    ) -> None:
        """:meth:`_decide`, :meth:`_commit` and :meth:`_apply_to_indexes` of each article of a
        ``dedup`` mode batch, its writes held in memory and made at the end (one statement
        per table instead of several per article); the rows, stories and line counts stored
        are those the article-by-article path stores."""
        assert self._embedder is None
        if not prepared:
            return
        store = self._store
        writes = _ChunkWrites(store, prepared)
        rows = np.arange(writes.first_row, writes.first_row + len(prepared), dtype=np.int64)
        # Each article's LSH candidates as the index would give them had the batch's
        # earlier articles been inserted one at a time (they are all inserted now).
        candidates = self._lsh.query_then_insert_many(
            rows, np.stack([item.signature for item in prepared])
        )
        checked = self.params.min_shingles
        done = 0
        try:
            writes.read_candidates(
                store,
                (
                    row
                    for item, found in zip(prepared, candidates, strict=True)
                    if item.shingles.size >= checked
                    for row in found.tolist()
                ),
            )
            decided: list[tuple[int, _Prepared, _Decision]] = []
            for row, item, found in zip(rows.tolist(), prepared, candidates, strict=True):
                decision = self._decide_in_chunk(item, writes, found)
                committed = self._commit_in_chunk(item, decision, writes)
                assert committed == row, "rows are assigned in order"
                decided.append((row, item, decision))
            writes.flush(store)
            self._count_terms(
                [item.terms for _row, item, decision in decided if decision.original_row is None]
            )
            applied.extend(decided)
            done = len(decided)
        except BaseException:
            # The applied ones are taken out of the indexes by the caller.
            for row in rows[done:].tolist():
                self._lsh.remove(row)
            raise

    def _decide_in_chunk(
        self, prepared: _Prepared, writes: _ChunkWrites, candidates: npt.NDArray[np.int64]
    ) -> _Decision:
        """:meth:`_decide` without an embedder, reading the batch's writes too;
        ``candidates``: what the LSH index answers for the article."""
        exact = writes.stored_hashes.get(prepared.content_hash)
        if exact is None:
            row = writes.hashes.get(prepared.content_hash)
            if row is not None:
                exact = (row, *writes.rows[row][:2])
        if exact is not None:
            row, original_row, story_row = exact
            if original_row is not None and original_row != row:
                story_row = self._story_row_in_chunk(original_row, writes)
            else:
                original_row = row
            _group, copies = self._best_group_in_chunk(prepared, writes, candidates)
            return _Decision(
                self._copy_status(
                    prepared,
                    writes.texts.get(prepared.content_hash, ()),
                    stored=prepared.content_hash in writes.stored_hashes,
                ),
                story_row,
                original_row,
                1.0,
                None,
                None,
                _with_identical(copies, row),
            )
        copy = self._find_copy_in_chunk(prepared, writes, candidates)
        if copy is not None:
            original_row, story_row, similarity, copies = copy
            return _Decision(
                "near_duplicate", story_row, original_row, round(similarity, 6), None, None, copies
            )
        return _Decision("new_story", None, None, None, None, None)

    def _story_row_in_chunk(self, row: int, writes: _ChunkWrites) -> int:
        pending = writes.rows.get(row)
        if pending is not None:
            return pending[1]
        found = self._store.copy_original(row)
        assert found is not None, "a copy's original is not stored"
        return found[0]

    def _best_group_in_chunk(
        self, prepared: _Prepared, writes: _ChunkWrites, candidates: npt.NDArray[np.int64]
    ) -> tuple[int | None, tuple[_Copy, ...]]:
        """:meth:`_best_group` over the LSH ``candidates``, stored or in the batch."""
        if prepared.shingles.size < self.params.min_shingles or candidates.size == 0:
            return None, ()
        first_row = writes.first_row
        found_rows = candidates.tolist()
        read = writes.stored_candidates
        candidate_rows = {row: read[row] for row in found_rows if row < first_row and row in read}
        for row in found_rows:
            if row >= first_row:
                original_row, _story_row, shingles = writes.rows[row]
                candidate_rows[row] = (original_row, shingles)
        return self._best_group(prepared, candidate_rows)

    def _find_copy_in_chunk(
        self, prepared: _Prepared, writes: _ChunkWrites, candidates: npt.NDArray[np.int64]
    ) -> tuple[int, int, float, tuple[_Copy, ...]] | None:
        """:meth:`_find_copy` reading the batch's writes too, given the LSH ``candidates``:
        (original row, its story row, Jaccard similarity to it, the verified copies)."""
        group, copies = self._best_group_in_chunk(prepared, writes, candidates)
        if group is None:
            return None
        pending = writes.rows.get(group)
        if pending is not None:
            story_row, shingles = pending[1], pending[2]
        else:
            found = self._store.copy_original(group)
            if found is None:
                return None
            story_row, shingles = found
        return group, story_row, jaccard(prepared.shingles, shingles), copies

    def _commit_in_chunk(
        self, prepared: _Prepared, decision: _Decision, writes: _ChunkWrites
    ) -> int:
        """:meth:`_commit` without an embedder, into the batch's writes; returns the row."""
        article = prepared.article
        row = writes.next_row
        writes.next_row += 1
        story_row = decision.story_row if decision.story_row is not None else row
        writes.articles.append(
            (
                row,
                article.id,
                article.text,
                article.title,
                article.url,
                article.source,
                prepared.language,
                prepared.published_at,
                prepared.received_at,
                prepared.text_hash,
                prepared.content_hash,
                _u4_bytes(prepared.shingles),
                self._signature_blob(prepared),
                _u4_bytes(prepared.terms),
                None,  # embedding
                story_row,
                decision.original_row,
                decision.status,
                decision.duplicate_similarity,
                decision.story_similarity,
                None,  # evidence: read only for articles with a vector
            )
        )
        writes.rows[row] = (decision.original_row, story_row, prepared.shingles)
        writes.copies.extend((row, *copy) for copy in decision.copies)
        if prepared.content_hash not in writes.stored_hashes:
            writes.hashes.setdefault(prepared.content_hash, row)
        writes.texts.setdefault(prepared.content_hash, []).append(article.text)
        if decision.story_row is None:
            writes.stories[row] = StoryRow(
                row=row,
                canonical_row=row,
                canonical_score=1.0,
                size=1,
                vectors=0,
                centroid=None,
                first_published_at=prepared.published_at,
                last_published_at=prepared.published_at,
                updated_at=prepared.received_at,
            )
        else:
            # Without an embedder only copies join a story, and a copy never moves the
            # canonical (see _commit).
            assert decision.original_row is not None, "a new article joined a story"
            story = writes.stories.get(story_row)
            if story is None:
                story = self._store.story(story_row)
                assert story is not None, "a decision named a story that is not stored"
                writes.stories[story_row] = story
            story.size += 1
            story.first_published_at = min(story.first_published_at, prepared.published_at)
            story.last_published_at = max(story.last_published_at, prepared.published_at)
            story.updated_at = prepared.received_at
        if article.source and prepared.line_keys:
            lines = writes.lines
            for key in set(prepared.line_keys):
                lines[article.source, key] = lines.get((article.source, key), 0) + 1
        return row

    def _update_canonical(
        self, story: StoryRow, row: int, embedding: Vector | None, published_at: float
    ) -> None:
        current = self._store.article(story.canonical_row)
        if self.params.canonical_policy == "earliest":
            if current is None or published_at < current.published_at:
                story.canonical_row, story.canonical_score = row, 1.0
            return
        if embedding is None or story.centroid is None:
            return
        center = unit(story.centroid)
        challenger = float(np.dot(embedding, center))
        incumbent = (
            float(np.dot(current.embedding, center))
            if current is not None and current.embedding is not None
            else -1.0
        )
        story.canonical_score = incumbent
        if challenger > incumbent + self.params.canonical_hysteresis:
            story.canonical_row, story.canonical_score = row, challenger

    def _apply_to_indexes(self, row: int, prepared: _Prepared, decision: _Decision) -> None:
        self._lsh.insert(row, prepared.signature)
        if decision.original_row is None:
            self._count_terms([prepared.terms])
            if decision.embedding is not None and self._vectors is not None:
                self._vectors.add(np.array([row], dtype=np.int64), decision.embedding[None, :])

    def _unapply_from_indexes(self, row: int, prepared: _Prepared, decision: _Decision) -> None:
        self._lsh.remove(row)
        if decision.original_row is None:
            self._forget_terms(prepared.terms)
            if self._vectors is not None:
                self._vectors.remove(np.array([row], dtype=np.int64))

    # -- verdicts ---------------------------------------------------------------------------

    def _cluster(self, story_row: int) -> Cluster:
        story = self._store.story(story_row)
        if story is None:
            raise StoryNotFoundError(story_id(story_row))
        canonical = self._store.article(story.canonical_row)
        assert canonical is not None, "a story's canonical is not stored"
        return self._cluster_of(story, canonical)

    @classmethod
    def _cluster_of(cls, story: StoryRow, canonical: ArticleRow | CanonicalRow) -> Cluster:
        return Cluster(
            id=story_id(story.row),
            size=story.size,
            canonical=cls._canonical(canonical),
            first_published_at=_timestamp(story.first_published_at),
            last_published_at=_timestamp(story.last_published_at),
        )

    @staticmethod
    def _canonical(row: ArticleRow | CanonicalRow) -> Canonical:
        return Canonical(
            id=row.id,
            title=row.title,
            url=row.url,
            source=row.source,
            published_at=_timestamp(row.published_at),
        )

    def _verdict(self, row: ArticleRow) -> Verdict:
        return self._verdicts([row])[0]

    def _verdicts(self, rows: Sequence[ArticleRow | VerdictRow]) -> list[Verdict]:
        """:meth:`_verdict` of many rows, with a few queries instead of a few per row."""
        store = self._store
        copies = store.copies_of(row.row for row in rows if row.original_row is not None)
        originals = store.article_ids(
            [row.original_row for row in rows if row.original_row is not None]
            + [copy[0] for listed in copies.values() for copy in listed]
        )
        stories = store.stories(row.story_row for row in rows)
        canonicals = store.canonical_rows(story.canonical_row for story in stories.values())
        verdicts: list[Verdict] = []
        for row in rows:
            story = stories.get(row.story_row)
            if story is None:
                raise StoryNotFoundError(story_id(row.story_row))
            verdicts.append(
                Verdict(
                    id=row.id,
                    status=row.status,  # type: ignore[arg-type]
                    duplicate_of=None
                    if row.original_row is None
                    else originals.get(row.original_row),
                    duplicate_similarity=row.duplicate_similarity,
                    story_similarity=row.story_similarity,
                    cluster=self._cluster_of(story, canonicals[story.canonical_row]),
                    stored=True,
                    copies=_listed(copies.get(row.row, ()), originals),
                )
            )
        return verdicts

    def _existing(self, article: Article) -> ArticleRow | None:
        row = self._store.article_by_id(article.id)
        if row is not None and row.text_hash != article.text_hash:
            raise ConflictError(article.id)
        return row

    # -- public API -------------------------------------------------------------------------

    def ingest(self, article: Article) -> Verdict:
        """Store one article and return its verdict.

        Idempotent on ``article.id``: the same article again returns the stored verdict.

        Raises:
            ConflictError: the id is stored with a different text.
            BoilerplateOnlyError: nothing but boilerplate is left after cleaning.
            InvalidArticleError: another field is invalid.
        """
        return self.ingest_many([article])[0]

    def ingest_many_brief(
        self, articles: Sequence[Article], *, preparation: Preparation | None = None
    ) -> list[BriefVerdict]:
        """:meth:`ingest_many`, returning only what a batch file records of each verdict.

        The same ingest; the verdicts are read with two queries and no objects beyond one
        tuple each (batch output reads ids, not the cluster's times and canonical).
        """
        return self._ingest_many(articles, preparation, self._brief_verdicts)

    def _brief_verdicts(self, rows: Sequence[VerdictRow]) -> list[BriefVerdict]:
        canonicals = self._store.story_canonicals(row.story_row for row in rows)
        missing = next((row for row in rows if row.story_row not in canonicals), None)
        if missing is not None:
            raise StoryNotFoundError(story_id(missing.story_row))
        names = self._store.article_ids(
            [row.original_row for row in rows if row.original_row is not None]
            + list(canonicals.values())
        )
        return [
            BriefVerdict(
                row.id,
                row.status,
                None if row.original_row is None else names.get(row.original_row),
                story_id(row.story_row),
                names[canonicals[row.story_row]],
            )
            for row in rows
        ]

    def ingest_many(
        self, articles: Sequence[Article], *, preparation: Preparation | None = None
    ) -> list[Verdict]:
        """Store articles in order, in one transaction, and return their verdicts.

        Equivalent to calling :meth:`ingest` on each in turn, but the embeddings of all
        articles that are no copy are computed in one batched model call. If any article is
        invalid, nothing of the batch is stored and the error names the article.

        Args:
            articles: the articles, in order.
            preparation: what :func:`prepare` computed from (some of) these articles
                elsewhere; the verdicts are the same with or without it.
        """
        return self._ingest_many(articles, preparation, self._verdicts)

    def _ingest_many(
        self,
        articles: Sequence[Article],
        preparation: Preparation | None,
        verdicts_of: Callable[[Sequence[VerdictRow]], list[_V]],
    ) -> list[_V]:
        """:meth:`ingest_many`, its verdicts made from the stored rows by ``verdicts_of``."""
        if not articles:
            return []
        # The model runs without the lock, so matches, reads and similarity queries do not
        # wait for a batch's forward pass: the texts that need a vector are found under the
        # lock, embedded outside it, and the batch is then decided under the lock as if
        # nothing had been computed ahead (what changed meanwhile is seen; a vector is a
        # function of its text alone, so one computed ahead is the one it would compute).
        ahead = self._embed_ahead(articles, preparation) if self._embedder is not None else {}
        with self._lock:
            now = time.time()
            seen, fresh = self._fresh(articles)
            prepared = self._prepare_fresh(fresh, seen, now, preparation)
            embeddings = self._batch_embeddings(prepared, ahead)
            applied: list[tuple[int, _Prepared, _Decision]] = []
            try:
                with self._store.transaction():
                    if self._embedder is None:
                        # Dedup mode: the writes are held until the batch's end.
                        self._decide_and_commit_chunk(prepared, applied)
                    else:
                        for item in prepared:
                            decision = self._decide(item, embeddings.get(item.article.id))
                            row = self._commit(item, decision)
                            # Later articles of the batch must see this one (copies and
                            # stories inside one batch), so the indexes follow each article
                            # at once and are rolled back below if the transaction does
                            # not commit.
                            self._apply_to_indexes(row, item, decision)
                            applied.append((row, item, decision))
            except BaseException:
                for row, item, decision in reversed(applied):
                    self._unapply_from_indexes(row, item, decision)
                raise
            self._since_snapshot += len(applied)
            if self._snapshot_due():
                self._snapshot_in_background()
            # What was stored just now is known; only the articles stored before are read.
            rows = {
                item.article.id: VerdictRow(
                    row,
                    item.article.id,
                    decision.status,
                    row if decision.story_row is None else decision.story_row,
                    decision.original_row,
                    decision.duplicate_similarity,
                    decision.story_similarity,
                )
                for row, item, decision in applied
            }
            if len(rows) < len(seen):
                rows.update(
                    self._store.verdict_rows_by_id(
                        article_id for article_id in seen if article_id not in rows
                    )
                )
            return verdicts_of([rows[article.id] for article in articles])

    def _fresh(self, articles: Sequence[Article]) -> tuple[dict[str, str], list[Article]]:
        """Each id's text hash, and the articles not stored yet (first of repeated ids).

        Raises:
            ConflictError: an id is stored, or repeated in ``articles``, with another text.
        """
        stored_hashes = self._store.text_hashes(article.id for article in articles)
        seen: dict[str, str] = {}
        fresh: list[Article] = []
        for article in articles:
            digest = article.text_hash
            previous = seen.get(article.id)
            if previous is not None:
                if previous != digest:
                    raise ConflictError(article.id, in_batch=True)
                continue
            seen[article.id] = digest
            stored_hash = stored_hashes.get(article.id)
            if stored_hash is None:
                fresh.append(article)
            elif stored_hash != digest:
                raise ConflictError(article.id)
        return seen, fresh

    def _embed_ahead(
        self, articles: Sequence[Article], preparation: Preparation | None
    ) -> dict[str, Vector]:
        """Vectors, by embedded text, of the articles that need one as the store stands now.

        Found under the lock, computed outside it (see :meth:`ingest_many`).
        """
        with self._lock:
            seen, fresh = self._fresh(articles)
            prepared = self._prepare_fresh(fresh, seen, time.time(), preparation)
            texts = [item.embed_text for item in self._needing_vectors(prepared)]
        if not texts:
            return {}
        vectors = self._embed(texts)
        return {text: vectors[i] for i, text in enumerate(texts)}

    def _batch_embeddings(
        self, prepared: Sequence[_Prepared], ahead: dict[str, Vector] | None = None
    ) -> dict[str, Vector]:
        """Vectors of the articles that are no copy of a stored or earlier one, by id.

        Texts in ``ahead`` are taken from it; the others are embedded in one call.
        """
        ahead = ahead or {}
        result: dict[str, Vector] = {}
        missing: list[_Prepared] = []
        for item in self._needing_vectors(prepared):
            vector = ahead.get(item.embed_text)
            if vector is None:
                missing.append(item)
            else:
                result[item.article.id] = vector
        if missing:
            vectors = self._embed([item.embed_text for item in missing])
            result.update((item.article.id, vectors[i]) for i, item in enumerate(missing))
        return result

    def _needing_vectors(self, prepared: Sequence[_Prepared]) -> list[_Prepared]:
        """The articles of a batch that are no copy of a stored or earlier one."""
        if self._embedder is None or not prepared:
            return []
        local = LSHIndex(threshold=self.params.lsh_threshold, num_perm=self.params.num_perm)
        hashes: dict[str, int] = {}
        needed: list[_Prepared] = []
        for index, item in enumerate(prepared):
            if item.content_hash in hashes or self._store.first_by_content_hash(item.content_hash):
                continue
            hashes[item.content_hash] = index
            if self._find_copy(item) is not None:
                continue
            local_copy = any(
                self._is_copy(item.shingles, prepared[int(other)].shingles)[0]
                for other in local.query(item.signature)
            )
            local.insert(index, item.signature)
            if not local_copy:
                needed.append(item)
        return needed

    def match(self, article: Article) -> Verdict:
        """The verdict ``article`` would get, without storing anything (``stored=False``).

        For an id that is already stored with the same text, the stored verdict is returned
        (with ``stored=True``).
        """
        with self._lock:
            existing = self._existing(article)
            if existing is not None:
                return self._verdict(existing)
            prepared = self._prepare_many([article], time.time())[0]
            decision = self._decide(prepared, None)
            if decision.story_row is not None:
                cluster = self._cluster(decision.story_row)
                cluster = Cluster(
                    id=cluster.id,
                    size=cluster.size + 1,
                    canonical=cluster.canonical,
                    first_published_at=min(
                        cluster.first_published_at, _timestamp(prepared.published_at)
                    ),
                    last_published_at=max(
                        cluster.last_published_at, _timestamp(prepared.published_at)
                    ),
                )
            else:
                published = _timestamp(prepared.published_at)
                cluster = Cluster(
                    id="",
                    size=1,
                    canonical=Canonical(
                        id=article.id,
                        title=article.title,
                        url=article.url,
                        source=article.source,
                        published_at=published,
                    ),
                    first_published_at=published,
                    last_published_at=published,
                )
            names = self._store.article_ids(
                ([] if decision.original_row is None else [decision.original_row])
                + [copy[0] for copy in decision.copies]
            )
            return Verdict(
                id=article.id,
                status=decision.status,
                duplicate_of=None
                if decision.original_row is None
                else names.get(decision.original_row),
                duplicate_similarity=decision.duplicate_similarity,
                story_similarity=decision.story_similarity,
                cluster=cluster,
                stored=False,
                copies=_listed(decision.copies, names),
            )

    def similarity(self, a: Article, b: Article) -> Similarity:
        """How two articles compare, without storing either."""
        with self._lock:
            first, second = self._prepare_many([a, b], time.time(), terms=True)
            if first.content_hash == second.content_hash:
                copy, similarity, contained = True, 1.0, 1.0
            else:
                copy, similarity, contained = self._is_copy(first.shingles, second.shingles)
            story, clustered = (1.0, 1.0) if copy else self._pair_story_similarity(first, second)
            return Similarity(
                jaccard=round(similarity, 6),
                containment=round(contained, 6),
                story_similarity=round(story, 6),
                near_duplicate=copy,
                same_story=copy or clustered >= self.params.story_threshold,
            )

    def _pair_story_similarity(self, first: _Prepared, second: _Prepared) -> tuple[float, float]:
        """The pair score, and the score clustering would decide on (with conflicts)."""
        if self._embedder is None:
            overlap = weighted_overlap(first.terms, second.terms, self._frequencies)
            return overlap, overlap
        vectors = self._embed([first.embed_text, second.embed_text])
        a = self._story_query(first, vectors[0])
        b = self._story_query(second, vectors[1])
        features = pair_features(float(np.dot(vectors[0], vectors[1])), a, b, self._frequencies)
        return (
            story_probability(features, self.params),
            clustering_probability(features, pair_conflicts(a, b), self.params),
        )

    def get(self, article_id: str) -> StoredArticle:
        """The stored article and its current verdict.

        Raises:
            ArticleNotFoundError: no article has this id.
        """
        with self._lock:
            row = self._store.article_by_id(article_id)
            if row is None:
                raise ArticleNotFoundError(article_id)
            article = Article(
                id=row.id,
                text=row.text,
                title=row.title,
                url=row.url,
                source=row.source,
                language=row.language,
                published_at=_timestamp(row.published_at),
            )
            return StoredArticle(
                article=article, verdict=self._verdict(row), received_at=_timestamp(row.received_at)
            )

    def delete(self, article_id: str) -> None:
        """Remove an article from the record and the indexes.

        A near-duplicate group whose original it was elects its earliest remaining member;
        a story whose canonical it was elects another by the canonical policy; an emptied
        story is removed.

        Raises:
            ArticleNotFoundError: no article has this id.
        """
        with self._lock:
            store = self._store
            row = store.article_by_id(article_id)
            if row is None:
                raise ArticleNotFoundError(article_id)
            promoted: ArticleRow | None = None
            with store.transaction():
                if row.original_row is None:
                    members = store.group_members(row.row)
                    if members:
                        promoted = members[0]
                        store.update_article(promoted.row, original_row=None)
                        for member in members[1:]:
                            store.update_article(member.row, original_row=promoted.row)
                store.delete_article(row, promoted)
                # The log is needed only after the newest snapshot on disk.
                store.forget_deletions(self._deletions_written)
                self._shrink_story(row, promoted)
                if promoted is not None:
                    # The promoted copy is now an original: its verdict says so.
                    others = [
                        member
                        for member in store.story_members(promoted.story_row)
                        if member.original_row is None and member.row != promoted.row
                    ]
                    store.update_article(
                        promoted.row,
                        status="same_story" if others else "new_story",
                        duplicate_similarity=None,
                    )
                    # An original lists no copies (what it matched elsewhere goes too).
                    store.delete_copies(promoted.row)
            self._lsh.remove(row.row)
            if row.original_row is None:
                self._forget_terms(row.terms)
                if self._vectors is not None:
                    self._vectors.remove(np.array([row.row], dtype=np.int64))
            if promoted is not None:
                self._count_terms([promoted.terms])
                if self._vectors is not None and promoted.embedding is not None:
                    self._vectors.add(
                        np.array([promoted.row], dtype=np.int64), promoted.embedding[None, :]
                    )

    def _shrink_story(self, removed: ArticleRow, promoted: ArticleRow | None) -> None:
        store = self._store
        story = store.story(removed.story_row)
        if story is None:
            return
        story.size -= 1
        if story.size <= 0:
            store.delete_story(story.row)
            return
        if removed.original_row is None and removed.embedding is not None and promoted is None:
            story.vectors -= 1
            story.centroid = None if story.centroid is None else story.centroid - removed.embedding
            if story.vectors <= 0:
                story.centroid = None
        members = store.story_members(story.row)
        story.first_published_at = min(member.published_at for member in members)
        story.last_published_at = max(member.published_at for member in members)
        if story.canonical_row == removed.row:
            story.canonical_row, story.canonical_score = self._elect(story, members)
        store.save_story(story)

    def _elect(self, story: StoryRow, members: Sequence[ArticleRow]) -> tuple[int, float]:
        originals = [member for member in members if member.original_row is None] or list(members)
        if self.params.canonical_policy == "central" and story.centroid is not None:
            center = unit(story.centroid)
            scored = [
                (float(np.dot(member.embedding, center)), -member.row)
                for member in originals
                if member.embedding is not None
            ]
            if scored:
                score, negative_row = max(scored)
                return -negative_row, score
        earliest = min(originals, key=lambda member: (member.published_at, member.row))
        return earliest.row, 1.0

    def story(self, story_id_text: str, *, limit: int = 50, offset: int = 0) -> Story:
        """A story with a page of its members, newest first.

        Raises:
            StoryNotFoundError: no story has this id.
        """
        row = story_row_of(story_id_text)
        with self._lock:
            stored = self._store.story(row)
            if stored is None:
                raise StoryNotFoundError(story_id_text)
            members = self._store.story_members(row, limit=limit, offset=offset)
            return Story(
                cluster=self._cluster(row),
                members=[self._canonical(member) for member in members],
                total_members=stored.size,
                updated_at=_timestamp(stored.updated_at),
            )

    def stories(self, *, updated_since: datetime | None = None, limit: int = 50) -> list[Story]:
        """Recently updated stories, most recent first (members not listed)."""
        with self._lock:
            since = updated_since.timestamp() if updated_since else None
            return [
                Story(
                    cluster=self._cluster(story.row),
                    members=[],
                    total_members=story.size,
                    updated_at=_timestamp(story.updated_at),
                )
                for story in self._store.recent_stories(updated_since=since, limit=limit)
            ]

    def copy_pairs(self, page: int = 10_000) -> Iterator[tuple[str, str, float, float]]:
        """Every stored copy edge: ``(id, copy_of, jaccard, containment)``, by article
        row (arrival), each article's copies in row order. Read a page at a time, each page
        under the lock, so a long read does not hold up ingests."""
        after = (0, 0)
        while True:
            with self._lock:
                found = self._store.copy_pairs_after(after, page)
            if not found:
                return
            for _row, _copy_row, article_id, copy_id, similarity, contained in found:
                yield article_id, copy_id, similarity, contained
            after = (found[-1][0], found[-1][1])

    def counts(self) -> dict[str, int]:
        """Articles and stories stored, and the sizes of the derived indexes."""
        with self._lock:
            return {
                "articles": self._store.count_articles(),
                "stories": self._store.count_stories(),
                "lsh_entries": len(self._lsh),
                "vector_entries": 0 if self._vectors is None else len(self._vectors),
            }

    def index_memory_bytes(self) -> int:
        """Bytes held by the in-memory derived indexes (LSH, FAISS, term frequencies)."""
        with self._lock:
            total = self._lsh.memory_bytes() + self._frequencies.memory_bytes()
            if self._vectors is not None:
                total += self._vectors.memory_bytes()
            return total


def compile_kernels() -> None:
    """Compile the native kernels that the engine's paths call into numba's disk cache.

    Compiling them costs a process ~1.5 s, which a fresh container would pay on its first
    request; loading them from the cache costs milliseconds. The cache is
    ``$NUMBA_CACHE_DIR``, or beside the installed sources where they are writable. This
    runs a ``dedup`` mode engine in a temporary directory over a few articles: a batch, an
    exact and a near copy one at a time, a match, a deletion and a reopening from the
    snapshot.
    """
    import tempfile

    # Four texts of 80 made-up words each, no two alike.
    texts = [" ".join(f"word{(n * 7 + shift * 13) % 89}" for n in range(80)) for shift in range(4)]
    articles = [Article(id=f"k{index}", text=text) for index, text in enumerate(texts)]
    copy = Article(id="copy", text=texts[0])
    near = Article(id="near", text=texts[1] + " reported by the wire")
    with tempfile.TemporaryDirectory(prefix="samestory-kernels-") as directory:
        with Engine.open(Path(directory), mode="dedup") as engine:
            engine.ingest_many(articles)
            engine.ingest(copy)
            engine.ingest(near)
            engine.match(Article(id="probe", text=texts[2]))
            engine.delete("k3")
        with Engine.open(Path(directory), mode="dedup") as engine:
            engine.match(Article(id="probe", text=texts[3]))
            engine.ingest_many([Article(id="later", text=texts[2] + " again")])
            engine.delete("k1")
