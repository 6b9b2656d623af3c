"""What the small benchmark commands share: their store arguments and their output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.perf import DEFAULT_MODEL_CACHE
from index.engine import STORE_FILE


def store_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser for a command over one data directory: ``DATA_DIR``, ``--mode``,
    ``--model-cache`` and ``--out``; described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--mode", choices=["stories", "dedup"], required=True)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--out", type=Path)
    return parser


def check_store(parser: argparse.ArgumentParser, data_dir: Path) -> None:
    """Stop with a usage error unless ``data_dir`` holds a samestory store."""
    if not (data_dir / STORE_FILE).is_file():
        parser.error(f"{data_dir} holds no samestory store")


def report(table: str, result: dict[str, Any], out: Path | None) -> int:
    """Print ``table``, write ``result`` as JSON to ``out`` if given; the exit status."""
    sys.stdout.write(table + "\n")
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
