"""The FastAPI application: :func:`create_app` builds one from settings (REST API v1).

Nothing is configured at import time: settings are read when :func:`create_app` runs, and
the engine is opened by the app's lifespan, on a worker thread (see
:class:`service.runtime.Runtime`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import problems
from service.metrics import Metrics, MetricsMiddleware
from service.problems import PayloadTooLargeError
from service.routes import articles, clusters, health, matching
from service.routes.deps import require_api_key
from service.runtime import Runtime
from service.settings import Settings

DESCRIPTION = """\
Near-duplicate detection and story clustering for news articles (Arabic first, multilingual).

For every article: is it a copy of one already seen (`exact_duplicate`, `near_duplicate`),
does it join a known story (`same_story`) or open one (`new_story`), and which article
represents its story (`cluster.canonical`). Errors are `application/problem+json`
(RFC 9457). When `SAMESTORY_API_KEY` is set, `/v1` requires it as `X-API-Key` or
`Authorization: Bearer`.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("samestory")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class _SamestoryAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = problems.document(super().openapi())
        return self.openapi_schema


def create_app(
    settings: Settings | None = None,
    *,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: service settings; read from ``SAMESTORY_*`` environment variables when
            omitted.
        on_load_error: called if the engine cannot be opened (see
            :class:`service.runtime.Runtime`).

    Returns:
        The ASGI app. Its lifespan opens the engine in the background and closes it (writing
        index snapshots) on shutdown.
    """
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    runtime = Runtime(settings, metrics, on_load_error=on_load_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = _SamestoryAPI(
        title="samestory",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # "/v1/clusters/" is no route (404), not a redirect to "/v1/clusters": a redirect
        # built from the Host header points past a TLS-terminating proxy, and it answered
        # the story lookup of an empty id with the list of stories.
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    problems.install(app)
    guarded = [Depends(require_api_key)] if settings.required_api_key() else []
    for router in (articles.router, matching.router, clusters.router):
        app.include_router(router, dependencies=guarded)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: refused oversize bodies are counted too.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with ``413``.

    A declared ``Content-Length`` over the limit is refused before reading anything; a body
    sent without one (chunked) is read up to the limit and refused as soon as it passes it.
    Bodies within the limit are buffered and replayed to the app (every route reads its
    JSON body whole anyway).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, f"declares {int(declared)} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: let the app see the disconnect.
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, f"has more than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        error = PayloadTooLargeError(
            f"the request body {what}; at most {self.max_bytes} are allowed "
            "(SAMESTORY_MAX_BODY_BYTES): send smaller batches"
        )
        response = problems.error_response(error, instance=scope.get("path"))
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that first hands out the buffered body (or message), then the real one."""
    first: Message = pending or {
        "type": "http.request",
        "body": b"".join(chunks),
        "more_body": False,
    }
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return first
        return await receive()

    return replay
