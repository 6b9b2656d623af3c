"""Story-score experiments beyond the shipped features (``benchmarks/README.md``, "Second
round"): dates and weekdays read from the text (``index.dates``), capitalized-token and
number overlap, and cluster-level dense scoring, measured on the dev sets. Of these only
the year and weekday conflicts were shipped since, and in clustering only ("Third round";
``calibrate.py`` fits them).

Run from the repository root (about 7 minutes with the embeddings cached, as after
``quality.py --embedding-cache DIR``; nearly all of it ECB+ replays)::

    .venv/bin/python benchmarks/story_experiments.py --embedding-cache benchmarks/results

Every article is prepared and embedded by the engine itself (as ``calibrate.py`` does).
Printed: each feature's signal alone (SemEval Pearson with ``-overall``; ECB+ within-topic
pairs), the combinations (SemEval 10-fold CV; ECB+ by an online replay of the engine's
story decision with the extra features, as ``calibrate.py`` replays the shipped ones) and
the seeds' pair probabilities with and without the date conflicts.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.calibrate import fit  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    DEFAULT_DATA,
    DEFAULT_MODEL_CACHE,
    ORDER_SEEDS,
    bcubed,
    load_ecb,
    load_seeds,
    load_semeval,
    make_embedder,
    roc_auc,
)
from index.dates import FIRST_YEAR, LAST_YEAR, DateReader, TextDates, evidence_text  # noqa: E402

logger = logging.getLogger("benchmarks.story_experiments")

# One order's luck moves B-cubed F1 by 0.01-0.02: differences are judged on many orders.
MANY_ORDERS = tuple(range(1, 21))

# -- documents and pair features ---------------------------------------------------------------


@dataclass
class Doc:
    """One article as the engine prepares it, with the text evidence of this experiment."""

    body: str
    embedding: npt.NDArray[np.float32]
    terms: npt.NDArray[np.uint32]
    language: str | None
    evidence: TextDates
    capitalized: frozenset[str]
    numbers: frozenset[str]


EXTRA = (
    "capitalized",
    "numbers",
    "years_shared",
    "years_disjoint",
    "latest_year_differs",
    "day_within_3",
    "days_all_apart",
    "weekdays_disjoint",
)
# Conflicts hold against a story only when they hold against every member compared.
CONFLICTS = {"years_disjoint", "latest_year_differs", "days_all_apart", "weekdays_disjoint"}


def prepare(engine: Any, items: Sequence[tuple[str, str]], reader: DateReader) -> list[Doc | None]:
    """Prepare and embed through the engine (None where it refuses a text)."""
    from index.article import Article
    from index.errors import InvalidArticleError
    from index.language import detect_language
    from index.text import normalize

    prepared: list[Any] = []
    for key, text in items:
        try:
            prepared.extend(engine._prepare_many([Article(id=key, text=text)], time.time()))
        except InvalidArticleError:
            prepared.append(None)
    usable = [item for item in prepared if item is not None]
    vectors = iter(engine._embed([item.embed_text for item in usable]))
    docs: list[Doc | None] = []
    for (_key, raw), item in zip(items, prepared, strict=True):
        if item is None:
            docs.append(None)
            continue
        words = re.findall(r"\w+", item.body)
        capitalized = frozenset(
            word.lower()
            for index, word in enumerate(words)
            if (index > 0 and word[:1].isupper() and not word.isupper())
            or (len(word) > 1 and word.isupper())
        )
        numbers = frozenset(
            n for n in re.findall(r"\d+", normalize(item.body)) if len(n) >= 2 and not _is_year(n)
        )
        docs.append(
            Doc(
                body=item.body,
                embedding=next(vectors),
                terms=item.terms,
                language=detect_language(item.body),
                evidence=reader.read_all(evidence_text(raw, item.body)),
                capitalized=capitalized,
                numbers=numbers,
            )
        )
    return docs


def _is_year(token: str) -> bool:
    return len(token) == 4 and FIRST_YEAR <= int(token) <= LAST_YEAR


def _cosine(a: frozenset[Any], b: frozenset[Any]) -> float:
    return len(a & b) / math.sqrt(len(a) * len(b)) if a and b else 0.0


def extra_features(a: Doc, b: Doc) -> dict[str, float]:
    """The experiment's features of a pair."""
    ea, eb = a.evidence, b.evidence
    both_days = bool(ea.days and eb.days)
    gap = min(abs(x - y) for x in ea.days for y in eb.days) if both_days else 0
    both_years = bool(ea.years and eb.years)
    return {
        "capitalized": _cosine(a.capitalized, b.capitalized),
        "numbers": _cosine(a.numbers, b.numbers),
        "years_shared": _cosine(ea.years, eb.years),
        "years_disjoint": float(both_years and not ea.years & eb.years),
        "latest_year_differs": float(both_years and max(ea.years) != max(eb.years)),
        "day_within_3": float(both_days and gap <= 3),
        "days_all_apart": float(both_days and gap > 3),
        "weekdays_disjoint": float(
            bool(ea.weekdays and eb.weekdays) and not ea.weekdays & eb.weekdays
        ),
    }


BASE = ("dense", "lexical", "cross_language")
ENTITIES_AND_DATES = (
    "capitalized",
    "numbers",
    "years_shared",
    "years_disjoint",
    "day_within_3",
    "weekdays_disjoint",
)
COLUMNS = BASE + EXTRA


def pair_row(a: Doc, b: Doc) -> list[float]:
    """Base pair features (as :func:`index.stories.pair_features`, no IDF) and the extras."""
    from index.lexical import weighted_overlap
    from index.stories import different_languages

    extras = extra_features(a, b)
    return [
        float(a.embedding @ b.embedding),
        weighted_overlap(a.terms, b.terms, None),
        float(different_languages(a.language, b.language)),
    ] + [extras[name] for name in EXTRA]


# -- online replay ------------------------------------------------------------------------------


@dataclass
class Model:
    """Logistic story score. Against a story, the dense weight is shared among the best
    member, the centroid and the mean of the best ``top_k`` members (missing members
    count as the centroid); a pair cannot tell these apart. The default is what
    ``index/params.py`` ships: an even split between nearest member and centroid."""

    weights: dict[str, float]
    bias: float
    shares: tuple[float, float, float] = (0.5, 0.5, 0.0)
    top_k: int = 3

    def logit_pair(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        result = np.full(len(rows), self.bias)
        for name, weight in self.weights.items():
            result += weight * rows[:, COLUMNS.index(name)]
        return result


def replay(docs: Sequence[Doc], model: Model, threshold: float, seed: int) -> list[int]:
    """The engine's online story decision (exact neighbours, IDF growing as stored) with
    the model's features; returns each document's story."""
    from index.lexical import DocumentFrequencies, weighted_overlap
    from index.params import Parameters

    params = Parameters()
    matrix = np.stack([doc.embedding for doc in docs])
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    story_of: dict[int, int] = {}
    centroids: dict[int, npt.NDArray[np.float32]] = {}
    seen: list[int] = []
    frequencies = DocumentFrequencies()
    dense_weight = model.weights.get("dense", 0.0)
    for index in order:
        doc = docs[index]
        chosen: int | None = None
        if seen:
            stored = np.array(seen)
            scores = matrix[stored] @ matrix[index]
            top = np.argsort(-scores, kind="stable")[: params.story_neighbours]
            grouped: dict[int, list[tuple[float, int]]] = {}
            for position in top.tolist():
                member = int(stored[position])
                grouped.setdefault(story_of[member], []).append((float(scores[position]), member))
            ranked = sorted(grouped.items(), key=lambda kv: (-max(s for s, _ in kv[1]), kv[0]))
            best = -1.0
            for row, members in ranked[: params.max_story_candidates]:
                centroid = centroids[row]
                similarities = sorted((s for s, _ in members), reverse=True)
                dense_centroid = float(doc.embedding @ (centroid / np.linalg.norm(centroid)))
                closest = similarities[: model.top_k]
                closest += [dense_centroid] * (model.top_k - len(closest))
                share_best, share_centroid, share_top = model.shares
                logit = model.bias + dense_weight * (
                    share_best * similarities[0]
                    + share_centroid * dense_centroid
                    + share_top * float(np.mean(closest))
                )
                logit += model.weights.get("lexical", 0.0) * max(
                    weighted_overlap(doc.terms, docs[m].terms, frequencies) for _, m in members
                )
                extras = [extra_features(doc, docs[m]) for _, m in members]
                for name in EXTRA:
                    weight = model.weights.get(name, 0.0)
                    if weight:
                        pick = min if name in CONFLICTS else max
                        logit += weight * pick(e[name] for e in extras)
                probability = 1.0 / (1.0 + math.exp(-logit))
                if probability > best:
                    best, chosen = probability, row
            if best < threshold:
                chosen = None
        row = index if chosen is None else chosen
        story_of[index] = row
        centroids[row] = (
            doc.embedding.copy() if row not in centroids else centroids[row] + doc.embedding
        )
        frequencies.add(doc.terms)
        seen.append(index)
    return [story_of[i] for i in range(len(docs))]


# -- fitting ------------------------------------------------------------------------------------


def semeval_metrics(
    scores: npt.NDArray[np.float64], overall: npt.NDArray[np.float64], languages: npt.NDArray[Any]
) -> dict[str, float]:
    result = {}
    for key in ("all", "ar-ar", "de-en"):
        mask = np.ones(len(overall), bool) if key == "all" else languages == key
        result[key] = float(np.corrcoef(scores[mask], -overall[mask])[0, 1])
    decided = (overall <= 1.5) | (overall >= 3)
    result["auc"] = roc_auc(scores[decided].tolist(), (overall[decided] <= 1.5).tolist())
    return result


def fit_model(
    sem: npt.NDArray[np.float64],
    soft: npt.NDArray[np.float64],
    ecb: npt.NDArray[np.float64],
    same: npt.NDArray[np.bool_],
    learned: Sequence[str],
    fixed: dict[str, float],
    conflicts_from_ecb: Sequence[str] = (),
    ecb_share: float = 0.0,
) -> Model:
    """SemEval soft-label logistic (C = 100) of ``learned`` with ``fixed`` held; then,
    if asked, ``conflicts_from_ecb`` fitted on ECB+ within-topic pairs with that model as
    a fixed offset (their intercept dropped: it is the other set's base rate). With
    ``ecb_share`` > 0, one logistic on both sets instead (ECB+ weighted to that share of
    the SemEval total)."""
    columns = [COLUMNS.index(n) for n in learned]
    held = {COLUMNS.index(n): w for n, w in fixed.items()}
    if ecb_share > 0:
        from sklearn.linear_model import LogisticRegression

        x = np.vstack([sem, sem, ecb])[:, columns]
        y = np.r_[np.ones(len(sem)), np.zeros(len(sem)), same.astype(float)]
        w = np.r_[soft, 1 - soft, np.full(len(ecb), ecb_share * len(sem) / len(ecb))]
        joint = LogisticRegression(C=100, max_iter=5000).fit(x, y, sample_weight=w)
        weights = dict(zip(learned, joint.coef_[0].tolist(), strict=True))
        return Model(weights, float(joint.intercept_[0]))
    first = fit(sem, soft, sem[:0], np.zeros(0, bool), columns, 100.0, held)
    weights = {COLUMNS[i]: float(w) for i, w in enumerate(first.weights) if w}
    if conflicts_from_ecb:
        offset = {COLUMNS.index(n): w for n, w in weights.items()}
        second = fit(
            ecb[:0],
            same[:0].astype(float),
            ecb,
            same,
            [COLUMNS.index(n) for n in conflicts_from_ecb],
            100.0,
            offset,
        )
        weights.update({n: float(second.weights[COLUMNS.index(n)]) for n in conflicts_from_ecb})
    return Model(weights, first.bias)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--embedding-cache", type=Path, default=None, metavar="DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from index.engine import Engine
    from index.params import Parameters

    params = Parameters()
    embedder = make_embedder(params, args.model_cache, args.embedding_cache)
    reader = DateReader()
    pairs = load_semeval(args.data_dir)
    ecb_docs = load_ecb(args.data_dir)
    seeds = load_seeds(args.data_dir)
    with (
        tempfile.TemporaryDirectory(prefix="samestory-experiments-") as scratch,
        Engine.open(Path(scratch), params, embedder=embedder) as engine,
    ):
        sides = prepare(
            engine,
            [(f"{p.id}:{s}", t) for p in pairs for s, t in ((1, p.text1), (2, p.text2))],
            reader,
        )
        ecb = prepare(engine, [(d.id, d.text) for d in ecb_docs], reader)
        seed_docs = prepare(engine, seeds, reader)
    embedder.flush()

    kept = [
        i for i in range(len(pairs)) if sides[2 * i] is not None and sides[2 * i + 1] is not None
    ]
    sem = np.array([pair_row(sides[2 * i], sides[2 * i + 1]) for i in kept])  # type: ignore[arg-type]
    overall = np.array([pairs[i].overall for i in kept])
    languages = np.array([pairs[i].languages for i in kept])
    soft = (4.0 - overall) / 3.0
    docs = [doc for doc in ecb if doc is not None]
    gold = [d.story for d, doc in zip(ecb_docs, ecb, strict=True) if doc is not None]
    within = [
        (i, j)
        for i, j in itertools.combinations(range(len(docs)), 2)
        if gold[i].split("_")[0] == gold[j].split("_")[0]
    ]
    ecb_rows = np.array([pair_row(docs[i], docs[j]) for i, j in within])
    same = np.array([gold[i] == gold[j] for i, j in within])

    print("\n## Signal of each feature alone\n")
    print(f"{'feature':<22} {'SemEval r all':>13} {'ar-ar':>7} {'non-zero':>9}   ECB+ within-topic")
    for column, name in enumerate(COLUMNS):
        values = sem[:, column]
        if values.std() == 0:
            continue
        ar = languages == "ar-ar"
        r_ar = np.corrcoef(values[ar], -overall[ar])[0, 1] if values[ar].std() else float("nan")
        e = ecb_rows[:, column]
        print(
            f"{name:<22} {np.corrcoef(values, -overall)[0, 1]:>13.3f} {r_ar:>7.3f} "
            f"{np.mean(values != 0):>9.2f}   AUC {roc_auc(e.tolist(), same.tolist()):.3f}, "
            f"mean same {e[same].mean():.3f} / different {e[~same].mean():.3f}"
        )

    shipped_lexical = params.story_weights[2]
    experiments: list[tuple[str, dict[str, Any]]] = [
        ("shipped features, refitted", {}),
        ("+ years disjoint", {"conflicts_from_ecb": ["years_disjoint"]}),
        ("+ weekdays disjoint", {"conflicts_from_ecb": ["weekdays_disjoint"]}),
        ("+ latest years differ", {"conflicts_from_ecb": ["latest_year_differs"]}),
        (
            "+ years and weekdays disjoint",
            {"conflicts_from_ecb": ["years_disjoint", "weekdays_disjoint"]},
        ),
        (
            "+ both + full dates > 3 days apart",
            {"conflicts_from_ecb": ["years_disjoint", "weekdays_disjoint", "days_all_apart"]},
        ),
        (
            "joint 0.3, + capitalized, numbers",
            {"ecb_share": 0.3, "learned": [*BASE, "capitalized", "numbers"]},
        ),
        (
            "joint, + capitalized, numbers",
            {"ecb_share": 1.0, "learned": [*BASE, "capitalized", "numbers"]},
        ),
        (
            "joint, + capitalized, numbers, dates",
            {
                "ecb_share": 1.0,
                "learned": [*BASE, *ENTITIES_AND_DATES],
            },
        ),
    ]
    experiments.append(
        (
            "joint, ECB+ weighted 20x, all above",
            {
                "ecb_share": 20.0,
                "learned": [*BASE, *ENTITIES_AND_DATES],
            },
        )
    )
    print("\n## Combinations (SemEval 10-fold CV; ECB+ online replay, B-cubed F1 per order)\n")
    folds = np.random.default_rng(0).permutation(len(sem)) % 10
    models: dict[str, Model] = {}
    for label, options in experiments:
        learned = options.get("learned", ["dense", "cross_language"])
        fixed = {} if "ecb_share" in options else {"lexical": shipped_lexical}
        kwargs = {k: v for k, v in options.items() if k != "learned"}
        held_out = np.zeros(len(sem))
        for fold in range(10):
            train = folds != fold
            model = fit_model(sem[train], soft[train], ecb_rows, same, learned, fixed, **kwargs)
            held_out[~train] = 1 / (1 + np.exp(-model.logit_pair(sem[~train])))
        metrics = semeval_metrics(held_out, overall, languages)
        model = fit_model(sem, soft, ecb_rows, same, learned, fixed, **kwargs)
        models[label] = model
        runs = {
            t: [
                bcubed([str(s) for s in replay(docs, model, t, seed)], gold)[2]
                for seed in ORDER_SEEDS
            ]
            for t in (0.5, 0.6, 0.7)
        }
        threshold, f1 = max(runs.items(), key=lambda kv: float(np.mean(kv[1])))
        many = [
            bcubed([str(s) for s in replay(docs, model, threshold, seed)], gold)[2]
            for seed in MANY_ORDERS
        ]
        print(
            f"{label:<40} SemEval {metrics['all']:.3f} / {metrics['auc']:.3f}  ar-ar "
            f"{metrics['ar-ar']:.3f}  de-en {metrics['de-en']:.3f}  ECB+ "
            + " / ".join(f"{v:.3f}" for v in f1)
            + f" ({threshold}); orders 1-{len(MANY_ORDERS)} mean {np.mean(many):.4f}"
        )
        print(
            "    weights "
            + ", ".join(f"{k} {v:.2f}" for k, v in model.weights.items())
            + f"; bias {model.bias:.2f}"
        )

    print("\n## Cluster-level dense scoring (shares of the dense weight; SemEval unchanged)\n")
    shipped = models["shipped features, refitted"]
    for shares, top_k in (
        ((0.5, 0.5, 0.0), 3),
        ((0.25, 0.75, 0.0), 3),
        ((0.0, 1.0, 0.0), 3),
        ((1.0, 0.0, 0.0), 3),
        ((0.0, 0.5, 0.5), 2),
        ((0.0, 0.5, 0.5), 3),
        ((0.25, 0.25, 0.5), 3),
        ((0.0, 0.0, 1.0), 3),
    ):
        variant = Model(shipped.weights, shipped.bias, shares, top_k)
        for threshold in (0.55, 0.6, 0.65):
            f1 = [
                bcubed([str(s) for s in replay(docs, variant, threshold, seed)], gold)[2]
                for seed in MANY_ORDERS
            ]
            print(
                f"best / centroid / mean of top {top_k}: {shares}, threshold {threshold}: "
                + " / ".join(f"{v:.3f}" for v in f1[:3])
                + f"; orders 1-{len(MANY_ORDERS)} mean {np.mean(f1):.4f}, worst {min(f1):.3f}"
            )

    # SemEval ar-ar pairs where one side is only the ahewar.org site header (the crawl
    # failed; annotators rated the page they saw).
    header = np.array(
        [
            any("الحوار المتمدن" in side.body[:300] for side in (sides[2 * i], sides[2 * i + 1]))  # type: ignore[union-attr]
            for i in kept
        ]
    )
    arabic = languages == "ar-ar"
    probabilities = 1 / (1 + np.exp(-shipped.logit_pair(sem)))
    for label, mask in (("all", arabic), ("without header-only sides", arabic & ~header)):
        r = np.corrcoef(probabilities[mask], -overall[mask])[0, 1]
        print(f"\nar-ar, shipped refit, {label}: {int(mask.sum())} pairs, Pearson {r:.3f}")

    print("\n## Seeds: pair probabilities (threshold 0.6)\n")
    both = models["+ years and weekdays disjoint"]
    for a, b in itertools.combinations(range(len(seed_docs)), 2):
        first, second = seed_docs[a], seed_docs[b]
        if first is None or second is None:
            continue
        row = np.array([pair_row(first, second)])
        print(
            f"{seeds[a][0][:3]} {seeds[b][0][:3]}  dense {row[0, 0]:.3f}  lexical {row[0, 1]:.3f}  "
            f"years disjoint {row[0, COLUMNS.index('years_disjoint')]:.0f}  weekdays disjoint "
            f"{row[0, COLUMNS.index('weekdays_disjoint')]:.0f}  shipped refit "
            f"{1 / (1 + math.exp(-shipped.logit_pair(row)[0])):.3f}  with conflicts "
            f"{1 / (1 + math.exp(-both.logit_pair(row)[0])):.3f}"
        )


if __name__ == "__main__":
    main()
