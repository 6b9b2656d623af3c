"""Prometheus metrics of one app: requests, latency, verdicts, writer batches and stored data.

Each app owns a :class:`~prometheus_client.CollectorRegistry`, so several apps in one process
(tests) never share or collide on counters. Gauges of stored data are read from the engine
at scrape time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import paths

if TYPE_CHECKING:
    from index.article import Verdict
    from index.engine import Engine

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

# Embedding a short article takes tens of milliseconds on a small CPU and a large batch
# seconds: buckets from 1 ms to 30 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# "/v1/articles/{article_id:path}" is labelled as OpenAPI names it: "/v1/articles/{article_id}".
_CONVERTER = re.compile(r":\w+}")


class Metrics:
    """The app's metrics and the registry they live in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "samestory_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "samestory_http_request_duration_seconds",
            "Time from request to the end of the response, by method, route and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.verdicts = Counter(
            "samestory_verdicts",
            "Verdicts returned by ingest and match, by status.",
            ["status"],
            registry=registry,
        )
        self.writer_batches = Histogram(
            "samestory_writer_batch_articles",
            "Articles per engine write (micro-batched from concurrent requests).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.articles = Gauge(
            "samestory_articles_stored", "Articles in the record.", registry=registry
        )
        self.stories = Gauge(
            "samestory_stories_stored", "Stories in the record.", registry=registry
        )
        self.index_entries = Gauge(
            "samestory_index_entries",
            "Entries in each derived index.",
            ["index"],
            registry=registry,
        )
        self.index_memory = Gauge(
            "samestory_index_memory_bytes",
            "Bytes held by the in-memory derived indexes.",
            registry=registry,
        )
        self.ready = Gauge(
            "samestory_ready", "1 once the model and indexes are loaded.", registry=registry
        )

    def count_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """Count returned verdicts by status."""
        for verdict in verdicts:
            self.verdicts.labels(verdict.status).inc()

    def read_engine(self, engine: Engine) -> None:
        """Refresh the gauges of stored data (takes the engine's lock: call off the loop)."""
        counts = engine.counts()
        self.articles.set(counts["articles"])
        self.stories.set(counts["stories"])
        self.index_entries.labels("lsh").set(counts["lsh_entries"])
        self.index_entries.labels("vectors").set(counts["vector_entries"])
        self.index_memory.set(engine.index_memory_bytes())

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request by route template.

    Route templates (``/v1/articles/{article_id}``), not raw paths, keep the label set small.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            labels = (scope["method"], self._route(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if not isinstance(path, str) and "app" in scope:
            # Requests refused before routing (oversize bodies) still name their route.
            path = paths.template_of(scope["app"], scope["path"], scope["method"])
        return _CONVERTER.sub("}", path) if isinstance(path, str) else "unmatched"
