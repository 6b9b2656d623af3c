"""What searches see while the vector index converts to HNSW and rebuilds its graph.

Builds a :class:`~index.vectors.VectorIndex` of stand-in embeddings (unit vectors
scattered around 300 centres, like articles of 300 stories; HNSW build cost depends on
count and dimension, not on the stories): ``--exact-limit`` of them loaded in bulk (flat),
then one more added as the service adds one, which starts the conversion to HNSW; then
the rest up to ``--vectors`` in bulk. Three snapshot images of that index are timed
(``VectorIndex.saver``: the FAISS graph serialized in memory, which a stories-mode
snapshot does under the engine lock). Then a fifth of the vectors are removed, and one
more, which crosses ``MAX_TOMBSTONE_FRACTION`` and starts the rebuild without tombstones.

Through the conversion and through the rebuild, a thread searches for 10 neighbours every
10 ms from half a second before the call that starts it until it is over. Reported for
each: how long that call blocked, when the work was done, and the search latencies
meanwhile (the engine holds its own lock around an ingest or a deletion, so a call that
blocks stalls every request that long).

Usage::

    .venv/bin/python benchmarks/vector_rebuild.py --vectors 200000 [--out J]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
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


def _searched_through(
    index: VectorIndex, query: np.ndarray, change: Callable[[], object]
) -> dict[str, Any]:
    """Search every 10 ms from half a second before ``change`` until the background
    work it starts is over: how long ``change`` blocked, when that work was done, and the
    search latencies meanwhile."""
    latencies: list[float] = []
    stop = threading.Event()

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
        changing = time.perf_counter()
        change()
        blocked = time.perf_counter() - changing
        index.wait_for_rebuild()
        done = time.perf_counter() - changing
    finally:
        stop.set()
        searcher.join()
    milliseconds = 1000 * np.array(latencies)
    return {
        "blocked_s": blocked,
        "done_after_s": done,
        "searches": len(latencies),
        "search_ms": {
            "p50": float(np.percentile(milliseconds, 50)),
            "p99": float(np.percentile(milliseconds, 99)),
            "max": float(milliseconds.max()),
        },
    }


def measure(
    vectors: int, dimension: int, *, exact_limit: int = 20_000, seed: int = 0
) -> dict[str, Any]:
    """Convert at the limit, build on, remove past the tombstone fraction; time searches
    through the conversion and the rebuild."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, dimension)).astype(np.float32)
    query = _stand_ins(rng, centres, 1)
    index = VectorIndex(dimension, exact_limit=exact_limit)
    started = time.perf_counter()
    for first in range(0, exact_limit, 10_000):
        count = min(10_000, exact_limit - first)
        index.add(np.arange(first, first + count), _stand_ins(rng, centres, count), bulk=True)
    # One more vector, as a service adds it: the conversion to HNSW starts.
    conversion = _searched_through(
        index,
        query,
        lambda: index.add(np.array([exact_limit]), _stand_ins(rng, centres, 1)),
    )
    for first in range(exact_limit + 1, vectors, 10_000):
        count = min(10_000, vectors - first)
        index.add(np.arange(first, first + count), _stand_ins(rng, centres, count), bulk=True)
    built = time.perf_counter() - started
    # What a stories-mode snapshot holds the engine lock for: the in-memory image.
    imaging: list[float] = []
    for _ in range(3):
        began = time.perf_counter()
        index.saver("benchmark")
        imaging.append(time.perf_counter() - began)
    index.remove(np.arange(int(MAX_TOMBSTONE_FRACTION * vectors)))
    # One more removal crosses the tombstone fraction: the rebuild starts.
    rebuild = _searched_through(index, query, lambda: index.remove(np.array([vectors - 1])))
    return {
        "vectors": vectors,
        "dimension": dimension,
        "exact_limit": exact_limit,
        "approximate": index.approximate,
        "build_s": built,
        "snapshot_image_s": imaging,
        "tombstones_after": index.tombstones,
        "conversion": conversion,
        "rebuild": rebuild,
    }


_COLUMNS = (("what", 30), ("call blocked", 12), ("done after", 10), ("searches", 8))
_LATENCIES = ("p50", "p99", "max")


def format_table(result: dict[str, Any]) -> str:
    """The result as a few lines."""
    widths = [width for _name, width in _COLUMNS] + [10] * len(_LATENCIES)
    names = [name for name, _width in _COLUMNS] + [f"search {name}" for name in _LATENCIES]
    lines = [
        f"{result['vectors']:,} vectors of dimension {result['dimension']}, built in "
        f"{result['build_s']:.1f} s; a snapshot's image of it (the engine lock's share): "
        + " / ".join(f"{1000 * seconds:,.0f} ms" for seconds in result["snapshot_image_s"]),
        "",
        "  ".join(name.ljust(width) for name, width in zip(names, widths, strict=True)),
        "  ".join("-" * width for width in widths),
    ]
    for key, what in (
        ("conversion", f"add past {result['exact_limit']:,}"),
        ("rebuild", "removal past a fifth"),
    ):
        phase = result[key]
        cells = [
            what,
            f"{phase['blocked_s']:.2f} s",
            f"{phase['done_after_s']:.1f} s",
            f"{phase['searches']:,}",
            *(f"{phase['search_ms'][name]:.1f} ms" for name in _LATENCIES),
        ]
        lines.append(
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(lines)


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
