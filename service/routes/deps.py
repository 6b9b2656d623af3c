"""Dependencies the routes declare: the runtime's parts and the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from index.engine import Engine
from service.metrics import Metrics
from service.problems import UnauthorizedError
from service.runtime import Runtime
from service.settings import Settings
from service.writer import Writer

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="APIKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


def get_runtime(request: Request) -> Runtime:
    """The runtime of the app serving the request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_engine(runtime: RuntimeDep) -> Engine:
    """The engine (``503`` until it is loaded)."""
    return runtime.require_engine()


def get_writer(runtime: RuntimeDep) -> Writer:
    """The ingest writer (``503`` until the engine is loaded)."""
    return runtime.require_writer()


def get_settings(runtime: RuntimeDep) -> Settings:
    """The service settings."""
    return runtime.settings


def get_metrics(runtime: RuntimeDep) -> Metrics:
    """The app's metrics."""
    return runtime.metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
WriterDep = Annotated[Writer, Depends(get_writer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept the request only if it carries the configured key.

    The key goes in ``X-API-Key`` or as ``Authorization: Bearer <key>``. Mounted only when
    ``SAMESTORY_API_KEY`` is set.

    Raises:
        UnauthorizedError: no key, or a wrong one.
    """
    expected = settings.required_api_key()
    if expected is None:
        return
    given = [key for key in (api_key, bearer.credentials if bearer else None) if key]
    if not given:
        raise UnauthorizedError(
            "this service needs an API key: send it as 'X-API-Key: <key>' "
            "or 'Authorization: Bearer <key>'"
        )
    secret = expected.encode("utf-8", "surrogateescape")
    # Compared as bytes: compare_digest refuses non-ASCII str, and headers may carry any.
    if not any(
        secrets.compare_digest(key.encode("utf-8", "surrogateescape"), secret) for key in given
    ):
        raise UnauthorizedError("the API key is wrong")
