"""benchmarks/snapshot_lock.py on a small dedup-mode store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_dedup_store

from benchmarks import snapshot_lock


def test_it_times_each_snapshot_of_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = small_dedup_store(tmp_path / "store", 20)
    out = tmp_path / "lock.json"
    arguments = [str(data_dir), "--mode", "dedup", "--repeat", "3", "--out", str(out)]
    assert snapshot_lock.main(arguments) == 0
    result = json.loads(out.read_text())
    assert result["articles"] == 20
    assert len(result["snapshots"]) == 3
    assert all(s["locked_s"] > 0 and s["written_s"] > 0 for s in result["snapshots"])
    table = capsys.readouterr().out
    assert table.startswith("20 articles, dedup mode")
    assert len(table.strip().splitlines()) == 4 + 3
    # Each snapshot replaced the one before it.
    assert len(list((data_dir / "snapshots").glob("generation-*/state.json"))) == 1


def test_a_directory_without_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        snapshot_lock.main([str(tmp_path), "--mode", "dedup"])
