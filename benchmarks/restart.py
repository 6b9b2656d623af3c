"""How long an engine takes to open its store after a crash that followed deletions.

Three opens of one data directory, in the mode its store was made in (the model is
loaded in ``stories`` mode, so its load is part of every time):

1. **from its snapshot**: the directory is first closed cleanly (a current snapshot), then
   opened;
2. **from that snapshot after deletions**: ``--deletes`` articles, spread evenly over the
   store, are deleted and the engine is closed without a snapshot, as a crash would leave
   it; the next open loads the snapshot and replays the deletions from the record's log;
3. **rebuilt from the record**: the same, with ``snapshots/`` set aside (what every
   crash after a deletion cost before the log existed); the snapshots are put back after.

**Destructive**: the deleted articles are gone from the store. Run it on a copy.

Usage::

    .venv/bin/python benchmarks/restart.py DATA_DIR --mode dedup [--deletes 100]

Stores to measure: ``perf.py``'s seeded stores (``benchmarks/results/stores/``; copy one
first), or one made by ``samestory dedup --mode dedup --store DIR``.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_cli import check_store, report, store_parser
from index.engine import STORE_FILE, Engine
from service.settings import Settings, open_engine


class _LoadLog(logging.Handler):
    """Keeps the engine's "indexes loaded from ..." lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("indexes loaded from", "rebuilding indexes")) or (
            "replayed from the record" in message
        ):
            self.lines.append(message)


def _timed_open(settings: Settings, log: _LoadLog) -> tuple[Engine, float, list[str]]:
    log.lines.clear()
    started = time.perf_counter()
    engine = open_engine(settings, periodic_snapshots=False)
    return engine, time.perf_counter() - started, list(log.lines)


def _ids_to_delete(data_dir: Path, count: int) -> list[str]:
    """``count`` article ids spread evenly over the store's rows."""
    with sqlite3.connect(data_dir / STORE_FILE) as connection:
        ids = [found[0] for found in connection.execute("SELECT id FROM articles ORDER BY row")]
    if count > len(ids):
        raise SystemExit(f"the store holds {len(ids):,} articles, fewer than {count:,}")
    step = len(ids) / count
    return [ids[int(number * step)] for number in range(count)]


def measure(data_dir: Path, mode: str, deletes: int, model_cache: Path) -> dict[str, Any]:
    """Time the three opens of ``data_dir`` (see the module docstring)."""
    settings = Settings(data_dir=data_dir, mode=mode, model_cache_dir=model_cache)
    log = _LoadLog()
    engine_log = logging.getLogger("index.engine")
    engine_log.addHandler(log)
    level = engine_log.level
    engine_log.setLevel(logging.INFO)
    opens: list[dict[str, Any]] = []
    try:
        open_engine(settings, periodic_snapshots=False).close()  # a current snapshot
        engine, seconds, lines = _timed_open(settings, log)
        opens.append({"how": "from its snapshot", "seconds": seconds, "log": lines})
        started = time.perf_counter()
        for article_id in _ids_to_delete(data_dir, deletes):
            engine.delete(article_id)
        deleting = time.perf_counter() - started
        articles = engine.counts()["lsh_entries"]
        engine.close(snapshot=False)  # a crash: no snapshot after the deletions
        engine, seconds, lines = _timed_open(settings, log)
        replayed = engine.counts()["lsh_entries"]
        engine.close(snapshot=False)
        opens.append(
            {"how": f"its snapshot + {deletes:,} deletions", "seconds": seconds, "log": lines}
        )
        snapshots = data_dir / "snapshots"
        aside = data_dir / "snapshots.aside"
        snapshots.rename(aside)
        try:
            engine, seconds, lines = _timed_open(settings, log)
            rebuilt = engine.counts()["lsh_entries"]
            engine.close(snapshot=False)
        finally:
            shutil.rmtree(snapshots, ignore_errors=True)
            aside.rename(snapshots)
        opens.append({"how": "rebuilt from the record", "seconds": seconds, "log": lines})
    finally:
        engine_log.removeHandler(log)
        engine_log.setLevel(level)
    if not articles == replayed == rebuilt:
        raise RuntimeError(
            f"indexes differ: {articles} live, {replayed} replayed, {rebuilt} rebuilt"
        )
    return {
        "data_dir": str(data_dir),
        "mode": mode,
        "articles": articles,
        "deletes": deletes,
        "deleting_s": deleting,
        "opens": opens,
    }


def format_table(result: dict[str, Any]) -> str:
    """One row per open."""
    lines = [
        f"{result['articles']:,} articles, {result['mode']} mode, {result['data_dir']}; "
        f"{result['deletes']:,} deletions took {result['deleting_s']:.2f} s",
        "",
        "open                                   seconds",
        "-------------------------------------  -------",
    ]
    for row in result["opens"]:
        lines.append(f"{row['how']:<37}  {row['seconds']:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure one data directory; print the table (and write JSON with ``--out``)."""
    parser = store_parser(__doc__)
    parser.add_argument("--deletes", type=int, default=100)
    arguments = parser.parse_args(argv)
    check_store(parser, arguments.data_dir)
    if arguments.deletes < 1:
        parser.error("--deletes must be at least 1")
    result = measure(arguments.data_dir, arguments.mode, arguments.deletes, arguments.model_cache)
    return report(format_table(result), result, arguments.out)


if __name__ == "__main__":
    raise SystemExit(main())
