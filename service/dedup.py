"""``samestory dedup``: annotate a file of articles with the engine's verdicts.

Reads JSON Lines (``.jsonl``, ``.jsonl.gz``), CSV or Parquet, runs every record through the
same :class:`~index.engine.Engine` the REST service uses, and writes each record back (in
the output's format, chosen by its extension) with four fields added:

- ``status``: ``new_story``, ``same_story``, ``near_duplicate`` or ``exact_duplicate``;
- ``duplicate_of``: the id of the original of the duplicate group it joined, or null;
- ``cluster_id``: its story;
- ``canonical_id``: the id of the article that represents its story when the run ends.

With ``--pairs PATH`` every verified copy pair the store holds is written as well
(``id``, ``copy_of``, ``jaccard``, ``containment``: what each verdict lists as ``copies``),
the pairwise answer where ``duplicate_of`` names a group's original.

The id field is written back too, as the string id samestory used (generated as
``<input file name>:<line>`` for records without one), so ``duplicate_of`` and
``canonical_id`` join on it.

Consistency with the service: articles go to :meth:`Engine.ingest_many` in input order, which
decides each article exactly as :meth:`Engine.ingest` one at a time would, so ``status``,
``duplicate_of`` and ``cluster_id`` equal what ``POST /v1/articles`` returns for the same
articles sent in the same order. ``canonical_id`` is the story's canonical at the end of the
run (what ``GET /v1/articles/{id}`` returns afterwards): in ``stories`` mode a story's
canonical can move while members arrive, so the output is rewritten in a second pass once
all articles are in. In ``dedup`` mode a story is a duplicate group whose canonical is its
original, which never moves, so one pass suffices.

Memory is bounded by the engine's indexes, not by the file: records stream through in
chunks of ``--batch-size``, and the engine's SQLite store lives under ``--store`` or in a
temporary directory beside the output.

Exit codes:
    0: success (records may have been rejected: see the rejects file).
    1: the run failed, or ``--strict`` stopped at a bad record.
    2: usage error (bad arguments, unsupported file extension, invalid ``SAMESTORY_*``
       settings).
    3: the input cannot be read (missing, unreadable, corrupt, not UTF-8).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, Literal, TextIO

import orjson
from pydantic import ValidationError

from index.article import (
    Article,
    is_blank,
    parse_timestamp,
    pickle_with_hashes,
    unpickle_with_hashes,
)
from index.engine import BriefVerdict, Engine, Mode, Preparation, prepare
from index.errors import (
    ConflictError,
    EmptyTextError,
    InvalidArticleError,
    InvalidDateError,
    SamestoryError,
)
from index.params import Parameters
from service.records import (
    BadRecord,
    FileFormat,
    InputUnreadableError,
    JsonLinesWriter,
    Record,
    RecordReader,
    RecordWriter,
    UnsupportedFormatError,
    open_reader,
    open_writer,
)
from service.settings import Settings, open_engine

__all__ = [
    "ADDED_FIELDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREADABLE",
    "EXIT_USAGE",
    "BadRecordError",
    "DedupOptions",
    "FieldMap",
    "Summary",
    "add_parser",
    "deduplicate",
    "main",
    "run",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

BATCH_SIZE = 512
"""Records per chunk by default."""
GPU_BATCH_SIZE = 4096
"""Records per chunk by default in ``stories`` mode on CUDA (see ``DedupOptions``)."""
EXIT_UNREADABLE = 3

Keep = Literal["all", "canonical", "first"]

ADDED_FIELDS = ("status", "duplicate_of", "cluster_id", "canonical_id")
STATUSES = ("new_story", "same_story", "near_duplicate", "exact_duplicate")
_COPIES = frozenset({"near_duplicate", "exact_duplicate"})

EPILOG = """\
output fields:
  status        new_story | same_story | near_duplicate | exact_duplicate
  duplicate_of  id of the original of the duplicate group joined, or null
  cluster_id    the story's id
  canonical_id  id of the article representing the story at the end of the run
  The id field is written back as the string id used; a record without one gets
  "<input file name>:<line>" (line = 1-based line in JSON Lines/CSV, row in Parquet).
  JSON Lines in and out: each line is written as read with these fields appended,
  unless the record already holds one of them or an id that is not a string (then
  the record is written anew, the fields replaced in place).
  --pairs PATH: one row per verified copy pair: id, copy_of (an earlier article it
  was verified a copy of; duplicate_of is the group's original), jaccard, containment

--keep:
  all        every accepted record
  first      only the first record of each duplicate group (copies are dropped)
  canonical  only each story's canonical; in --mode dedup a story is a duplicate
             group, so this equals "first"

modes:
  stories    near-duplicates and story clustering with the embedding model
             (configured like the service: SAMESTORY_MODEL, SAMESTORY_MODEL_CACHE_DIR, ...)
  dedup      exact and near-duplicates only; no model is loaded

--store DIR keeps the engine's store: a rerun after an interruption skips the records
already stored, and the service can open DIR afterwards (SAMESTORY_DATA_DIR=DIR) to go on
from the batch. A store is tied to its mode: seed the live service with --mode stories.

Bad records (bad JSON, no usable text, a bad date, text that is only boilerplate, an id
already stored with another text) go to the rejects file as {"line", "id", "reason"} and
the run goes on; with --strict the run stops at the first one.

exit codes:
  0  success (see the rejects file for rejected records)
  1  the run failed, or --strict stopped at a bad record
  2  usage error (bad arguments, unsupported file extension, invalid SAMESTORY_*
     settings)
  3  the input cannot be read (missing, unreadable, corrupt, not UTF-8)
"""


class BadRecordError(SamestoryError):
    """``--strict`` met a bad record."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason} (stopped by --strict)")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class FieldMap:
    """Which input field holds each article attribute."""

    id: str = "id"
    text: str = "text"
    title: str = "title"
    published_at: str = "published_at"
    url: str = "url"
    source: str = "source"
    language: str = "language"


@dataclass(frozen=True)
class DedupOptions:
    """One batch run.

    Attributes:
        input: the record file to read.
        output: the annotated record file to write (replaced when the run succeeds).
        mode: ``"stories"`` (with the model) or ``"dedup"`` (duplicates only, no model).
        keep: which records to write: ``"all"``, ``"first"`` of each duplicate group, or
            each story's ``"canonical"``.
        fields: the input's field names.
        store: the engine's data directory to write into (and resume from); a temporary
            one beside the output when ``None``.
        rejects: where bad records are listed; ``<output>.rejects.jsonl`` when ``None``.
        strict: stop at the first bad record with :class:`BadRecordError`.
        batch_size: records read, ingested (one transaction) and written per chunk;
            ``None``: :data:`BATCH_SIZE`, or :data:`GPU_BATCH_SIZE` in ``stories`` mode on
            a CUDA device, where the embedder's pipeline drains at every chunk (on an
            H100, 7,590 docs/s in calls of 512 texts, 9,725 in one call).
        progress: show a progress bar on stderr.
        workers: processes that clean, normalize, shingle and MinHash the chunks ahead
            of the one being ingested (verdicts are the same); 0 does it all in this
            process; ``None`` uses one per CPU, at most :data:`MAX_AUTO_WORKERS`, and
            none on a single CPU.
        pairs: where to write every verified copy pair the store holds when the run ends
            (``id``, ``copy_of``, ``jaccard``, ``containment``; the pairwise answer, where
            ``duplicate_of`` names a group's original); format by extension; none if ``None``.
    """

    input: Path
    output: Path
    mode: Mode = "stories"
    keep: Keep = "all"
    fields: FieldMap = field(default_factory=FieldMap)
    store: Path | None = None
    rejects: Path | None = None
    strict: bool = False
    batch_size: int | None = None
    progress: bool = False
    workers: int | None = None
    pairs: Path | None = None

    @property
    def rejects_path(self) -> Path:
        """The rejects file this run writes."""
        return self.rejects or _beside(self.output, ".rejects.jsonl")


@dataclass
class Summary:
    """What a run did.

    Attributes:
        read: records read, bad lines included.
        written: records written to the output (after ``keep``).
        rejected: bad records (listed in the rejects file).
        already_stored: accepted records that the store held before the run (resumed).
        statuses: accepted records by verdict status.
        stories: distinct stories among the accepted records.
        pairs: copy pairs written to the pairs file (``None`` when none was asked for).
        seconds: wall time of the run.
    """

    read: int = 0
    written: int = 0
    rejected: int = 0
    already_stored: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    stories: int = 0
    pairs: int | None = None
    seconds: float = 0.0

    @property
    def docs_per_second(self) -> float:
        """Records read per second of wall time."""
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        """The summary as a plain-text table."""
        rows: list[tuple[str, str]] = [
            ("records read", f"{self.read:,}"),
            ("written", f"{self.written:,}"),
            ("rejected", f"{self.rejected:,}"),
            ("already stored", f"{self.already_stored:,}"),
        ]
        rows += [(status, f"{count:,}") for status, count in self.statuses.items()]
        rows += [("stories", f"{self.stories:,}")]
        if self.pairs is not None:
            rows.append(("copy pairs", f"{self.pairs:,}"))
        rows += [
            ("seconds", f"{self.seconds:,.2f}"),
            ("docs/s", f"{self.docs_per_second:,.0f}"),
        ]
        width = max(len(name) for name, _ in rows)
        values = max(len(value) for _, value in rows)
        lines = [f"{name:<{width}}  {value:>{values}}" for name, value in rows]
        rule = "-" * (width + 2 + values)
        return "\n".join([rule, *lines, rule]) + "\n"


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


@dataclass(slots=True)
class _Pending:
    line: int
    record: Record
    article: Article
    text: bytes | None
    adds_id: bool


@dataclass(slots=True)
class _Parsed:
    """One record read: its article, or why it has none."""

    line: int
    record: Record | BadRecord
    article_id: str | None
    article: Article | None
    error: InvalidArticleError | None
    # The JSON line the record was read from, where its output can be that line with the
    # added fields appended (see _spliceable), and whether the id field is among them.
    text: bytes | None = None
    adds_id: bool = False


def _optional_text(record: Record, name: str) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _published_at(record: Record, name: str) -> datetime | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return parse_timestamp(value, field=name)
    raise InvalidDateError(
        f"{name} is a {type(value).__name__}, not an RFC 3339 timestamp; "
        "use e.g. '2025-01-17T09:30:00Z' or '2025-01-17'",
        field=name,
    )


def _article_id(record: Record, fields: FieldMap, generated: str) -> str:
    value = record.get(fields.id)
    if value is None or value == "":
        return generated
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidArticleError(
        f"{fields.id} is a {type(value).__name__}; ids must be strings or integers",
        field=fields.id,
    )


def to_article(record: Record, fields: FieldMap, article_id: str) -> Article:
    """The article a record describes.

    Raises:
        InvalidArticleError: no usable text, a bad date or another invalid field.
    """
    text = record.get(fields.text)
    if not isinstance(text, str) or is_blank(text):
        found = (
            "is missing"
            if text is None
            else "is empty or only whitespace"
            if isinstance(text, str)
            else f"holds a {type(text).__name__}, not text"
        )
        raise EmptyTextError(f"no usable text: field {fields.text!r} {found}", field=fields.text)
    return Article(
        id=article_id,
        text=text,
        title=_optional_text(record, fields.title),
        url=_optional_text(record, fields.url),
        source=_optional_text(record, fields.source),
        language=_optional_text(record, fields.language),
        published_at=_published_at(record, fields.published_at),
    )


@contextmanager
def _progress_bar(reader: RecordReader, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(
        total=reader.total or None,
        unit=reader.unit,
        unit_scale=True,
        unit_divisor=1024 if reader.unit == "B" else 1000,
        file=sys.stderr,
        dynamic_ncols=True,
        desc="dedup",
    )
    try:
        yield bar
    finally:
        bar.close()


class _Batch:
    """The state of one run: engine, output, rejects and counters."""

    def __init__(
        self, options: DedupOptions, engine: Engine, rejects: IO[bytes], summary: Summary
    ) -> None:
        self.options = options
        self.engine = engine
        self.summary = summary
        self._rejects = rejects
        self._stories: set[str] = set()
        self._id_prefix = options.input.name
        keep = options.keep
        # Only in stories mode does the canonical move, so only there must "canonical" wait
        # for the second pass; in dedup mode the canonical is the group's original.
        self.drop_copies = keep == "first" or (keep == "canonical" and options.mode == "dedup")

    def reject(self, line: int, article_id: str | None, reason: str) -> None:
        self.summary.rejected += 1
        self._rejects.write(
            orjson.dumps(
                {"line": line, "id": article_id, "reason": reason},
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )
        if self.options.strict:
            raise BadRecordError(line, reason)

    def parse(
        self, chunk: Sequence[tuple[int, Record | BadRecord]], texts: Sequence[bytes] | None = None
    ) -> list[_Parsed]:
        """The articles of a chunk's records; changes nothing (rejects are counted later).

        Args:
            chunk: the records read.
            texts: the JSON line each was read from, when the output is JSON Lines too.
        """
        fields = self.options.fields
        parsed: list[_Parsed] = []
        for index, (line, record) in enumerate(chunk):
            article_id: str | None = None
            try:
                if isinstance(record, BadRecord):
                    raise InvalidArticleError(record.reason)
                article_id = _article_id(record, fields, f"{self._id_prefix}:{line}")
                article = to_article(record, fields, article_id)
            except InvalidArticleError as error:
                parsed.append(_Parsed(line, record, article_id, None, error))
                continue
            item = _Parsed(line, record, article_id, article, None)
            if texts is not None:
                adds_id = _spliceable(record, fields.id)
                if adds_id is not None:
                    item.text = texts[index]
                    item.adds_id = adds_id
            parsed.append(item)
        return parsed

    def process(
        self, parsed: list[_Parsed], preparation: Preparation | None
    ) -> list[Record | bytes]:
        """Count, reject, ingest and annotate one parsed chunk; returns the records to write.

        Args:
            parsed: what :meth:`parse` made of the chunk.
            preparation: what :func:`~index.engine.prepare` computed from its articles.

        Returns:
            The records to write, annotated; a record read from a JSON line comes as that
            line with the added fields appended (``bytes``) where :func:`_spliceable`.
        """
        pending: list[_Pending] = []
        stop: BadRecordError | None = None
        for item in parsed:
            self.summary.read += 1
            if item.article is not None:
                assert not isinstance(item.record, BadRecord)
                pending.append(
                    _Pending(item.line, item.record, item.article, item.text, item.adds_id)
                )
                continue
            try:
                self.reject(item.line, item.article_id, str(item.error))
            except BadRecordError as strict:
                # Everything before the bad record is still ingested, nothing after it.
                stop = strict
                break
        kept = self._ingest(pending, preparation)
        if stop is not None:
            raise stop
        return kept

    def _ingest(
        self, pending: list[_Pending], preparation: Preparation | None
    ) -> list[Record | bytes]:
        kept: list[Record | bytes] = []
        statuses = self.summary.statuses
        id_field = self.options.fields.id
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE
        for item, verdict in self._verdicts(pending, preparation):
            statuses[verdict.status] += 1
            self._stories.add(verdict.cluster_id)
            if self.drop_copies and verdict.status in _COPIES:
                continue
            added: Record = {id_field: verdict.id} if item.text is None or item.adds_id else {}
            added["status"] = verdict.status
            added["duplicate_of"] = verdict.duplicate_of
            added["cluster_id"] = verdict.cluster_id
            added["canonical_id"] = verdict.canonical_id
            text = item.text
            if text is None:
                item.record.update(added)
                kept.append(item.record)
            else:
                # The line as read, its closing brace replaced by the added fields: what
                # writing the updated record would give, without writing all of it again.
                kept.append(text[: text.rindex(b"}")] + b"," + dumps(added, option=newline)[1:])
        self.summary.stories = len(self._stories)
        return kept

    def _verdicts(
        self, pending: list[_Pending], preparation: Preparation | None
    ) -> list[tuple[_Pending, BriefVerdict]]:
        """Ingest in order; a batch the engine refuses is split until the bad record is alone.

        The engine stores nothing of a batch with one invalid article (text that is only
        boilerplate, an id stored with another text). When the error names an article
        whose id occurs once in the batch, the batch is split around it (what comes before
        is ingested, that one is tried alone, then the rest); otherwise it is halved. Either
        keeps every good article in order; naming costs one extra call per bad article,
        halving O(log n).
        """
        if not pending:
            return []
        try:
            verdicts = self.engine.ingest_many_brief(
                [item.article for item in pending], preparation=preparation
            )
        except (InvalidArticleError, ConflictError) as error:
            if len(pending) == 1:
                item = pending[0]
                self.reject(item.line, item.article.id, str(error))
                return []
            named = _position_named(pending, getattr(error, "article_id", None))
            if named is None:
                middle = len(pending) // 2
                parts = [pending[:middle], pending[middle:]]
            else:
                parts = [pending[:named], pending[named : named + 1], pending[named + 1 :]]
            return [pair for part in parts for pair in self._verdicts(part, preparation)]
        return list(zip(pending, verdicts, strict=True))


def _spliceable(record: Record, id_field: str) -> bool | None:
    """Whether a record's output can be its JSON line with the added fields appended (the
    same fields in the same order as writing the updated record), and if so whether the id
    field is one of them; ``None`` where a field to write is already there (it would then
    appear twice), or an id given as something else than a non-empty string (written back
    as the string id used).
    """
    if any(name in record for name in ADDED_FIELDS):
        return None
    if id_field not in record:
        return True
    value = record[id_field]
    return False if isinstance(value, str) and value != "" else None


def _position_named(pending: list[_Pending], article_id: str | None) -> int | None:
    """Where the only article of ``pending`` with ``article_id`` stands, if exactly one has it."""
    if article_id is None:
        return None
    found = [index for index, item in enumerate(pending) if item.article.id == article_id]
    return found[0] if len(found) == 1 else None


def _check_paths(options: DedupOptions) -> None:
    source = options.input.resolve()
    named = [("output", options.output), ("rejects file", options.rejects_path)]
    if options.pairs is not None:
        named.append(("pairs file", options.pairs))
        if options.pairs.resolve() in (options.output.resolve(), options.rejects_path.resolve()):
            raise UnsupportedFormatError(
                f"the pairs file {str(options.pairs)!r} is another output; choose another"
            )
        FileFormat.of(options.pairs)
    for name, path in named:
        if path.resolve() == source:
            raise UnsupportedFormatError(f"the {name} {str(path)!r} is the input; choose another")
    FileFormat.of(options.output)


def deduplicate(options: DedupOptions, settings: Settings | None = None) -> Summary:
    """Annotate ``options.input`` into ``options.output``; see the module docstring.

    Args:
        options: what to read, write and keep.
        settings: the service settings to open the engine with (model, thresholds); read
            from ``SAMESTORY_*`` environment variables when ``None``. Their ``data_dir`` and
            ``synchronous`` are replaced by the run's own.

    Returns:
        What the run did.

    Raises:
        UnsupportedFormatError: a file extension is not supported, or the output is the input.
        InputUnreadableError: the input cannot be read.
        BadRecordError: ``strict`` and a bad record was met (the output is not written).
        SamestoryError: the engine failed (a store built with other parameters, no model).
        OSError: the output cannot be written.
    """
    started = time.perf_counter()
    _check_paths(options)
    summary = Summary()
    output = options.output
    final = _beside(output, ".partial")
    first = _beside(output, ".pass1.partial") if options.mode == "stories" else final
    # (target, partial) of the pairs file, when one is asked for.
    pairs = None if options.pairs is None else (options.pairs, _beside(options.pairs, ".partial"))
    with ExitStack() as stack:
        stack.enter_context(_fewer_collections())
        reader = stack.enter_context(open_reader(options.input))
        if options.store is None:
            store = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=".samestory-dedup-", dir=output.parent)
                )
            )
        else:
            store = options.store
        settings = settings or Settings()
        if options.batch_size is None:
            options = replace(options, batch_size=default_batch_size(options.mode, settings.device))
        pool = stack.enter_context(_preparing_pool(options, settings.parameters()))
        engine = stack.enter_context(_open_engine(settings, options, store))
        rejects = stack.enter_context(open(options.rejects_path, "wb"))
        batch = _Batch(options, engine, rejects, summary)
        stored_before = engine.counts()["articles"]
        try:
            if pairs is not None:
                # Created now, so an unwritable place fails before the run, not after it.
                pairs[1].touch()
            _first_pass(batch, reader, first, pool)
            if options.mode == "stories":
                summary.written = _final_pass(batch, first, final)
                first.unlink()
            if pairs is not None:
                summary.pairs = _write_pairs(engine, pairs[1], FileFormat.of(pairs[0]))
            os.replace(final, output)
            if pairs is not None:
                os.replace(pairs[1], pairs[0])
        except BaseException:
            first.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            if pairs is not None:
                pairs[1].unlink(missing_ok=True)
            raise
        accepted = sum(summary.statuses.values())
        summary.already_stored = accepted - (engine.counts()["articles"] - stored_before)
    summary.seconds = time.perf_counter() - started
    return summary


PAIR_FIELDS = ("id", "copy_of", "jaccard", "containment")


def _write_pairs(engine: Engine, path: Path, file_format: FileFormat) -> int:
    """Every copy pair of the store into ``path`` in ``file_format``; returns the count."""
    schema = None
    if file_format.kind == "parquet":
        import pyarrow as pa

        schema = pa.schema(
            [
                ("id", pa.string()),
                ("copy_of", pa.string()),
                ("jaccard", pa.float64()),
                ("containment", pa.float64()),
            ]
        )
    written = 0
    with open_writer(path, file_format, columns=PAIR_FIELDS, schema=schema) as writer:
        chunk: list[Record] = []
        for pair in engine.copy_pairs():
            chunk.append(dict(zip(PAIR_FIELDS, pair, strict=True)))
            if len(chunk) >= 10_000:
                writer.write(chunk)
                written += len(chunk)
                chunk = []
        writer.write(chunk)
        written += len(chunk)
    return written


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector set for a batch run, and set back afterwards.

    A run allocates millions of short-lived objects (records, articles, rows) and makes
    few reference cycles. With the default thresholds the collector ran ~890 times on
    SaudiNewsNet, six of them full collections over every object the imports made (numba's
    above all): 0.78 s of the ingesting process. The objects alive at the start are moved
    out of its sight (:func:`gc.freeze`; forked workers inherit that) and the youngest
    generation is collected after 10,000 allocations instead of 700.
    """
    threshold = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0  # a caller's own frozen objects are left alone
    if freeze:
        gc.freeze()
    gc.set_threshold(max(threshold[0], _GC_YOUNGEST), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()


_GC_YOUNGEST = 10_000


@contextmanager
def _open_engine(settings: Settings, options: DedupOptions, store: Path) -> Iterator[Engine]:
    # "normal" survives a killed process (what resuming needs); a temporary store need not
    # survive anything.
    kept = options.store is not None
    synchronous = "normal" if kept else "off"
    settings = settings.model_copy(update={"data_dir": store, "synchronous": synchronous})
    # A temporary store is deleted at the end: index snapshots of it would be written for
    # nothing.
    engine = open_engine(settings, mode=options.mode, periodic_snapshots=kept)
    engine.set_page_cache(BATCH_PAGE_CACHE_MIB)
    if not kept and not engine.make_store_scratch():
        logger.warning("the temporary store keeps its write-ahead log")
    try:
        yield engine
    finally:
        engine.close(snapshot=kept)


def _output_columns(reader: RecordReader, fields: FieldMap) -> list[str] | None:
    if reader.columns is None:
        return None
    present = set(reader.columns)
    return reader.columns + [name for name in (fields.id, *ADDED_FIELDS) if name not in present]


# SQLite page cache of a batch run's store: inserts touch the id and content-hash indexes at
# random places (SaudiNewsNet: an insert 32 -> 22 us with 64 MiB instead of 2).
BATCH_PAGE_CACHE_MIB = 64

# Workers chosen by default: one per CPU, at most this many (the ingesting process is the
# bottleneck beyond two or three), none on a single CPU. Not one fewer than the CPUs: the
# ingesting process leaves its CPU idle at moments (SQLite's writes, its threads taking
# turns on the GIL), which a second worker fills. SaudiNewsNet on 2 CPUs, four alternating
# runs each: 5.72-5.96 s with one worker, 5.43-5.63 s with two.
MAX_AUTO_WORKERS = 3


def default_batch_size(mode: Mode, device: str) -> int:
    """Records per chunk when none is given: larger in ``stories`` mode on CUDA."""
    return GPU_BATCH_SIZE if mode == "stories" and device.startswith("cuda") else BATCH_SIZE


def _worker_count(options: DedupOptions) -> int:
    if options.workers is not None:
        return options.workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(MAX_AUTO_WORKERS, cpus) if cpus > 1 else 0


@contextmanager
def _preparing_pool(
    options: DedupOptions, params: Parameters
) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for :func:`~index.engine.prepare`, or None to prepare in process.

    Forked where the platform allows it and this process runs no other thread, before the
    engine opens its store or loads a model, so the workers start at once with this
    process's imports and kernels (:func:`_load_kernels`) and hold nothing else.
    """
    workers = _worker_count(options)
    if workers <= 0:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    # Forking is only safe while this process has no other thread (one could hold a lock
    # the child would wait on forever); otherwise the workers start afresh.
    method = "fork" if "fork" in methods and threading.active_count() == 1 else None
    if method is None:
        method = "forkserver" if "forkserver" in methods else "spawn"
    else:
        _load_kernels(options, params)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
    try:
        try:
            pool.submit(int).result()  # start the workers now
        except (BrokenProcessPool, OSError) as error:
            logger.warning("preparing workers did not start (%s); preparing in this process", error)
            yield None
        else:
            yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# A made-up text that takes prepare() through each kernel it calls: lines to split, clean
# and fold (Latin and Arabic, one of them a navigation line), words to shingle and hash.
_WARM_UP_TEXT = "\n".join(
    [
        "Home | News | Sport",
        " ".join(f"word{number} of a sentence" for number in range(30)) + ".",
        " ".join(f"كلمة{number} في جملة" for number in range(30)) + ".",
    ]
)


def _load_kernels(options: DedupOptions, params: Parameters) -> None:
    """Load what preparing needs once (numba's kernels from its disk cache, the MinHash
    permutations), before the workers fork: each then inherits them instead of loading
    its own in its first chunk (0.035 s each). SaudiNewsNet, four sets of 8-10 alternating
    pairs: -0.066, -0.035, -0.026 and -0.003 s of wall, ~1 %. This process prepares
    articles itself later (see :class:`_Balance`, and the re-checks of learned lines), so
    it would load them anyway.
    """
    # The terms are computed where the engine keeps them (Engine.keeps_terms): always but in
    # dedup mode on a temporary store. Should that differ, one kernel loads later.
    terms = options.mode != "dedup" or options.store is not None
    article = Article(id="warm-up", text=_WARM_UP_TEXT, source="warm-up")
    prepare([article], params, bodies=options.mode != "dedup", terms=terms)


class _Balance:
    """How many articles of each chunk the ingesting process prepares itself."""

    def __init__(self, batch_size: int) -> None:
        self.own = 0
        self._step = max(1, batch_size // 32)
        self._most = batch_size // 2

    def waited(self, waiting: bool) -> None:
        """Record whether the ingesting process had to wait for a chunk's preparation."""
        if waiting:
            self.own = min(self._most, self.own + self._step)
        else:
            self.own = max(0, self.own - self._step)


def _first_pass(
    batch: _Batch, reader: RecordReader, target: Path, pool: ProcessPoolExecutor | None
) -> None:
    options = batch.options
    summary = batch.summary
    params = batch.engine.params
    store_file = batch.engine.store_file
    # Only stories mode reads the cleaned texts; dedup mode is spared half the bytes.
    with_bodies = options.mode != "dedup"
    # Nor terms, where the engine does not keep them (dedup mode, temporary store).
    with_terms = batch.engine.keeps_terms
    # Chunks are parsed and handed to the workers this far ahead of the one ingested.
    ahead = 1 + (_worker_count(options) if pool is not None else 0)
    # Articles at the end of each chunk that this process prepares itself rather than the
    # workers: more while it waits for the workers, fewer while it keeps them waiting, so
    # that neither side idles (the verdicts are the same whoever prepares an article).
    balance = _Balance(options.batch_size or BATCH_SIZE)
    queue: deque[tuple[list[_Parsed], Future[Preparation] | None]] = deque()
    with (
        open_writer(
            target,
            FileFormat.of(options.output),
            columns=_output_columns(reader, options.fields),
            schema=reader.schema,
            string_fields=(options.fields.id, *ADDED_FIELDS),
        ) as writer,
        _progress_bar(reader, options.progress) as bar,
        # Writing (compressing, mostly, which frees the GIL) overlaps the next chunk.
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="samestory-write") as writing,
    ):
        written: Future[None] | None = None

        def ingest_oldest() -> None:
            nonlocal pool, written
            parsed, future = queue.popleft()
            preparation: Preparation | None = None
            if future is not None:
                try:
                    balance.waited(not future.done())
                    preparation = future.result()
                except BrokenProcessPool:
                    logger.warning("a preparing worker died; preparing in this process")
                    pool = None
            kept = batch.process(parsed, preparation)
            if written is not None:
                written.result()  # one chunk in flight; a failed write stops the run
            written = writing.submit(_write, writer, kept)
            summary.written += len(kept)
            if bar is not None:
                bar.update(reader.position() - bar.n)
                rate = summary.read / max(bar.format_dict["elapsed"], 1e-9)
                bar.set_postfix_str(f"{summary.read:,} docs, {rate:,.0f} docs/s", refresh=False)

        try:
            # A JSON Lines output is written from the input's lines where it can be.
            splice = isinstance(writer, JsonLinesWriter)
            for chunk, texts in reader.chunks_with_lines(options.batch_size or BATCH_SIZE):
                parsed = batch.parse(chunk, texts if splice else None)
                future: Future[Preparation] | None = None
                articles = [item.article for item in parsed if item.article is not None]
                if pool is not None and articles:
                    articles = articles[: len(articles) - balance.own]
                if pool is not None and articles:
                    # Pickled here, then hashed once (from the UTF-8 form pickling left
                    # in each text); the worker gets both.
                    payload, hashes = pickle_with_hashes(articles)
                    try:
                        future = pool.submit(
                            _prepare_pickled,
                            payload,
                            hashes,
                            params,
                            store=store_file,
                            bodies=with_bodies,
                            terms=with_terms,
                        )
                    except BrokenProcessPool:
                        logger.warning("a preparing worker died; preparing in this process")
                        pool = None
                queue.append((parsed, future))
                if len(queue) > ahead:
                    ingest_oldest()
            while queue:
                ingest_oldest()
            if written is not None:
                written.result()
        finally:
            for _parsed, pending in queue:
                if pending is not None:
                    pending.cancel()


def _prepare_pickled(
    payload: bytes,
    hashes: list[str],
    params: Parameters,
    *,
    store: Path | None,
    bodies: bool,
    terms: bool,
) -> Preparation:
    """:func:`~index.engine.prepare` of the articles of :func:`pickle_with_hashes`, in a
    worker."""
    articles = unpickle_with_hashes(payload, hashes)
    return prepare(articles, params, store=store, bodies=bodies, terms=terms)


def _write(writer: RecordWriter, records: list[Record | bytes]) -> None:
    if isinstance(writer, JsonLinesWriter):
        writer.write_lines(records)
        return
    dicts = [record for record in records if not isinstance(record, bytes)]
    assert len(dicts) == len(records), "only a JSON Lines output is given lines"
    writer.write(dicts)


def _final_pass(batch: _Batch, source: Path, target: Path) -> int:
    """Rewrite ``source`` into ``target`` with each story's final canonical."""
    options = batch.options
    engine = batch.engine
    id_field = options.fields.id
    only_canonical = options.keep == "canonical"
    canonicals: dict[str, str] = {}
    written = 0
    file_format = FileFormat.of(options.output)
    with (
        open_reader(source, file_format) as reader,
        open_writer(target, file_format, columns=reader.columns, schema=reader.schema) as writer,
    ):
        for chunk in reader.chunks(options.batch_size or BATCH_SIZE):
            kept: list[Record] = []
            for line, record in chunk:
                if isinstance(record, BadRecord):
                    raise InputUnreadableError(
                        f"{str(source)!r} line {line}: the first pass wrote a bad record: "
                        f"{record.reason}"
                    )
                cluster_id = str(record["cluster_id"])
                canonical = canonicals.get(cluster_id)
                if canonical is None:
                    canonical = engine.story(cluster_id, limit=0).cluster.canonical.id
                    canonicals[cluster_id] = canonical
                record["canonical_id"] = canonical
                if not only_canonical or str(record[id_field]) == canonical:
                    kept.append(record)
            writer.write(kept)
            written += len(kept)
    return written


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``dedup``'s arguments to ``parser``."""
    parser.add_argument("input", type=Path, help=".jsonl, .jsonl.gz, .csv(.gz) or .parquet")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="annotated output; format by extension"
    )
    parser.add_argument(
        "--mode",
        choices=("stories", "dedup"),
        default="stories",
        help="stories: duplicates and story clusters (model); dedup: duplicates only, no "
        "model (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        choices=("all", "canonical", "first"),
        default="all",
        help="write every record, each story's canonical, or the first of each duplicate "
        "group (default: %(default)s)",
    )
    defaults = FieldMap()
    for name, flag in (
        ("id", "--id-field"),
        ("text", "--text-field"),
        ("title", "--title-field"),
        ("published_at", "--date-field"),
        ("url", "--url-field"),
        ("source", "--source-field"),
        ("language", "--language-field"),
    ):
        parser.add_argument(
            flag,
            dest=f"{name}_field",
            default=getattr(defaults, name),
            metavar="NAME",
            help=f"input field holding the article's {name} (default: %(default)s)",
        )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="engine data directory to write into and resume from (the service can open it)",
    )
    parser.add_argument(
        "--rejects", type=Path, metavar="PATH", help="default: <output>.rejects.jsonl"
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad record (exit code 1)"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"records per chunk and per engine transaction (default: {BATCH_SIZE}; "
        f"{GPU_BATCH_SIZE} in stories mode on CUDA)",
    )
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="processes that prepare (clean, shingle, MinHash) chunks ahead of the one "
        "being ingested; 0 = none (default: one per CPU, at most "
        f"{MAX_AUTO_WORKERS}; none on a single CPU)",
    )
    parser.add_argument(
        "--pairs",
        type=Path,
        metavar="PATH",
        help="also write every verified copy pair (id, copy_of, jaccard, containment) the "
        "store holds at the end: the pairwise answer, where duplicate_of names the group's "
        "original; format by extension",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary table"
    )


_DESCRIPTION = (
    "Annotate a file of articles with samestory verdicts (status, duplicate_of, cluster_id, "
    "canonical_id), using the same engine as the service."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``dedup`` subcommand; its ``handler`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "dedup",
        help="deduplicate and cluster a JSONL, CSV or Parquet file",
        description=_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    parser.set_defaults(handler=run)


def options_from(args: argparse.Namespace) -> DedupOptions:
    """The run the parsed arguments describe."""
    return DedupOptions(
        input=args.input,
        output=args.output,
        mode=args.mode,
        keep=args.keep,
        fields=FieldMap(
            id=args.id_field,
            text=args.text_field,
            title=args.title_field,
            published_at=args.published_at_field,
            url=args.url_field,
            source=args.source_field,
            language=args.language_field,
        ),
        store=args.store,
        rejects=args.rejects,
        strict=args.strict,
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
        workers=args.workers,
        pairs=args.pairs,
    )


def _no_collections_at_exit() -> None:
    """Freeze every object when the interpreter exits, before its final collections.

    The command ends the process, and those collections went over every object alive,
    the imports' (numba's above all) included: 0.33 s between the run's end and the
    process's on SaudiNewsNet, 0.07 s with this. What they would free, exiting frees;
    objects in reference cycles go without their finalizers, which Python does not promise
    at exit anyway (every file a run writes is closed before it returns).
    """
    atexit.unregister(gc.freeze)  # once, however many runs
    atexit.register(gc.freeze)


def run(args: argparse.Namespace, *, stream: TextIO | None = None) -> int:
    """Run ``samestory dedup`` for parsed arguments; returns the exit code.

    The summary table and error messages go to ``stream`` (stderr by default).
    """
    out = stream or sys.stderr
    options = options_from(args)
    _no_collections_at_exit()
    try:
        summary = deduplicate(options)
    except ValidationError as error:
        out.write(f"samestory dedup: error: invalid SAMESTORY_* settings:\n{error}\n")
        return EXIT_USAGE
    except UnsupportedFormatError as error:
        out.write(f"samestory dedup: error: {error}\n")
        return EXIT_USAGE
    except InputUnreadableError as error:
        out.write(f"samestory dedup: error: {error}\n")
        return EXIT_UNREADABLE
    except BadRecordError as error:
        out.write(f"samestory dedup: {error}; see {options.rejects_path}\n")
        return EXIT_FAILED
    except (SamestoryError, OSError) as error:
        out.write(f"samestory dedup: error: {error}\n")
        return EXIT_FAILED
    if not args.quiet:
        out.write(summary.table())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service.dedup``: the ``dedup`` subcommand on its own."""
    parser = argparse.ArgumentParser(
        prog="samestory dedup",
        description=_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
