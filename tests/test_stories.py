"""Story scoring: features, candidate grouping, the decision and the embedded texts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from index.dates import read_evidence
from index.errors import ParameterError
from index.lexical import DocumentFrequencies
from index.params import STORY_FEATURES, Parameters
from index.stories import (
    FEATURE_NAMES,
    NO_CONFLICTS,
    CandidateStory,
    Conflicts,
    Neighbour,
    StoryFeatures,
    StoryQuery,
    candidate_stories,
    choose_story,
    clustering_probability,
    different_languages,
    pair_conflicts,
    pair_features,
    story_conflicts,
    story_features,
    story_probability,
)

DAY = 86_400.0


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _terms(*values: int) -> np.ndarray:
    return np.array(sorted(set(values)), dtype=np.uint32)


def _query(
    embedding: np.ndarray, terms: np.ndarray, language: str | None = "en", at: float = 0.0
) -> StoryQuery:
    return StoryQuery(embedding=embedding, terms=terms, language=language, published_at=at)


def _neighbour(
    story: int, dense: float, terms: np.ndarray, *, language: str | None = "en", at: float = 0.0
) -> Neighbour:
    return Neighbour(story_row=story, dense=dense, published_at=at, terms=terms, language=language)


def test_feature_names_follow_the_parameters() -> None:
    assert FEATURE_NAMES == STORY_FEATURES
    assert len(Parameters().story_weights) == len(FEATURE_NAMES)


def test_parameters_refuse_a_weight_per_feature_mismatch() -> None:
    with pytest.raises(ParameterError, match="one weight per story feature"):
        Parameters(story_weights=(1.0, 2.0))


def test_pair_features_are_symmetric_and_flag_cross_language() -> None:
    a = _query(_unit(1, 0), _terms(1, 2, 3), "de", at=0.0)
    b = _query(_unit(1, 1), _terms(2, 3, 4), "en", at=2 * DAY)
    forward = pair_features(0.7, a, b, None)
    assert forward == pair_features(0.7, b, a, None)
    assert forward.dense_best == forward.dense_centroid == 0.7
    assert forward.lexical_best == pytest.approx(2 / 3)
    assert forward.cross_language == 1.0
    assert forward.days_apart == pytest.approx(2.0)


def test_unknown_language_counts_as_the_same() -> None:
    assert not different_languages(None, "ar")
    assert not different_languages("ar", "ar")
    assert different_languages("ar", "en")


def test_story_features_take_the_best_member_and_the_centroid() -> None:
    query = _query(_unit(1, 0), _terms(1, 2, 3, 4), "ar", at=10 * DAY)
    members = [
        _neighbour(7, 0.9, _terms(9, 10), language="en"),
        _neighbour(7, 0.6, _terms(1, 2, 3, 4), language="ar"),
    ]
    centroid = _unit(1, 0) + _unit(0, 1)
    story = CandidateStory(centroid=centroid, first_published_at=0.0, last_published_at=4 * DAY)
    features = story_features(query, members, story, DocumentFrequencies())
    assert features.dense_best == pytest.approx(0.9)
    assert features.dense_centroid == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert features.lexical_best == pytest.approx(1.0)
    assert features.cross_language == 0.0
    assert features.days_apart == pytest.approx(6.0)
    only_english = story_features(query, members[:1], story, None)
    assert only_english.cross_language == 1.0


def test_candidate_stories_respect_the_window_and_rank_by_best_member() -> None:
    params = Parameters(story_window_days=3.0, max_story_candidates=2)
    query = _query(_unit(1, 0), _terms(1), at=10 * DAY)
    neighbours = [
        _neighbour(1, 0.80, _terms(1), at=9 * DAY),
        _neighbour(2, 0.95, _terms(1), at=1 * DAY),  # outside the window
        _neighbour(3, 0.85, _terms(1), at=11 * DAY),
        _neighbour(1, 0.90, _terms(1), at=10 * DAY),
        _neighbour(4, 0.70, _terms(1), at=10 * DAY),
    ]
    ranked = candidate_stories(query, neighbours, params)
    assert [row for row, _members in ranked] == [1, 3]
    assert [m.dense for m in ranked[0][1]] == [0.80, 0.90]


def test_choose_story_joins_above_the_threshold_only() -> None:
    query = _query(_unit(1, 0), _terms(1, 2, 3))
    close = [_neighbour(5, 0.97, _terms(1, 2, 3))]
    far = [_neighbour(6, 0.80, _terms(8, 9))]
    stories = {
        5: CandidateStory(_unit(1, 0.1), 0.0, 0.0),
        6: CandidateStory(_unit(0.2, 1), 0.0, 0.0),
    }
    params = Parameters()
    row, probability = choose_story(query, [(6, far), (5, close)], stories, params, None)
    assert row == 5
    assert probability is not None and probability >= params.story_threshold
    row, probability = choose_story(query, [(6, far)], stories, params, None)
    assert row is None
    assert probability is not None and probability < params.story_threshold
    assert choose_story(query, [], stories, params, None) == (None, None)


def test_story_probability_rises_with_every_similarity_feature() -> None:
    params = Parameters()
    base = pair_features(
        0.85, _query(_unit(1, 0), _terms(1, 2)), _query(_unit(1, 0), _terms(3)), None
    )
    low = story_probability(base, params)
    for name in ("dense_best", "dense_centroid", "lexical_best"):
        values = base.vector()
        values[FEATURE_NAMES.index(name)] += 0.1
        raised = type(base)(*values)
        assert story_probability(raised, params) > low, name
    later = type(base)(*[*base.vector()[:-1], 5.0])
    assert story_probability(later, params) < low
    assert 0.0 < low < 1.0


def test_conflicts_count_against_a_story_only_when_every_member_conflicts() -> None:
    tuesday_2025 = read_evidence("Tuesday 4 March 2025")
    query = StoryQuery(_unit(1, 0), _terms(1, 2, 3), "en", 0.0, tuesday_2025)
    thursday_2017 = Neighbour(5, 0.95, 0.0, _terms(1, 2), "en", read_evidence("Thursday 2017"))
    silent = Neighbour(5, 0.93, 0.0, _terms(1, 2), "en", 0)
    assert story_conflicts(query, [thursday_2017]) == Conflicts(1.0, 1.0)
    assert story_conflicts(query, [thursday_2017, silent]) == NO_CONFLICTS
    assert story_conflicts(query, []) == NO_CONFLICTS
    same_day = Neighbour(5, 0.95, 0.0, _terms(1, 2), "en", read_evidence("on Tuesday, 2025"))
    assert story_conflicts(query, [same_day]) == NO_CONFLICTS


def test_conflicts_lower_the_clustering_score_not_the_pair_score() -> None:
    params = Parameters()
    a = StoryQuery(_unit(1, 0), _terms(1, 2), "en", 0.0, read_evidence("Tuesday 2025"))
    b = StoryQuery(_unit(1, 0.05), _terms(1, 2), "en", 0.0, read_evidence("Wednesday 2017"))
    features = pair_features(0.95, a, b, None)
    conflicts = pair_conflicts(a, b)
    assert conflicts == Conflicts(1.0, 1.0)
    assert clustering_probability(features, NO_CONFLICTS, params) == pytest.approx(
        story_probability(features, params)
    )
    assert clustering_probability(features, conflicts, params) < story_probability(features, params)
    # A member and a centroid at cosine 0.9 with the same terms: one story by content,
    # another event by the years and weekdays named.
    stories = {5: CandidateStory(_unit(1, 0.4843), 0.0, 0.0)}
    member = Neighbour(5, 0.90, 0.0, _terms(1, 2), "en", b.evidence)
    joined, joined_probability = choose_story(
        dataclasses.replace(a, evidence=0), [(5, [member])], stories, params, None
    )
    apart, apart_probability = choose_story(a, [(5, [member])], stories, params, None)
    assert joined == 5
    assert joined_probability is not None and joined_probability >= params.story_threshold
    assert apart is None
    assert apart_probability is not None and apart_probability < params.story_threshold


def test_term_overlap_weighs_on_clustering_within_one_language_only() -> None:
    params = Parameters(story_overlap_weight=10.0, story_overlap_center=0.2)
    base = StoryFeatures(0.9, 0.9, 0.2, 0.0, 0.0)
    pair = story_probability(base, params)
    # At the neutral point clustering scores what the pair score says.
    assert clustering_probability(base, NO_CONFLICTS, params) == pytest.approx(pair)
    shared = dataclasses.replace(base, lexical_best=0.5)
    apart = dataclasses.replace(base, lexical_best=0.05)
    assert clustering_probability(shared, NO_CONFLICTS, params) > story_probability(shared, params)
    assert clustering_probability(apart, NO_CONFLICTS, params) < story_probability(apart, params)
    # Across languages words do not overlap: no evidence either way.
    for features in (shared, apart):
        across = dataclasses.replace(features, cross_language=1.0)
        assert clustering_probability(across, NO_CONFLICTS, params) == pytest.approx(
            story_probability(across, params)
        )


def test_shared_names_decide_between_two_same_topic_stories() -> None:
    """The story closer by meaning wins without term-overlap evidence (the default); with
    it (as ``calibrate.py --overlap fit`` measures it) the one whose member shares the
    article's terms wins, and the closer story, sharing none, is not joined at all."""
    dense_only = Parameters()
    assert dense_only.story_overlap_weight == 0.0
    overlap = dense_only.replace(story_overlap_weight=14.0, story_overlap_center=0.18)
    query = _query(_unit(1, 0), _terms(*range(1, 21)))
    stories = {
        5: CandidateStory(_unit(1, 0.5934), 0.0, 0.0),  # centroid cosine 0.86
        6: CandidateStory(_unit(1, 0.4556), 0.0, 0.0),  # centroid cosine 0.91
    }
    same_names = [_neighbour(5, 0.86, _terms(*range(1, 17), 40, 41, 42, 43))]
    other_names = [_neighbour(6, 0.92, _terms(*range(50, 70)))]
    both = [(6, other_names), (5, same_names)]
    assert choose_story(query, both, stories, dense_only, None)[0] == 6
    assert choose_story(query, [(6, other_names)], stories, dense_only, None)[0] == 6
    assert choose_story(query, both, stories, overlap, None)[0] == 5
    row, probability = choose_story(query, [(6, other_names)], stories, overlap, None)
    assert row is None
    assert probability is not None and probability < overlap.story_threshold


def test_parameters_refuse_overlap_evidence_out_of_range() -> None:
    with pytest.raises(ParameterError, match="story_overlap_weight"):
        Parameters(story_overlap_weight=-1.0)
    with pytest.raises(ParameterError, match="story_overlap_center"):
        Parameters(story_overlap_center=1.5)


def test_parameters_refuse_a_conflict_weight_that_favours_a_story() -> None:
    with pytest.raises(ParameterError, match="must not be positive"):
        Parameters(story_conflict_weights=(0.5, -1.0))
    with pytest.raises(ParameterError, match="one weight per conflict"):
        Parameters(story_conflict_weights=(-1.0,))
