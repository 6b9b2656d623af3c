"""Story scoring and canonical choice: how an article is matched to a story.

An article is scored against each candidate story (the stories of its FAISS neighbours
inside the time window) from five features: the best dense similarity to a member, the
dense similarity to the story's centroid, the best IDF-weighted term overlap with a member,
whether no member it was compared with is in its language, and the days between it and
the story's span. A logistic combination (weights and intercept in :class:`Parameters`)
turns them into a probability-like ``story_similarity``; ``benchmarks/calibrate.py`` fits
it on the dev data and reports cross-validated numbers.

Why these features (measured on the dev sets, see ``benchmarks/README.md``):

- Dense similarity carries most of the signal, but E5 similarities bunch up (unrelated
  articles of one domain score 0.78–0.85), so it needs the others beside it.
- Scoring against the centroid as well as the nearest member stops one article from
  chaining two stories together through a single close neighbour: the ECB+ mistakes are
  whole merges of two same-topic stories.
- Term overlap separates same-topic stories by their names and numbers; it is all but
  zero across languages, which ``cross_language`` compensates for, so a translated
  report of an event is not punished for sharing no words with the original.
- No dev set carries publication dates, so ``days_apart`` keeps a prior weight.

Clustering also weighs event-time conflicts read from the texts (:mod:`index.dates`:
no year in common, no weekday in common) against every member compared, as penalties on
the logit (:func:`clustering_probability`), and, between articles in one language, term
overlap above or below a neutral level. Both separate same-topic events that dense
similarity cannot (the seeds; ECB+'s two events per topic) but lower the pair score's
agreement with SemEval's judgements, so the pair score (:func:`story_probability`) leaves
them out.

The same features describe a pair of articles (:func:`pair_features`, behind
``Engine.similarity``): a one-member story, whose best member is its centroid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.dates import Evidence, weekdays_disjoint, years_disjoint
from index.lexical import DocumentFrequencies, TermHashes, weighted_overlap
from index.params import STORY_CONFLICTS, STORY_FEATURES, Parameters

Vector = npt.NDArray[np.float32]

SECONDS_PER_DAY = 86_400.0

FEATURE_NAMES = STORY_FEATURES
CONFLICT_NAMES = STORY_CONFLICTS


@dataclass(frozen=True)
class StoryFeatures:
    """Evidence that an article belongs to a story (or that two articles share one)."""

    dense_best: float
    dense_centroid: float
    lexical_best: float
    cross_language: float
    days_apart: float

    def vector(self) -> list[float]:
        """Feature values in the order of ``Parameters.story_weights`` (:data:`FEATURE_NAMES`)."""
        return [
            self.dense_best,
            self.dense_centroid,
            self.lexical_best,
            self.cross_language,
            self.days_apart,
        ]


@dataclass(frozen=True)
class Conflicts:
    """Evidence from the texts that an article reports another event than a story's."""

    years_disjoint: float
    weekdays_disjoint: float

    def vector(self) -> list[float]:
        """Values in the order of ``Parameters.story_conflict_weights`` (:data:`CONFLICT_NAMES`)."""
        return [self.years_disjoint, self.weekdays_disjoint]


NO_CONFLICTS = Conflicts(0.0, 0.0)


@dataclass(frozen=True)
class StoryQuery:
    """The article being placed: what story scoring needs of it."""

    embedding: Vector
    terms: TermHashes
    language: str | None
    published_at: float
    evidence: Evidence = 0


@dataclass(frozen=True)
class Neighbour:
    """A stored article returned by the vector search for the query."""

    story_row: int
    dense: float
    published_at: float
    terms: TermHashes
    language: str | None
    evidence: Evidence = 0


@dataclass(frozen=True)
class CandidateStory:
    """What scoring needs of a stored story: summed member embeddings and time span."""

    centroid: Vector | None
    first_published_at: float
    last_published_at: float


def story_probability(features: StoryFeatures, params: Parameters) -> float:
    """The calibrated story similarity in [0, 1] (the pair score: no conflicts)."""
    return _logistic(_logit(features, params))


def clustering_probability(
    features: StoryFeatures, conflicts: Conflicts, params: Parameters
) -> float:
    """The story similarity that clustering decides on: with the event-time conflicts and,
    within one language, the term-overlap evidence."""
    return _logistic(clustering_logit(features, conflicts, params))


def clustering_logit(features: StoryFeatures, conflicts: Conflicts, params: Parameters) -> float:
    """The logit of :func:`clustering_probability`."""
    logit = _logit(features, params) + sum(
        weight * value
        for weight, value in zip(params.story_conflict_weights, conflicts.vector(), strict=True)
    )
    if not features.cross_language:
        logit += params.story_overlap_weight * (features.lexical_best - params.story_overlap_center)
    return logit


def _logit(features: StoryFeatures, params: Parameters) -> float:
    return params.story_bias + sum(
        weight * value
        for weight, value in zip(params.story_weights, features.vector(), strict=True)
    )


def _logistic(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1.0 + exp)


def different_languages(first: str | None, second: str | None) -> bool:
    """True when both languages are known and differ (unknown counts as the same)."""
    return first is not None and second is not None and first != second


def pair_features(
    dense: float,
    first: StoryQuery,
    second: StoryQuery,
    frequencies: DocumentFrequencies | None,
) -> StoryFeatures:
    """Features of two articles: a one-member story whose best member is its centroid."""
    return StoryFeatures(
        dense_best=dense,
        dense_centroid=dense,
        lexical_best=weighted_overlap(first.terms, second.terms, frequencies),
        cross_language=float(different_languages(first.language, second.language)),
        days_apart=abs(first.published_at - second.published_at) / SECONDS_PER_DAY,
    )


def pair_conflicts(first: StoryQuery, second: StoryQuery) -> Conflicts:
    """Event-time conflicts between two articles."""
    return Conflicts(
        years_disjoint=float(years_disjoint(first.evidence, second.evidence)),
        weekdays_disjoint=float(weekdays_disjoint(first.evidence, second.evidence)),
    )


def story_conflicts(query: StoryQuery, members: Sequence[Neighbour]) -> Conflicts:
    """Conflicts of ``query`` with a story: those that hold against every member compared."""
    if not members:
        return NO_CONFLICTS
    return Conflicts(
        years_disjoint=float(
            all(years_disjoint(query.evidence, member.evidence) for member in members)
        ),
        weekdays_disjoint=float(
            all(weekdays_disjoint(query.evidence, member.evidence) for member in members)
        ),
    )


def story_features(
    query: StoryQuery,
    members: Sequence[Neighbour],
    story: CandidateStory,
    frequencies: DocumentFrequencies | None,
) -> StoryFeatures:
    """Features of ``query`` against one story, from the story's neighbouring members."""
    return StoryFeatures(
        dense_best=max(member.dense for member in members),
        dense_centroid=centroid_similarity(query.embedding, story.centroid),
        lexical_best=max(
            weighted_overlap(query.terms, member.terms, frequencies) for member in members
        ),
        cross_language=float(
            all(different_languages(query.language, member.language) for member in members)
        ),
        days_apart=days_outside(
            query.published_at, story.first_published_at, story.last_published_at
        ),
    )


def candidate_stories(
    query: StoryQuery, neighbours: Sequence[Neighbour], params: Parameters
) -> list[tuple[int, list[Neighbour]]]:
    """Neighbours inside the time window grouped by story, best dense match first.

    At most ``params.max_story_candidates`` stories are returned.
    """
    window = params.story_window_days * SECONDS_PER_DAY
    grouped: dict[int, list[Neighbour]] = {}
    for neighbour in neighbours:
        if abs(neighbour.published_at - query.published_at) > window:
            continue
        grouped.setdefault(neighbour.story_row, []).append(neighbour)
    ranked = sorted(grouped.items(), key=lambda item: (-max(m.dense for m in item[1]), item[0]))
    return ranked[: params.max_story_candidates]


def choose_story(
    query: StoryQuery,
    candidates: Sequence[tuple[int, Sequence[Neighbour]]],
    stories: Mapping[int, CandidateStory],
    params: Parameters,
    frequencies: DocumentFrequencies | None,
) -> tuple[int | None, float | None]:
    """The story to join (None: open a new one) and the best story probability seen.

    Ties go to the story listed first in ``candidates``.
    """
    best_row: int | None = None
    best_probability = -1.0
    for row, members in candidates:
        story = stories.get(row)
        if story is None or not members:
            continue
        probability = clustering_probability(
            story_features(query, members, story, frequencies),
            story_conflicts(query, members),
            params,
        )
        if probability > best_probability:
            best_row, best_probability = row, probability
    if best_row is None:
        return None, None
    probability = round(best_probability, 6)
    if best_probability >= params.story_threshold:
        return best_row, probability
    return None, probability


def days_outside(published_at: float, first: float, last: float) -> float:
    """Days between a timestamp and a time span (0 inside it)."""
    if published_at < first:
        return (first - published_at) / SECONDS_PER_DAY
    if published_at > last:
        return (published_at - last) / SECONDS_PER_DAY
    return 0.0


def unit(vector: Vector) -> Vector:
    """``vector`` scaled to unit length (zero stays zero)."""
    norm = float(np.linalg.norm(vector))
    return vector if norm == 0.0 else (vector / norm).astype(np.float32)


def centroid_similarity(embedding: Vector, centroid_sum: Vector | None) -> float:
    """Cosine between a unit embedding and a story's summed member embeddings."""
    if centroid_sum is None:
        return 0.0
    return float(np.dot(embedding, unit(centroid_sum)))
