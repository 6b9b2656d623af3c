"""Story scoring and canonical choice: how an article is matched to a story.

An article is scored against each candidate story (stories of its FAISS neighbours inside
the time window) from four features: the best dense similarity to a member, the dense
similarity to the story's centroid, the best IDF-weighted term overlap with a member, and
the time distance to the story's span. A logistic combination, calibrated on the dev data
(``benchmarks/calibrate.py``), turns them into a probability-like ``story_similarity``.
Scoring against the centroid as well as the nearest member stops one article from
chaining two large stories together through a single close neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.params import Parameters

Vector = npt.NDArray[np.float32]

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class StoryFeatures:
    """Evidence that an article belongs to a story."""

    dense_best: float
    dense_centroid: float
    lexical_best: float
    days_apart: float

    def vector(self) -> list[float]:
        """Feature values in the order of ``Parameters.story_weights``."""
        return [self.dense_best, self.dense_centroid, self.lexical_best, self.days_apart]


FEATURE_NAMES = ("dense_best", "dense_centroid", "lexical_best", "days_apart")


def story_probability(features: StoryFeatures, params: Parameters) -> float:
    """The calibrated story similarity in [0, 1]."""
    logit = params.story_bias + sum(
        weight * value
        for weight, value in zip(params.story_weights, features.vector(), strict=True)
    )
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1.0 + exp)


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
