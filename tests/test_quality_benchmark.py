"""The quality benchmark's own parts: metrics, exhaustive near-duplicate truth, edits.

All on small data made here; ``benchmarks/quality.py`` runs the real sets.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.quality import (
    EDIT_KINDS,
    DiskCachedEmbedder,
    NewsArticle,
    SemevalPair,
    bcubed,
    build_edit_corpus,
    build_truth,
    exact_jaccard,
    group_ceiling,
    group_pairs,
    make_edit,
    pair_scores,
    pairwise_scores,
    score_refused,
    similar_pairs,
    similarity_scores,
    truth_normalize,
    truth_shingles,
)

WORDS = (
    *("الحكومة", "أعلنت", "اليوم", "خطة", "جديدة", "لدعم", "الاقتصاد", "الوطني", "وتحفيز"),
    *("الاستثمار", "القطاعات", "النفطية", "وقال", "الوزير", "البرنامج", "يشمل", "تمويل"),
    *("الشركات", "الصغيرة", "والمتوسطة", "وتطوير", "البنية", "التحتية", "المناطق", "كافة"),
)


def _text(rng: random.Random, paragraphs: int = 5, words: int = 30) -> str:
    return "\n".join(
        " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(words))
        for _ in range(paragraphs)
    )


def test_bcubed_known_values() -> None:
    gold = ["a", "a", "b", "b"]
    assert bcubed(gold, gold) == (1.0, 1.0, 1.0)
    precision, recall, f1 = bcubed(["x", "x", "x", "x"], gold)
    assert precision == pytest.approx(0.5)
    assert recall == pytest.approx(1.0)
    assert f1 == pytest.approx(2 / 3)
    precision, recall, _f1 = bcubed(["1", "2", "3", "4"], gold)
    assert (precision, recall) == pytest.approx((1.0, 0.5))


def test_bcubed_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same, non-empty"):
        bcubed(["a"], ["a", "b"])


def test_pairwise_scores_known_values() -> None:
    precision, recall, f1 = pairwise_scores(["x", "x", "x", "y"], ["a", "a", "b", "b"])
    assert precision == pytest.approx(1 / 3)
    assert recall == pytest.approx(1 / 2)
    assert f1 == pytest.approx(0.4)


def test_similarity_scores_per_language_pair() -> None:
    pairs = [
        SemevalPair(str(i), lang, lang, "a", "b", overall)
        for i, (lang, overall) in enumerate(
            [("en", 1.0), ("en", 4.0), ("en", 2.0), ("ar", 1.0), ("ar", 3.5), ("ar", 4.0)]
        )
    ]
    scores = [0.9, 0.0, 0.6, 0.8, 0.3, 0.2]
    result = similarity_scores(pairs, scores)
    assert result["all"]["pairs"] == 6
    assert result["all"]["auc"] == pytest.approx(1.0)
    assert result["en-en"]["pearson"] == pytest.approx(1.0)
    assert result["ar-ar"]["pearson"] > 0.9


def test_refused_pairs_are_scored_at_the_mean_of_the_others() -> None:
    assert score_refused([0.2, None, 0.6, None]) == ([0.2, 0.4, 0.6, 0.4], pytest.approx(0.4))
    assert score_refused([None, None]) == ([0.0, 0.0], 0.0)
    assert score_refused([0.9]) == ([0.9], 0.9)


def test_truth_normalize_folds_arabic_variants_and_is_idempotent() -> None:
    assert truth_normalize("أَحْمَدُ إلى المدرسةِ، مصطفى!") == truth_normalize("احمد الي المدرسه مصطفي")
    assert truth_normalize("Ｔｅｓｔ ٣٤ ۵") == "test 34 5"
    once = truth_normalize("كـتـاب  «جديد» — ٢٠١٨")
    assert truth_normalize(once) == once


def test_truth_shingles_need_five_words() -> None:
    assert truth_shingles("one two three four").size == 0
    assert truth_shingles("one two three four five six").size == 2


def _brute_force(sets: list[np.ndarray], threshold: float) -> set[tuple[int, int]]:
    return {
        (i, j)
        for i, j in itertools.combinations(range(len(sets)), 2)
        if sets[i].size and sets[j].size and exact_jaccard(sets[i], sets[j]) >= threshold
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 40), max_size=25), min_size=2, max_size=25),
    st.sampled_from([0.3, 0.5, 0.8, 1.0]),
)
def test_similar_pairs_equals_brute_force(raw: list[set[int]], threshold: float) -> None:
    sets = [np.array(sorted(s), dtype=np.int64) for s in raw]
    found = similar_pairs(sets, threshold)
    assert {(i, j) for i, j, _v in found} == _brute_force(sets, threshold)
    for i, j, value in found:
        assert value == pytest.approx(exact_jaccard(sets[i], sets[j]))


def test_build_truth_finds_copies_and_exact_duplicates() -> None:
    rng = random.Random(3)
    original = _text(rng)
    unrelated = _text(rng)
    lines = original.split("\n")
    truncated = "\n".join([*lines[:4], lines[4][:100]])
    texts = [original, unrelated, original.replace("الحكومة", "الحكومـة"), truncated]
    truth = build_truth(texts)
    assert truth.exact_pairs() == {(0, 2)}
    assert (0, 3) in truth.near() and (2, 3) in truth.near()
    assert not any(1 in pair for pair in truth.near())
    assert truth.pairs[(0, 3)] == pytest.approx(
        exact_jaccard(
            truth_shingles(truth_normalize(original)), truth_shingles(truth_normalize(truncated))
        )
    )


def test_pair_scores_and_group_pairs() -> None:
    predicted = group_pairs([[3, 1, 2], [7, 8]])
    assert predicted == {(1, 2), (1, 3), (2, 3), (7, 8)}
    scores = pair_scores(predicted, {(1, 2), (4, 5)})
    assert scores["precision"] == pytest.approx(0.25)
    assert scores["recall"] == pytest.approx(0.5)


def test_group_ceiling_on_a_chain_of_copies() -> None:
    # 1-2 and 2-3 are copies, 1-3 is not (a copy of a copy); 4-5 a clean pair.
    truth = {(1, 2), (2, 3), (4, 5)}
    ceiling = group_ceiling(truth, order=[1, 2, 3, 4, 5])
    # Components {1, 2, 3} and {4, 5}: every true pair, plus the false (1, 3).
    assert ceiling["components"]["recall"] == 1.0
    assert ceiling["components"]["precision"] == pytest.approx(3 / 4)
    # Online cliques: 3 cannot join {1, 2} (not a copy of 1), so (2, 3) is lost.
    assert ceiling["cliques"]["precision"] == 1.0
    assert ceiling["cliques"]["recall"] == pytest.approx(2 / 3)
    # Fed 2 first, 1 and 3 still cannot share its group: one of the pairs is lost either way.
    assert group_ceiling(truth, order=[2, 1, 3, 4, 5])["cliques"]["recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("kind", [*EDIT_KINDS, "truncated_deep"])
def test_each_edit_keeps_a_recognisable_copy(kind: str) -> None:
    rng = random.Random(11)
    text = _text(rng, paragraphs=6)
    site, copy = make_edit(kind, text, rng, titles=["عنوان مقال آخر"] * 5, byline=None)
    a = truth_shingles(truth_normalize(site))
    b = truth_shingles(truth_normalize(copy))
    shared = np.intersect1d(a, b).size
    assert copy != site
    assert shared / min(a.size, b.size) >= 0.9
    if kind == "orthographic":
        assert truth_normalize(copy) == truth_normalize(site)
    if kind == "truncated":
        assert 0.7 <= len(copy.split()) / len(text.split()) <= 0.92


def test_make_edit_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown edit kind"):
        make_edit("shuffled", "a b c", random.Random(1), titles=[], byline=None)


def test_edit_corpus_is_seeded_and_disjoint() -> None:
    rng = random.Random(5)
    articles = [
        NewsArticle(
            id=f"a{i}",
            text=_text(rng, paragraphs=5, words=25),
            title=f"عنوان {i}",
            source="outlet",
            published_at=datetime(2018, 1, 1, tzinfo=UTC),
        )
        for i in range(400)
    ]
    first = build_edit_corpus(articles, seed=9, per_kind=4, distractors=50)
    second = build_edit_corpus(articles, seed=9, per_kind=4, distractors=50)
    assert [c.text for c in first.copies] == [c.text for c in second.copies]
    originals = {c.original_id for c in first.copies}
    assert len(originals) == len(first.copies) == 4 * 8
    assert not originals & set(first.distractors)
    assert {c.kind for c in first.copies} == {*EDIT_KINDS, "truncated_deep"}


class _FakeModel:
    """Stands in for the model: deterministic vectors, counts its calls."""

    dimension = 3
    name = "fake"

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.calls = 0

    def embed(self, texts: Any) -> np.ndarray:
        self.calls += 1
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_disk_cache_keeps_precisions_apart(tmp_path: Path) -> None:
    from index.params import Parameters

    params = Parameters()
    fp32 = DiskCachedEmbedder(_FakeModel("float32"), params, tmp_path)
    fp32.embed(["a text"])
    fp32.save()
    again = _FakeModel("float32")
    DiskCachedEmbedder(again, params, tmp_path).embed(["a text"])
    assert again.calls == 0  # served from the float32 file
    bf16 = _FakeModel("bfloat16")
    cached = DiskCachedEmbedder(bf16, params, tmp_path)
    cached.embed(["a text"])
    assert bf16.calls == 1  # another dtype never reads float32 vectors
    cached.save()
    assert len(list(tmp_path.glob("embeddings-*.npz"))) == 2


def test_offline_ceiling_recovers_two_clear_stories() -> None:
    from benchmarks.ecb_ceiling import offline

    gold = ["a", "a", "a", "b", "b"]
    logits = np.full((5, 5), -4.0)
    for i, j in itertools.combinations(range(5), 2):
        if gold[i] == gold[j]:
            logits[i, j] = logits[j, i] = 3.0
    np.fill_diagonal(logits, 0.0)
    scores = offline(logits, gold, "average", [-5.0, 0.0, 4.0])
    assert scores[0.0] == (pytest.approx(1.0), 2)
    assert scores[-5.0][1] == 1  # everything merged
    assert scores[4.0][1] == 5  # nothing merged


def test_overlap_fit_follows_the_labels() -> None:
    """The clustering-only term-overlap weight comes out positive where shared terms mark
    the same event, and is held at 0 where they do not."""
    from benchmarks.calibrate import fit_overlap
    from index.params import STORY_CONFLICTS, STORY_FEATURES

    rng = np.random.default_rng(3)
    lexical = rng.uniform(0.0, 0.6, 400)
    pairs = np.zeros((400, len(STORY_FEATURES)))
    pairs[:, STORY_FEATURES.index("lexical_best")] = lexical
    conflicts = np.zeros((400, len(STORY_CONFLICTS)))
    weights = [0.0] * len(STORY_FEATURES)
    same = lexical + rng.normal(0.0, 0.05, 400) > 0.3
    assert fit_overlap(pairs, conflicts, same, weights, [0.0, 0.0], 100.0) > 5.0
    assert fit_overlap(pairs, conflicts, ~same, weights, [0.0, 0.0], 100.0) == 0.0


def test_replay_repair_moves_a_singleton_that_a_later_document_bridges() -> None:
    """Placed again, a one-member story joins the story a later document made close."""
    from benchmarks.calibrate import OnlineReplay, PreparedDocument
    from index.params import Parameters
    from index.stories import StoryQuery, candidate_stories, choose_story

    u = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    w = np.array([0.85, np.sqrt(1 - 0.85**2), 0.0], dtype=np.float32)  # cosine 0.85 with u
    bridge = (u + w) / np.linalg.norm(u + w)  # cosine 0.96 with both
    empty = np.zeros(0, dtype=np.uint32)
    documents = [
        PreparedDocument(StoryQuery(vector.astype(np.float32), empty, None, 0.0), gold)
        for vector, gold in ((u, "a"), (w, "a"), (bridge, "a"))
    ]
    params = Parameters()
    replay = OnlineReplay(documents, params)
    replay.add(0, None)
    candidates = candidate_stories(documents[1].query, replay.neighbours(1), params)
    stories = replay.stories([row for row, _members in candidates])
    story, probability = choose_story(documents[1].query, candidates, stories, params, None)
    assert story is None and probability is not None and probability < params.story_threshold
    replay.add(1, None)
    replay.add(2, 0)
    assert replay.story_of[1] != replay.story_of[0]
    assert not replay.place_again(0, max_story_size=1)  # its story has two members
    assert replay.place_again(1, max_story_size=1)
    assert replay.story_of[1] == replay.story_of[0] == replay.story_of[2]
    assert replay.sizes == {replay.story_of[0]: 3}
    np.testing.assert_allclose(replay.centroids[replay.story_of[0]], u + w + bridge, rtol=1e-6)
