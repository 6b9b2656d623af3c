"""The micro-batching writer against a real engine (dedup mode: no model needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.article import Article, Verdict
from index.engine import Engine
from index.errors import ConflictError, StoreClosedError
from service.writer import Writer

STORY = (
    "The harbour authority reopened the northern pier on Friday after repairs to the storm "
    "damage, and the first ferry of the season left for the islands at noon."
)


def article(number: int, text: str | None = None) -> Article:
    body = (
        text
        or f"Report {number}: the {number}th bridge over the river opened with {number * 3} lanes."
    )
    return Article(id=f"a{number}", text=body)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "data", mode="dedup", synchronous="normal") as opened:
        yield opened


async def _submit_all(
    writer: Writer, jobs: list[list[Article]]
) -> list[list[Verdict] | BaseException]:
    writer.start()
    try:
        return await asyncio.gather(*(writer.submit(job) for job in jobs), return_exceptions=True)
    finally:
        await writer.stop()


def test_concurrent_jobs_share_one_engine_call(engine: Engine) -> None:
    batches: list[int] = []
    writer = Writer(engine, max_articles=64, max_wait=0.2, on_batch=batches.append)
    jobs = [[article(number)] for number in range(10)]

    outcomes = asyncio.run(_submit_all(writer, jobs))

    assert batches == [10]
    assert [outcome[0].id for outcome in outcomes if isinstance(outcome, list)] == [
        f"a{number}" for number in range(10)
    ]


def test_batches_respect_max_articles(engine: Engine) -> None:
    batches: list[int] = []
    writer = Writer(engine, max_articles=4, max_wait=0.2, on_batch=batches.append)
    jobs = [[article(1), article(2), article(3)], [article(4)], [article(5), article(6)]]

    outcomes = asyncio.run(_submit_all(writer, jobs))

    assert batches == [4, 2]
    assert all(isinstance(outcome, list) for outcome in outcomes)


def test_one_bad_job_does_not_fail_its_neighbours(engine: Engine) -> None:
    batches: list[int] = []
    writer = Writer(engine, max_articles=64, max_wait=0.2, on_batch=batches.append)
    jobs = [
        [Article(id="first", text=STORY)],
        [Article(id="first", text=STORY + " Changed.")],
        [Article(id="copy", text=STORY + " Passengers cheered.")],
    ]

    first, conflicting, copy = asyncio.run(_submit_all(writer, jobs))

    assert isinstance(first, list) and first[0].status == "new_story"
    assert isinstance(conflicting, ConflictError)
    # Told by itself, the conflicting job hears of the stored article, not of the merged call.
    assert "already stored with a different text" in str(conflicting)
    assert isinstance(copy, list) and copy[0].status == "near_duplicate"
    assert copy[0].duplicate_of == "first"
    # The merged call failed; the retry went job by job.
    assert batches == [1, 1]


def test_a_job_stays_all_or_nothing(engine: Engine) -> None:
    writer = Writer(engine, max_articles=64, max_wait=0.0)
    jobs = [[article(1), Article(id="dup", text=STORY), Article(id="dup", text=STORY + " x")]]

    (outcome,) = asyncio.run(_submit_all(writer, jobs))

    assert isinstance(outcome, ConflictError)
    assert "'dup' appears twice in this batch" in str(outcome)
    assert engine.counts()["articles"] == 0


def test_micro_batched_verdicts_equal_one_at_a_time(tmp_path: Path) -> None:
    texts = [STORY, STORY + " Passengers cheered.", "An unrelated story about the weather.", STORY]
    articles = [Article(id=f"x{index}", text=text) for index, text in enumerate(texts)]
    with Engine.open(tmp_path / "one", mode="dedup") as alone:
        expected = [alone.ingest(item) for item in articles]
    with Engine.open(tmp_path / "many", mode="dedup") as engine:
        writer = Writer(engine, max_articles=64, max_wait=0.2)
        outcomes = asyncio.run(_submit_all(writer, [[item] for item in articles]))
    got = [outcome[0] for outcome in outcomes if isinstance(outcome, list)]
    assert [(v.status, v.duplicate_of, v.cluster.id) for v in got] == [
        (v.status, v.duplicate_of, v.cluster.id) for v in expected
    ]


def test_submit_after_stop_is_refused(engine: Engine) -> None:
    async def scenario() -> None:
        writer = Writer(engine)
        writer.start()
        await writer.stop()
        with pytest.raises(StoreClosedError):
            await writer.submit([article(1)])

    asyncio.run(scenario())


def test_invalid_limits_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="max_articles"):
        Writer(engine, max_articles=0)
    with pytest.raises(ValueError, match="max_wait"):
        Writer(engine, max_wait=-1.0)
