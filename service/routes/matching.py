"""``/v1/match`` and ``/v1/similarity``: verdicts and comparisons that store nothing."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service import problems, schemas
from service.routes.deps import EngineDep, MetricsDep

router = APIRouter(prefix="/v1", tags=["matching"])


@router.post(
    "/match",
    summary="The verdict an article would get, without storing it",
    responses=problems.responses(401, 409, 413, 422, 503),
)
async def match(
    article: schemas.ArticleIn, engine: EngineDep, metrics: MetricsDep
) -> schemas.Verdict:
    """Match an article against everything stored; ``stored`` is false.

    An id already stored with the same text returns its stored verdict; with another text
    it is ``409``. A verdict that would open a new story has an empty ``cluster.id``.
    """
    verdict = await run_in_threadpool(engine.match, article.to_article())
    metrics.count_verdicts([verdict])
    return schemas.Verdict.of(verdict)


@router.post(
    "/similarity",
    summary="Compare two articles",
    responses=problems.responses(401, 413, 422, 503),
)
async def similarity(pair: schemas.SimilarityIn, engine: EngineDep) -> schemas.SimilarityOut:
    """Near-duplicate and same-story similarity of two articles; nothing is stored."""
    result = await run_in_threadpool(engine.similarity, pair.a.to_article(), pair.b.to_article())
    return schemas.SimilarityOut.model_validate(result)
