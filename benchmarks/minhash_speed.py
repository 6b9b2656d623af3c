"""MinHash signature speed: samestory's native path against datasketch's ``update_batch``.

Run: ``.venv/bin/python benchmarks/minhash_speed.py [--limit 5000] [--repeat 3]``.

Both sides start from the same normalized texts and word 5-gram shingles. datasketch gets
the shingle strings ready-made (only encoding and ``update_batch`` are timed, with its
default SHA-1 ``hashfunc``); samestory is timed from text to signature, shingling
included. datasketch 2 defaults to the ``affine32`` scheme while samestory reproduces the
``legacy`` one, so both datasketch schemes are measured and the ratio is taken against the
faster. numba compilation is excluded by a warm-up call. Each figure is documents per CPU
second, the best of ``--repeat`` interleaved runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from datasketch import MinHash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.minhash import MinHasher
from index.shingles import shingle_hashes, shingle_hashes_many

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "saudinewsnet" / "articles.jsonl.gz"
)
SIZE = 5
NUM_PERM = 128
SEED = 1


def load_texts(path: Path, limit: int) -> list[str]:
    """The first ``limit`` article bodies, lowercased with non-word runs turned into spaces."""
    texts: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            content = json.loads(line).get("content") or ""
            text = re.sub(r"\W+", " ", content.lower()).strip()
            if text:
                texts.append(text)
            if len(texts) >= limit:
                break
    return texts


def shingle_strings(text: str, size: int = SIZE) -> list[str]:
    """Word ``size``-grams as strings (one shingle of all words for shorter texts)."""
    words = text.split()
    span = min(size, len(words))
    return [" ".join(words[i : i + span]) for i in range(len(words) - span + 1)]


def _best_rates(
    runs: dict[str, Callable[[], object]], documents: int, repeat: int
) -> dict[str, float]:
    """Docs per CPU second of each run, best of ``repeat``.

    CPU time (every contender is single-threaded) rather than wall time, and rounds that
    interleave the runs, keep other processes on a shared machine from skewing the ratio.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return {name: documents / seconds for name, seconds in best.items()}


def measure(texts: list[str], repeat: int = 3) -> dict[str, float]:
    """Documents per second of datasketch and of samestory on ``texts``.

    Returns:
        ``datasketch_affine32``, ``datasketch_legacy``, ``ours_single`` (text to signature
        one call at a time), ``ours_batch`` (one batched call for all texts) in documents
        per CPU second, and
        ``ratio_single`` / ``ratio_batch`` against the faster datasketch scheme.
    """
    shingles = [shingle_strings(text) for text in texts]
    hasher = MinHasher(NUM_PERM, SEED)
    hasher.signatures(shingle_hashes_many(texts[:2], size=SIZE))
    hasher.signature(shingle_hashes(texts[0], size=SIZE))

    def baseline(scheme: str) -> Callable[[], None]:
        def run() -> None:
            for strings in shingles:
                sketch = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=scheme)
                sketch.update_batch([s.encode() for s in strings])

        return run

    def single() -> None:
        for text in texts:
            hasher.signature(shingle_hashes(text, size=SIZE))

    def batch() -> None:
        hasher.signatures(shingle_hashes_many(texts, size=SIZE))

    rates = _best_rates(
        {
            "datasketch_affine32": baseline("affine32"),
            "datasketch_legacy": baseline("legacy"),
            "ours_single": single,
            "ours_batch": batch,
        },
        len(texts),
        repeat,
    )
    fastest = max(rates["datasketch_affine32"], rates["datasketch_legacy"])
    rates["ratio_single"] = rates["ours_single"] / fastest
    rates["ratio_batch"] = rates["ours_batch"] / fastest
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = load_texts(args.data, args.limit)
    words = sum(len(text.split()) for text in texts) / len(texts)
    rates = measure(texts, args.repeat)
    print(f"{len(texts)} SaudiNewsNet articles, {words:.0f} words on average, num_perm={NUM_PERM}")
    print(f"{'path':<42} {'docs/CPU s':>10}")
    print(
        f"{'datasketch update_batch (affine32, sha1)':<42} {rates['datasketch_affine32']:>10,.0f}"
    )
    print(f"{'datasketch update_batch (legacy, sha1)':<42} {rates['datasketch_legacy']:>10,.0f}")
    print(f"{'samestory text->signature, one at a time':<42} {rates['ours_single']:>10,.0f}")
    print(f"{'samestory text->signature, batched':<42} {rates['ours_batch']:>10,.0f}")
    print(f"{'ratio one at a time / best datasketch':<42} {rates['ratio_single']:>10.1f}")
    print(f"{'ratio batched / best datasketch':<42} {rates['ratio_batch']:>10.1f}")


if __name__ == "__main__":
    main()
