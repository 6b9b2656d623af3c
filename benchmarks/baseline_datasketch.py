"""The plain datasketch near-duplicate loop ``samestory dedup --mode dedup`` is measured against.

What a careful engineer writes in an afternoon: read a JSON Lines file (gzipped or not)
with the standard library, lowercase each text and split it on whitespace, take word
5-grams, ``MinHash(num_perm=128).update_batch`` them, ask a ``MinHashLSH(threshold=0.8)``
for candidates (a candidate makes the article a duplicate of the first one returned),
insert it, and write every record back with ``duplicate_of`` added. No cleaning, no
normalization beyond case, no verification, no store: a floor for the cost of the task.

Run::

    .venv/bin/python benchmarks/baseline_datasketch.py \
        ../shared/data/saudinewsnet/articles.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Literal

from datasketch import MinHash, MinHashLSH

SHINGLE_WORDS = 5
NUM_PERM = 128
THRESHOLD = 0.8


def _open_text(path: Path, mode: Literal["r", "w"]) -> IO[str]:
    if path.suffix != ".gz":
        return open(path, mode, encoding="utf-8")
    if mode == "r":
        return gzip.open(path, "rt", encoding="utf-8")
    return gzip.open(path, "wt", encoding="utf-8")


def shingles(text: str, size: int = SHINGLE_WORDS) -> list[bytes]:
    """Word ``size``-grams of the lowercased text (one shingle of all words when shorter)."""
    words = text.lower().split()
    span = min(size, len(words))
    return [" ".join(words[i : i + span]).encode("utf-8") for i in range(len(words) - span + 1)]


def run(
    path: Path,
    *,
    text_field: str = "content",
    id_field: str = "id",
    output: Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Deduplicate ``path`` with the plain loop, read to write.

    Args:
        path: JSON Lines input (``.gz`` for gzip).
        text_field: the field holding the text.
        id_field: the field holding the id (the line number when absent).
        output: where to write the annotated records; a temporary file when ``None``.
        limit: stop after this many records.

    Returns:
        ``documents`` read, ``duplicates`` found, wall ``seconds`` and ``docs_per_second``.
    """
    started = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    documents = duplicates = 0
    with tempfile.TemporaryDirectory() as scratch:
        target = output or Path(scratch) / "baseline.jsonl"
        with _open_text(path, "r") as lines, _open_text(target, "w") as out:
            for number, line in enumerate(lines, start=1):
                if limit is not None and documents >= limit:
                    break
                if not line.strip():
                    continue
                record = json.loads(line)
                documents += 1
                key = str(record.get(id_field) or number)
                minhash = MinHash(num_perm=NUM_PERM)
                minhash.update_batch(shingles(record.get(text_field) or ""))
                candidates = lsh.query(minhash)
                record["duplicate_of"] = candidates[0] if candidates else None
                duplicates += bool(candidates)
                if key not in lsh:
                    lsh.insert(key, minhash)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    seconds = time.perf_counter() - started
    return {
        "documents": documents,
        "duplicates": duplicates,
        "seconds": seconds,
        "docs_per_second": documents / seconds if seconds > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run the loop on a file and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--text-field", default="content")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    result = run(
        args.input,
        text_field=args.text_field,
        id_field=args.id_field,
        output=args.output,
        limit=args.limit,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
