"""How long an index snapshot holds the engine lock, and how long its writing takes after.

Opens a data directory in the mode its store was made in (the model is loaded in
``stories`` mode) and takes ``--repeat`` snapshots one after another with
``Engine.snapshot()``, which reports both times. While the lock is held, ingests and reads
wait; the writing goes on beside them. The snapshots are written into the directory's
``snapshots/`` as a clean stop would write them; the record is not touched.

Usage::

    .venv/bin/python benchmarks/snapshot_lock.py DATA_DIR --mode stories [--repeat 4]

Stores to measure: ``perf.py``'s seeded stores (``benchmarks/results/stores/``), or one
``samestory dedup --mode dedup --store DIR`` made (the archive stage's million articles).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_cli import check_store, report, store_parser
from index.engine import SnapshotTimes
from service.settings import Settings, open_engine


def measure(data_dir: Path, mode: str, repeat: int, model_cache: Path) -> dict[str, Any]:
    """Open ``data_dir`` and time ``repeat`` snapshots of it.

    Returns:
        ``articles`` in the indexes and per snapshot its ``locked_s`` and ``written_s``.
    """
    settings = Settings(data_dir=data_dir, mode=mode, model_cache_dir=model_cache)
    engine = open_engine(settings, periodic_snapshots=False)
    try:
        articles = engine.counts()["lsh_entries"]
        times: list[SnapshotTimes] = [engine.snapshot() for _ in range(repeat)]
    finally:
        engine.close(snapshot=False)
    return {
        "data_dir": str(data_dir),
        "mode": mode,
        "articles": articles,
        "snapshots": [times._asdict() for times in times],
    }


def format_table(result: dict[str, Any]) -> str:
    """One row per snapshot."""
    lines = [
        f"{result['articles']:,} articles, {result['mode']} mode, {result['data_dir']}",
        "",
        "snapshot  engine lock held  written after it",
        "--------  ----------------  ----------------",
    ]
    for number, times in enumerate(result["snapshots"], start=1):
        lines.append(
            f"{number:>8}  {1000 * times['locked_s']:>13,.1f} ms  "
            f"{1000 * times['written_s']:>13,.1f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure one data directory; print the table (and write JSON with ``--out``)."""
    parser = store_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=4)
    arguments = parser.parse_args(argv)
    check_store(parser, arguments.data_dir)
    result = measure(arguments.data_dir, arguments.mode, arguments.repeat, arguments.model_cache)
    return report(format_table(result), result, arguments.out)


if __name__ == "__main__":
    raise SystemExit(main())
