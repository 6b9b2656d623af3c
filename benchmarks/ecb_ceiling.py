"""What ECB+ clustering can reach with the engine's own pair scores, given the whole set.

Run from the repository root (about three minutes with the embedding cache of quality.py
or calibrate.py in ``benchmarks/results/``, or ``--embedding-cache DIR``)::

    .venv/bin/python benchmarks/ecb_ceiling.py

The online target (B-cubed F1 >= 0.92 in every order) asks one pass, one document at a
time, to sort ECB+'s same-topic events apart. This measures an upper reference for that:
every pair of the 772 documents is scored with the logit clustering decides on
(:func:`index.stories.clustering_logit` of :func:`index.stories.pair_features` and
:func:`index.stories.pair_conflicts`, IDF from all documents), then clustered *offline*
by average- and complete-link agglomeration, with the cut tuned on ECB+ itself (the best
of a grid: optimistic on purpose). If that is below the target, no online decision rule on
these pair scores reaches it; what is missing is in the pair scores.

Printed per configuration (the shipped parameters, without the event-time conflicts, and
with the term-overlap evidence that is not shipped): the best offline F1 per linkage with
its cut and story count, the offline F1 at the engine's own threshold, and the engine's
online replay (mean and worst of ``--orders`` shuffled orders, as ``calibrate.py``
replays them). Then the online replay once more with repair sweeps (every
``--repair-every`` documents, each stored document of a one-member story, or of any story,
decided again as if new): what revising early decisions could gain, which the engine does
not do.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.calibrate import (  # noqa: E402
    PreparedDocument,
    cached_embedder,
    corpus_frequencies,
    ecb_documents,
    replay_clustering,
)
from benchmarks.quality import (  # noqa: E402
    DEFAULT_DATA,
    DEFAULT_MODEL_CACHE,
    RESULTS,
    bcubed,
    load_ecb,
)

logger = logging.getLogger("benchmarks.ecb_ceiling")


def pair_logits(documents: Sequence[PreparedDocument], params: Any) -> npt.NDArray[np.float64]:
    """Symmetric matrix of the clustering logit of every pair (diagonal 0)."""
    from index.stories import clustering_logit, pair_conflicts, pair_features

    queries = [document.query for document in documents]
    frequencies = corpus_frequencies(queries)
    matrix = np.stack([query.embedding for query in queries]).astype(np.float64)
    dense = matrix @ matrix.T
    logits = np.zeros((len(queries), len(queries)))
    for i, a in enumerate(queries):
        for j in range(i + 1, len(queries)):
            b = queries[j]
            features = pair_features(float(dense[i, j]), a, b, frequencies)
            logits[i, j] = logits[j, i] = clustering_logit(features, pair_conflicts(a, b), params)
    return logits


def offline(
    logits: npt.NDArray[np.float64], gold: Sequence[str], method: str, cuts: Sequence[float]
) -> dict[float, tuple[float, int]]:
    """B-cubed F1 and story count of ``method``-link clusters merged down to each logit cut."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    top = float(logits.max())
    distance = top - logits
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method=method)
    result = {}
    for cut in cuts:
        labels = fcluster(tree, top - cut, criterion="distance")
        result[cut] = (bcubed([str(label) for label in labels], gold)[2], len(set(labels)))
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Score, cluster offline and replay online for each configuration; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--embedding-cache", type=Path, default=RESULTS, metavar="DIR")
    parser.add_argument("--orders", type=int, default=20, help="online replays per setting")
    parser.add_argument(
        "--overlap",
        type=float,
        nargs=2,
        default=(14.0, 0.18),
        metavar=("WEIGHT", "CENTER"),
        help="the clustering-only term-overlap evidence to compare (calibrate.py --overlap fit)",
    )
    parser.add_argument(
        "--repair-every",
        type=int,
        default=50,
        metavar="N",
        help="for the repair rows: documents between sweeps that place stored ones again",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)

    from index.engine import Engine
    from index.params import Parameters

    params = Parameters()
    embedder = cached_embedder(params, args.model_cache, args.embedding_cache)
    with (
        tempfile.TemporaryDirectory(prefix="samestory-ceiling-") as scratch,
        Engine.open(Path(scratch), params, embedder=embedder) as engine,
    ):
        documents = ecb_documents(engine, load_ecb(args.data_dir))
    embedder.save()
    gold = [document.gold for document in documents]
    configurations = {
        "shipped": params,
        "shipped, without the event-time conflicts": params.replace(
            story_conflict_weights=(0.0,) * len(params.story_conflict_weights)
        ),
        f"shipped + term overlap {args.overlap[0]:g} around {args.overlap[1]:g}": params.replace(
            story_overlap_weight=args.overlap[0], story_overlap_center=args.overlap[1]
        ),
    }
    threshold_logit = float(np.log(params.story_threshold / (1.0 - params.story_threshold)))
    cuts = [round(float(c), 2) for c in np.arange(-6.0, 8.01, 0.25)] + [threshold_logit]
    rows: dict[str, Any] = {}

    def online_f1(trial: Any, **repair: int) -> list[float]:
        """B-cubed F1 of the online replay in each of the ``--orders`` orders."""
        return [
            bcubed(replay_clustering(documents, trial, seed, **repair), gold)[2]
            for seed in range(1, args.orders + 1)
        ]

    repairs = {}
    for label, max_size in (("one-member stories", 1), ("every story", len(documents))):
        repairs[label] = online_f1(params, repair_every=args.repair_every, repair_max_size=max_size)
        logger.info("repair sweeps, %s: %s", label, repairs[label])
    for name, trial in configurations.items():
        logits = pair_logits(documents, trial)
        online = online_f1(trial)
        row: dict[str, Any] = {"online_mean": float(np.mean(online)), "online_worst": min(online)}
        for method in ("average", "complete"):
            scores = offline(logits, gold, method, cuts)
            best = max(scores, key=lambda cut: scores[cut][0])
            row[method] = {
                "best_cut": best,
                "best_f1": scores[best][0],
                "best_stories": scores[best][1],
                "f1_at_threshold": scores[threshold_logit][0],
            }
        rows[name] = row
        logger.info("%s: %s", name, row)

    print(f"\n## ECB+ dev ({len(documents)} documents, {len(set(gold))} stories): offline ceiling")
    print(
        f"\npair logit = the engine's clustering logit; engine threshold {params.story_threshold}"
        f" (logit {threshold_logit:.2f}); offline cut tuned on ECB+ itself\n"
    )
    print(
        "| parameters | online, mean / worst of "
        f"{args.orders} orders | average-link: best (cut, stories) | at threshold "
        "| complete-link: best (cut, stories) | at threshold |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        cells = [f"{row['online_mean']:.4f} / {row['online_worst']:.3f}"]
        for method in ("average", "complete"):
            part = row[method]
            cells.append(f"{part['best_f1']:.4f} ({part['best_cut']:.2f}, {part['best_stories']})")
            cells.append(f"{part['f1_at_threshold']:.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"\nOnline, shipped parameters, with a sweep every {args.repair_every} documents (and at"
        " the end) that decides again each stored document of the stories named (the engine"
        " never revises a decision; this measures what revising could gain):\n"
    )
    print(f"| documents placed again | mean / worst of {args.orders} orders | orders 1 / 2 / 3 |")
    print("|---|---|---|")
    for label, online in repairs.items():
        print(
            f"| members of {label} | {np.mean(online):.4f} / {min(online):.3f} | "
            + " / ".join(f"{value:.3f}" for value in online[:3])
            + " |"
        )
        rows[f"repair: {label}"] = {"online_mean": float(np.mean(online)), "online": online}
    return rows


if __name__ == "__main__":
    main()
