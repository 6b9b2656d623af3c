"""Calibrate the story score on the dev data: weights, intercept and threshold.

Run from the repository root (about 15 minutes on the 2-core CPU machine the first time;
embeddings are cached under ``benchmarks/results/`` or ``--embedding-cache DIR``; later
runs take about 10 minutes, nearly all of it the ECB+ replays in 20 orders)::

    .venv/bin/python benchmarks/calibrate.py

What it does, with the engine's own code for every number it learns from:

1. Features. SemEval-2022 Task 8 dev pairs and ECB+ dev documents are prepared by the
   engine (cleaning, terms, the embedded text, language) and embedded by the configured
   model. A SemEval pair gives :func:`index.stories.pair_features`. ECB+ gives, for every
   document fed in a shuffled order, the features of each candidate story that
   :func:`index.stories.candidate_stories` proposes, with stories kept as the *gold*
   clusters so far (teacher forcing); the label says whether it is the document's story.
2. Weights. A logistic regression on the SemEval pairs with soft labels
   ``(4 - overall) / 3``: dense (split evenly between best member and centroid, which a
   pair cannot tell apart), ``cross_language`` and the intercept are learned; the lexical
   weight is held (``--fixed``), because it trades SemEval correlation (which it lowers)
   against ECB+ clustering (which it raises) and that trade was chosen on a grid, see
   ``benchmarks/README.md``. ``--fit-on both`` adds the ECB+ candidates (each set
   weighted to the same total) and ``--fit-on ecb`` uses them alone; both clustered ECB+
   worse when replayed online (README). Reported: 10-fold cross-validated SemEval
   Pearson/AUC (folds over pairs) and ECB+ candidate AUC (folds over topics), next to
   the fit on everything.
3. Event-time conflicts (:mod:`index.dates`: no year in common, no weekday in common;
   against a story, with every member compared). Their weights are learned on the ECB+
   pairs within a topic (two events with the same actors each) with the story score of
   step 2 as a fixed offset (the intercept of that fit is dropped, a positive weight is
   held at 0; ``--conflicts``). Fitted on the teacher-forced candidates instead, the
   weekday weight came out at -8.1 (a veto) and the replay lost F1 (0.884 against 0.888
   without conflicts), so the pairs are used. They act on clustering
   only: SemEval's same-story pairs often span days, and there they lower the pair score's
   correlation (``benchmarks/README.md``), so the pair score leaves them out.
4. Threshold. The online decision of the engine (:func:`index.stories.choose_story`, exact
   nearest neighbours as FAISS's flat index below ``exact_search_limit``) replayed on ECB+
   in 20 shuffled orders (``--orders``; one order's luck moves F1 by 0.01-0.02) for each
   threshold of a grid; mean B-cubed F1 per threshold,
   and a two-fold check over topics (the threshold picked on one half, scored on the
   other). The picked threshold is the middle of the thresholds within 0.005 of the best
   mean F1, not the single best point. The learned dense weight is shared between
   ``dense_best`` and ``dense_centroid`` (``--centroid-shares``; a pair cannot tell them
   apart, so the fit cannot) and the share is picked by the replay too: each share at its
   plateau-middle threshold; the first listed (the even split) is kept unless another
   beats it by more than 0.005.
5. Term-overlap evidence for clustering (``--overlap``): names, places and numbers tell a
   topic's two events apart, but more lexical weight in the pair score costs SemEval
   correlation, so clustering adds its own: ``weight * (lexical_best - center)`` between
   articles in one language. The weight is learned on the same within-topic pairs, with
   the IDF-weighted overlap the engine computes and the story score and conflicts as the
   offset; the center (where the evidence is neutral) is picked by the replay with the
   threshold of step 4 held (plateau middle, two-fold topic check), so that articles
   compared across languages, which get none of it, keep that threshold. Off by default:
   it lifted the ECB+ replay by ~0.003 (``query: `` embeddings; nothing with the shipped
   ones) but makes the clustering decision on SemEval's
   clearly rated pairs, which no step fits on and which the script prints for every run,
   worse (``benchmarks/README.md``).

The printed weights, intercept, conflict weights, overlap weight and center and threshold
are what ``index/params.py`` ships.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.quality import (  # noqa: E402
    DEFAULT_DATA,
    DEFAULT_MODEL_CACHE,
    ORDER_SEEDS,
    RESULTS,
    DiskCachedEmbedder,
    EcbDocument,
    SemevalPair,
    bcubed,
    load_ecb,
    load_semeval,
    similarity_scores,
)

logger = logging.getLogger("benchmarks.calibrate")

Matrix = npt.NDArray[np.float64]


# -- features --------------------------------------------------------------------------------


@dataclass
class PreparedDocument:
    """What story scoring needs of one document, as the engine computes it."""

    query: Any
    gold: str


def _prepare(engine: Any, articles: Sequence[Any]) -> list[Any]:
    """Each article's story query, through the engine's own preparation and embedding.

    Calibration must learn from exactly what the engine computes, so it uses the engine's
    private preparation and embedding steps rather than a re-implementation. Articles the
    engine refuses (boilerplate only) give None.
    """
    from index.errors import InvalidArticleError

    prepared: list[Any] = []
    for article in articles:
        try:
            prepared.extend(engine._prepare_many([article], time.time()))
        except InvalidArticleError:
            prepared.append(None)
    usable = [item for item in prepared if item is not None]
    vectors = iter(engine._embed([item.embed_text for item in usable]))
    return [None if item is None else engine._story_query(item, next(vectors)) for item in prepared]


def semeval_queries(engine: Any, pairs: Sequence[SemevalPair]) -> list[tuple[Any, Any] | None]:
    """Both sides of each pair as the engine's story queries; None where it refuses a side."""
    from index.article import Article

    queries = _prepare(
        engine,
        [
            Article(id=f"{pair.id}:{side}", text=text)
            for pair in pairs
            for side, text in ((1, pair.text1), (2, pair.text2))
        ],
    )
    sides = zip(queries[0::2], queries[1::2], strict=True)
    return [None if a is None or b is None else (a, b) for a, b in sides]


def semeval_features(queries: Sequence[tuple[Any, Any] | None]) -> Matrix:
    """One row of :func:`index.stories.pair_features` per pair (document frequencies of
    an empty engine, as ``Engine.similarity`` on a fresh engine has); NaN where the
    engine refused a side."""
    from index.stories import pair_features

    rows: list[list[float]] = []
    for pair in queries:
        if pair is None:
            rows.append([float("nan")] * 5)
            continue
        first, second = pair
        dense = float(np.dot(first.embedding, second.embedding))
        rows.append(pair_features(dense, first, second, None).vector())
    return np.array(rows, dtype=np.float64)


def semeval_verdicts(
    pairs: Sequence[SemevalPair],
    queries: Sequence[tuple[Any, Any] | None],
    params: Any,
    frequencies: Any = None,
) -> dict[str, float]:
    """The clustering decision (``same_story`` of ``/v1/similarity``) on the SemEval pairs
    rated clearly same (overall <= 1.5) or different (>= 3): precision, recall, accuracy.

    The clustering-only evidence is fitted and replayed on ECB+ alone, so this is its check
    on data it never saw. ``frequencies`` None scores term overlap as a fresh engine does
    (no IDF); the SemEval texts' own frequencies stand for a store that has seen them.
    """
    from index.stories import clustering_probability, pair_conflicts, pair_features

    hits = flagged = same = right = decided = 0
    for pair, sides in zip(pairs, queries, strict=True):
        if 1.5 < pair.overall < 3:
            continue
        truth = pair.overall <= 1.5
        verdict = False
        if sides is not None:
            a, b = sides
            features = pair_features(float(np.dot(a.embedding, b.embedding)), a, b, frequencies)
            probability = clustering_probability(features, pair_conflicts(a, b), params)
            verdict = probability >= params.story_threshold
        decided += 1
        same += truth
        flagged += verdict
        hits += truth and verdict
        right += truth == verdict
    return {
        "precision": hits / max(1, flagged),
        "recall": hits / max(1, same),
        "accuracy": right / max(1, decided),
    }


def cached_embedder(params: Any, model_cache: Path, embedding_cache: Path) -> Any:
    """The configured model behind the on-disk embedding cache quality.py also uses."""
    from index.embed import SentenceTransformerEmbedder

    return DiskCachedEmbedder(
        SentenceTransformerEmbedder.configured(params, cache_dir=model_cache),
        params,
        embedding_cache,
    )


def ecb_documents(engine: Any, documents: Sequence[EcbDocument]) -> list[PreparedDocument]:
    """ECB+ documents prepared and embedded by the engine."""
    from index.article import Article

    queries = _prepare(engine, [Article(id=doc.id, text=doc.text) for doc in documents])
    return [
        PreparedDocument(query=_undated(query), gold=doc.story)
        for query, doc in zip(queries, documents, strict=True)
        if query is not None
    ]


class OnlineReplay:
    """The engine's story decision replayed over documents fed one at a time.

    Neighbours are exact (the engine's FAISS index is flat below ``exact_search_limit``),
    document frequencies grow as the engine's do, and stories keep summed embeddings and
    their members' facts exactly as the store does.
    """

    def __init__(self, documents: Sequence[PreparedDocument], params: Any) -> None:
        from index.lexical import DocumentFrequencies

        self.documents = documents
        self.params = params
        self.matrix = np.stack([doc.query.embedding for doc in documents])
        self.frequencies = DocumentFrequencies()
        self.story_of: dict[int, int] = {}
        self.centroids: dict[int, npt.NDArray[np.float32]] = {}
        self.sizes: dict[int, int] = {}
        self.seen: list[int] = []

    def neighbours(self, index: int) -> list[Any]:
        """The stored documents nearest to ``index``, as :class:`index.stories.Neighbour`."""
        from index.stories import Neighbour

        if not self.seen:
            return []
        seen = np.array(self.seen)
        scores = self.matrix[seen] @ self.matrix[index]
        top = np.argsort(-scores, kind="stable")[: self.params.story_neighbours]
        result = []
        for position in top.tolist():
            other = self.documents[int(seen[position])].query
            result.append(
                Neighbour(
                    story_row=self.story_of[int(seen[position])],
                    dense=float(scores[position]),
                    published_at=other.published_at,
                    terms=other.terms,
                    language=other.language,
                    evidence=other.evidence,
                )
            )
        return result

    def stories(self, rows: Sequence[int]) -> dict[int, Any]:
        """The candidate stories' summed embeddings (no dates: all documents are "now")."""
        from index.stories import CandidateStory

        return {row: CandidateStory(self.centroids[row], 0.0, 0.0) for row in rows}

    def decide(self, index: int) -> int | None:
        """The engine's decision for document ``index`` against what is stored (None: new)."""
        from index.stories import candidate_stories, choose_story

        query = self.documents[index].query
        candidates = candidate_stories(query, self.neighbours(index), self.params)
        stories = self.stories([row for row, _members in candidates])
        story, _probability = choose_story(
            query, candidates, stories, self.params, self.frequencies
        )
        return story

    def add(self, index: int, story: int | None, *, count_terms: bool = True) -> int:
        """Store document ``index`` in ``story`` (None: it opens its own); ``count_terms``
        is False when it comes back after :meth:`place_again` took it out."""
        row = index if story is None else story
        self.story_of[index] = row
        self.sizes[row] = self.sizes.get(row, 0) + 1
        embedding = self.documents[index].query.embedding
        self.centroids[row] = (
            embedding.copy() if row not in self.centroids else self.centroids[row] + embedding
        )
        if count_terms:
            self.frequencies.add(self.documents[index].query.terms)
        self.seen.append(index)
        return row

    def place_again(self, index: int, max_story_size: int) -> bool:
        """Decide document ``index`` again against all other stored documents; True if moved.

        Only a document whose story has at most ``max_story_size`` members is reconsidered.
        It leaves its story (summed embedding and all), the engine's decision is taken for
        it as for a new document, and it joins the story chosen, or goes back to its own
        when none is (its document frequencies stay counted once).
        """
        row = self.story_of[index]
        if self.sizes[row] > max_story_size:
            return False
        del self.story_of[index]
        self.seen.remove(index)
        self.sizes[row] -= 1
        if not self.sizes[row]:
            del self.centroids[row], self.sizes[row]
        else:
            self.centroids[row] = self.centroids[row] - self.documents[index].query.embedding
        story = self.decide(index)
        target = row if story is None else story
        self.add(index, target, count_terms=False)
        return target != row


def _undated(query: Any) -> Any:
    # ECB+ has no dates: every document is published "now", as in quality.py's runs.
    return dataclasses.replace(query, published_at=0.0)


def ecb_candidates(
    documents: Sequence[PreparedDocument], params: Any, seeds: Sequence[int]
) -> tuple[Matrix, npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Teacher-forced candidate features: (features, is the gold story, topic)."""
    from index.stories import candidate_stories, story_features

    rows: list[list[float]] = []
    labels: list[bool] = []
    topics: list[int] = []
    for seed in seeds:
        order = list(range(len(documents)))
        random.Random(seed).shuffle(order)
        replay = OnlineReplay(documents, params)
        gold_row: dict[str, int] = {}
        for index in order:
            document = documents[index]
            query = document.query
            candidates = candidate_stories(query, replay.neighbours(index), params)
            stories = replay.stories([row for row, _members in candidates])
            for row, members in candidates:
                features = story_features(query, members, stories[row], replay.frequencies)
                rows.append(features.vector())
                labels.append(gold_row.get(document.gold) == row)
                topics.append(int(document.gold.split("_")[0]))
            gold_row[document.gold] = replay.add(index, gold_row.get(document.gold))
    return np.array(rows), np.array(labels), np.array(topics)


def replay_clustering(
    documents: Sequence[PreparedDocument],
    params: Any,
    seed: int,
    *,
    repair_every: int = 0,
    repair_max_size: int = 1,
) -> list[str]:
    """Predicted story of each document when fed in the order of ``seed``.

    With ``repair_every`` > 0, every that many documents (and at the end) each stored
    document whose story has at most ``repair_max_size`` members is placed again
    (:meth:`OnlineReplay.place_again`): a measure of what later repairs of early
    decisions could gain, which the engine does not do.
    """
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    replay = OnlineReplay(documents, params)
    for count, index in enumerate(order, start=1):
        replay.add(index, replay.decide(index))
        if repair_every and (count % repair_every == 0 or count == len(order)):
            for stored in list(replay.seen):
                replay.place_again(stored, repair_max_size)
    return [str(replay.story_of[i]) for i in range(len(documents))]


# -- fitting ---------------------------------------------------------------------------------


@dataclass
class Fit:
    """A logistic model over the story features."""

    weights: npt.NDArray[np.float64]
    bias: float

    def logit(self, features: Matrix) -> npt.NDArray[np.float64]:
        """Linear score of each row."""
        result: npt.NDArray[np.float64] = features @ self.weights + self.bias
        return result

    def probability(self, features: Matrix) -> npt.NDArray[np.float64]:
        """Logistic of :meth:`logit`."""
        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-self.logit(features)))
        return result


def fit(
    soft: Matrix,
    soft_labels: npt.NDArray[np.float64],
    hard: Matrix,
    hard_labels: npt.NDArray[np.bool_],
    columns: Sequence[int],
    regularization: float,
    fixed: dict[int, float] | None = None,
) -> Fit:
    """One logistic regression on soft-labelled pairs and hard-labelled candidates.

    Minimizes ``C * sum(cross-entropy) + |w|^2 / 2`` over the weights of ``columns`` and
    the intercept (scikit-learn's objective), with soft labels taken as they are. Each
    set is weighted to the same total, so neither task's size decides the balance. The
    weights in ``fixed`` are held at their values (an offset); all others are 0.
    """
    from scipy.optimize import minimize

    fixed = fixed or {}
    width = max(soft.shape[1], hard.shape[1])
    rows = [part for part in (soft, hard) if len(part)]
    x = np.vstack(rows)
    y = np.concatenate(
        [labels for labels, part in ((soft_labels, soft), (hard_labels, hard)) if len(part)]
    ).astype(np.float64)
    total = len(x)
    w = np.concatenate([np.full(len(part), total / (len(rows) * len(part))) for part in rows])
    offset = np.zeros(total)
    for column, value in fixed.items():
        offset += value * x[:, column]
    learned = x[:, list(columns)]

    def objective(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        logit = learned @ theta[:-1] + theta[-1] + offset
        probability = 1.0 / (1.0 + np.exp(-logit))
        eps = 1e-12
        loss = -np.sum(
            w * (y * np.log(probability + eps) + (1 - y) * np.log(1 - probability + eps))
        )
        residual = w * (probability - y)
        gradient = np.concatenate(
            [regularization * learned.T @ residual + theta[:-1], [regularization * residual.sum()]]
        )
        value = regularization * loss + 0.5 * float(theta[:-1] @ theta[:-1])
        return float(value), gradient

    start = np.zeros(len(columns) + 1)
    result = minimize(objective, start, jac=True, method="L-BFGS-B")
    weights = np.zeros(width)
    weights[list(columns)] = result.x[:-1]
    for column, value in fixed.items():
        weights[column] = value
    return Fit(weights=weights, bias=float(result.x[-1]))


def ecb_topic_pairs(
    documents: Sequence[PreparedDocument], frequencies: Any = None
) -> tuple[Matrix, Matrix, npt.NDArray[np.bool_]]:
    """Every pair of ECB+ documents of one topic: (pair features, conflicts, same story).

    Within a topic both events share actors and vocabulary, which is where event-time
    and term evidence has to work; across topics content alone decides. ``frequencies``
    (an :class:`index.lexical.DocumentFrequencies`) weights the term overlap by IDF as the
    engine does; None gives the unweighted cosine of the term sets.
    """
    from index.stories import pair_conflicts, pair_features

    by_topic: dict[str, list[PreparedDocument]] = {}
    for document in documents:
        by_topic.setdefault(document.gold.split("_")[0], []).append(document)
    rows: list[list[float]] = []
    conflicts: list[list[float]] = []
    labels: list[bool] = []
    for members in by_topic.values():
        for first, second in itertools.combinations(members, 2):
            a, b = first.query, second.query
            rows.append(pair_features(float(a.embedding @ b.embedding), a, b, frequencies).vector())
            conflicts.append(pair_conflicts(a, b).vector())
            labels.append(first.gold == second.gold)
    return np.array(rows), np.array(conflicts), np.array(labels)


def fit_conflicts(
    pairs: Matrix,
    conflicts: Matrix,
    labels: npt.NDArray[np.bool_],
    weights: Sequence[float],
    regularization: float,
) -> list[float]:
    """Conflict weights learned on ECB+ within-topic pairs with the story score as a fixed
    offset; the intercept of this fit is dropped (it is ECB+'s base rate, not a property
    of conflicts), and a weight that comes out positive is held at 0 (a conflict is never
    evidence *for* a story)."""
    width = pairs.shape[1]
    x = np.hstack([pairs, conflicts])
    columns = list(range(width, width + conflicts.shape[1]))
    result = fit(x[:0], np.zeros(0), x, labels, columns, regularization, dict(enumerate(weights)))
    return [min(0.0, round(float(result.weights[c]), 3)) for c in columns]


def corpus_frequencies(queries: Iterable[Any]) -> Any:
    """Document frequencies of every story query's terms: the engine's IDF once all are in."""
    from index.lexical import DocumentFrequencies

    frequencies = DocumentFrequencies()
    for query in queries:
        frequencies.add(query.terms)
    return frequencies


def fit_overlap(
    pairs: Matrix,
    conflicts: Matrix,
    labels: npt.NDArray[np.bool_],
    weights: Sequence[float],
    conflict_weights: Sequence[float],
    regularization: float,
) -> float:
    """The weight of term-overlap evidence for clustering, learned on ECB+ within-topic
    pairs in one language with the story score and the conflicts as a fixed offset.

    ``pairs`` should carry the IDF-weighted overlap the engine computes. The story score
    already holds ``lexical_best`` at its own (SemEval) weight; this is the extra weight
    clustering gives it. The intercept is dropped: where the evidence is neutral is picked
    by the replay (:func:`sweep_params`). A negative weight is held at 0.
    """
    from index.stories import FEATURE_NAMES

    lexical = FEATURE_NAMES.index("lexical_best")
    same = pairs[:, FEATURE_NAMES.index("cross_language")] == 0
    x = np.hstack([pairs[same], conflicts[same], pairs[same][:, [lexical]]])
    fixed = dict(enumerate(weights))
    fixed.update({pairs.shape[1] + i: weight for i, weight in enumerate(conflict_weights)})
    column = x.shape[1] - 1
    result = fit(x[:0], np.zeros(0), x, labels[same], [column], regularization, fixed)
    return max(0.0, round(float(result.weights[column]), 3))


def cross_validate(
    pairs: Sequence[SemevalPair],
    soft: Matrix,
    soft_labels: npt.NDArray[np.float64],
    hard: Matrix,
    hard_labels: npt.NDArray[np.bool_],
    topics: npt.NDArray[np.int64],
    columns: Sequence[int],
    regularization: float,
    fit_on: str,
    fixed: dict[int, float],
    folds: int = 10,
) -> dict[str, Any]:
    """Held-out SemEval metrics (folds over pairs) and ECB+ candidate AUC (over topics).

    Each fold fits on the other folds of *both* sets, as the shipped fit does.
    """
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pair_fold = rng.permutation(len(soft)) % folds
    unique_topics = np.unique(topics)
    topic_fold = {t: i % folds for i, t in enumerate(rng.permutation(unique_topics))}
    candidate_fold = np.array([topic_fold[t] for t in topics])
    soft_scores = np.zeros(len(soft))
    hard_scores = np.zeros(len(hard))
    soft_train = fit_on in ("both", "semeval")
    hard_train = fit_on in ("both", "ecb")
    for fold in range(folds):
        soft_rows = (pair_fold != fold) & soft_train
        hard_rows = (candidate_fold != fold) & hard_train
        model = fit(
            soft[soft_rows],
            soft_labels[soft_rows],
            hard[hard_rows],
            hard_labels[hard_rows],
            columns,
            regularization,
            fixed,
        )
        soft_scores[pair_fold == fold] = model.probability(soft[pair_fold == fold])
        hard_scores[candidate_fold == fold] = model.probability(hard[candidate_fold == fold])
    return {
        "semeval": similarity_scores(pairs, soft_scores.tolist()),
        "ecb_candidate_auc": float(roc_auc_score(hard_labels, hard_scores)),
    }


def sweep_threshold(
    documents: Sequence[PreparedDocument],
    params: Any,
    thresholds: Sequence[float],
    seeds: Sequence[int] = ORDER_SEEDS,
) -> dict[float, list[float]]:
    """B-cubed F1 of the replayed online clustering for each threshold and order."""
    return sweep_params(
        documents, {t: params.replace(story_threshold=t) for t in thresholds}, seeds
    )


def sweep_params(
    documents: Sequence[PreparedDocument],
    variants: dict[float, Any],
    seeds: Sequence[int] = ORDER_SEEDS,
) -> dict[float, list[float]]:
    """B-cubed F1 of the replayed online clustering for each variant and order."""
    gold = [doc.gold for doc in documents]
    result: dict[float, list[float]] = {}
    for key, trial in variants.items():
        result[key] = [bcubed(replay_clustering(documents, trial, seed), gold)[2] for seed in seeds]
        logger.info("%.3f: B-cubed F1 %s", key, " ".join(f"{f:.3f}" for f in result[key]))
    return result


def plateau_middle(scores: dict[float, float], tolerance: float = 0.005) -> float:
    """The middle of the thresholds whose score is within ``tolerance`` of the best."""
    best = max(scores.values())
    good = sorted(t for t, s in scores.items() if s >= best - tolerance)
    return good[len(good) // 2]


def split_dense(params: Any, weights: Sequence[float], bias: float, centroid_share: float) -> Any:
    """Parameters whose dense weight (best member plus centroid, as learned) is given
    ``centroid_share`` to ``dense_centroid`` and the rest to ``dense_best``.

    Scoring a story against its centroid rather than its nearest member keeps one close
    article from chaining another event's story in; for a pair the two are one number.
    """
    from index.stories import FEATURE_NAMES

    best, centroid = FEATURE_NAMES.index("dense_best"), FEATURE_NAMES.index("dense_centroid")
    total = weights[best] + weights[centroid]
    split = list(weights)
    split[best] = round(total * (1.0 - centroid_share), 3)
    split[centroid] = round(total - split[best], 3)
    return params.replace(story_weights=tuple(split), story_bias=round(bias, 3))


def pick_share(
    sweeps: dict[float, dict[float, list[float]]], margin: float = 0.005
) -> tuple[float, dict[float, dict[str, float]]]:
    """The centroid share to ship and, per share, its plateau-middle threshold and F1.

    The first share listed is kept unless another beats its mean F1 by more than
    ``margin`` (the plateau tolerance).
    """
    results: dict[float, dict[str, float]] = {}
    for share, sweep in sweeps.items():
        threshold = plateau_middle({t: float(np.mean(f)) for t, f in sweep.items()})
        results[share] = {
            "threshold": threshold,
            "mean": float(np.mean(sweep[threshold])),
            "min": float(np.min(sweep[threshold])),
        }
    first = next(iter(results))
    best = max(results, key=lambda share: results[share]["mean"])
    chosen = best if results[best]["mean"] > results[first]["mean"] + margin else first
    return chosen, results


def topic_split_check(
    documents: Sequence[PreparedDocument], variants: dict[float, Any], seeds: Sequence[int]
) -> list[dict[str, float]]:
    """Every variant replayed on each half of the topics (odd and even topic numbers); the
    one picked on a half (plateau middle) scored on the other half."""
    sweep_by_half = {
        half: sweep_params(
            [d for d in documents if int(d.gold.split("_")[0]) % 2 == half], variants, seeds
        )
        for half in (0, 1)
    }
    checks = []
    for chosen_on, scored_on in ((0, 1), (1, 0)):
        means = {t: float(np.mean(f)) for t, f in sweep_by_half[chosen_on].items()}
        threshold = plateau_middle(means)
        checks.append(
            {
                "picked_on_half": chosen_on,
                "threshold": threshold,
                "f1_on_other_half": float(np.mean(sweep_by_half[scored_on][threshold])),
                "best_on_other_half": max(
                    float(np.mean(f)) for f in sweep_by_half[scored_on].values()
                ),
            }
        )
    return checks


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute features, fit, cross-validate, sweep the threshold and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--regularization", type=float, default=100.0, help="C, as scikit-learn's")
    parser.add_argument(
        "--features",
        default="dense_best,dense_centroid,cross_language",
        help="features to learn (the others are 0 unless --fixed; days_apart keeps its prior)",
    )
    parser.add_argument(
        "--fixed",
        action="append",
        default=None,
        metavar="FEATURE=WEIGHT",
        help="hold a feature's weight (repeatable; default lexical_best=2.0); days_apart "
        "keeps its prior",
    )
    parser.add_argument(
        "--fit-on",
        choices=("both", "semeval", "ecb"),
        default="semeval",
        help="which dev set(s) the weights are learned from",
    )
    parser.add_argument("--thresholds", default="0.30,0.35,0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75")
    parser.add_argument(
        "--centroid-shares",
        default="0.5,0.75,1.0",
        help="shares of the learned dense weight given to dense_centroid (the rest to "
        "dense_best) tried by the replay; a pair cannot tell the two apart, so SemEval "
        "numbers do not depend on it",
    )
    parser.add_argument(
        "--conflicts",
        default="fit",
        metavar="fit|off|W1,W2",
        help="event-time conflict weights (index.dates): fitted on the ECB+ candidates with "
        "the story score as an offset (default), off, or given",
    )
    parser.add_argument(
        "--overlap",
        default="off",
        metavar="fit|off|W",
        help="weight of term-overlap evidence for clustering: fitted on the ECB+ within-"
        "topic pairs with the story score and conflicts as an offset, off (default: measured "
        "and not shipped, see benchmarks/README.md), or given",
    )
    parser.add_argument(
        "--overlap-centers",
        default="0.10,0.12,0.14,0.16,0.18,0.20,0.22,0.24,0.26,0.28,0.30",
        help="term overlaps tried by the replay as the neutral point of that evidence, "
        "with the picked threshold held",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=20,
        help="shuffled ECB+ orders replayed per setting (seeds 1..N; one order's luck moves "
        "F1 by 0.01-0.02, so the sweep averages many; quality.py reports seeds 1-3)",
    )
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where embeddings are kept between runs (as quality.py --embedding-cache)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)

    from index.engine import Engine
    from index.params import Parameters
    from index.stories import CONFLICT_NAMES, FEATURE_NAMES

    params = Parameters()
    columns = [FEATURE_NAMES.index(name.strip()) for name in args.features.split(",")]
    fixed = {
        FEATURE_NAMES.index(name.strip()): float(value)
        for name, value in (item.split("=") for item in args.fixed or ["lexical_best=2.0"])
    }
    fixed.setdefault(
        FEATURE_NAMES.index("days_apart"),
        params.story_weights[FEATURE_NAMES.index("days_apart")],
    )
    embedder = cached_embedder(params, args.model_cache, args.embedding_cache)
    pairs = load_semeval(args.data_dir)
    ecb = load_ecb(args.data_dir)
    with (
        tempfile.TemporaryDirectory(prefix="samestory-calibrate-") as scratch,
        Engine.open(Path(scratch), params, embedder=embedder) as engine,
    ):
        semeval = semeval_queries(engine, pairs)
        soft_all = semeval_features(semeval)
        documents = ecb_documents(engine, ecb)
    embedder.save()
    usable = np.asarray(~np.isnan(soft_all).any(axis=1), dtype=bool)
    kept = [pair for pair, keep in zip(pairs, usable.tolist(), strict=True) if keep]
    soft = soft_all[usable]
    soft_labels = np.array([(4.0 - pair.overall) / 3.0 for pair in kept])
    hard, hard_labels, topics = ecb_candidates(documents, params, ORDER_SEEDS)
    logger.info(
        "%d SemEval pairs (%d refused), %d ECB+ candidates (%d positive)",
        len(soft),
        int((~usable).sum()),
        len(hard),
        int(hard_labels.sum()),
    )

    use_soft = args.fit_on in ("both", "semeval")
    use_hard = args.fit_on in ("both", "ecb")
    soft_fit = soft if use_soft else soft[:0]
    hard_fit = hard if use_hard else hard[:0]
    model = fit(
        soft_fit,
        soft_labels[: len(soft_fit)],
        hard_fit,
        hard_labels[: len(hard_fit)],
        columns,
        args.regularization,
        fixed,
    )
    learned = [round(float(w), 3) for w in model.weights]
    validation = cross_validate(
        kept,
        soft,
        soft_labels,
        hard,
        hard_labels,
        topics,
        columns,
        args.regularization,
        args.fit_on,
        fixed,
    )
    train = similarity_scores(kept, model.probability(soft).tolist())
    dense_only = similarity_scores(kept, soft[:, 0].tolist())

    topic_pairs, topic_conflicts, topic_labels = ecb_topic_pairs(documents)
    if args.conflicts == "fit":
        conflict_weights = fit_conflicts(
            topic_pairs, topic_conflicts, topic_labels, learned, args.regularization
        )
    elif args.conflicts == "off":
        conflict_weights = [0.0] * len(CONFLICT_NAMES)
    else:
        conflict_weights = [float(value) for value in args.conflicts.split(",")]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    shares = [float(share) for share in args.centroid_shares.split(",")]
    variants = {
        share: split_dense(params, learned, model.bias, share).replace(
            story_conflict_weights=tuple(conflict_weights)
        )
        for share in shares
    }
    orders = list(range(1, args.orders + 1))
    sweeps = {
        share: sweep_threshold(documents, variants[share], thresholds, orders) for share in shares
    }
    share, by_share = pick_share(sweeps)
    threshold = by_share[share]["threshold"]
    sweep = sweeps[share]
    weights = list(variants[share].story_weights)
    checks = topic_split_check(
        documents, {t: variants[share].replace(story_threshold=t) for t in thresholds}, orders
    )

    chosen = variants[share].replace(story_threshold=threshold)
    if args.overlap == "fit":
        overlap_weight = fit_overlap(
            *ecb_topic_pairs(documents, corpus_frequencies(d.query for d in documents)),
            learned,
            conflict_weights,
            args.regularization,
        )
    elif args.overlap == "off":
        overlap_weight = 0.0
    else:
        overlap_weight = float(args.overlap)
    center, center_sweep, center_checks = 0.0, {}, []
    if overlap_weight:
        center_variants = {
            c: chosen.replace(story_overlap_weight=overlap_weight, story_overlap_center=c)
            for c in (float(c) for c in args.overlap_centers.split(","))
        }
        center_sweep = sweep_params(documents, center_variants, orders)
        center = plateau_middle({c: float(np.mean(f)) for c, f in center_sweep.items()})
        center_checks = topic_split_check(documents, center_variants, orders)
    final = chosen.replace(story_overlap_weight=overlap_weight, story_overlap_center=center)
    semeval_idf = corpus_frequencies(q for sides in semeval if sides is not None for q in sides)
    verdict_checks = {
        name: {
            "fresh engine (no IDF)": semeval_verdicts(pairs, semeval, variant, None),
            "IDF of the SemEval texts": semeval_verdicts(pairs, semeval, variant, semeval_idf),
        }
        for name, variant in (
            ("without term overlap", final.replace(story_overlap_weight=0.0)),
            ("as printed below", final),
        )
    }

    print("\n## Story score calibration\n")
    print(
        f"features learned: {', '.join(FEATURE_NAMES[c] for c in columns)}; C={args.regularization}"
    )
    print(f"SemEval pairs used: {len(soft)} (refused as boilerplate-only: {int((~usable).sum())})")
    print(
        f"ECB+ candidates: {len(hard)} ({int(hard_labels.sum())} gold), {len(ORDER_SEEDS)} orders"
    )
    print("\nSemEval Pearson / AUC          all            ar-ar          de-en          en-en")
    for label, block in (
        ("E5 cosine alone", dense_only),
        ("fit on all (train)", train),
        ("10-fold CV (held out)", validation["semeval"]),
    ):
        cells = [
            f"{block[k]['pearson']:.3f} / {block[k]['auc']:.3f}"
            for k in ("all", "ar-ar", "de-en", "en-en")
        ]
        print(f"{label:<28}" + "  ".join(f"{c:>13}" for c in cells))
    print(f"ECB+ candidate AUC, 10-fold over topics: {validation['ecb_candidate_auc']:.3f}")
    print(
        f"\nECB+ online replay, B-cubed F1 over orders 1-{args.orders} (mean, worst; "
        "orders 1, 2, 3), per share of the dense weight on dense_centroid"
    )
    for candidate, candidate_sweep in sweeps.items():
        for t, values in candidate_sweep.items():
            mark = "  <- picked" if (candidate, t) == (share, threshold) else ""
            print(
                f"  centroid share {candidate:.2f}, threshold {t:.2f}: mean "
                f"{float(np.mean(values)):.4f}, worst {min(values):.3f}; "
                + " ".join(f"{v:.3f}" for v in values[:3])
                + mark
            )
    print("\nEach share at its plateau-middle threshold (the first listed is kept unless")
    print("another is better by more than 0.005)")
    for candidate, result in by_share.items():
        mark = "  <- picked" if candidate == share else ""
        print(
            f"  centroid share {candidate:.2f}, threshold {result['threshold']:.2f}: "
            f"mean {result['mean']:.4f}, worst order {result['min']:.3f}{mark}"
        )
    for check in checks:
        print(
            f"  topics half {check['picked_on_half']} picks {check['threshold']:.2f}: "
            f"F1 {check['f1_on_other_half']:.3f} on the other half "
            f"(best possible there {check['best_on_other_half']:.3f})"
        )
    print(
        "\nClustering decision (same_story) on SemEval pairs rated clearly same or different"
        " (never fitted on): precision / recall / accuracy"
    )
    for name, checks_by_idf in verdict_checks.items():
        for idf, check in checks_by_idf.items():
            print(
                f"  {name}, {idf}: {check['precision']:.3f} / {check['recall']:.3f} / "
                f"{check['accuracy']:.3f}"
            )
    print(
        f"\nTerm-overlap evidence for clustering (same language only): weight {overlap_weight}"
        f" ({args.overlap})"
        + (
            f"; neutral point replayed at threshold {threshold:.2f}, orders 1-{args.orders} "
            "(mean, worst; orders 1, 2, 3)"
            if center_sweep
            else ""
        )
    )
    for c, values in center_sweep.items():
        mark = "  <- picked" if c == center else ""
        print(
            f"  center {c:.2f}: mean {float(np.mean(values)):.4f}, worst {min(values):.3f}; "
            + " ".join(f"{v:.3f}" for v in values[:3])
            + mark
        )
    for check in center_checks:
        print(
            f"  topics half {check['picked_on_half']} picks center {check['threshold']:.2f}: "
            f"F1 {check['f1_on_other_half']:.3f} on the other half "
            f"(best possible there {check['best_on_other_half']:.3f})"
        )
    print("\nParameters to ship (index/params.py):")
    print(f"    story_weights = {tuple(weights)}  # {FEATURE_NAMES}")
    print(f"    story_bias = {round(model.bias, 3)}")
    print(f"    story_conflict_weights = {tuple(conflict_weights)}  # {CONFLICT_NAMES}")
    print(f"    story_overlap_weight = {overlap_weight}")
    print(f"    story_overlap_center = {center}")
    print(f"    story_threshold = {threshold}")
    return {
        "overlap_weight": overlap_weight,
        "overlap_center": center,
        "overlap_sweep": center_sweep,
        "overlap_topic_checks": center_checks,
        "semeval_verdicts": verdict_checks,
        "weights": weights,
        "bias": model.bias,
        "conflict_weights": conflict_weights,
        "threshold": threshold,
        "centroid_share": share,
        "shares": by_share,
        "cross_validation": validation,
        "sweep": sweep,
        "topic_checks": checks,
    }


if __name__ == "__main__":
    main()
