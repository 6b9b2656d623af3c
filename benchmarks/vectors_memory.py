"""Memory, add throughput and single-query latency of VectorIndex (flat and HNSW).

Builds indexes of random unit vectors (dimension 384, like multilingual-e5-small) and
compares them with brute force in numpy over a float32 matrix. Uniformly random vectors
are the hardest case for HNSW recall (no structure at all), so recall there is a floor;
``--distribution clustered`` draws them around one centre per 20 vectors instead, closer
to embeddings of articles grouped in stories.

Usage::

    python benchmarks/vectors_memory.py --sizes 30000 60000 [--distribution clustered]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.vectors import VectorIndex

Matrix = npt.NDArray[np.float32]

BULK_BATCH = 1_000
K = 10


def unit_vectors(rng: np.random.Generator, n: int, dimension: int) -> Matrix:
    """``n`` random float32 unit vectors."""
    vectors = rng.standard_normal((n, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def clustered_unit_vectors(rng: np.random.Generator, n: int, dimension: int) -> Matrix:
    """``n`` unit vectors around ``n / 20`` random centres, at cosine about 0.9 to them."""
    centres = unit_vectors(rng, max(1, n // 20), dimension)
    noise = rng.standard_normal((n, dimension), dtype=np.float32) * np.float32(
        0.5 / np.sqrt(dimension)
    )
    vectors: Matrix = centres[rng.integers(0, len(centres), n)] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def measure(
    n: int,
    *,
    dimension: int = 384,
    queries: int = 1_000,
    singles: int = 200,
    seed: int = 0,
    distribution: str = "uniform",
) -> dict[str, dict[str, float]]:
    """Measure flat, HNSW and numpy brute force on ``n`` random unit vectors.

    Args:
        n: vectors stored.
        dimension: vector length.
        queries: single-vector searches timed per index.
        singles: one-vector adds timed after the bulk load.
        seed: random seed for vectors and queries.
        distribution: "uniform" or "clustered" (queries are drawn with the vectors).

    Returns:
        Per method (``flat``, ``hnsw``, ``numpy``): ``bytes_per_vector``, ``bulk_add_per_s``
        (batches of 1,000), ``add_one_ms`` (median single add into the full index),
        ``search_p50_ms``, ``search_p99_ms`` (k=10, one query per call), ``recall_at_10``
        against exact search, and for the two indexes ``approximate`` (1.0 where the index
        timed is HNSW: once a conversion to it has finished).
    """
    rng = np.random.default_rng(seed)
    draw = clustered_unit_vectors if distribution == "clustered" else unit_vectors
    drawn = draw(rng, n + singles + queries, dimension)
    vectors, probes = drawn[: n + singles], drawn[n + singles :]
    exact = np.argpartition(-(probes @ vectors[:n].T), K, axis=1)[:, :K]

    results = {
        "flat": _measure_index(
            VectorIndex(dimension, exact_limit=n + singles), vectors, n, probes, exact
        ),
        "hnsw": _measure_index(VectorIndex(dimension, exact_limit=0), vectors, n, probes, exact),
    }
    matrix = vectors[:n].copy()

    def brute_force(probe: Matrix) -> Any:
        scores = matrix @ probe
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    results["numpy"] = {
        "bytes_per_vector": matrix.nbytes / n,
        "bulk_add_per_s": float("nan"),
        "add_one_ms": float("nan"),
        "recall_at_10": 1.0,
        **_latencies(brute_force, probes),
    }
    return results


def _measure_index(
    index: VectorIndex, vectors: Matrix, n: int, probes: Matrix, exact: npt.NDArray[np.int64]
) -> dict[str, float]:
    """Bulk-load the first ``n`` vectors, time searches, then add the rest one by one."""
    started = time.perf_counter()
    for start in range(0, n, BULK_BATCH):
        stop = min(start + BULK_BATCH, n)
        index.add(np.arange(start, stop), vectors[start:stop])
    # Past its exact limit the index converts itself to HNSW in the background: the load
    # counts until that is done, and what is timed below is the index it converts to, not
    # whichever state the race left it in (a run timed the flat one under "hnsw").
    index.wait_for_rebuild()
    row = {
        "bulk_add_per_s": n / (time.perf_counter() - started),
        "bytes_per_vector": index.memory_bytes() / len(index),
        "approximate": float(index.approximate),
    }
    found = np.stack([index.search(probe[None], K)[1][0] for probe in probes])
    row["recall_at_10"] = _recall(found, exact)
    row.update(_latencies(lambda probe: index.search(probe[None], K), probes))
    row["add_one_ms"] = _median_ms(
        lambda i: index.add(np.array([i]), vectors[i : i + 1]), range(n, len(vectors))
    )
    return row


def _recall(found: npt.NDArray[np.int64], exact: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.size


def _latencies(search: Callable[[Matrix], object], probes: Matrix) -> dict[str, float]:
    timings = []
    for probe in probes:
        started = time.perf_counter()
        search(probe)
        timings.append(time.perf_counter() - started)
    p50, p99 = np.percentile(np.array(timings) * 1e3, [50, 99])
    return {"search_p50_ms": float(p50), "search_p99_ms": float(p99)}


def _median_ms(call: Callable[[int], object], items: range) -> float:
    timings = []
    for item in items:
        started = time.perf_counter()
        call(item)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1e3)


def format_table(n: int, results: dict[str, dict[str, float]]) -> str:
    """One fixed-width table for one size."""
    columns = (
        ("bytes/vector", "bytes_per_vector", "{:.0f}"),
        ("bulk add/s", "bulk_add_per_s", "{:.0f}"),
        ("add one ms", "add_one_ms", "{:.3f}"),
        ("search p50 ms", "search_p50_ms", "{:.3f}"),
        ("search p99 ms", "search_p99_ms", "{:.3f}"),
        ("recall@10", "recall_at_10", "{:.3f}"),
    )
    header = f"{'n=' + format(n, ','):<12}" + "".join(f"{title:>15}" for title, _, _ in columns)
    lines = [header, "-" * len(header)]
    for method, row in results.items():
        cells = "".join(
            f"{'n/a' if np.isnan(row[key]) else pattern.format(row[key]):>15}"
            for _, key, pattern in columns
        )
        lines.append(f"{method:<12}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every requested size and write one table per size to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 60_000])
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distribution", choices=["uniform", "clustered"], default="uniform")
    arguments = parser.parse_args(argv)
    for position, n in enumerate(arguments.sizes):
        results = measure(
            n,
            dimension=arguments.dimension,
            queries=arguments.queries,
            seed=arguments.seed,
            distribution=arguments.distribution,
        )
        if position == 0:
            # After the first VectorIndex, which sets FAISS's thread count.
            sys.stdout.write(
                f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
                f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
                f"dimension {arguments.dimension}, {arguments.distribution} vectors, k={K}\n\n"
            )
        sys.stdout.write(format_table(n, results) + "\n\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
