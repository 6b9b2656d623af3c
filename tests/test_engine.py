"""The engine end to end: real SQLite, real MinHash/LSH, real FAISS and the real model."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from conftest import ECONOMY, FLOOD, IndexState, engine_embedder, fill_up, index_state, make_room

from index import dates
from index import engine as engine_module
from index.article import Article, Verdict
from index.dates import read_evidence
from index.embed import SentenceTransformerEmbedder
from index.engine import BriefVerdict, Engine, prepare
from index.errors import (
    ArticleNotFoundError,
    BoilerplateOnlyError,
    ConflictError,
    EmptyTextError,
    IndexMismatchError,
    StoryNotFoundError,
)
from index.params import Parameters
from index.store import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "data" / "seeds"

needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/data/seeds is absent")


def _article(article_id: str, paragraphs: list[str], **fields: object) -> Article:
    return Article(id=article_id, text="\n\n".join(paragraphs), **fields)  # type: ignore[arg-type]


@pytest.fixture
def dedup_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine.open(tmp_path / "data", mode="dedup")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def embedder(model_cache_dir: Path) -> SentenceTransformerEmbedder:
    embedder: SentenceTransformerEmbedder = engine_embedder(model_cache_dir)
    return embedder


@pytest.fixture
def story_engine(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[Engine]:
    engine = Engine.open(tmp_path / "data", embedder=embedder)
    yield engine
    engine.close()


# -- bad input ---------------------------------------------------------------------------


def test_empty_text_is_refused_with_a_clear_message() -> None:
    with pytest.raises(EmptyTextError, match="empty or only whitespace"):
        Article(id="a", text="   \n\t ")


def test_an_article_pickles_whole_for_the_preparing_workers() -> None:
    import copy
    import pickle

    article = Article(
        id="a",
        text="Body",
        title="Title",
        url="https://example.com/a",
        source="example",
        language="en",
        published_at=datetime(2015, 7, 21, 2, 51),
    )
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(article, protocol=protocol))
        assert restored == article and restored.published_at == article.published_at
        assert restored.published_at is not None and restored.published_at.tzinfo is UTC
    assert copy.deepcopy(article) == article
    assert pickle.loads(pickle.dumps(Article(id="b", text="x"))) == Article(id="b", text="x")


def test_the_text_hash_is_computed_once_and_travels_with_a_pickled_article() -> None:
    import pickle

    from index.article import pickle_with_hashes, unpickle_with_hashes

    text = "نص المقال\nBody \u00e9"
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    unhashed = pickle.loads(pickle.dumps(Article(id="a", text=text)))
    assert "text_hash" not in unhashed.__dict__  # nothing computed, nothing sent
    assert unhashed.text_hash == expected
    article = Article(id="a", text=text)
    article.text_hash  # noqa: B018 -- computed and cached by the property
    restored = pickle.loads(pickle.dumps(article))
    assert restored.__dict__["text_hash"] == expected and restored == article
    # Batch work pickles a chunk first, then hashes (the text's UTF-8 form is then cached
    # in the string) and sends the hashes beside it.
    articles = [Article(id="b", text=text), Article(id="c", text="other")]
    payload, hashes = pickle_with_hashes(articles)
    assert hashes == [expected, hashlib.sha256(b"other").hexdigest()]
    assert all("text_hash" in sent.__dict__ for sent in articles)
    received = unpickle_with_hashes(payload, hashes)
    assert received == articles
    assert [item.__dict__["text_hash"] for item in received] == hashes
    with pytest.raises(ValueError):
        unpickle_with_hashes(payload, hashes[:1])
    # The hash is not a field: equality and replace() go by the fields, and a replaced
    # text gets its own hash.
    other = dataclasses.replace(article, text="other")
    assert other.text_hash == hashlib.sha256(b"other").hexdigest()


def test_boilerplate_only_text_is_refused_and_nothing_is_stored(dedup_engine: Engine) -> None:
    with pytest.raises(BoilerplateOnlyError, match="nothing is left"):
        dedup_engine.ingest(Article(id="nav", text="Skip to content\n\nScroll to Top"))
    with pytest.raises(ArticleNotFoundError):
        dedup_engine.get("nav")
    assert dedup_engine.counts()["articles"] == 0


def test_a_bot_check_page_is_refused_and_two_of_them_are_not_stored(
    dedup_engine: Engine,
) -> None:
    page = (
        "Just a moment...\nChecking your browser before accessing example.com.\n"
        "This process is automatic. Your browser will redirect to your requested content."
    )
    for name in ("blocked-1", "blocked-2"):
        with pytest.raises(BoilerplateOnlyError, match="bot check"):
            dedup_engine.ingest(Article(id=name, text=page))
    assert dedup_engine.counts()["articles"] == 0


def test_a_bad_article_in_a_batch_stores_nothing_of_the_batch(dedup_engine: Engine) -> None:
    good = _article("good", FLOOD)
    bad = Article(id="bad", text="Skip to content")
    with pytest.raises(BoilerplateOnlyError, match="'bad'"):
        dedup_engine.ingest_many([good, bad])
    assert dedup_engine.counts() == {
        "articles": 0,
        "stories": 0,
        "lsh_entries": 0,
        "vector_entries": 0,
    }
    assert dedup_engine.ingest(good).status == "new_story"


def test_same_id_with_other_text_is_a_conflict(dedup_engine: Engine) -> None:
    dedup_engine.ingest(_article("x", FLOOD))
    with pytest.raises(ConflictError, match="already stored with a different text"):
        dedup_engine.ingest(_article("x", ECONOMY))


def test_unknown_ids_raise_typed_errors(dedup_engine: Engine) -> None:
    with pytest.raises(ArticleNotFoundError, match="'nope'"):
        dedup_engine.delete("nope")
    with pytest.raises(StoryNotFoundError):
        dedup_engine.story("s999")
    with pytest.raises(StoryNotFoundError):
        dedup_engine.story("not-a-story")


def test_store_built_with_other_parameters_is_refused(tmp_path: Path) -> None:
    Engine.open(tmp_path, mode="dedup").close()
    with pytest.raises(IndexMismatchError, match="num_perm"):
        Engine.open(tmp_path, Parameters(num_perm=64), mode="dedup")


def test_a_data_directory_has_one_engine_at_a_time(tmp_path: Path) -> None:
    from index.errors import DataDirectoryInUseError

    first = Engine.open(tmp_path, mode="dedup")
    first.ingest(_article("a", FLOOD))
    with pytest.raises(DataDirectoryInUseError, match=rf"in use .*pid {os.getpid()}\)"):
        Engine.open(tmp_path, mode="dedup")
    assert first.ingest(_article("b", ECONOMY)).status == "new_story"  # unharmed
    first.close()
    with Engine.open(tmp_path, mode="dedup") as second:
        assert second.counts()["articles"] == 2
    # An open that fails gives the directory back.
    with pytest.raises(IndexMismatchError):
        Engine.open(tmp_path, Parameters(num_perm=64), mode="dedup")
    Engine.open(tmp_path, mode="dedup").close()


def test_another_process_cannot_write_a_directory_an_engine_has(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "x", "text": " ".join(FLOOD)}) + "\n")
    with Engine.open(tmp_path / "data", mode="dedup") as engine:
        engine.ingest(_article("a", FLOOD))
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "dedup",
                str(source),
                "-o",
                str(tmp_path / "out.jsonl"),
                "--mode",
                "dedup",
                "--store",
                str(tmp_path / "data"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert run.returncode == 1, run.stderr
        assert f"data directory {tmp_path / 'data'} is in use" in run.stderr
        assert engine.counts()["articles"] == 1


# -- duplicates (no model needed) ----------------------------------------------------------


def test_exact_and_near_duplicates_point_at_the_original(dedup_engine: Engine) -> None:
    original = dedup_engine.ingest(_article("orig", FLOOD, title="Floods"))
    assert original.status == "new_story"
    exact = dedup_engine.ingest(_article("exact", FLOOD))
    assert (exact.status, exact.duplicate_of) == ("exact_duplicate", "orig")
    truncated = dedup_engine.ingest(_article("trunc", [*FLOOD[:3], FLOOD[3][:40]]))
    assert (truncated.status, truncated.duplicate_of) == ("near_duplicate", "orig")
    # A copy of the copy still names the group's original, not its closest copy.
    copy_of_copy = dedup_engine.ingest(_article("copy2", [*FLOOD[:3], FLOOD[3][:30]]))
    assert copy_of_copy.duplicate_of == "orig"
    assert copy_of_copy.cluster.id == original.cluster.id
    other = dedup_engine.ingest(_article("other", ECONOMY))
    assert other.status == "new_story"
    assert other.cluster.id != original.cluster.id


def _same_body_texts() -> list[Article]:
    body = "\n\n".join(FLOOD)
    return [
        Article(id="orig", text=body),
        # The same text but for case, spacing and punctuation: exact.
        Article(id="respaced", text=body.upper().replace(". ", " .  ").replace(",", " ;")),
        # The same body under a wire dateline and a copyright line: a near-duplicate.
        Article(id="furnished", text=f"الرياض - واس\n{body}\n© 2025 جميع الحقوق محفوظة"),
        # That one again: exact, though its identical twin is not the group's original.
        Article(id="twin", text=f"الرياض - واس\n{body}\n© 2025 جميع الحقوق محفوظة"),
    ]


@pytest.mark.parametrize("path", ["one by one", "one batch"])
def test_exact_means_the_same_text_and_the_same_body_under_other_furniture_is_near(
    tmp_path: Path, path: str
) -> None:
    articles = _same_body_texts()
    with Engine.open(tmp_path / "data", mode="dedup") as engine:
        probe = Article(id="probe", text=articles[2].text)
        if path == "one by one":
            verdicts = [engine.ingest(article) for article in articles]
        else:
            verdicts = engine.ingest_many(articles)
        assert [(v.status, v.duplicate_of, v.duplicate_similarity) for v in verdicts] == [
            ("new_story", None, None),
            ("exact_duplicate", "orig", 1.0),
            ("near_duplicate", "orig", 1.0),
            ("exact_duplicate", "orig", 1.0),
        ]
        assert engine.get("furnished").verdict.status == "near_duplicate"
        # A match reads the same rule: the furnished text is stored now.
        assert engine.match(probe).status == "exact_duplicate"
        # The original's text with its paragraphs on other lines: exact too.
        bare = engine.match(Article(id="bare", text="\n".join(FLOOD)))
        assert bare.status == "exact_duplicate"


def test_a_copy_cut_to_two_thirds_is_a_copy_and_a_lead_paragraph_is_not(
    dedup_engine: Engine,
) -> None:
    words = " ".join(FLOOD).split()
    dedup_engine.ingest(Article(id="full", text=" ".join(words)))
    cut = dedup_engine.similarity(
        Article(id="full", text=" ".join(words)),
        Article(id="cut", text=" ".join(words[: len(words) * 65 // 100])),
    )
    assert cut.jaccard < Parameters().near_duplicate_threshold  # containment decides
    assert cut.near_duplicate
    two_thirds = dedup_engine.ingest(
        Article(id="cut", text=" ".join(words[: len(words) * 65 // 100]))
    )
    assert (two_thirds.status, two_thirds.duplicate_of) == ("near_duplicate", "full")
    lead = dedup_engine.ingest(Article(id="lead", text=FLOOD[0]))
    assert lead.status == "new_story"  # a lead paragraph (a quarter) is no copy
    assert not dedup_engine.similarity(
        Article(id="a", text=" ".join(words)), Article(id="b", text=FLOOD[0])
    ).near_duplicate


def test_reingest_is_idempotent_and_reopen_keeps_verdicts(tmp_path: Path) -> None:
    articles = [
        _article("a", FLOOD),
        _article("b", FLOOD[:3]),
        _article("c", ECONOMY),
        _article("d", ECONOMY[1:]),
    ]

    def essence(verdicts: list[Verdict]) -> list[tuple[object, ...]]:
        return [(v.id, v.status, v.duplicate_of, v.cluster.id) for v in verdicts]

    with Engine.open(tmp_path, mode="dedup") as engine:
        first = [engine.ingest(article) for article in articles]
        # Cluster sizes and spans grow as later articles join; the verdict itself does not.
        again = [engine.ingest(article) for article in articles]
        assert essence(again) == essence(first)
        assert [engine.ingest(article) for article in articles] == again
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert [engine.get(article.id).verdict for article in articles] == again
        assert [engine.ingest(article) for article in articles] == again


@pytest.mark.model
def test_event_time_evidence_is_stored_and_filled_in_for_an_older_store(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    flood = _article("flood", [f"{FLOOD[0]} (12 March 2024)", *FLOOD[1:]])
    economy = _article("economy", ECONOMY)
    copy = _article("copy", [f"{FLOOD[0]} (12 March 2024)", *FLOOD[1:3]])
    with Engine.open(tmp_path, embedder=embedder) as engine:
        engine.ingest_many([flood, economy, copy])
        assert [listed.id for listed in engine.get("copy").verdict.copies] == ["flood"]
    with sqlite3.connect(tmp_path / "samestory.sqlite3") as connection:
        stored = dict(connection.execute("SELECT id, evidence FROM articles"))
    # Tuesday (bit 1) and 2024; the near-duplicate has no vector, so it needs none.
    assert dates.from_bytes(stored["flood"]) == read_evidence("Tuesday 2024")
    assert stored["economy"] == b""
    assert stored["copy"] is None
    # A store written before the column and the copies table existed (version 1): the
    # engine reads the evidence on open; its copies list none.
    with sqlite3.connect(tmp_path / "samestory.sqlite3") as connection:
        connection.execute("DROP TABLE copies")
        connection.execute("ALTER TABLE articles DROP COLUMN evidence")
        connection.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Engine.open(tmp_path, embedder=embedder) as engine:
        assert engine.get("flood").verdict.status == "new_story"
        old_copy = engine.get("copy").verdict
        assert old_copy.duplicate_of == "flood" and old_copy.copies == ()
    with sqlite3.connect(tmp_path / "samestory.sqlite3") as connection:
        assert dict(connection.execute("SELECT id, evidence FROM articles")) == stored
        assert connection.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone() == (str(SCHEMA_VERSION),)
        assert connection.execute(
            "SELECT COUNT(*) FROM meta WHERE key = 'evidence_pending'"
        ).fetchone() == (0,)


def _chain() -> list[Article]:
    """A, B and C, each the one before shifted by ten words: A-B and B-C are copies
    (Jaccard 106/126 = 0.84 on word 5-grams), A-C is not (96/136 = 0.71, containment 0.83)."""
    words = [f"w{a}{b}{c}" for a in "bcdfghjklm" for b in "aeiou" for c in "rst"][:140]
    return [
        Article(id=name, text=" ".join(words[start : start + 120]))
        for name, start in (("a", 0), ("b", 10), ("c", 20))
    ]


_AB = round(106 / 126, 6)  # as a verdict reports Jaccard: six decimals


def _copies(verdict: Verdict) -> list[tuple[str, float]]:
    return [(listed.id, listed.jaccard) for listed in verdict.copies]


@pytest.mark.parametrize("batched", [False, True])
def test_copies_list_the_pairwise_matches_not_the_group(
    dedup_engine: Engine, batched: bool
) -> None:
    a, b, c = _chain()
    if batched:
        verdicts = dedup_engine.ingest_many([a, b, c])
    else:
        verdicts = [dedup_engine.ingest(article) for article in (a, b, c)]
    assert verdicts[0].copies == ()
    assert _copies(verdicts[1]) == [("a", _AB)]
    # C joins A's group through B, but is a copy of B only.
    assert verdicts[2].duplicate_of == "a"
    assert verdicts[2].duplicate_similarity == pytest.approx(96 / 136, abs=1e-6)
    assert _copies(verdicts[2]) == [("b", _AB)]
    assert dedup_engine.get("c").verdict == verdicts[2]
    # An exact copy of C lists C first, then what C's text matches.
    twin = dedup_engine.ingest(Article(id="c2", text=c.text))
    assert twin.status == "exact_duplicate"
    assert _copies(twin) == [("c", 1.0), ("b", _AB)]
    # match() lists them without storing; deleting B takes it out of every list.
    assert _copies(dedup_engine.match(Article(id="c3", text=c.text))) == [
        ("c", 1.0),
        ("c2", 1.0),
        ("b", _AB),
    ]
    dedup_engine.delete("b")
    assert _copies(dedup_engine.get("c").verdict) == []
    assert _copies(dedup_engine.get("c2").verdict) == [("c", 1.0)]


def test_a_promoted_original_lists_no_copies(dedup_engine: Engine) -> None:
    a, b, c = _chain()
    dedup_engine.ingest_many([a, b, c])
    dedup_engine.delete("a")
    promoted = dedup_engine.get("b").verdict
    assert promoted.status == "new_story" and promoted.copies == ()
    assert dedup_engine.get("c").verdict.duplicate_of == "b"
    assert _copies(dedup_engine.get("c").verdict) == [("b", _AB)]


@pytest.mark.model
def test_copies_in_stories_mode(story_engine: Engine) -> None:
    a, b, c = _chain()
    verdicts = [story_engine.ingest(article) for article in (a, b, c)]
    assert [_copies(verdict) for verdict in verdicts] == [
        [],
        [("a", _AB)],
        [("b", _AB)],
    ]
    assert verdicts[2].duplicate_of == "a"
    twin = story_engine.ingest(Article(id="c2", text=c.text))
    assert _copies(twin)[0] == ("c", 1.0)


def test_indexes_are_rebuilt_when_snapshots_are_missing(tmp_path: Path) -> None:
    with Engine.open(tmp_path, mode="dedup") as engine:
        engine.ingest(_article("a", FLOOD))
    for snapshot in (tmp_path / "snapshots").iterdir():
        shutil.rmtree(snapshot)
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert engine.counts()["lsh_entries"] == 1
        assert engine.ingest(_article("b", FLOOD[:3])).duplicate_of == "a"


def _own_texts(count: int) -> list[Article]:
    rng = random.Random(11)
    vocabulary = [f"word{number}" for number in range(2000)]
    return [
        Article(id=f"own{number}", text=" ".join(rng.choice(vocabulary) for _ in range(40)))
        for number in range(count)
    ]


def test_periodic_snapshots_wait_longer_as_the_store_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each snapshot rewrites every index: a fixed interval would make a long run quadratic.
    monkeypatch.setattr(engine_module, "SNAPSHOT_GROWTH", 0.5)
    written: list[int] = []
    with Engine.open(tmp_path, mode="dedup", snapshot_every=2) as engine:
        take = engine._take_snapshot

        def taken() -> engine_module._SnapshotImage:
            written.append(engine.counts()["articles"])
            return take()

        monkeypatch.setattr(engine, "_take_snapshot", taken)
        for article in _own_texts(40):
            engine.ingest(article)
            # A snapshot still being written when the next is due waits for a later commit;
            # here each is let finish.
            if engine._snapshot_pending is not None:
                engine._snapshot_pending.result()
        # After 2 ingests at least, or half the store where that is more; and on close.
        assert written == [2, 4, 7, 13, 25]
    assert written == [2, 4, 7, 13, 25, 40]


def test_without_periodic_snapshots_a_store_closed_without_one_reopens_from_the_record(
    tmp_path: Path,
) -> None:
    articles = _own_texts(30)
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        for article in articles[:20]:
            engine.ingest(article)
        assert not (tmp_path / "snapshots").exists()
        engine.snapshot()
        for article in articles[20:]:
            engine.ingest(article)
        engine.close(snapshot=False)
    state = json.loads((_newest_snapshot(tmp_path) / "state.json").read_text())
    with Engine.open(tmp_path, mode="dedup") as engine:
        # The snapshot has the first 20; the other 10 are read again from the record.
        assert engine.counts()["lsh_entries"] == 30
        copy = engine.ingest(Article(id="copy", text=articles[25].text))
    assert state["max_row"] == 20
    assert (copy.status, copy.duplicate_of) == ("exact_duplicate", "own25")


def test_closing_writes_a_snapshot_only_when_the_indexes_changed(tmp_path: Path) -> None:
    articles = _own_texts(12)
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        for article in articles[:10]:
            engine.ingest(article)
    first = _newest_snapshot(tmp_path)
    written = (first / "state.json").stat().st_mtime_ns

    def reopened() -> list[str]:
        """The generations on disk after opening, reading and closing the store."""
        with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
            engine.match(Article(id="probe", text=articles[3].text))
        return sorted(path.name for path in (tmp_path / "snapshots").iterdir())

    # Read-only use: the snapshot loaded is the one that stays, untouched.
    assert reopened() == [first.name]
    assert (first / "state.json").stat().st_mtime_ns == written
    # An ingest, a deletion: each makes the next close write a new generation.
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        engine.ingest(articles[10])
    second = _newest_snapshot(tmp_path)
    assert second != first and reopened() == [second.name]
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        engine.delete(articles[0].id)
    third = _newest_snapshot(tmp_path)
    assert third != second and reopened() == [third.name]
    # A snapshot behind the record (closed without one) is caught up, then written anew.
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        engine.ingest(articles[11])
        engine.close(snapshot=False)
    fourth = reopened()
    assert fourth != [third.name]
    assert json.loads((_newest_snapshot(tmp_path) / "state.json").read_text())["max_row"] == 12
    # Closing right after an explicit snapshot writes nothing more.
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        engine.ingest(Article(id="late", text="a late article of its own about nothing else"))
        engine.snapshot()
        taken = _newest_snapshot(tmp_path)
    assert _newest_snapshot(tmp_path) == taken


def _newest_snapshot(data_dir: Path) -> Path:
    generations = sorted((data_dir / "snapshots").glob("generation-*"))
    assert generations, "no snapshot generation written"
    return generations[-1]


def _snapshot_between(engine: Engine, articles: Sequence[Article], count: int) -> Path:
    """Ingest ``count`` of ``articles``, snapshot, ingest the rest; the snapshot's directory."""
    for article in articles[:count]:
        engine.ingest(article)
    engine.snapshot()
    taken = _newest_snapshot(engine._snapshot_dir.parent)
    for article in articles[count:]:
        engine.ingest(article)
    return taken


def _rebuilt_frequencies(data_dir: Path) -> npt.NDArray[np.uint32]:
    """The document frequencies of the store as a rebuild from the record makes them."""
    shutil.rmtree(data_dir / "snapshots")
    with Engine.open(data_dir, mode="dedup") as engine:
        rebuilt: npt.NDArray[np.uint32] = engine._frequencies._counts.copy()
    assert int(rebuilt.sum()) > 0
    return rebuilt


def test_a_snapshot_that_fails_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The write fails before the new state is in place (a full disk): the generation it
    # started is removed, and the next open loads the previous one and adds the rows after
    # it from the record (once: not counted twice in the document frequencies).
    caplog.set_level(logging.INFO, logger="index.engine")
    articles = _own_texts(30)
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        first = _snapshot_between(engine, articles, 10)
        replace = Path.replace

        def fails_at_the_state(self: Path, target: Path) -> Path:
            if Path(target).name == "state.json":
                raise OSError(28, "No space left on device")
            return replace(self, target)

        with monkeypatch.context() as patch:
            patch.setattr(Path, "replace", fails_at_the_state)
            engine._snapshot_or_warn()
        assert "index snapshot not written" in caplog.text
        assert [path.name for path in (tmp_path / "snapshots").iterdir()] == [first.name]
        engine.close(snapshot=False)
    caplog.clear()
    with Engine.open(tmp_path, mode="dedup") as engine:
        reopened = engine._frequencies._counts.copy()
        assert engine.counts()["lsh_entries"] == 30
    assert f"indexes loaded from snapshot {first.name} (+20 rows from the record)" in caplog.text
    assert np.array_equal(reopened, _rebuilt_frequencies(tmp_path))


def test_a_snapshot_cut_short_is_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A process killed while writing leaves a newer generation without its state.json
    # (and perhaps half its files): the next open passes it over for the complete one.
    caplog.set_level(logging.INFO, logger="index.engine")
    articles = _own_texts(30)
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        first = _snapshot_between(engine, articles, 10)
        engine.snapshot()
        engine.close(snapshot=False)
    second = _newest_snapshot(tmp_path)
    assert second.name > first.name
    assert [path.name for path in (tmp_path / "snapshots").iterdir()] == [second.name]
    # Killed before the state: the files are all new, the state is not there.
    (second / "state.json").unlink()
    (second / "lsh.bin").write_bytes((second / "lsh.bin").read_bytes()[:100])
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert engine.counts()["lsh_entries"] == 30
        assert engine.ingest(Article(id="copy", text=articles[25].text)).duplicate_of == "own25"
    assert "rebuilding indexes from the record" in caplog.text
    # Its next snapshot replaces the leftover; an older complete one is used before it.
    assert [path.name for path in (tmp_path / "snapshots").iterdir()] != [second.name]
    newest = _newest_snapshot(tmp_path)
    (tmp_path / "snapshots" / "generation-99999999").mkdir()
    caplog.clear()
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert engine.counts()["lsh_entries"] == 31
    assert f"indexes loaded from snapshot {newest.name} (+0 rows" in caplog.text


def test_a_snapshot_of_an_older_version_is_read_then_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before generations the files lay in snapshots/ itself.
    caplog.set_level(logging.INFO, logger="index.engine")
    articles = _own_texts(12)
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        for article in articles:
            engine.ingest(article)
    generation = _newest_snapshot(tmp_path)
    for entry in generation.iterdir():
        entry.rename(tmp_path / "snapshots" / entry.name)
    generation.rmdir()
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert engine.counts()["lsh_entries"] == 12
    assert "indexes loaded from snapshot snapshots (+0 rows" in caplog.text
    # Closing wrote a generation and removed the flat files.
    assert [entry.is_dir() for entry in (tmp_path / "snapshots").iterdir()] == [True]


def _open_mode(data_dir: Path, request: pytest.FixtureRequest, mode: str) -> Engine:
    if mode == "dedup":
        return Engine.open(data_dir, mode="dedup", snapshot_every=None)
    return Engine.open(data_dir, embedder=request.getfixturevalue("embedder"), snapshot_every=None)


def _delete_around_a_snapshot(engine: Engine) -> IndexState:
    """Ingest, snapshot, then delete and ingest: every kind of deletion a snapshot must be
    brought up to date with happens after it (an original whose copy is promoted, a copy,
    an original alone, a copy promoted and then deleted itself, an original and its promoted
    copy both stored after the snapshot). The index state at the end."""
    articles = _own_texts(30)

    def copy(name: str, number: int) -> Article:
        return Article(id=name, text=articles[number].text)

    for article in [*articles[:20], copy("c3", 3), copy("c5", 5), copy("c9a", 9), copy("c9b", 9)]:
        engine.ingest(article)
    engine.snapshot()
    for article_id in ("own5", "c3", "own7", "own9", "c9a"):
        engine.delete(article_id)
    for article in [*articles[20:], copy("c25", 25)]:
        engine.ingest(article)
    engine.delete("own25")
    return index_state(engine)


@pytest.mark.parametrize("mode", ["dedup", pytest.param("stories", marks=pytest.mark.model)])
def test_a_snapshot_taken_before_deletions_is_brought_up_to_date(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    # Killed after deleting: the snapshot still holds what was deleted since. The record's
    # deletion log says what to take out and which copies became originals, so the next
    # start loads the snapshot instead of rebuilding every index.
    caplog.set_level(logging.INFO, logger="index.engine")
    with _open_mode(tmp_path, request, mode) as engine:
        live = _delete_around_a_snapshot(engine)
        taken = _newest_snapshot(tmp_path)
        engine.close(snapshot=False)
    assert live[3] if mode == "stories" else not live[3]
    with _open_mode(tmp_path, request, mode) as engine:
        assert index_state(engine) == live
        assert engine.ingest(Article(id="again5", text=_own_texts(6)[5].text)).duplicate_of == "c5"
        assert engine.ingest(Article(id="again9", text=_own_texts(10)[9].text)).duplicate_of == (
            "c9b"
        )
    assert f"6 deletions since snapshot {taken.name} replayed" in caplog.text
    assert f"indexes loaded from snapshot {taken.name} (+10 rows from the record)" in caplog.text
    # The same as a rebuild from the record.
    shutil.rmtree(tmp_path / "snapshots")
    with _open_mode(tmp_path, request, mode) as engine:
        rebuilt = index_state(engine)
    with _open_mode(tmp_path, request, mode) as engine:
        assert index_state(engine) == rebuilt


def test_the_deletion_log_is_kept_only_after_the_newest_snapshot(tmp_path: Path) -> None:
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        _delete_around_a_snapshot(engine)
    # Closing wrote a snapshot with all six deletions: the next deletion drops their log.
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        engine.delete("own1")
        engine.close(snapshot=False)
    with sqlite3.connect(tmp_path / "samestory.sqlite3") as connection:
        logged = connection.execute("SELECT number, row FROM deletions").fetchall()
    assert len(logged) == 1 and logged[0][0] == 7
    with Engine.open(tmp_path, mode="dedup") as engine:
        with pytest.raises(ArticleNotFoundError):
            engine.get("own1")
        assert engine.counts()["lsh_entries"] == engine.counts()["articles"] == 28


def test_a_snapshot_older_than_the_deletion_log_is_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Deletions made before the log existed (a store of schema version 3) are not in it: a
    # snapshot from before them cannot be brought up to date, and the indexes are rebuilt.
    caplog.set_level(logging.INFO, logger="index.engine")
    with Engine.open(tmp_path, mode="dedup", snapshot_every=None) as engine:
        live = _delete_around_a_snapshot(engine)
        engine.close(snapshot=False)
    with sqlite3.connect(tmp_path / "samestory.sqlite3") as connection:
        connection.execute("DELETE FROM deletions WHERE number = 1")
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert index_state(engine) == live
    assert "the record's deletion log does not reach back to it" in caplog.text
    assert "rebuilding indexes from the record" in caplog.text


def test_periodic_snapshots_are_written_while_the_engine_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk write of a periodic snapshot happens on its own thread: ingests and reads do
    # not wait for it, and a snapshot due while one is being written waits for a later commit.
    articles = _own_texts(12)
    release = threading.Event()
    started = threading.Event()
    with Engine.open(tmp_path, mode="dedup", snapshot_every=4) as engine:
        write = engine._write_snapshot

        def slow_write(image: engine_module._SnapshotImage) -> None:
            started.set()
            assert release.wait(30)
            write(image)

        monkeypatch.setattr(engine, "_write_snapshot", slow_write)
        for article in articles[:4]:
            engine.ingest(article)
        assert started.wait(30)
        # The snapshot of the first 4 is being written; the engine goes on.
        for article in articles[4:]:
            engine.ingest(article)
        assert engine.ingest(Article(id="copy", text=articles[9].text)).duplicate_of == "own9"
        assert engine._snapshot_pending is not None and not engine._snapshot_pending.done()
        assert not (tmp_path / "snapshots").exists() or not any(
            (tmp_path / "snapshots").glob("*/state.json")
        )
        release.set()
        engine._snapshot_pending.result()
        state = json.loads((_newest_snapshot(tmp_path) / "state.json").read_text())
        assert state["max_row"] == 4
        # The ingests after it are past due: the next commit takes the next snapshot.
        engine.ingest(Article(id="later", text="a text of its own " * 5))
        engine._snapshot_pending.result()
        state = json.loads((_newest_snapshot(tmp_path) / "state.json").read_text())
        assert state["max_row"] == 14
    with Engine.open(tmp_path, mode="dedup") as engine:
        assert engine.counts()["lsh_entries"] == 14


def test_batch_equals_one_at_a_time(tmp_path: Path) -> None:
    articles = [
        _article("a", FLOOD),
        _article("b", FLOOD[:3]),
        _article("c", ECONOMY),
        _article("d", FLOOD),
        _article("e", ECONOMY[:3]),
    ]
    with Engine.open(tmp_path / "one", mode="dedup") as engine:
        one = [engine.ingest(article) for article in articles]
    with Engine.open(tmp_path / "batch", mode="dedup") as engine:
        batch = engine.ingest_many(articles)
    strip = [(v.id, v.status, v.duplicate_of, v.cluster.id, v.cluster.canonical.id) for v in one]
    assert strip == [
        (v.id, v.status, v.duplicate_of, v.cluster.id, v.cluster.canonical.id) for v in batch
    ]


def _store_contents(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table of an engine's store, but for the times of arrival."""
    connection = sqlite3.connect(data_dir / "samestory.sqlite3")
    try:
        contents: dict[str, list[tuple[object, ...]]] = {}
        for table, order in (
            ("articles", "row"),
            ("stories", "row"),
            ("source_lines", "source, key"),
            ("sqlite_sequence", "name"),
        ):
            columns = [
                found[1]
                for found in connection.execute(f"PRAGMA table_info({table})")
                if found[1] not in ("received_at", "updated_at")
            ]
            contents[table] = connection.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
            ).fetchall()
        return contents
    finally:
        connection.close()


def test_a_dedup_batch_stores_what_one_article_at_a_time_stores(tmp_path: Path) -> None:
    # A dedup-mode batch holds its writes until its end: its later articles must be decided
    # against its earlier ones (exact and near copies, copies of copies) as against stored
    # ones, and the rows, stories and learned-line counts stored must be the same.
    start = datetime(2025, 1, 1, tzinfo=UTC)

    desk = "Example News desk"  # a short line: counted for learning the source's boilerplate

    def at(hours: int) -> datetime:
        return start + timedelta(hours=hours)

    before = [
        _article("s1", FLOOD, source="example", published_at=at(0)),
        _article("s2", FLOOD[:3], source="example", published_at=at(1)),
        _article("gone", ["A short-lived story, soon deleted."], published_at=at(1)),
    ]
    batch = [
        _article("b1", [*ECONOMY, desk], source="example", published_at=at(5)),
        # b2 is a near copy of b1, b3 an exact one, both in the batch.
        _article("b2", [*ECONOMY[:3], desk], source="example", published_at=at(3)),
        _article("b3", [*ECONOMY, desk], title="Up", source="example", published_at=at(4)),
        _article("b4", FLOOD[:3], source="other", published_at=at(9)),  # exact of stored s2
        _article("b5", FLOOD[1:], published_at=at(2)),  # near of stored s1
        _article("b6", [*ECONOMY[1:], desk], source="example", published_at=at(6)),  # near of b1
        _article("b7", [ECONOMY[0], FLOOD[0], ECONOMY[2]], published_at=at(7)),  # new story
        _article("b8", [ECONOMY[0], FLOOD[0], ECONOMY[2]], published_at=at(-3)),  # exact b7
        _article("s1", FLOOD, source="example", published_at=at(0)),  # stored already
    ]
    expected_statuses: list[tuple[str, str, str | None, str]] = []
    for name in ("one", "batch"):
        with Engine.open(tmp_path / name, mode="dedup") as engine:
            for article in before:
                engine.ingest(article)
            engine.delete("gone")  # the newest row: the batch's rows must not reuse it
            if name == "one":
                verdicts = [engine.ingest(article) for article in batch]
            else:
                verdicts = engine.ingest_many(batch)
            statuses = [(v.id, v.status, v.duplicate_of, v.cluster.id) for v in verdicts]
            sizes = [v.cluster.size for v in verdicts]
        if name == "one":
            expected_statuses = statuses
    assert statuses == expected_statuses
    assert [status for _id, status, _of, _story in statuses] == [
        "new_story",
        "near_duplicate",
        "exact_duplicate",
        "exact_duplicate",
        "near_duplicate",
        "near_duplicate",
        "new_story",
        "exact_duplicate",
        "new_story",  # s1 again: its stored verdict
    ]
    assert sizes[-1] == 4  # s1's story: s1, s2, b4 and b5, the size read at the end
    assert _store_contents(tmp_path / "batch") == _store_contents(tmp_path / "one")


def test_a_dedup_batch_that_fails_to_write_stores_nothing_and_leaves_no_index_entry(
    dedup_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dedup_engine.ingest(_article("a", FLOOD, source="example"))
    store = dedup_engine._store

    def fail(counts: object) -> None:
        list(counts)  # type: ignore[call-overload]
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "count_lines_many", fail)
    with pytest.raises(sqlite3.OperationalError):
        dedup_engine.ingest_many(
            [_article("b", ECONOMY, source="example"), _article("c", FLOOD[:3], source="x")]
        )
    assert dedup_engine.counts() == {
        "articles": 1,
        "stories": 1,
        "lsh_entries": 1,
        "vector_entries": 0,
    }
    monkeypatch.undo()
    verdicts = dedup_engine.ingest_many(
        [_article("b", ECONOMY, source="example"), _article("c", FLOOD[:3], source="x")]
    )
    assert [(v.status, v.duplicate_of) for v in verdicts] == [
        ("new_story", None),
        ("near_duplicate", "a"),
    ]


@pytest.mark.parametrize("mode", ["dedup", "stories"])
def test_a_full_disk_refuses_the_write_cleanly_and_loses_nothing(
    tmp_path: Path, mode: str, embedder: SentenceTransformerEmbedder
) -> None:
    from index.errors import StorageFullError

    with Engine.open(
        tmp_path / "data", mode=mode, embedder=embedder if mode == "stories" else None
    ) as engine:
        original = engine.ingest(_article("a", FLOOD, source="example"))
        fill_up(engine)
        batch = [_article(f"b{i}", [*ECONOMY, f"رقم {i} " * 40]) for i in range(30)]
        with pytest.raises(StorageFullError, match="storage is full"):
            engine.ingest_many([*batch, _article("copy", FLOOD)])
        # Nothing of the batch is stored or indexed, and no transaction is left open.
        assert not engine._store._connection.in_transaction
        counts = engine.counts()
        assert (counts["articles"], counts["stories"], counts["lsh_entries"]) == (1, 1, 1)
        assert engine.match(_article("probe", ECONOMY)).status == "new_story"
        make_room(engine)
        copy = engine.ingest(_article("copy", FLOOD))
        assert (copy.status, copy.duplicate_of) == ("exact_duplicate", "a")
        assert engine.ingest_many(batch)[0].status == "new_story"
    # What was acknowledged is on disk.
    with Engine.open(
        tmp_path / "data", mode=mode, embedder=embedder if mode == "stories" else None
    ) as engine:
        assert engine.get("copy").verdict.duplicate_of == "a"
        assert engine.get("a").verdict.cluster.id == original.cluster.id
        assert engine.counts()["articles"] == 32


def test_a_batch_whose_candidate_read_fails_leaves_no_trace_in_the_indexes(
    dedup_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch's signatures enter the LSH index before its stored candidates are read;
    # a failing read must take them out again.
    dedup_engine.ingest(_article("a", FLOOD, source="example"))
    batch = [_article("copy", [*FLOOD, "وأضاف المصدر أن الأمطار ستستمر."]), _article("b", ECONOMY)]

    def fail(rows: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(dedup_engine._store, "copy_candidates", fail)
    with pytest.raises(sqlite3.OperationalError):
        dedup_engine.ingest_many(batch)
    assert dedup_engine.counts()["lsh_entries"] == 1
    assert not dedup_engine._store.connection.in_transaction
    monkeypatch.undo()
    verdicts = dedup_engine.ingest_many(batch)
    assert [(v.status, v.duplicate_of) for v in verdicts] == [
        ("near_duplicate", "a"),
        ("new_story", None),
    ]
    assert dedup_engine.counts()["lsh_entries"] == 3


def test_a_snapshot_that_cannot_be_written_does_not_fail_a_stored_write(
    dedup_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dedup_engine._lsh, "saver", lambda fingerprint: fail)
    monkeypatch.setattr(dedup_engine, "_snapshot_every", 1)
    verdict = dedup_engine.ingest(_article("a", FLOOD))
    assert verdict.status == "new_story"
    assert dedup_engine.get("a").article.id == "a"
    assert dedup_engine._snapshot_pending is not None
    dedup_engine._snapshot_pending.result()  # written (and failed) on the snapshot thread
    assert "index snapshot not written" in caplog.text
    assert not any(dedup_engine._snapshot_dir.iterdir())  # nothing half-written is left
    dedup_engine.close()  # the snapshot fails again; the store still closes


def test_a_preparation_made_elsewhere_changes_no_verdict(tmp_path: Path) -> None:
    # prepare() (what batch workers run) learns nothing; the engine must redo what its
    # learned boilerplate, a changed text or an unprepared article would change.
    rng = random.Random(3)
    vocabulary = [f"word{number}" for number in range(400)]

    def own_text() -> str:
        return "\n\n".join(
            " ".join(rng.choice(vocabulary) for _ in range(30)) + "." for _ in range(3)
        )

    desk = "Wire desk, Riyadh bureau"
    first = [
        Article(id=f"w{number}", text=f"{desk}\n\n{own_text()}", source="wire")
        for number in range(6)
    ]
    flood = "\n\n".join(FLOOD)
    page = f"<html><head><title>Floods</title></head><body><p>{FLOOD[0]}</p></body></html>"
    second = [
        Article(id="flood", text=flood, source="wire"),
        # Its desk line is learned by now: without it, the body of "flood".
        Article(id="flood-wire", text=f"{desk}\n\n{flood}", source="wire"),
        Article(id="page", text=page),
        Article(id="economy", text="\n\n".join(ECONOMY), source="other"),
        Article(id="late", text="\n\n".join(ECONOMY[:3]), source="other"),
    ]
    # Prepared from other texts than the ones ingested, or not at all.
    stale = [Article(id="economy", text=own_text(), source="other")]
    results = []
    for supplied in ("no", "alone", "reading the store", "without bodies"):
        with Engine.open(tmp_path / supplied, mode="dedup") as engine:
            verdicts = []
            for batch, prepared in ((first, first), (second, second[:3] + stale)):
                store = engine.store_file if supplied == "reading the store" else None
                preparation = (
                    None
                    if supplied == "no"
                    else prepare(
                        prepared, engine.params, store=store, bodies=supplied != "without bodies"
                    )
                )
                if store is not None and batch is second:
                    # What the store had learned: the desk line, for "flood-wire".
                    assert preparation is not None and [
                        article_id
                        for article_id, learned in zip(
                            preparation.ids, preparation.learned, strict=True
                        )
                        if learned
                    ] == ["flood-wire"]
                verdicts += engine.ingest_many(batch, preparation=preparation)
            stored = engine.get("page").article.title
        results.append(
            (
                [
                    (v.id, v.status, v.duplicate_of, v.duplicate_similarity, v.cluster.id)
                    for v in verdicts
                ],
                stored,
            )
        )
    assert results[0] == results[1] == results[2] == results[3]
    statuses = {verdict[0]: verdict[1:3] for verdict in results[1][0]}
    # Its body is the flood report's once the learned desk line goes: a copy with Jaccard
    # 1.0, near (not exact: its text, with the desk line, is not the report's).
    assert statuses["flood-wire"] == ("near_duplicate", "flood")
    assert {verdict[0]: verdict[3] for verdict in results[1][0]}["flood-wire"] == 1.0
    assert statuses["late"] == ("near_duplicate", "economy")
    assert results[1][1] == "Floods"


def _prepared_with_and_without(
    engine: Engine, *, bodies: bool = True, terms: bool = True
) -> tuple[list[engine_module._Prepared], list[engine_module._Prepared]]:
    """What an engine prepares of two articles itself, and given a preparation made
    with ``prepare(..., bodies=bodies, terms=terms)``."""
    batch = [_article("flood", FLOOD, title="Floods"), _article("economy", ECONOMY)]
    digests = {article.id: hashlib.sha256(article.text.encode()).hexdigest() for article in batch}
    expected = engine._prepare_fresh(batch, digests, 0.0, None)
    preparation = prepare(batch, engine.params, bodies=bodies, terms=terms)
    return expected, engine._prepare_fresh(batch, digests, 0.0, preparation)


def test_a_stories_engine_prepares_itself_what_was_prepared_without_bodies(
    story_engine: Engine,
) -> None:
    # Stories mode embeds and detects the language of the cleaned text: a preparation
    # that left the texts out must not be used there.
    for bodies in (True, False):
        expected, got = _prepared_with_and_without(story_engine, bodies=bodies)
        assert all(item.body for item in expected)
        assert [(item.body, item.embed_text) for item in got] == [
            (item.body, item.embed_text) for item in expected
        ]


def test_a_scratch_dedup_engine_gives_the_same_verdicts_and_writes_no_signatures_or_terms(
    tmp_path: Path,
) -> None:
    # A record deleted after use (samestory dedup without --store) skips what only a later
    # reader of it would read; the verdicts, from a preparation without terms or from the
    # engine's own, are those of a kept record.
    batch = [
        _article("flood", FLOOD, title="Floods"),
        _article("economy", ECONOMY),
        _article("flood-again", FLOOD),
        _article("late", ECONOMY[:3]),
        _article("flood-tail", FLOOD[1:]),
    ]
    results = {}
    for kind in ("kept", "scratch", "scratch, prepared without terms"):
        with Engine.open(tmp_path / kind, mode="dedup") as engine:
            if kind != "kept":
                assert engine.make_store_scratch()
            assert engine.keeps_terms == (kind == "kept")
            preparation = None
            if kind.endswith("without terms"):
                preparation = prepare(batch, engine.params, bodies=False, terms=False)
                assert not preparation.with_terms and preparation.terms.size == 0
            verdicts: list[Verdict | BriefVerdict] = []
            verdicts += engine.ingest_many(batch[:3], preparation=preparation)
            verdicts += engine.ingest_many_brief(batch[3:], preparation=preparation)
            blobs = engine._store.connection.execute(
                "SELECT length(signature), length(terms) FROM articles ORDER BY row"
            ).fetchall()
            documents = engine._frequencies.documents
            # Similarity still reads the terms it computes for the pair.
            similarity = engine.similarity(batch[0], _article("other", ECONOMY[:2]))
        results[kind] = [
            (v.id, v.status, v.duplicate_of, v.duplicate_similarity)
            if isinstance(v, Verdict)
            else (v.id, v.status, v.duplicate_of)
            for v in verdicts
        ]
        if kind == "kept":
            assert all(signature > 0 and terms > 0 for signature, terms in blobs)
            assert documents == 2
        else:
            assert blobs == [(0, 0)] * len(batch)
            assert documents == 0
        assert similarity.story_similarity < 0.5
    assert results["kept"] == results["scratch"] == results["scratch, prepared without terms"]
    assert [status for _id, status, *_rest in results["kept"]] == [
        "new_story",
        "new_story",
        "exact_duplicate",
        "near_duplicate",
        "near_duplicate",
    ]


def test_an_engine_that_keeps_terms_prepares_itself_what_was_prepared_without_them(
    dedup_engine: Engine,
) -> None:
    expected, got = _prepared_with_and_without(dedup_engine, bodies=False, terms=False)
    assert all(item.terms.size for item in expected)
    assert [item.terms.tolist() for item in got] == [item.terms.tolist() for item in expected]


def test_brief_verdicts_name_what_full_verdicts_name(tmp_path: Path) -> None:
    # What batch files record: the same statuses and ids as the full verdicts, for new
    # articles, exact and near copies, a stored one sent again, and after a deletion that
    # promotes a copy to original and canonical.
    batch = [
        _article("flood", FLOOD),
        _article("economy", ECONOMY),
        _article("flood-again", FLOOD),
        _article("late", ECONOMY[:3]),
        _article("economy-again", ECONOMY),
    ]

    def fields(verdict: Verdict) -> tuple[str, str, str | None, str, str]:
        cluster = verdict.cluster
        return (verdict.id, verdict.status, verdict.duplicate_of, cluster.id, cluster.canonical.id)

    with (
        Engine.open(tmp_path / "full", mode="dedup") as full,
        Engine.open(tmp_path / "brief", mode="dedup") as brief,
    ):
        rounds = []
        for _round in range(2):
            expected = [fields(verdict) for verdict in full.ingest_many(batch)]
            assert [tuple(verdict) for verdict in brief.ingest_many_brief(batch)] == expected
            rounds.append(expected)
            full.delete("economy")
            brief.delete("economy")
        assert [status for _id, status, *_rest in rounds[0]] == [
            "new_story",
            "new_story",
            "exact_duplicate",
            "near_duplicate",
            "exact_duplicate",
        ]
        # "economy" was deleted and sent again: the same text as "economy-again", whose
        # group the earliest remaining copy now leads.
        assert rounds[1][1][1:3] == ("exact_duplicate", "late")


def test_a_batch_prepared_elsewhere_still_names_its_boilerplate_only_article(
    dedup_engine: Engine,
) -> None:
    batch = [_article("good", FLOOD), Article(id="bad", text="Skip to content")]
    preparation = prepare(batch, dedup_engine.params)
    with pytest.raises(BoilerplateOnlyError, match="'bad'") as refused:
        dedup_engine.ingest_many(batch, preparation=preparation)
    assert refused.value.article_id == "bad"
    assert dedup_engine.counts()["articles"] == 0


def test_a_story_founded_after_deleting_the_newest_article_is_named_after_its_own_row(
    dedup_engine: Engine,
) -> None:
    # New stories take their founding article's row, which never reuses a deleted one.
    first = dedup_engine.ingest(_article("a", FLOOD))
    second = dedup_engine.ingest(_article("b", ECONOMY))
    dedup_engine.delete("b")
    third = dedup_engine.ingest(_article("c", ECONOMY))
    assert [first.cluster.id, second.cluster.id, third.cluster.id] == ["s1", "s2", "s3"]
    assert [member.id for member in dedup_engine.story("s3").members] == ["c"]
    assert dedup_engine.get("c").verdict.cluster.canonical.id == "c"


def test_deleting_the_original_promotes_the_earliest_copy(dedup_engine: Engine) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    dedup_engine.ingest(_article("a", FLOOD, published_at=start))
    dedup_engine.ingest(_article("b", FLOOD[:3], published_at=start + timedelta(hours=1)))
    dedup_engine.ingest(_article("c", FLOOD[1:], published_at=start + timedelta(hours=2)))
    dedup_engine.delete("a")
    assert dedup_engine.get("c").verdict.duplicate_of == "b"
    promoted = dedup_engine.get("b").verdict
    assert (promoted.status, promoted.duplicate_of, promoted.duplicate_similarity) == (
        "new_story",
        None,
        None,
    )
    cluster = dedup_engine.get("b").verdict.cluster
    assert cluster.size == 2
    assert cluster.canonical.id == "b"
    dedup_engine.delete("b")
    dedup_engine.delete("c")
    assert dedup_engine.counts()["stories"] == 0


def test_match_stores_nothing(dedup_engine: Engine) -> None:
    dedup_engine.ingest(_article("a", FLOOD))
    verdict = dedup_engine.match(_article("probe", FLOOD[:3]))
    assert (verdict.status, verdict.duplicate_of, verdict.stored) == (
        "near_duplicate",
        "a",
        False,
    )
    with pytest.raises(ArticleNotFoundError):
        dedup_engine.get("probe")


# -- durability ----------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from index.article import Article, Verdict
    from index.engine import Engine

    engine = Engine.open(Path(sys.argv[1]), mode="dedup", synchronous="normal")
    for number in range(100000):
        words = " ".join(f"w{number}x{k}" for k in range(40))
        verdict = engine.ingest(Article(id=f"id{number}", text=words))
        print(verdict.id, flush=True)
    """
)


def test_acknowledged_ingests_survive_sigkill(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    with process.stdout:
        acknowledged = [line.strip() for line in itertools.islice(process.stdout, 300)]
        process.send_signal(signal.SIGKILL)
        acknowledged += [line.strip() for line in process.stdout if line.strip()]
    process.wait()
    assert len(acknowledged) >= 300
    with Engine.open(tmp_path, mode="dedup") as engine:
        for article_id in acknowledged:
            assert engine.get(article_id).article.id == article_id
        assert engine.counts()["lsh_entries"] == engine.counts()["articles"]


# -- stories with the real model ---------------------------------------------------------


def _seeds() -> list[Article]:
    return [
        Article(id=path.stem, text=path.read_text(encoding="utf-8"))
        for path in sorted(SEEDS.glob("*.txt"))
    ]


class _Memoized:
    """The real model, each distinct text embedded once (many engines, the same texts)."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.name = inner.name
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = [text for text in dict.fromkeys(texts) if text not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.vectors[text] for text in texts])


@pytest.mark.model
@needs_seeds
def test_seeds_form_five_stories_in_every_order(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    # Five Russia–Iran events with E5 cosines of 0.89–0.93 and no published_at: only the
    # years and weekdays their texts name keep them apart (index.dates). All 120 orders.
    seeds = _seeds()
    model = _Memoized(embedder)
    for number, order in enumerate(itertools.permutations(range(5))):
        with Engine.open(tmp_path / str(number), embedder=model, synchronous="off") as engine:
            verdicts = [engine.ingest(seeds[index]) for index in order]
        assert [verdict.status for verdict in verdicts] == ["new_story"] * 5, order
        assert len({verdict.cluster.id for verdict in verdicts}) == 5, order


@pytest.mark.model
@needs_seeds
def test_similarity_reports_content_score_and_the_clustering_decision(
    story_engine: Engine,
) -> None:
    seeds = {article.id[:3]: article for article in _seeds()}
    # The Putin–Pezeshkian call (a Tuesday; 2022 named) and Pezeshkian's Moscow visit
    # (a Friday; 2024, 2025): alike in content, apart in event time.
    found = story_engine.similarity(seeds["000"], seeds["002"])
    assert found.story_similarity >= story_engine.params.story_threshold
    assert not found.same_story
    assert not found.near_duplicate


def _edits(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line.strip()]
    longest = max(range(len(lines)), key=lambda i: len(lines[i]))
    folded = text.replace("أ", "ا").replace("ى", "ي").replace("ة", "ه").replace("إ", "ا")
    tashkeel = text.replace("ال", "اَل").replace("في ", "فِي ")
    return {
        "boilerplate_added": "Skip to content\n\n"
        + text
        + "\n\nاقرأ أيضاً:\nعنوان خبر آخر لا علاقة له\n\nالوسوم\nسياسة اقتصاد",
        "boilerplate_removed": "\n".join(
            line for line in lines if "مقالات" not in line and "Skip" not in line
        ),
        "orthographic": folded,
        "tashkeel": tashkeel,
        "paragraph_dropped": "\n".join(lines[:longest] + lines[longest + 1 :]),
        "truncated_80": text[: int(len(text) * 0.8)],
    }


@pytest.mark.model
@needs_seeds
def test_seed_copies_are_near_duplicates_of_their_original(story_engine: Engine) -> None:
    seeds = _seeds()
    story_engine.ingest_many(seeds)
    for seed in seeds:
        for kind, edited in _edits(seed.text).items():
            verdict = story_engine.ingest(Article(id=f"{seed.id}-{kind}", text=edited))
            assert verdict.status in ("near_duplicate", "exact_duplicate"), (seed.id, kind)
            assert verdict.duplicate_of == seed.id, (seed.id, kind)


@pytest.mark.model
def test_same_story_joins_and_other_story_opens(story_engine: Engine) -> None:
    start = datetime(2025, 5, 1, tzinfo=UTC)
    first = story_engine.ingest(_article("flood-1", FLOOD, published_at=start))
    rewrite = (
        "Thousands of people fled their homes in the northern province after rivers overflowed "
        "following heavy rain on Tuesday. Rescue teams pulled fourteen people from rooftops, "
        "and the governor declared a state of emergency, calling in the army to set up shelters."
    )
    second = story_engine.ingest(
        Article(id="flood-2", text=rewrite, published_at=start + timedelta(hours=3))
    )
    assert second.status == "same_story"
    assert second.cluster.id == first.cluster.id
    assert second.cluster.size == 2
    other = story_engine.ingest(_article("economy", ECONOMY, published_at=start))
    assert other.status == "new_story"
    similarity = story_engine.similarity(_article("p", FLOOD), Article(id="q", text=rewrite))
    assert similarity.same_story and not similarity.near_duplicate
    story = story_engine.story(first.cluster.id)
    assert {member.id for member in story.members} == {"flood-1", "flood-2"}


class _GatedEmbedder:
    """The real embedder, holding each call until the test lets it go."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.name = inner.name
        self.entered = threading.Event()
        self.release = threading.Event()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.texts.extend(texts)
        self.entered.set()
        assert self.release.wait(60), "the test never released the embedder"
        return self.inner.embed(texts)


@pytest.mark.model
def test_reads_and_matches_do_not_wait_for_the_model(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    gated = _GatedEmbedder(embedder)
    with Engine.open(tmp_path / "data", embedder=gated) as engine:
        gated.release.set()
        stored = engine.ingest(_article("economy", ECONOMY))
        gated.release.clear()
        gated.entered.clear()
        results: list[Verdict] = []
        writer = threading.Thread(
            target=lambda: results.append(engine.ingest(_article("flood", FLOOD)))
        )
        writer.start()
        try:
            assert gated.entered.wait(60)
            # The writer is inside the model call: the lock must be free.
            copy = engine.match(_article("economy-copy", ECONOMY))
            assert copy.status == "exact_duplicate" and copy.duplicate_of == "economy"
            assert engine.story(stored.cluster.id).cluster.size == 1
        finally:
            gated.release.set()
            writer.join(60)
        assert results and results[0].status == "new_story"
        # Embedded once, ahead of the decision, not again under the lock.
        assert gated.texts.count(gated.texts[-1]) == 1


def test_a_scratch_store_journals_in_memory_and_readers_see_only_commits(
    tmp_path: Path,
) -> None:
    from index.store import Store, open_read_only

    store = Store(tmp_path / "s.sqlite3", fingerprint="f", stored_fields={})
    store.connection.execute("PRAGMA busy_timeout=50")
    reader = open_read_only(store.path)
    reader.execute("SELECT count(*) FROM source_lines").fetchone()
    assert not store.make_scratch()  # another connection has the store open
    reader.close()
    assert store.make_scratch()
    assert store.connection.execute("PRAGMA journal_mode").fetchone() == ("memory",)
    reader = open_read_only(store.path)
    with store.transaction():
        store.count_lines("a", ["k"], delta=5)
        assert reader.execute("SELECT count(*) FROM source_lines").fetchone() == (0,)
    assert reader.execute("SELECT articles FROM source_lines").fetchall() == [(5,)]
    reader.close()
    store.close()


def _stored_row(row: int, text: str, content_hash: str) -> tuple[object, ...]:
    """A row of the articles table (every column of ``index.store._ARTICLE_COLUMNS``)."""
    return (
        row, f"a{row}", text, None, None, None, None, 0.0, 0.0, "t", content_hash,
        b"", b"", b"", None, row, None, "new_story", None, None, None,
    )  # fmt: skip


def test_content_hash_lookups_use_the_prefix_index_and_tell_apart_hashes_sharing_it(
    tmp_path: Path,
) -> None:
    from index.store import Store

    path = tmp_path / "s.sqlite3"
    shared = "abcdef012345"  # the indexed prefix of two hashes
    first, second, other = shared + "0" * 52, shared + "1" * 52, "f" * 64
    store = Store(path, fingerprint="f", stored_fields={})
    with store.transaction():
        store.insert_articles(
            [
                _stored_row(1, "one", first),
                _stored_row(2, "two", second),
                _stored_row(3, "three", first),
                _stored_row(4, "four", other),
            ]
        )

    def lookups() -> None:
        found = store.first_by_content_hash(first)
        assert found is not None and found.row == 1
        found = store.first_by_content_hash(second)
        assert found is not None and found.row == 2
        assert store.first_by_content_hash(shared + "2" * 52) is None
        assert store.first_by_content_hashes([first, second, other, shared + "2" * 52]) == {
            first: (1, None, 1),
            second: (2, None, 2),
            other: (4, None, 4),
        }
        # Only the hashes asked for, not those sharing their prefix.
        assert store.first_by_content_hashes([first]) == {first: (1, None, 1)}
        assert store.texts_by_content_hash(first, 10) == ["one", "three"]
        assert store.texts_by_content_hash(first, 1) == ["one"]
        assert store.texts_by_content_hash(second, 10) == ["two"]

    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    lookups()
    store.connection.set_trace_callback(None)
    # Each lookup searches the prefix index; none scans the table (SQLite would, were the
    # whole hash compared as a plain column: see index.store._CONTENT_KEY).
    assert len(statements) == 8
    for statement in statements:
        plan = " ".join(
            str(step[3]) for step in store.connection.execute(f"EXPLAIN QUERY PLAN {statement}")
        )
        assert "USING INDEX articles_content_key" in plan and "SCAN" not in plan, plan
    store.close()
    # A store of version 4 indexed the whole hashes: opened again, it is indexed anew.
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX articles_content_key")
        connection.execute("CREATE INDEX articles_content_hash ON articles (content_hash)")
        connection.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    connection.close()
    store = Store(path, fingerprint="f", stored_fields={})
    indexes = {
        name
        for (name,) in store.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'articles'"
        )
    }
    assert "articles_content_key" in indexes and "articles_content_hash" not in indexes
    assert store.meta("schema_version") == str(SCHEMA_VERSION)
    lookups()
    store.close()


def test_document_frequencies_added_at_once_equal_those_added_one_by_one() -> None:
    from index.lexical import DocumentFrequencies

    rng = np.random.default_rng(3)
    documents = [np.unique(rng.integers(0, 2**32, 300, dtype=np.uint32)) for _ in range(40)]
    documents.append(documents[0])  # the same terms twice count twice
    one_by_one, at_once = DocumentFrequencies(), DocumentFrequencies()
    for terms in documents:
        one_by_one.add(terms)
    at_once.add_many(documents)
    at_once.add_many([])
    assert at_once.documents == one_by_one.documents == 41
    probe = np.concatenate(documents[:3])
    assert np.array_equal(at_once.idf(probe), one_by_one.idf(probe))
    assert np.array_equal(at_once._counts, one_by_one._counts)


def test_learned_lines_asked_at_once_equal_those_asked_per_source(tmp_path: Path) -> None:
    # prepare() and the engine ask for a whole batch's learned lines in a few queries.
    from index.store import Store, frequent_line_pairs, frequent_lines

    store = Store(tmp_path / "s.sqlite3", fingerprint="f", stored_fields={})
    rng = random.Random(7)
    sources = ["a", "b", "c"]
    keys = [f"{number:016x}" for number in range(1_400)]
    with store.transaction():
        for source in sources:
            for key in rng.sample(keys, 900):
                store.count_lines(source, [key], delta=rng.randint(1, 5))
    wanted = [(rng.choice(sources), rng.sample(keys, rng.randint(0, 700))) for _ in range(12)]
    expected = {
        (source, key)
        for source, asked in wanted
        for key in frequent_lines(store.connection, source, asked, 3)
    }
    assert frequent_line_pairs(store.connection, wanted, 3) == expected
    assert store.frequent_lines_many(wanted, 3) == expected
    assert len(expected) > 500
    store.close()
