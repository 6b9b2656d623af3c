"""The engine under concurrent callers.

Several threads at once ingest articles one at a time and in batches, delete them, read
them, match texts and take snapshots, while the engine's own threads write periodic
snapshots and, in stories mode, rebuild the vector graph without its tombstones in the
background. Afterwards the record holds exactly what was acknowledged, and the indexes of
a crash restart (the data directory as a killed process leaves it) and of a rebuild from
the record both equal the live engine's. Real SQLite, MinHash/LSH, FAISS and, in stories
mode, the real model.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import engine_embedder, index_state

from index.article import Article, Verdict
from index.engine import Engine
from index.errors import ArticleNotFoundError, StoryNotFoundError
from index.params import Parameters

# Articles to ingest: unrelated texts, each fifth followed by an exact copy and an edited one.
ORIGINALS = {"dedup": 400, "stories": 160}
DELETED_SHARE = 0.35


def _pause(seconds: float = 0.005) -> None:
    threading.Event().wait(seconds)


def _articles(originals: int) -> list[Article]:
    rng = random.Random(5)
    vocabulary = [f"term{number}" for number in range(3000)]
    articles: list[Article] = []
    for number in range(originals):
        text = " ".join(rng.choice(vocabulary) for _ in range(60))
        articles.append(Article(id=f"a{number}", text=text))
        if number % 5 == 0:
            articles.append(Article(id=f"a{number}-copy", text=text))
            edited = text.split()
            edited[30] = "changed"
            articles.append(Article(id=f"a{number}-edit", text=" ".join(edited)))
    return articles


class _Run:
    """The articles left to ingest, what the engine acknowledged, and the threads' errors."""

    def __init__(self, articles: list[Article]) -> None:
        self.lock = threading.Lock()
        self._pending: Iterator[Article] = iter(articles)
        self.acknowledged: dict[str, str] = {}
        self.ingested = 0
        self.ingesting = 2
        self.errors: list[BaseException] = []
        self.deletes = 0
        self.snapshots = 0
        self.rng = random.Random(9)

    def take(self, count: int) -> list[Article]:
        with self.lock:
            return [article for _, article in zip(range(count), self._pending, strict=False)]

    def acknowledge(self, articles: list[Article]) -> None:
        with self.lock:
            self.acknowledged.update((article.id, article.text) for article in articles)
            self.ingested += len(articles)

    def some_acknowledged(self, at_least: int = 1) -> str | None:
        with self.lock:
            if len(self.acknowledged) < at_least:
                return None
            return self.rng.choice(list(self.acknowledged))

    def running(self) -> bool:
        with self.lock:
            return self.ingesting > 0 and not self.errors

    def thread(self, work: Callable[[], bool], *, ingests: bool = False) -> threading.Thread:
        """A thread calling ``work`` until it returns False (ingesters) or until the
        ingesters are done (everything else); an error stops every thread."""

        def loop() -> None:
            try:
                while (ingests or self.running()) and work():
                    pass
            except BaseException as error:
                with self.lock:
                    self.errors.append(error)
            finally:
                if ingests:
                    with self.lock:
                        self.ingesting -= 1

        return threading.Thread(target=loop, daemon=True)


def _verdicts(engine: Engine, ids: list[str]) -> dict[str, Verdict]:
    return {article_id: engine.get(article_id).verdict for article_id in ids}


@pytest.mark.parametrize("mode", ["dedup", "stories"])
def test_concurrent_callers_leave_the_record_and_indexes_consistent(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="index")
    # A small exact limit: the vectors go to HNSW early, and deletions rebuild its graph.
    params = replace(Parameters(), exact_search_limit=40)
    embedder = None
    if mode == "stories":
        embedder = engine_embedder(request.getfixturevalue("model_cache_dir"))

    def open_engine(directory: Path) -> Engine:
        return Engine.open(
            directory, params, embedder=embedder, mode=mode, synchronous="normal", snapshot_every=25
        )

    articles = _articles(ORIGINALS[mode])
    run = _Run(articles)
    engine = open_engine(tmp_path / "data")

    def ingest_one() -> bool:
        taken = run.take(1)
        for article in taken:
            engine.ingest(article)
        run.acknowledge(taken)
        return bool(taken)

    def ingest_batch() -> bool:
        taken = run.take(run.rng.randint(2, 9))
        if taken:
            engine.ingest_many(taken)
        run.acknowledge(taken)
        return bool(taken)

    def delete() -> bool:
        with run.lock:
            # About a third of what was ingested: enough tombstones for the graph rebuilds.
            if len(run.acknowledged) < 10 or run.deletes >= DELETED_SHARE * run.ingested:
                article_id = None
            else:
                article_id = run.rng.choice(list(run.acknowledged))
                # Gone from what must be stored before the call: a reader may miss it meanwhile.
                del run.acknowledged[article_id]
        if article_id is None:
            _pause()
            return True
        engine.delete(article_id)
        with run.lock:
            run.deletes += 1
        return True

    def read() -> bool:
        article_id = run.some_acknowledged()
        if article_id is None:
            return True
        engine.match(Article(id="probe", text=articles[run.rng.randrange(len(articles))].text))
        try:
            stored = engine.get(article_id)
            engine.story(stored.verdict.cluster.id)
        except (ArticleNotFoundError, StoryNotFoundError):
            # Deleted meanwhile, or its story emptied: only then may it be missing.
            with run.lock:
                if article_id in run.acknowledged:
                    raise
        engine.stories(limit=5)
        _pause()
        return True

    def snapshot() -> bool:
        engine.snapshot()
        with run.lock:
            run.snapshots += 1
        _pause(0.1)
        return True

    threads = [
        run.thread(ingest_one, ingests=True),
        run.thread(ingest_batch, ingests=True),
        run.thread(delete),
        run.thread(read),
        run.thread(snapshot),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
        if run.errors:
            raise run.errors[0]
        assert run.deletes > 0 and run.snapshots > 0
        if engine._vectors is not None:
            assert engine._vectors.wait_for_rebuild(timeout=120)
            started = "rebuilding the vector index without its"
            assert any(started in record.getMessage() for record in caplog.records), (
                "no background rebuild of the vector graph ran"
            )

        # The record holds exactly what was acknowledged and not deleted.
        assert engine.counts()["articles"] == len(run.acknowledged)
        for article_id, text in run.acknowledged.items():
            assert engine.get(article_id).article.text == text
        state = index_state(engine)
        verdicts = _verdicts(engine, sorted(run.acknowledged))
        crashed = tmp_path / "crashed"
        shutil.copytree(
            tmp_path / "data", crashed, ignore=shutil.ignore_patterns(".samestory.lock")
        )
    finally:
        engine.close()

    with open_engine(crashed) as reopened:
        assert index_state(reopened) == state
        assert _verdicts(reopened, sorted(verdicts)) == verdicts
    shutil.rmtree(crashed / "snapshots")
    with open_engine(crashed) as rebuilt:
        assert index_state(rebuilt) == state
