"""The system of record: SQLite in WAL mode.

Every acknowledged article lives here with its original text and everything derived from
it (hashes, shingles, MinHash signature, embedding, term set, story). The LSH, FAISS and
document-frequency indexes are rebuilt from these rows whenever their snapshots are missing,
stale or built with other parameters.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index.errors import IndexMismatchError, StorageFullError, StoreClosedError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 5
# Version 2 added articles.evidence (index.dates): NULL where not computed yet, which the
# engine fills for a version-1 store's story articles when it opens it.
# Version 3 added the copies table (each copy's verified earlier copies); articles stored
# before it list none.
# Version 4 added the deletions table (what each deletion took from the indexes, so that a
# snapshot taken before it can be brought up to date); deletions made before it are not
# there, and a snapshot older than them is rebuilt from the record as before.
# Version 5 indexes the content hashes by their first 12 hex digits (an index on an
# expression, :data:`_CONTENT_KEY`) instead of whole: the same lookups, each match then
# checked against the whole hash. The whole-hash index of a store opened again is dropped
# and the new one built, once.

Synchronous = Literal["full", "normal", "off"]

# What the articles' content-hash index holds of each hash: 48 of its 256 bits. A content
# hash is random, so each insert lands at a random place of that index, and 64-digit keys
# fit a quarter as many a page. Inserting and committing 31,030 rows shaped like
# SaudiNewsNet's: the whole-hash index cost 0.27 CPU s, this one 0.06 (in a `samestory
# dedup` run of it, the ingesting thread saves ~0.08 s). Lookups name both the prefix (to
# use the index) and the whole hash; two hashes sharing a prefix only cost a row read. The
# whole hash is compared as ``+content_hash``: a plain ``content_hash = ?`` lets SQLite put
# that constant into the prefix expression, which then no longer matches the index, and the
# lookup scans the table.
_CONTENT_KEY_CHARS = 12
_CONTENT_KEY = f"substr(content_hash, 1, {_CONTENT_KEY_CHARS})"
# The condition of a lookup of one content hash; its parameters: _content_match(hash).
_CONTENT_MATCH = f"{_CONTENT_KEY} = ? AND +content_hash = ?"


def _content_match(content_hash: str) -> tuple[str, str]:
    """The parameters of :data:`_CONTENT_MATCH` for ``content_hash``."""
    return content_hash[:_CONTENT_KEY_CHARS], content_hash


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS articles (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    title TEXT,
    url TEXT,
    source TEXT,
    language TEXT,
    published_at REAL NOT NULL,
    received_at REAL NOT NULL,
    text_hash TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    shingles BLOB NOT NULL,
    signature BLOB NOT NULL,
    terms BLOB NOT NULL,
    embedding BLOB,
    story_row INTEGER NOT NULL,
    original_row INTEGER,
    status TEXT NOT NULL,
    duplicate_similarity REAL,
    story_similarity REAL,
    evidence BLOB
);
DROP INDEX IF EXISTS articles_content_hash;
CREATE INDEX IF NOT EXISTS articles_content_key ON articles ({_CONTENT_KEY});
CREATE INDEX IF NOT EXISTS articles_story ON articles (story_row, published_at);
CREATE INDEX IF NOT EXISTS articles_original ON articles (original_row);
CREATE TABLE IF NOT EXISTS stories (
    row INTEGER PRIMARY KEY,
    canonical_row INTEGER NOT NULL,
    canonical_score REAL NOT NULL,
    size INTEGER NOT NULL,
    vectors INTEGER NOT NULL,
    centroid BLOB,
    first_published_at REAL NOT NULL,
    last_published_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stories_updated ON stories (updated_at);
CREATE TABLE IF NOT EXISTS copies (
    row INTEGER NOT NULL REFERENCES articles (row) ON DELETE CASCADE,
    copy_of INTEGER NOT NULL REFERENCES articles (row) ON DELETE CASCADE,
    jaccard REAL NOT NULL,
    containment REAL NOT NULL,
    PRIMARY KEY (row, copy_of)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS copies_copy_of ON copies (copy_of);
CREATE TABLE IF NOT EXISTS deletions (
    number INTEGER PRIMARY KEY,
    row INTEGER NOT NULL,
    original INTEGER NOT NULL,
    terms BLOB NOT NULL,
    promoted_row INTEGER,
    promoted_terms BLOB
);
CREATE TABLE IF NOT EXISTS source_lines (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    articles INTEGER NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
"""


@dataclass
class ArticleRow:
    """One stored article, blobs decoded."""

    row: int
    id: str
    text: str
    title: str | None
    url: str | None
    source: str | None
    language: str | None
    published_at: float
    received_at: float
    text_hash: str
    content_hash: str
    shingles: npt.NDArray[np.uint32]
    signature: npt.NDArray[np.uint64]
    terms: npt.NDArray[np.uint32]
    embedding: npt.NDArray[np.float32] | None
    story_row: int
    original_row: int | None
    status: str
    duplicate_similarity: float | None
    story_similarity: float | None
    evidence: bytes | None = None


@dataclass(frozen=True)
class DeletionRow:
    """What one deletion took from the derived indexes (the ``deletions`` table).

    Attributes:
        number: the store's deletion count once it was made (1 for the first).
        row: the deleted article's row.
        original: whether it was an original then (its terms and vector were indexed).
        terms: its term hashes.
        promoted_row: the copy that became the original of its group in its place, if any
            (its terms and vector were indexed from then on).
        promoted_terms: that copy's term hashes.
    """

    number: int
    row: int
    original: bool
    terms: npt.NDArray[np.uint32]
    promoted_row: int | None
    promoted_terms: npt.NDArray[np.uint32] | None


@dataclass
class StoryRow:
    """One stored story; ``centroid`` is the sum of its members' embeddings."""

    row: int
    canonical_row: int
    canonical_score: float
    size: int
    vectors: int
    centroid: npt.NDArray[np.float32] | None
    first_published_at: float
    last_published_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """The columns of a stored article that its verdict reads."""

    row: int
    id: str
    status: str
    story_row: int
    original_row: int | None
    duplicate_similarity: float | None
    story_similarity: float | None


@dataclass(frozen=True, slots=True)
class CanonicalRow:
    """The columns of a stored article that name it as a story's canonical."""

    row: int
    id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: float


_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_NEXT_ROW = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM sqlite_sequence WHERE name = 'articles')"

_ARTICLE_COLUMNS = (
    "row, id, text, title, url, source, language, published_at, received_at, text_hash, "
    "content_hash, shingles, signature, terms, embedding, story_row, original_row, status, "
    "duplicate_similarity, story_similarity, evidence"
)
_STORY_COLUMNS = (
    "row, canonical_row, canonical_score, size, vectors, centroid, first_published_at, "
    "last_published_at, updated_at"
)


def encode_signature(signature: npt.NDArray[np.uint64]) -> bytes:
    """MinHash values fit in 32 bits (datasketch masks them so): store them as uint32."""
    return signature.astype(_U4).tobytes()


_U4 = np.dtype("<u4")


def decode_signature(blob: bytes) -> npt.NDArray[np.uint64]:
    """The inverse of :func:`encode_signature`."""
    return np.frombuffer(blob, dtype="<u4").astype(np.uint64)


def encode_embedding(vector: npt.NDArray[np.float32] | None) -> bytes | None:
    """Embeddings are stored as float16: half the bytes, cosine error ~1e-4."""
    return None if vector is None else vector.astype("<f2").tobytes()


def decode_embedding(blob: bytes | None) -> npt.NDArray[np.float32] | None:
    """The inverse of :func:`encode_embedding`."""
    return None if blob is None else np.frombuffer(blob, dtype="<f2").astype(np.float32)


def _u32(blob: bytes) -> npt.NDArray[np.uint32]:
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32)


def _article(values: Sequence[Any]) -> ArticleRow:
    return ArticleRow(
        row=values[0],
        id=values[1],
        text=values[2],
        title=values[3],
        url=values[4],
        source=values[5],
        language=values[6],
        published_at=values[7],
        received_at=values[8],
        text_hash=values[9],
        content_hash=values[10],
        shingles=_u32(values[11]),
        signature=decode_signature(values[12]),
        terms=_u32(values[13]),
        embedding=decode_embedding(values[14]),
        story_row=values[15],
        original_row=values[16],
        status=values[17],
        duplicate_similarity=values[18],
        story_similarity=values[19],
        evidence=values[20],
    )


def _story(values: Sequence[Any]) -> StoryRow:
    centroid = None if values[5] is None else np.frombuffer(values[5], dtype="<f4").copy()
    return StoryRow(
        row=values[0],
        canonical_row=values[1],
        canonical_score=values[2],
        size=values[3],
        vectors=values[4],
        centroid=centroid,
        first_published_at=values[6],
        last_published_at=values[7],
        updated_at=values[8],
    )


class Store:
    """SQLite-backed record of articles, stories and learned boilerplate lines.

    Not thread-safe by itself: the engine serialises access with its lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        fingerprint: str,
        stored_fields: dict[str, Any],
        synchronous: Synchronous = "full",
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None
        )
        connection = self._connection
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=10000")
        columns = {found[1] for found in connection.execute("PRAGMA table_info(articles)")}
        connection.executescript(_SCHEMA)
        if columns and "evidence" not in columns:
            # A version-1 store: the column is added empty; Engine.open fills it.
            with self.transaction():
                connection.execute("ALTER TABLE articles ADD COLUMN evidence BLOB")
                self.set_meta("schema_version", str(SCHEMA_VERSION))
                self.set_meta("evidence_pending", "1")
        version = self.meta("schema_version")
        if version is not None and int(version) < SCHEMA_VERSION:
            with self.transaction():
                self.set_meta("schema_version", str(SCHEMA_VERSION))
        self._check_fingerprint(fingerprint, stored_fields)

    def _check_fingerprint(self, fingerprint: str, stored_fields: dict[str, Any]) -> None:
        existing = self.meta("fingerprint")
        if existing is None:
            with self.transaction():
                self.set_meta("fingerprint", fingerprint)
                self.set_meta("parameters", json.dumps(stored_fields, sort_keys=True))
                self.set_meta("schema_version", str(SCHEMA_VERSION))
                self.set_meta("deletions", "0")
            return
        if existing != fingerprint:
            stored = self.meta("parameters") or "{}"
            raise IndexMismatchError(
                f"the store at {self.path} was built with parameters {stored} "
                f"(fingerprint {existing}), not {json.dumps(stored_fields, sort_keys=True)} "
                f"(fingerprint {fingerprint}); open it with the same shingling, MinHash and "
                "model parameters, or use a new data directory"
            )

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreClosedError("the store is closed; open the engine again")
        return self._connection

    def close(self) -> None:
        """Checkpoint the WAL and close; further use raises StoreClosedError."""
        if self._connection is not None:
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._connection.close()
            self._connection = None

    def set_page_cache(self, mib: int) -> None:
        """Let SQLite keep up to ``mib`` MiB of pages in memory (its default is 2)."""
        self.connection.execute(f"PRAGMA cache_size={-1024 * int(mib)}")

    def make_scratch(self) -> bool:
        """Keep the rollback journal in memory instead of the write-ahead log: for a store
        deleted after use, which a crash may leave corrupt.

        Each page is then written once, into the database, instead of into the log and
        again at each checkpoint (SaudiNewsNet in ``samestory dedup``: commits 0.39 ->
        0.21 s, 0.15 s less system time). Readers in other processes still read
        (:func:`open_read_only`): they wait, up to their busy timeout, while a commit
        writes. SQLite refuses while another connection has the store open: returns
        whether the journal is in memory now.
        """
        try:
            mode = self.connection.execute("PRAGMA journal_mode=MEMORY").fetchone()[0]
        except sqlite3.OperationalError:  # "database is locked", after the busy timeout
            return False
        return str(mode).lower() == "memory"

    def transaction(self) -> _Transaction:
        """A context manager: BEGIN IMMEDIATE … COMMIT, ROLLBACK on any exception."""
        return _Transaction(self.connection)

    def meta(self, key: str) -> str | None:
        found = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else str(found[0])

    def set_meta(self, key: str, value: str) -> None:
        self.connection.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def generation(self) -> tuple[int, int]:
        """(highest article row ever assigned, deletions so far): what a snapshot is current to."""
        found = self.connection.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'articles'"
        ).fetchone()
        return (0 if found is None else int(found[0]), int(self.meta("deletions") or 0))

    def _select_in(self, query: str, values: Iterable[Any]) -> Iterator[Sequence[Any]]:
        """Rows of ``query`` (ending in ``IN ({marks})``) for distinct ``values``, in chunks.

        SQLite limits the number of bound parameters, so large sets are queried 500 at a time.
        """
        wanted = sorted(set(values))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            yield from self.connection.execute(
                query.format(marks=",".join("?" * len(chunk))), chunk
            )

    # -- articles -------------------------------------------------------------------------

    def article_by_id(self, article_id: str) -> ArticleRow | None:
        found = self.connection.execute(
            f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE id = ?", (article_id,)
        ).fetchone()
        return None if found is None else _article(found)

    def article(self, row: int) -> ArticleRow | None:
        found = self.connection.execute(
            f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE row = ?", (row,)
        ).fetchone()
        return None if found is None else _article(found)

    def articles(self, rows: Iterable[int]) -> dict[int, ArticleRow]:
        return {
            values[0]: _article(values)
            for values in self._select_in(
                f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE row IN ({{marks}})", rows
            )
        }

    def rows_without_evidence(self, limit: int) -> list[tuple[int, str, str | None]]:
        """(row, text, title) of up to ``limit`` story articles (with a vector) whose
        evidence is not computed yet (a store written before schema version 2)."""
        return [
            (int(row), str(text), title)
            for row, text, title in self.connection.execute(
                "SELECT row, text, title FROM articles WHERE evidence IS NULL "
                "AND embedding IS NOT NULL AND original_row IS NULL ORDER BY row LIMIT ?",
                (limit,),
            )
        ]

    def set_evidence(self, values: Iterable[tuple[bytes, int]]) -> None:
        """Store (evidence, row) pairs."""
        self.connection.executemany("UPDATE articles SET evidence = ? WHERE row = ?", values)

    def article_ids(self, rows: Iterable[int]) -> dict[int, str]:
        return {
            row: article_id
            for row, article_id in self._select_in(
                "SELECT row, id FROM articles WHERE row IN ({marks})", rows
            )
        }

    def articles_by_id(self, article_ids: Iterable[str]) -> dict[str, ArticleRow]:
        """The stored articles among ``article_ids``, by id."""
        return {
            values[1]: _article(values)
            for values in self._select_in(
                f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE id IN ({{marks}})", article_ids
            )
        }

    def verdict_rows_by_id(self, article_ids: Iterable[str]) -> dict[str, VerdictRow]:
        """What the verdicts of the stored articles among ``article_ids`` read, by id."""
        return {
            values[1]: VerdictRow(*values)
            for values in self._select_in(
                "SELECT row, id, status, story_row, original_row, duplicate_similarity, "
                "story_similarity FROM articles WHERE id IN ({marks})",
                article_ids,
            )
        }

    def canonical_rows(self, rows: Iterable[int]) -> dict[int, CanonicalRow]:
        """What naming each of ``rows`` as a story's canonical reads, by row."""
        return {
            values[0]: CanonicalRow(*values)
            for values in self._select_in(
                "SELECT row, id, title, url, source, published_at FROM articles "
                "WHERE row IN ({marks})",
                rows,
            )
        }

    def copy_candidates(
        self, rows: Iterable[int]
    ) -> dict[int, tuple[int | None, npt.NDArray[np.uint32]]]:
        """(original row, shingles) of each of ``rows``: what a copy check reads."""
        return {
            row: (original_row, _u32(shingles))
            for row, original_row, shingles in self._select_in(
                "SELECT row, original_row, shingles FROM articles WHERE row IN ({marks})", rows
            )
        }

    def insert_copies(self, values: Iterable[tuple[int, int, float, float]]) -> None:
        """Store ``(row, copy_of, jaccard, containment)`` edges (both rows stored)."""
        self.connection.executemany(
            "INSERT INTO copies (row, copy_of, jaccard, containment) VALUES (?, ?, ?, ?)", values
        )

    def copy_pairs_after(
        self, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, str, str, float, float]]:
        """Up to ``limit`` copy edges after ``(row, copy_of)`` in that order, with both
        ids: ``(row, copy_of, id, copy_of id, jaccard, containment)``."""
        return [
            tuple(values)
            for values in self.connection.execute(
                "SELECT c.row, c.copy_of, a.id, b.id, c.jaccard, c.containment FROM copies c "
                "JOIN articles a ON a.row = c.row JOIN articles b ON b.row = c.copy_of "
                "WHERE (c.row, c.copy_of) > (?, ?) ORDER BY c.row, c.copy_of LIMIT ?",
                (*after, limit),
            )
        ]

    def delete_copies(self, row: int) -> None:
        """Forget the copies ``row`` was verified against."""
        self.connection.execute("DELETE FROM copies WHERE row = ?", (row,))

    def copies_of(self, rows: Iterable[int]) -> dict[int, list[tuple[int, float, float]]]:
        """``(copy_of, jaccard, containment)`` of each of ``rows`` that has any, best first."""
        found: dict[int, list[tuple[int, float, float]]] = {}
        for row, copy_of, similarity, contained in sorted(
            self._select_in(
                "SELECT row, copy_of, jaccard, containment FROM copies WHERE row IN ({marks})",
                rows,
            ),
            key=lambda values: (values[0], -values[2], -values[3], values[1]),
        ):
            found.setdefault(row, []).append((copy_of, similarity, contained))
        return found

    def text_hashes(self, article_ids: Iterable[str]) -> dict[str, str]:
        """The stored text hash of each of ``article_ids`` that is stored."""
        return {
            article_id: text_hash
            for article_id, text_hash in self._select_in(
                "SELECT id, text_hash FROM articles WHERE id IN ({marks})", article_ids
            )
        }

    def neighbour_facts(
        self, rows: Sequence[int]
    ) -> dict[int, tuple[int, float, npt.NDArray[np.uint32]]]:
        """(story row, published_at, terms) of each row: what story scoring needs."""
        return {
            row: (story_row, published_at, _u32(terms))
            for row, story_row, published_at, terms in self._select_in(
                "SELECT row, story_row, published_at, terms FROM articles WHERE row IN ({marks})",
                rows,
            )
        }

    def first_by_content_hash(self, content_hash: str) -> ArticleRow | None:
        found = self.connection.execute(
            f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE {_CONTENT_MATCH} ORDER BY row LIMIT 1",
            _content_match(content_hash),
        ).fetchone()
        return None if found is None else _article(found)

    def texts_by_content_hash(self, content_hash: str, limit: int) -> list[str]:
        """The texts of the first ``limit`` stored articles of a content hash, in row order."""
        return [
            text
            for (text,) in self.connection.execute(
                f"SELECT text FROM articles WHERE {_CONTENT_MATCH} ORDER BY row LIMIT ?",
                (*_content_match(content_hash), limit),
            )
        ]

    def insert_article(self, values: dict[str, Any], *, own_story: bool = False) -> int:
        """Insert one article (blobs already encoded); returns its row.

        With ``own_story`` its ``story_row`` is its own row (it founds a story), set in
        the same statement where SQLite can return what it assigned (3.35 and later).
        """
        if own_story and _RETURNING:
            values = {**values, "story_row": None}
            columns = ", ".join(values)
            # AUTOINCREMENT gives a new row one more than the largest ever assigned.
            marks = ", ".join(_NEXT_ROW if name == "story_row" else "?" for name in values)
            found = self.connection.execute(
                f"INSERT INTO articles ({columns}) VALUES ({marks}) RETURNING row, story_row",
                tuple(value for name, value in values.items() if name != "story_row"),
            ).fetchone()
            row = int(found[0])
            if found[1] != row:  # never seen; kept right whatever SQLite did
                logger.warning("row %d was given story row %s; correcting", row, found[1])
                self.update_article(row, story_row=row)
            return row
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        cursor = self.connection.execute(
            f"INSERT INTO articles ({columns}) VALUES ({marks})", tuple(values.values())
        )
        assert cursor.lastrowid is not None
        row = int(cursor.lastrowid)
        if own_story:
            self.update_article(row, story_row=row)
        return row

    def next_article_row(self) -> int:
        """The row :meth:`insert_article` would give the next article (AUTOINCREMENT's rule:
        one more than the largest row ever assigned)."""
        seq, _deletions = self.generation()
        found = self.connection.execute("SELECT MAX(row) FROM articles").fetchone()
        return max(seq, int(found[0] or 0)) + 1

    def insert_articles(self, values: Sequence[Sequence[Any]]) -> None:
        """Insert articles whose rows are given: tuples of every column of
        :data:`_ARTICLE_COLUMNS` in its order (``row`` first, blobs encoded)."""
        marks = ",".join("?" * len(_ARTICLE_COLUMNS.split(",")))
        self.connection.executemany(
            f"INSERT INTO articles ({_ARTICLE_COLUMNS}) VALUES ({marks})", values
        )

    def first_by_content_hashes(
        self, content_hashes: Iterable[str]
    ) -> dict[str, tuple[int, int | None, int]]:
        """(row, original row, story row) of the first stored article of each content hash
        (what :meth:`first_by_content_hash` reads for an exact-copy check), by hash."""
        wanted = set(content_hashes)
        first: dict[str, tuple[int, int | None, int]] = {}
        for content_hash, row, original_row, story_row in self._select_in(
            "SELECT content_hash, row, original_row, story_row FROM articles "
            f"WHERE {_CONTENT_KEY} IN ({{marks}})",
            (content_hash[:_CONTENT_KEY_CHARS] for content_hash in wanted),
        ):
            if content_hash not in wanted:
                continue  # another hash with the same first digits
            found = first.get(content_hash)
            if found is None or row < found[0]:
                first[content_hash] = (row, original_row, story_row)
        return first

    def copy_original(self, row: int) -> tuple[int, npt.NDArray[np.uint32]] | None:
        """(story row, shingles) of an article: what a near-copy verdict reads of its original."""
        found = self.connection.execute(
            "SELECT story_row, shingles FROM articles WHERE row = ?", (row,)
        ).fetchone()
        return None if found is None else (int(found[0]), _u32(found[1]))

    def update_article(self, row: int, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.connection.execute(
            f"UPDATE articles SET {assignments} WHERE row = ?", (*values.values(), row)
        )

    def delete_article(self, removed: ArticleRow, promoted: ArticleRow | None = None) -> int:
        """Delete an article and log what the indexes lose with it; its deletion number.

        Args:
            removed: the article, as read before the deletion (``original_row`` None for
                an original).
            promoted: the copy that takes its place as its group's original, if any.
        """
        connection = self.connection
        connection.execute("DELETE FROM articles WHERE row = ?", (removed.row,))
        number = int(self.meta("deletions") or 0) + 1
        self.set_meta("deletions", str(number))
        connection.execute(
            "INSERT INTO deletions (number, row, original, terms, promoted_row, promoted_terms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                number,
                removed.row,
                int(removed.original_row is None),
                removed.terms.astype(_U4).tobytes(),
                None if promoted is None else promoted.row,
                None if promoted is None else promoted.terms.astype(_U4).tobytes(),
            ),
        )
        return number

    def deletions_after(self, number: int) -> list[DeletionRow]:
        """The logged deletions numbered above ``number``, in order (those forgotten by
        :meth:`forget_deletions` or made before schema version 4 are missing)."""
        return [
            DeletionRow(
                number=found[0],
                row=found[1],
                original=bool(found[2]),
                terms=_u32(found[3]),
                promoted_row=found[4],
                promoted_terms=None if found[5] is None else _u32(found[5]),
            )
            for found in self.connection.execute(
                "SELECT number, row, original, terms, promoted_row, promoted_terms "
                "FROM deletions WHERE number > ? ORDER BY number",
                (number,),
            )
        ]

    def forget_deletions(self, through: int) -> None:
        """Drop the logged deletions numbered up to ``through`` (a snapshot includes them)."""
        self.connection.execute("DELETE FROM deletions WHERE number <= ?", (through,))

    def group_members(self, original_row: int) -> list[ArticleRow]:
        """Every copy pointing at ``original_row``, earliest first."""
        return [
            _article(values)
            for values in self.connection.execute(
                f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE original_row = ? "
                "ORDER BY published_at, row",
                (original_row,),
            )
        ]

    def story_members(
        self, story_row: int, *, limit: int | None = None, offset: int = 0
    ) -> list[ArticleRow]:
        """Members of a story, newest first."""
        query = (
            f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE story_row = ? "
            "ORDER BY published_at DESC, row DESC"
        )
        parameters: tuple[Any, ...] = (story_row,)
        if limit is not None:
            query += " LIMIT ? OFFSET ?"
            parameters = (story_row, limit, offset)
        return [_article(values) for values in self.connection.execute(query, parameters)]

    def count_articles(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    def iter_index_rows(
        self, *, after_row: int = 0, batch: int = 2000
    ) -> Iterator[
        tuple[
            int,
            npt.NDArray[np.uint64],
            npt.NDArray[np.uint32],
            npt.NDArray[np.float32] | None,
            bool,
        ]
    ]:
        """(row, signature, terms, embedding, is_original) of every article after ``after_row``."""
        last = after_row
        while True:
            chunk = self.connection.execute(
                "SELECT row, signature, terms, embedding, original_row FROM articles "
                "WHERE row > ? ORDER BY row LIMIT ?",
                (last, batch),
            ).fetchall()
            if not chunk:
                return
            for row, signature, terms, embedding, original_row in chunk:
                yield (
                    row,
                    decode_signature(signature),
                    _u32(terms),
                    decode_embedding(embedding),
                    original_row is None,
                )
            last = chunk[-1][0]

    # -- stories --------------------------------------------------------------------------

    def story(self, row: int) -> StoryRow | None:
        found = self.connection.execute(
            f"SELECT {_STORY_COLUMNS} FROM stories WHERE row = ?", (row,)
        ).fetchone()
        return None if found is None else _story(found)

    def stories(self, rows: Iterable[int]) -> dict[int, StoryRow]:
        return {
            values[0]: _story(values)
            for values in self._select_in(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE row IN ({{marks}})", rows
            )
        }

    def story_canonicals(self, rows: Iterable[int]) -> dict[int, int]:
        """The canonical row of each of the stories ``rows`` that is stored, by story row."""
        return {
            int(row): int(canonical_row)
            for row, canonical_row in self._select_in(
                "SELECT row, canonical_row FROM stories WHERE row IN ({marks})", rows
            )
        }

    def save_story(self, story: StoryRow) -> None:
        self.save_stories((story,))

    def save_stories(self, stories: Iterable[StoryRow]) -> None:
        """:meth:`save_story` of many stories in one statement."""
        self.connection.executemany(
            f"INSERT OR REPLACE INTO stories ({_STORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            [_story_values(story) for story in stories],
        )

    def delete_story(self, row: int) -> None:
        self.connection.execute("DELETE FROM stories WHERE row = ?", (row,))

    def recent_stories(self, *, updated_since: float | None, limit: int) -> list[StoryRow]:
        return [
            _story(values)
            for values in self.connection.execute(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE updated_at >= ? "
                "ORDER BY updated_at DESC, row DESC LIMIT ?",
                (updated_since if updated_since is not None else float("-inf"), limit),
            )
        ]

    def count_stories(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM stories").fetchone()[0])

    # -- learned boilerplate --------------------------------------------------------------

    def frequent_lines(self, source: str, keys: Sequence[str], minimum: int) -> set[str]:
        """Which of ``keys`` were seen in at least ``minimum`` stored articles of ``source``."""
        return frequent_lines(self.connection, source, keys, minimum)

    def frequent_lines_many(
        self, wanted: Sequence[tuple[str, Sequence[str]]], minimum: int
    ) -> set[tuple[str, str]]:
        """:meth:`frequent_lines` of many (source, keys) at once, as (source, key) pairs."""
        return frequent_line_pairs(self.connection, wanted, minimum)

    def count_lines(self, source: str, keys: Iterable[str], delta: int = 1) -> None:
        self.connection.executemany(
            "INSERT INTO source_lines (source, key, articles) VALUES (?, ?, ?) "
            "ON CONFLICT (source, key) DO UPDATE SET articles = articles + excluded.articles",
            [(source, key, delta) for key in sorted(set(keys))],
        )

    def count_lines_many(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """:meth:`count_lines` of many (source, key, articles) at once."""
        self.connection.executemany(
            "INSERT INTO source_lines (source, key, articles) VALUES (?, ?, ?) "
            "ON CONFLICT (source, key) DO UPDATE SET articles = articles + excluded.articles",
            counts,
        )


def frequent_lines(
    connection: sqlite3.Connection, source: str, keys: Sequence[str], minimum: int
) -> set[str]:
    """Which of ``keys`` were seen in at least ``minimum`` stored articles of ``source``.

    Takes a connection so that other processes can ask it of a store they only read.
    """
    if not keys:
        return set()
    unique = sorted(set(keys))
    marks = ",".join("?" * len(unique))
    return {
        key
        for (key,) in connection.execute(
            f"SELECT key FROM source_lines WHERE source = ? AND articles >= ? AND key IN ({marks})",
            (source, minimum, *unique),
        )
    }


def frequent_line_pairs(
    connection: sqlite3.Connection, wanted: Iterable[tuple[str, Iterable[str]]], minimum: int
) -> set[tuple[str, str]]:
    """:func:`frequent_lines` of many (source, keys) at once, as (source, key) pairs.

    One query per source and 500 keys (the table's key is (source, key): a query for keys
    of any source would read all of it).
    """
    by_source: dict[str, set[str]] = {}
    for source, keys in wanted:
        by_source.setdefault(source, set()).update(keys)
    found: set[tuple[str, str]] = set()
    for source, keys in by_source.items():
        unique = sorted(keys)
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                (source, key)
                for (key,) in connection.execute(
                    "SELECT key FROM source_lines WHERE source = ? AND articles >= ? "
                    f"AND key IN ({marks})",
                    (source, minimum, *part),
                )
            )
    return found


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads the store at ``path`` (safe beside its writer: WAL, or a
    scratch store's rollback journal, where it waits while a commit writes)."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


class _Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._depth = 0

    def __enter__(self) -> sqlite3.Connection:
        if self._connection.in_transaction:
            self._depth = 1
        else:
            self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._depth:
            return
        if kind is None:
            try:
                self._connection.execute("COMMIT")
            except sqlite3.Error as failure:
                # SQLite may or may not have rolled the transaction back itself (SQLITE_FULL
                # at COMMIT does; SQLITE_BUSY does not): never leave it open, or the next
                # write would join it and never commit.
                self._rollback()
                _raise_if_full(failure)
                raise
            return
        self._rollback()
        if isinstance(error, sqlite3.Error):
            _raise_if_full(error)

    def _rollback(self) -> None:
        # After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already rolled back.
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")


def _raise_if_full(error: sqlite3.Error) -> None:
    """Raise :class:`StorageFullError` from ``error`` if the disk or page limit is full.

    Errors SQLite raised carry their code; one raised by other code may not.
    """
    if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        raise StorageFullError(str(error)) from error


def _story_values(story: StoryRow) -> tuple[object, ...]:
    """A story's row of the ``stories`` table, in the order of ``_STORY_COLUMNS``."""
    return (
        story.row,
        story.canonical_row,
        story.canonical_score,
        story.size,
        story.vectors,
        None if story.centroid is None else story.centroid.astype("<f4").tobytes(),
        story.first_published_at,
        story.last_published_at,
        story.updated_at,
    )
