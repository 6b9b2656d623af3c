"""The one place where errors become HTTP responses: ``application/problem+json`` (RFC 9457).

Every engine error class maps to a status and a problem type here (:data:`ENGINE_PROBLEMS`,
most specific first), as do the service's own refusals (:class:`ServiceError`), request
validation errors, unknown routes and anything unexpected. Routes raise; they never build
error responses themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from index.errors import (
    ArticleNotFoundError,
    BoilerplateOnlyError,
    ConflictError,
    EmptyTextError,
    IndexMismatchError,
    InvalidArticleError,
    InvalidDateError,
    ModelError,
    ParameterError,
    SamestoryError,
    StorageFullError,
    StoreClosedError,
    StoryNotFoundError,
)
from service import paths

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:samestory:problem:"


class ServiceError(SamestoryError):
    """A request the service refuses before it reaches the engine."""


class NotReadyError(ServiceError):
    """The engine is still loading (or failed to load)."""


class UnauthorizedError(ServiceError):
    """An API key is configured and the request carries none or a wrong one."""


class PayloadTooLargeError(ServiceError):
    """The request body or the batch is larger than the configured limit."""


@dataclass(frozen=True)
class ProblemKind:
    """How one class of error is reported."""

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        """The problem type URI (RFC 9457 §3.1.1)."""
        return TYPE_PREFIX + self.slug


# Order matters: the first class an error is an instance of decides.
ENGINE_PROBLEMS: tuple[tuple[type[SamestoryError], ProblemKind], ...] = (
    (EmptyTextError, ProblemKind(422, "empty-text", "Empty text")),
    (BoilerplateOnlyError, ProblemKind(422, "boilerplate-only", "Text is only boilerplate")),
    (InvalidDateError, ProblemKind(422, "invalid-date", "Invalid timestamp")),
    (InvalidArticleError, ProblemKind(422, "invalid-article", "Invalid article")),
    (ArticleNotFoundError, ProblemKind(404, "article-not-found", "Article not found")),
    (StoryNotFoundError, ProblemKind(404, "cluster-not-found", "Cluster not found")),
    (ConflictError, ProblemKind(409, "id-conflict", "Id already stored with another text")),
    (UnauthorizedError, ProblemKind(401, "unauthorized", "Missing or wrong API key")),
    (PayloadTooLargeError, ProblemKind(413, "payload-too-large", "Payload too large")),
    (NotReadyError, ProblemKind(503, "not-ready", "Service not ready")),
    (StoreClosedError, ProblemKind(503, "shutting-down", "Service shutting down")),
    (StorageFullError, ProblemKind(503, "storage-full", "Storage full")),
    (ModelError, ProblemKind(503, "model-unavailable", "Embedding model unavailable")),
    (ParameterError, ProblemKind(500, "misconfigured", "Service misconfigured")),
    (IndexMismatchError, ProblemKind(500, "index-mismatch", "Stored data does not match")),
    (SamestoryError, ProblemKind(500, "engine-error", "Engine error")),
)

_VALIDATION = ProblemKind(422, "invalid-request", "Invalid request")
_INTERNAL = ProblemKind(500, "internal-error", "Internal server error")

# Statuses whose clients are told when to come back or how to authenticate.
_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'Bearer realm="samestory"'},
    503: {"Retry-After": "5"},
}


class FieldError(BaseModel):
    """One failed check of a request field."""

    loc: list[str | int] = Field(description="Where: 'body', 'query' or 'path', then the field.")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:samestory:problem:empty-text",
                    "title": "Empty text",
                    "status": 422,
                    "detail": "text is empty or only whitespace; send the article's body",
                    "instance": "/v1/articles",
                    "field": "text",
                }
            ]
        }
    )

    type: str = Field("about:blank", description="URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request path.")
    field: str | None = Field(None, description="The offending field, when there is one.")
    errors: list[FieldError] | None = Field(None, description="Every failed check (422 only).")


def kind_of(error: SamestoryError) -> ProblemKind:
    """The problem kind an engine or service error is reported as."""
    for cls, kind in ENGINE_PROBLEMS:
        if isinstance(error, cls):
            return kind
    raise AssertionError("SamestoryError is the last entry")  # pragma: no cover


def problem_response(
    kind: ProblemKind,
    detail: str,
    *,
    instance: str | None = None,
    field: str | None = None,
    errors: list[FieldError] | None = None,
    status: int | None = None,
    title: str | None = None,
) -> Response:
    """A ``application/problem+json`` response."""
    status = status or kind.status
    body = Problem(
        type=kind.type,
        title=title or kind.title,
        status=status,
        detail=detail,
        instance=instance,
        field=field,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=_HEADERS.get(status),
    )


def error_response(error: SamestoryError, *, instance: str | None = None) -> Response:
    """The problem response for an engine or service error."""
    kind = kind_of(error)
    if kind.status >= 500 and kind.status != 503:
        logger.error("%s: %s", type(error).__name__, error)
    return problem_response(
        kind, str(error), instance=instance, field=getattr(error, "field", None)
    )


async def _samestory_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, SamestoryError)
    return error_response(error, instance=request.url.path)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # The raw "input" is left out on purpose: it can be huge, and it can hold lone
    # surrogates that no JSON encoder accepts.
    errors = [
        FieldError(
            loc=[part if isinstance(part, int) else str(part) for part in item.get("loc", ())],
            msg=str(item.get("msg", "")),
            type=str(item.get("type", "")),
        )
        for item in error.errors()
    ]
    return problem_response(
        _VALIDATION,
        _summary(errors),
        instance=request.url.path,
        field=_field(errors),
        errors=errors,
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = error.status_code
    if status == 400 and isinstance(error.__cause__, UnicodeDecodeError):
        # FastAPI answers a body that is not UTF-8 with a bare 400 and invalid JSON with a
        # 422: both are a malformed body, reported one way.
        reason = f"not UTF-8 ({error.__cause__.reason} at byte {error.__cause__.start})"
        return problem_response(
            _VALIDATION,
            f"body: {reason}; send JSON encoded as UTF-8",
            instance=request.url.path,
            errors=[FieldError(loc=["body"], msg=reason, type="json_invalid")],
        )
    slug = {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
    title = _reason(status)
    detail = error.detail if isinstance(error.detail, str) else title
    if status == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}; see /docs"
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
    response = problem_response(ProblemKind(status, slug, title), detail, instance=request.url.path)
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    if status == 405 and (allowed := paths.methods_of(request.app, request.url.path)):
        # Starlette names only the methods of the first route on the path (GET where GET
        # and DELETE share one): the Allow header lists every method the path supports.
        response.headers["allow"] = ", ".join(allowed)
    return response


async def _unexpected_error(request: Request, error: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(
        _INTERNAL,
        "the server failed to handle this request; the error is logged",
        instance=request.url.path,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""
    app.add_exception_handler(SamestoryError, _samestory_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem statuses a route can answer with."""
    return {status: {"model": Problem, "description": _reason(status)} for status in statuses}


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an OpenAPI document so every 4xx/5xx response is a problem+json ``Problem``.

    FastAPI documents error responses as ``application/json`` and its own validation error
    shape; both differ from what :func:`install` sends.
    """
    reference = {"$ref": "#/components/schemas/Problem"}
    for operation in _operations(openapi):
        for status, response in operation.get("responses", {}).items():
            if status[:1] in ("4", "5"):
                response["content"] = {PROBLEM_JSON: {"schema": reference}}
                response["description"] = response.get("description") or _reason(int(status))
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return openapi


def _operations(openapi: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for path in openapi.get("paths", {}).values():
        for method, operation in path.items():
            if method in paths.METHODS:
                yield operation


def _summary(errors: list[FieldError]) -> str:
    parts = [f"{'.'.join(str(p) for p in error.loc)}: {error.msg}" for error in errors[:5]]
    more = len(errors) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) or "the request is invalid"


def _field(errors: list[FieldError]) -> str | None:
    if len(errors) != 1:
        return None
    names = [part for part in errors[0].loc[1:] if isinstance(part, str)]
    return names[-1] if names else None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
