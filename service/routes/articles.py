"""``/v1/articles``: ingest (one or a batch), read and delete stored articles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from starlette.concurrency import run_in_threadpool

from index.article import MAX_ID_LENGTH
from service import problems, schemas
from service.problems import PayloadTooLargeError
from service.routes.deps import EngineDep, MetricsDep, SettingsDep, WriterDep

router = APIRouter(prefix="/v1/articles", tags=["articles"])

ArticleId = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="The caller's article id.")
]


@router.post(
    "",
    summary="Ingest one article",
    responses=problems.responses(401, 409, 413, 422, 503),
)
async def ingest(
    article: schemas.ArticleIn, writer: WriterDep, metrics: MetricsDep
) -> schemas.Verdict:
    """Store one article and return its verdict.

    Idempotent on ``id``: the same article again returns the stored verdict; the same id
    with a different text is ``409``. Concurrent requests are micro-batched into one engine
    call (one embedding pass).
    """
    verdicts = await writer.submit([article.to_article()])
    metrics.count_verdicts(verdicts)
    return schemas.Verdict.of(verdicts[0])


@router.post(
    "/batch",
    summary="Ingest articles in order",
    responses=problems.responses(401, 409, 413, 422, 503),
)
async def ingest_batch(
    batch: schemas.BatchIn, writer: WriterDep, metrics: MetricsDep, settings: SettingsDep
) -> schemas.BatchOut:
    """Store articles in order and return one verdict each, in order.

    All or none: if one article is invalid or conflicts, nothing is stored and the problem
    names it. More than ``SAMESTORY_MAX_BATCH`` articles is ``413``.
    """
    if len(batch.articles) > settings.max_batch:
        raise PayloadTooLargeError(
            f"the batch has {len(batch.articles)} articles; at most {settings.max_batch} are "
            "allowed (SAMESTORY_MAX_BATCH): split it"
        )
    verdicts = await writer.submit([article.to_article() for article in batch.articles])
    metrics.count_verdicts(verdicts)
    return schemas.BatchOut(results=[schemas.Verdict.of(verdict) for verdict in verdicts])


@router.get(
    "/{article_id:path}",
    summary="Read a stored article and its verdict",
    responses=problems.responses(401, 404, 422, 503),
)
async def read(article_id: ArticleId, engine: EngineDep) -> schemas.StoredArticle:
    """The stored article (its original text) and its current verdict."""
    stored = await run_in_threadpool(engine.get, article_id)
    return schemas.StoredArticle.model_validate(stored)


@router.delete(
    "/{article_id:path}",
    summary="Delete a stored article",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems.responses(401, 404, 422, 503),
)
async def delete(article_id: ArticleId, engine: EngineDep) -> None:
    """Remove the article from the record and the indexes.

    A story whose canonical it was elects another; a near-duplicate group whose original it
    was promotes its earliest remaining member.
    """
    await run_in_threadpool(engine.delete, article_id)
