"""An open-loop HTTP load generator for samestory's REST API.

Requests are sent on a fixed schedule (request ``i`` at ``start + i / rate``) whether or not
earlier ones have answered, and each latency is measured from the request's *scheduled*
time, not from when it was actually sent. A closed-loop client that waits for answers
slows down exactly when the server does and so hides the worst latencies (coordinated
omission, Tene, "How NOT to Measure Latency", 2015); this one does not.

Typical use (``perf.py`` does this against a real ``samestory serve`` on loopback)::

    bodies = [json.dumps(article).encode() for article in articles]
    result = asyncio.run(open_loop("http://127.0.0.1:8000/v1/articles", bodies, rate=10))
    print(result.p50_ms, result.p99_ms, result.errors)

Only loopback addresses are accepted: this is a benchmark tool, not a load tester for
other people's servers.

The generator runs with Python's cyclic garbage collector off (one collection first, the
setting restored after): a collection of a benchmark process's objects paused it for up
to 0.6 s, which, measured from the schedule, counted as the server's latency.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HEADERS = {"content-type": "application/json"}


@dataclass
class LoadResult:
    """What one run of requests measured.

    Attributes:
        rate: the scheduled rate in requests per second (0 for a sequential run).
        sent: requests scheduled and sent.
        errors: requests that failed (transport error, timeout or a status >= 400).
        duration_s: seconds from the first scheduled send to the last answer.
        latencies_ms: per request, milliseconds from its scheduled time to its answer
            (failed requests included, timeouts counted as the timeout).
        statuses: how many answers had each HTTP status (0 for a transport error).
        lag_ms: the worst delay between a request's scheduled and actual send; a large
            value means the generator itself could not keep the schedule.
    """

    rate: float
    sent: int
    errors: int
    duration_s: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int]
    lag_ms: float

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in ms (nearest rank), ``nan`` when nothing was sent."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(q / 100.0 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50_ms(self) -> float:
        """Median latency in ms."""
        return self.percentile(50)

    @property
    def p99_ms(self) -> float:
        """99th percentile latency in ms."""
        return self.percentile(99)

    @property
    def max_ms(self) -> float:
        """Worst latency in ms."""
        return max(self.latencies_ms, default=math.nan)

    @property
    def throughput(self) -> float:
        """Answered requests per second over the run."""
        return (self.sent - self.errors) / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, float | int | dict[int, int]]:
        """A JSON-ready digest (no per-request latencies)."""
        return {
            "rate": self.rate,
            "sent": self.sent,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "throughput": round(self.throughput, 2),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "lag_ms": round(self.lag_ms, 2),
            "statuses": dict(self.statuses),
        }


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in _LOOPBACK:
        raise ValueError(f"refusing to load {url!r}: only loopback hosts {sorted(_LOOPBACK)}")


@contextmanager
def _no_collections() -> Iterator[None]:
    """The cyclic garbage collector off while a load runs, after one collection.

    ``benchmarks/perf.py`` loads the model and tens of thousands of articles into the
    process that generates the load. In its full run a generation-2 collection of those
    objects paused the generator for 618 ms during a REST sweep (measured with
    ``gc.callbacks``); in two other full runs the match stage's p99 rose to 67 and 144 ms
    with 236 ms of generator lag, against 5-6 ms and 4-5 ms of lag when run alone.
    Latencies count from each request's scheduled time, so such a pause counted as the
    server's. The cycles a load makes (a few per request) wait for the next collection.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def open_loop(
    url: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    duration_s: float | None = None,
    timeout_s: float = 30.0,
    max_connections: int = 256,
) -> LoadResult:
    """POST ``bodies`` to ``url`` at a fixed ``rate``, never waiting for answers to send.

    Args:
        url: a loopback URL.
        bodies: JSON request bodies, sent in order; each is sent once.
        rate: requests per second.
        duration_s: stop scheduling after this many seconds (at most ``len(bodies)``
            requests are sent either way).
        timeout_s: a request not answered within this many seconds is an error.
        max_connections: connections the client may open; requests beyond it wait for a
            connection, and that wait counts in their latency.

    Returns:
        The measured :class:`LoadResult`.

    Raises:
        ValueError: the URL is not on loopback or the rate is not positive.
    """
    _require_loopback(url)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    count = len(bodies)
    if duration_s is not None:
        count = min(count, math.ceil(duration_s * rate))
    latencies: list[float] = [math.nan] * count
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    lag = 0.0

    with _no_collections():
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits, headers=_HEADERS) as client:

            async def one(index: int, scheduled: float) -> None:
                status = 0
                try:
                    response = await client.post(url, content=bodies[index])
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                latencies[index] = (time.perf_counter() - scheduled) * 1000.0
                statuses[status] += 1

            start = time.perf_counter() + 0.05
            tasks: list[asyncio.Task[None]] = []
            for index in range(count):
                scheduled = start + index / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                lag = max(lag, time.perf_counter() - scheduled)
                tasks.append(asyncio.create_task(one(index, scheduled)))
            await asyncio.gather(*tasks)
            duration = time.perf_counter() - start

    errors = sum(number for status, number in statuses.items() if status == 0 or status >= 400)
    return LoadResult(
        rate=rate,
        sent=count,
        errors=errors,
        duration_s=duration,
        latencies_ms=latencies,
        statuses=dict(statuses),
        lag_ms=lag * 1000.0,
    )


async def sequential(url: str, bodies: Sequence[bytes], *, timeout_s: float = 60.0) -> LoadResult:
    """POST ``bodies`` one at a time, each after the previous answer (the closed-loop baseline).

    Raises:
        ValueError: the URL is not on loopback.
    """
    _require_loopback(url)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    with _no_collections():
        async with httpx.AsyncClient(timeout=timeout_s, headers=_HEADERS) as client:
            start = time.perf_counter()
            for body in bodies:
                sent = time.perf_counter()
                try:
                    status = (await client.post(url, content=body)).status_code
                except httpx.HTTPError:
                    status = 0
                latencies.append((time.perf_counter() - sent) * 1000.0)
                statuses[status] += 1
            duration = time.perf_counter() - start
    errors = sum(number for status, number in statuses.items() if status == 0 or status >= 400)
    return LoadResult(
        rate=0.0,
        sent=len(bodies),
        errors=errors,
        duration_s=duration,
        latencies_ms=latencies,
        statuses=dict(statuses),
        lag_ms=0.0,
    )


async def wait_ready(base_url: str, *, timeout_s: float, poll_s: float = 0.05) -> float:
    """Poll ``{base_url}/readyz`` until it answers 200; returns the seconds waited.

    Raises:
        TimeoutError: not ready within ``timeout_s``.
        ValueError: the URL is not on loopback.
    """
    _require_loopback(base_url)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.perf_counter() - started < timeout_s:
            try:
                if (await client.get(f"{base_url}/readyz")).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(poll_s)
    raise TimeoutError(f"{base_url} was not ready within {timeout_s:.0f} s")
