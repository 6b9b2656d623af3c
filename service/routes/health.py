"""Liveness, readiness and Prometheus metrics (never behind the API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service import problems, schemas
from service.metrics import CONTENT_TYPE
from service.problems import NotReadyError
from service.routes.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness", responses=problems.responses(503))
async def healthz(runtime: RuntimeDep) -> schemas.Health:
    """``ok`` while the process serves, loading included; ``503`` if the engine failed to load."""
    if runtime.load_error is not None:
        raise NotReadyError(runtime.not_ready_reason())
    return schemas.Health(status="ok")


@router.get("/readyz", summary="Readiness", responses=problems.responses(503))
async def readyz(runtime: RuntimeDep) -> schemas.Health:
    """``ready`` once the model and indexes are loaded; ``503`` before."""
    runtime.require_engine()
    return schemas.Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Requests and latency by route and status, verdicts by status, writer batch sizes,
    articles and stories stored, index sizes."""
    if runtime.engine is not None:
        await run_in_threadpool(runtime.metrics.read_engine, runtime.engine)
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)
