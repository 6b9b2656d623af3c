"""``/v1/clusters``: stories, their canonical article and members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from service import problems, schemas
from service.routes.deps import EngineDep

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]


@router.get(
    "/{cluster_id}",
    summary="A story and a page of its members",
    responses=problems.responses(401, 404, 422, 503),
)
async def read(
    cluster_id: str,
    engine: EngineDep,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> schemas.ClusterPublic:
    """The story: canonical article, time span and members (newest first, paginated)."""
    story = await run_in_threadpool(engine.story, cluster_id, limit=limit, offset=offset)
    return schemas.ClusterPublic.of_page(story, limit=limit, offset=offset)


@router.get(
    "",
    summary="Recently updated stories",
    responses=problems.responses(401, 422, 503),
)
async def recent(
    engine: EngineDep,
    updated_since: Annotated[
        schemas.Timestamp,
        Query(description="RFC 3339; only stories updated at or after it (empty: all)."),
    ] = None,
    limit: Limit = 50,
) -> schemas.ClusterList:
    """Stories, most recently updated first."""
    stories = await run_in_threadpool(engine.stories, updated_since=updated_since, limit=limit)
    return schemas.ClusterList(clusters=[schemas.ClusterSummary.of(story) for story in stories])
