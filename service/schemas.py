"""REST v1 request and response bodies, named and shaped as DESIGN.md's contract says.

Requests are validated here, before the engine sees them: field shapes and lengths, RFC 3339
timestamps and BCP-47 language tags (pydantic itself refuses lone surrogates in strings).
Emptiness after cleaning is the engine's call (:class:`~index.errors.EmptyTextError`,
:class:`~index.errors.BoilerplateOnlyError`), mapped to ``422`` by :mod:`service.problems`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict

from index import article as engine
from index.article import MAX_ID_LENGTH, parse_timestamp

# The shape of RFC 5646 tags (language, then subtags), not the registry: "ar", "en-GB",
# "zh-Hant-TW", "x-private" pass; the engine only uses the tag as a hint.
LANGUAGE_PATTERN = r"^(?:[A-Za-z]{2,8}|[xX])(?:-[A-Za-z0-9]{1,8})*$"

_ARABIC_TEXT = (
    "أعلنت وزارة الصحة صباح اليوم افتتاح مستشفى جديد في مدينة جدة بسعة ثلاثمئة سرير، "
    "وقال الوزير إن المستشفى سيخدم أكثر من مليون نسمة في المنطقة."
)
_CANONICAL_EXAMPLE: JsonDict = {
    "id": "sa-1001",
    "title": "افتتاح مستشفى جديد في جدة",
    "url": "https://news.example/sa-1001",
    "source": "news.example",
    "published_at": "2025-01-17T09:30:00Z",
}
_CLUSTER_EXAMPLE: JsonDict = {
    "id": "s1",
    "size": 2,
    "canonical": _CANONICAL_EXAMPLE,
    "first_published_at": "2025-01-17T09:30:00Z",
    "last_published_at": "2025-01-17T10:05:00Z",
}
_VERDICT_EXAMPLE: JsonDict = {
    "id": "sa-1002",
    "status": "near_duplicate",
    "duplicate_of": "sa-1001",
    "duplicate_similarity": 0.913,
    "story_similarity": None,
    "cluster": _CLUSTER_EXAMPLE,
    "stored": True,
    "copies": [{"id": "sa-1001", "jaccard": 0.913, "containment": 0.957}],
}
_ARTICLE_EXAMPLE: JsonDict = {
    "id": "sa-1002",
    "text": _ARABIC_TEXT,
    "title": "افتتاح مستشفى جديد في جدة",
    "url": "https://other.example/2025/01/17/hospital",
    "source": "other.example",
    "language": "ar",
    "published_at": "2025-01-17T10:05:00Z",
}


def _rfc3339(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string, e.g. '2025-01-17T09:30:00Z'")
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    # Leave a year of room at both ends so that converting to and from epoch seconds and
    # to UTC can never overflow.
    if utc is None or not 1 < utc.year < 9999:
        raise ValueError("must lie between the years 2 and 9998")
    return utc


Timestamp = Annotated[datetime | None, BeforeValidator(_rfc3339)]


class ArticleIn(BaseModel):
    """One article as a caller sends it (``ArticleIn``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ARTICLE_EXAMPLE]})

    id: str = Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="The caller's id; ingest is idempotent on it.",
    )
    text: str = Field(
        min_length=1, description="Plain text or HTML; boilerplate is removed before matching."
    )
    title: str | None = Field(default=None, max_length=4_000)
    url: str | None = Field(default=None, max_length=8_192)
    source: str | None = Field(
        default=None, max_length=1_000, description="Publisher, e.g. a domain."
    )
    language: str | None = Field(
        default=None,
        max_length=64,
        pattern=LANGUAGE_PATTERN,
        description="BCP-47 tag such as 'ar' or 'en-GB'; detected when absent.",
    )
    published_at: Timestamp = Field(
        default=None,
        description=(
            "RFC 3339 (a bare date is midnight UTC); the receipt time when absent, null or "
            "empty. Stored in UTC."
        ),
    )

    def to_article(self) -> engine.Article:
        """The engine's :class:`~index.article.Article` for this body.

        Raises:
            InvalidArticleError: a field the schema lets through is still unusable (for
                example an id or text made only of whitespace).
        """
        return engine.Article(
            id=self.id,
            text=self.text,
            title=self.title,
            url=self.url,
            source=self.source,
            language=self.language,
            published_at=self.published_at,
        )


class _FromEngine(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Canonical(_FromEngine):
    """The article that represents a story."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CANONICAL_EXAMPLE]})

    id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: datetime


class Cluster(_FromEngine):
    """A story as seen from one verdict."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CLUSTER_EXAMPLE]})

    id: str = Field(description="Story id; empty in a /v1/match verdict that would open one.")
    size: int = Field(ge=1)
    canonical: Canonical
    first_published_at: datetime
    last_published_at: datetime


class CopyOf(_FromEngine):
    """An earlier stored article this one was verified to be a copy of."""

    id: str
    jaccard: float = Field(ge=0, le=1, description="Jaccard similarity of the cleaned texts.")
    containment: float = Field(
        ge=0, le=1, description="Share of the smaller text's shingles found in the other."
    )


class Verdict(_FromEngine):
    """What samestory says of one article (``Verdict``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_VERDICT_EXAMPLE]})

    id: str
    status: Literal["new_story", "same_story", "near_duplicate", "exact_duplicate"] = Field(
        description=(
            "exact_duplicate: the same text as an earlier stored article once both are "
            "normalized (case, Arabic letter forms, diacritics, punctuation, spacing), and "
            "the same body once cleaned (so an identical text can be a near_duplicate where "
            "its source's learned boilerplate lines differ from the other's). "
            "near_duplicate: a copy of one (word 5-gram Jaccard of the cleaned texts at or "
            "above the threshold, or a truncated or extended copy by containment), the same "
            "body under another dateline, byline or footer included. same_story / new_story: "
            "no copy; joined a story, or founded one."
        )
    )
    duplicate_of: str | None = Field(
        description="The original (earliest member) of the near-duplicate group it joined."
    )
    duplicate_similarity: float | None = Field(description="Jaccard similarity to that original.")
    story_similarity: float | None = Field(
        description="Calibrated probability of the best story candidate, when one was scored."
    )
    cluster: Cluster
    stored: bool
    copies: list[CopyOf] = Field(
        default_factory=list,
        description=(
            "Every earlier stored article this one was verified to be a copy of when it "
            "arrived (Jaccard >= the near-duplicate threshold, or a truncated or extended "
            "copy by containment), best first, at most 32; empty for an article that is no "
            "copy. duplicate_of names the group's original, which a copy of a copy need not "
            "be a copy of; this list is the pairwise answer."
        ),
    )

    @classmethod
    def of(cls, verdict: engine.Verdict) -> Verdict:
        """The response body for an engine verdict."""
        return cls.model_validate(verdict)


class BatchIn(BaseModel):
    """Articles to ingest in order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"articles": [_ARTICLE_EXAMPLE]}]})

    articles: list[ArticleIn] = Field(
        min_length=1,
        description="At most SAMESTORY_MAX_BATCH articles (413 beyond). All or none are stored.",
    )


class BatchOut(BaseModel):
    """One verdict per article, in request order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [_VERDICT_EXAMPLE]}]})

    results: list[Verdict]


class SimilarityIn(BaseModel):
    """Two articles to compare; nothing is stored."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "a": {"id": "a", "text": _ARABIC_TEXT},
                    "b": {"id": "b", "text": _ARABIC_TEXT + " وأكد أن العمل بدأ فعلاً."},
                }
            ]
        }
    )

    a: ArticleIn
    b: ArticleIn


class SimilarityOut(_FromEngine):
    """How two articles compare."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jaccard": 0.84,
                    "containment": 1.0,
                    "story_similarity": 1.0,
                    "near_duplicate": True,
                    "same_story": True,
                }
            ]
        }
    )

    jaccard: float = Field(description="Jaccard similarity of the word shingles.")
    containment: float = Field(description="Shared shingles over the smaller set.")
    story_similarity: float = Field(
        description="Probability that both tell the same story, from their content "
        "(embeddings, shared terms, language, publication dates)."
    )
    near_duplicate: bool
    same_story: bool = Field(
        description="What clustering would decide: a near-duplicate, or a story similarity "
        "at or above the threshold once event-time conflicts read from the texts (no year "
        "or no weekday in common) are weighed; so it can be false at a high story_similarity."
    )


class ArticlePublic(_FromEngine):
    """An article as stored (the original text, not the cleaned one)."""

    id: str
    text: str
    title: str | None
    url: str | None
    source: str | None
    language: str | None
    published_at: datetime


class StoredArticle(_FromEngine):
    """A stored article, its current verdict and when it was received."""

    article: ArticlePublic
    verdict: Verdict
    received_at: datetime


class ClusterSummary(Cluster):
    """A story and when it last changed."""

    updated_at: datetime

    @classmethod
    def of(cls, story: engine.Story) -> ClusterSummary:
        """The summary of an engine story."""
        return cls.model_validate({**_cluster_fields(story), "updated_at": story.updated_at})


class ClusterPublic(ClusterSummary):
    """A story with one page of its members, newest first."""

    members: list[Canonical]
    limit: int
    offset: int

    @classmethod
    def of_page(cls, story: engine.Story, *, limit: int, offset: int) -> ClusterPublic:
        """The response body for a page of an engine story."""
        return cls.model_validate(
            {
                **_cluster_fields(story),
                "updated_at": story.updated_at,
                "members": story.members,
                "limit": limit,
                "offset": offset,
            }
        )


class ClusterList(BaseModel):
    """Recently updated stories, most recent first."""

    clusters: list[ClusterSummary]


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"]


def _cluster_fields(story: engine.Story) -> dict[str, Any]:
    cluster = story.cluster
    return {
        "id": cluster.id,
        "size": cluster.size,
        "canonical": cluster.canonical,
        "first_published_at": cluster.first_published_at,
        "last_published_at": cluster.last_published_at,
    }
