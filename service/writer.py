"""The single writer: ingest requests queued on the event loop, micro-batched into the engine.

Each request puts a job (its articles and a future) on an :class:`asyncio.Queue`. One drain
task takes the first job, waits ``max_wait`` seconds for others to arrive when none is
queued yet, collects queued jobs up to ``max_articles`` articles and hands them to one
dedicated thread as a single :meth:`Engine.ingest_many` call: the articles that need the
model are embedded in one batched forward pass instead of one pass per request, and only
one thread ever writes. While that call runs, new requests queue up and form the next batch,
so batches grow with load without any wait at all.

``ingest_many`` of several jobs equals ingesting them one after another, and it stores all
or nothing. When it raises (one article of one job is invalid or conflicts), the batch is
retried job by job, so each request gets its own verdicts or its own error; a job, such as
one batch request, stays all or nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from index.article import Article, Verdict
from index.engine import Engine
from index.errors import StoreClosedError

logger = logging.getLogger(__name__)

Outcome = list[Verdict] | Exception


@dataclass
class _Job:
    articles: list[Article]
    future: asyncio.Future[list[Verdict]]


class Writer:
    """Micro-batching single writer in front of an :class:`~index.engine.Engine`.

    Create and use it inside a running event loop: :meth:`start`, any number of concurrent
    :meth:`submit` calls, then :meth:`stop`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_articles: int = 64,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Prepare the writer (nothing runs before :meth:`start`).

        Args:
            engine: the engine to write to.
            max_articles: articles per engine call at most (a larger job goes alone).
            max_wait: seconds the first job of an idle writer waits for company.
            on_batch: called with the number of articles of each engine call that succeeds.
        """
        if max_articles < 1:
            raise ValueError(f"max_articles must be at least 1, got {max_articles}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        self._engine = engine
        self._max_articles = max_articles
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._held: collections.deque[_Job] = collections.deque()
        self._running: list[_Job] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samestory-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start draining the queue (call from the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="samestory-writer"
            )

    async def submit(self, articles: Sequence[Article]) -> list[Verdict]:
        """Ingest articles (all or none) and return their verdicts in order.

        Raises:
            StoreClosedError: the writer is stopping or stopped.
            SamestoryError: whatever :meth:`Engine.ingest_many` raises for these articles.
        """
        if self._closing or self._task is None:
            raise StoreClosedError("the service is shutting down; retry against another instance")
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(list(articles), future))
        return await future

    async def stop(self) -> None:
        """Finish every job submitted so far, then stop the writer thread."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        self._executor.shutdown(wait=True)

    async def _drain(self) -> None:
        try:
            while True:
                first = self._held.popleft() if self._held else await self._queue.get()
                if first is None:
                    return
                if self._max_wait > 0 and self._queue.empty():
                    await asyncio.sleep(self._max_wait)
                batch, stopping = self._collect(first)
                await self._run(batch)
                if stopping:
                    return
        finally:
            # Only reached early if the drain itself is cancelled or broken: no request may
            # wait forever on a job nobody will run.
            self._closing = True
            leftovers: list[_Job | None] = [*self._running, *self._held]
            while not self._queue.empty():
                leftovers.append(self._queue.get_nowait())
            for job in leftovers:
                if job is not None and not job.future.done():
                    job.future.set_exception(StoreClosedError("the writer has stopped"))

    async def _run(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.future.done()]
        if not batch:
            return
        loop = asyncio.get_running_loop()
        self._running = batch
        outcomes = await loop.run_in_executor(self._executor, self._write, batch)
        self._running = []
        for job, outcome in zip(batch, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, Exception):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch = [first]
        count = len(first.articles)
        while count < self._max_articles:
            if self._held:
                job: _Job | None = self._held.popleft()
            else:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            if job is None:
                return batch, True
            if count + len(job.articles) > self._max_articles:
                self._held.appendleft(job)
                break
            batch.append(job)
            count += len(job.articles)
        return batch, False

    def _write(self, batch: list[_Job]) -> list[Outcome]:
        """Runs on the writer thread."""
        articles = [article for job in batch for article in job.articles]
        try:
            verdicts = self._engine.ingest_many(articles)
        except Exception as error:
            if len(batch) == 1:
                return [error]
            # Any error, not only the engine's own: one bad job must not fail its neighbours.
            logger.debug("batch of %d jobs failed (%s); retrying job by job", len(batch), error)
            return [outcome for job in batch for outcome in self._write([job])]
        if self._on_batch is not None:
            self._on_batch(len(articles))
        outcomes: list[Outcome] = []
        start = 0
        for job in batch:
            outcomes.append(verdicts[start : start + len(job.articles)])
            start += len(job.articles)
        return outcomes
