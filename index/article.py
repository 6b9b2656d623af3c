"""Articles in, verdicts out: the engine's value types."""

from __future__ import annotations

import functools
import hashlib
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Literal

from index.errors import EmptyTextError, InvalidArticleError, InvalidDateError

Status = Literal["new_story", "same_story", "near_duplicate", "exact_duplicate"]

MAX_ID_LENGTH = 512


@dataclass(frozen=True)
class Article:
    """One incoming article as the caller sent it.

    ``published_at`` is timezone-aware UTC; :func:`parse_timestamp` turns RFC 3339 text
    into one. When it is ``None`` the engine uses the receipt time.
    """

    id: str
    text: str
    title: str | None = None
    url: str | None = None
    source: str | None = None
    language: str | None = None
    published_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or is_blank(self.id):
            raise InvalidArticleError("id must be a non-empty string", field="id")
        if len(self.id) > MAX_ID_LENGTH:
            raise InvalidArticleError(
                f"id is {len(self.id)} characters long; at most {MAX_ID_LENGTH} are allowed",
                field="id",
            )
        if not isinstance(self.text, str) or is_blank(self.text):
            raise EmptyTextError(
                "text is empty or only whitespace; send the article's body", field="text"
            )
        if self.published_at is not None and self.published_at.tzinfo is None:
            object.__setattr__(self, "published_at", self.published_at.replace(tzinfo=UTC))

    @functools.cached_property
    def text_hash(self) -> str:
        """SHA-256 of the text's UTF-8, in hex: what the store keeps to tell whether an id
        comes back with the same text. Computed once per article, and pickled with it."""
        return hash_text(self.text)

    def __reduce__(self) -> tuple[Callable[..., Article], tuple[object, ...]]:
        # Batch work pickles every article to a worker process. The default protocol (a
        # new object, then its __dict__ as state) took 0.28 s for SaudiNewsNet's 31k
        # articles in the sending process, the fields in a tuple 0.10 s. The text hash
        # goes along where it was computed, so the receiver need not encode and hash the
        # text again. (Batch work pickles before it hashes, and sends the hashes beside
        # the articles: see pickle_with_hashes.)
        return (_restored, (*_field_values(self), self.__dict__.get("text_hash")))


def is_blank(text: str) -> bool:
    """Whether ``text`` is empty or only whitespace (``not text.strip()``, without copying
    the text: the first other character settles it)."""
    return not text or text.isspace()


def hash_text(text: str) -> str:
    """:attr:`Article.text_hash` of an article with this text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pickle_with_hashes(articles: Sequence[Article]) -> tuple[bytes, list[str]]:
    """``articles`` pickled, and each one's :attr:`~Article.text_hash`, for another process.

    The hashes are computed after pickling: pickling a text leaves its UTF-8 form cached
    in the string (CPython), so hashing it then copies those bytes instead of encoding the
    text a second time (SaudiNewsNet: 0.14 s of encoding saved in the sending process; the
    store's writes read the same cached form). :func:`unpickle_with_hashes` reverses it.
    """
    payload = pickle.dumps(list(articles), protocol=pickle.HIGHEST_PROTOCOL)
    return payload, [article.text_hash for article in articles]


def unpickle_with_hashes(payload: bytes, hashes: Sequence[str]) -> list[Article]:
    """The articles of :func:`pickle_with_hashes`, each with its hash from ``hashes``."""
    articles: list[Article] = pickle.loads(payload)
    for article, digest in zip(articles, hashes, strict=True):
        article.__dict__["text_hash"] = digest
    return articles


_FIELDS = tuple(field.name for field in fields(Article))
_field_values = attrgetter(*_FIELDS)


def _restored(*values: object) -> Article:
    """An unpickled :class:`Article`: its fields were checked when it was made; the last
    value is its text hash, or None where it had not been computed."""
    article = object.__new__(Article)
    state = article.__dict__
    state.update(zip(_FIELDS, values[:-1], strict=True))
    if values[-1] is not None:
        state["text_hash"] = values[-1]
    return article


def parse_timestamp(
    value: str | datetime | None, *, field: str = "published_at"
) -> datetime | None:
    """Parse an RFC 3339 timestamp (a bare date is taken as midnight UTC).

    Raises:
        InvalidDateError: the value is not a valid RFC 3339 timestamp.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidDateError(
            f"{field} {value!r} is not an RFC 3339 timestamp; "
            "use e.g. '2025-01-17T09:30:00Z' or '2025-01-17'",
            field=field,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Canonical:
    """The article that represents a story."""

    id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: datetime


@dataclass(frozen=True)
class Cluster:
    """A story as seen from one verdict."""

    id: str
    size: int
    canonical: Canonical
    first_published_at: datetime
    last_published_at: datetime


@dataclass(frozen=True)
class CopyOf:
    """An earlier stored article that an article was verified to be a copy of."""

    id: str
    jaccard: float
    containment: float


@dataclass(frozen=True)
class Verdict:
    """What the engine says of one article (REST v1 ``Verdict``).

    ``duplicate_of`` names the original of the near-duplicate group the article joined;
    ``copies`` every earlier article it was itself verified against when it arrived (best
    first, at most ``MAX_LISTED_COPIES``; empty for articles that are no copy). The group
    is what to drop or merge by; ``copies`` is the pairwise answer (a copy of a copy need
    not be a copy of the original). ``exact_duplicate`` says that the text is an earlier
    stored article's once both are normalized (and so is the cleaned body: an identical
    text whose source has learned other boilerplate lines is a ``near_duplicate``); the
    same cleaned body under other furniture (dateline, byline, footer) is a
    ``near_duplicate`` with similarity 1.0.
    """

    id: str
    status: Status
    duplicate_of: str | None
    duplicate_similarity: float | None
    story_similarity: float | None
    cluster: Cluster
    stored: bool
    copies: tuple[CopyOf, ...] = ()


MAX_LISTED_COPIES = 32


@dataclass(frozen=True)
class Similarity:
    """How two articles compare (REST v1 ``/v1/similarity``)."""

    jaccard: float
    containment: float
    story_similarity: float
    near_duplicate: bool
    same_story: bool


@dataclass(frozen=True)
class StoredArticle:
    """An article as stored, with its current verdict."""

    article: Article
    verdict: Verdict
    received_at: datetime


@dataclass(frozen=True)
class Story:
    """A story with a page of its members (newest first)."""

    cluster: Cluster
    members: list[Canonical]
    total_members: int
    updated_at: datetime
