"""What searches see while the HNSW graph is rebuilt without its tombstones.

First, three snapshot images of the built index are timed (``VectorIndex.saver``: the
FAISS graph serialized in memory, which a stories-mode snapshot does under the engine
lock).

Builds a :class:`~index.vectors.VectorIndex` of ``--vectors`` stand-in embeddings
(unit vectors scattered around 300 centres, like articles of 300 stories; HNSW build
cost depends on count and dimension, not on the stories), removes a fifth of them, then
removes one more, which crosses ``MAX_TOMBSTONE_FRACTION`` and starts the rebuild. A
thread searches for 10 neighbours every 10 ms from half a second before that removal until
the rebuild is over. Reports how long the removal call blocked, when the rebuild was
done, and the search latencies meanwhile (the engine holds its own lock around a
deletion, so a removal that blocks stalls every request that long).

Usage::

    .venv/bin/python benchmarks/vector_rebuild.py --vectors 200000 [--out J]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_cli import report
from index.vectors import MAX_TOMBSTONE_FRACTION, VectorIndex


def _stand_ins(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    picked = centres[rng.integers(0, len(centres), count)]
    noisy = picked + 0.6 * rng.standard_normal(picked.shape).astype(np.float32)
    normalized: np.ndarray = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return normalized.astype(np.float32)


def measure(
    vectors: int, dimension: int, *, exact_limit: int = 20_000, seed: int = 0
) -> dict[str, Any]:
    """Build, remove past the tombstone fraction, and time searches until rebuilt."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, dimension)).astype(np.float32)
    index = VectorIndex(dimension, exact_limit=exact_limit)
    started = time.perf_counter()
    for first in range(0, vectors, 10_000):
        count = min(10_000, vectors - first)
        index.add(np.arange(first, first + count), _stand_ins(rng, centres, count))
    built = time.perf_counter() - started
    # What a stories-mode snapshot holds the engine lock for: the in-memory image.
    imaging: list[float] = []
    for _ in range(3):
        began = time.perf_counter()
        index.saver("benchmark")
        imaging.append(time.perf_counter() - began)
    index.remove(np.arange(int(MAX_TOMBSTONE_FRACTION * vectors)))
    latencies: list[float] = []
    stop = threading.Event()
    query = _stand_ins(rng, centres, 1)

    def search() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            index.search(query, 10)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.01)

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        time.sleep(0.5)
        removing = time.perf_counter()
        index.remove(np.array([vectors - 1]))
        blocked = time.perf_counter() - removing
        index.wait_for_rebuild()
        rebuilt = time.perf_counter() - removing
    finally:
        stop.set()
        searcher.join()
    milliseconds = 1000 * np.array(latencies)
    return {
        "vectors": vectors,
        "dimension": dimension,
        "approximate": index.approximate,
        "build_s": built,
        "snapshot_image_s": imaging,
        "removal_blocked_s": blocked,
        "rebuilt_after_s": rebuilt,
        "tombstones_after": index.tombstones,
        "searches": len(latencies),
        "search_ms": {
            "p50": float(np.percentile(milliseconds, 50)),
            "p99": float(np.percentile(milliseconds, 99)),
            "max": float(milliseconds.max()),
        },
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a few lines."""
    search = result["search_ms"]
    return "\n".join(
        [
            f"{result['vectors']:,} vectors of dimension {result['dimension']}, built in "
            f"{result['build_s']:.1f} s; a snapshot's image of it (the engine lock's share): "
            + " / ".join(f"{1000 * seconds:,.0f} ms" for seconds in result["snapshot_image_s"]),
            "A fifth removed, then one more:",
            "",
            "removal call blocked        rebuilt after   searches  p50       p99       max",
            "--------------------------  --------------  --------  --------  --------  --------",
            f"{result['removal_blocked_s']:>24.2f} s  {result['rebuilt_after_s']:>12.1f} s  "
            f"{result['searches']:>8,}  {search['p50']:>5.1f} ms  {search['p99']:>5.1f} ms  "
            f"{search['max']:>5.0f} ms",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Measure; print the table (and write JSON with ``--out``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument(
        "--exact-limit", type=int, default=20_000, help="HNSW past this many (the default)"
    )
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.vectors <= arguments.exact_limit:
        parser.error("--vectors must exceed --exact-limit: only an HNSW graph has tombstones")
    result = measure(arguments.vectors, arguments.dimension, exact_limit=arguments.exact_limit)
    return report(format_table(result), result, arguments.out)


if __name__ == "__main__":
    raise SystemExit(main())
