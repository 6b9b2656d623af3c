"""benchmarks/vector_rebuild.py on a small index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import vector_rebuild


def test_it_times_searches_through_a_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rebuild.json"
    arguments = ["--vectors", "3000", "--dimension", "16", "--exact-limit", "500"]
    assert vector_rebuild.main([*arguments, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["approximate"] and result["tombstones_after"] == 0
    for phase in ("conversion", "rebuild"):
        assert result[phase]["searches"] > 0
        assert 0 <= result[phase]["blocked_s"] <= result[phase]["done_after_s"]
    table = capsys.readouterr().out
    assert table.startswith("3,000 vectors of dimension 16")
    lines = table.strip().splitlines()
    assert len(lines) == 6
    assert lines[4].startswith("add past 500") and lines[5].startswith("removal past a fifth")
    assert len(result["snapshot_image_s"]) == 3


def test_an_index_that_stays_flat_is_refused() -> None:
    with pytest.raises(SystemExit):
        vector_rebuild.main(["--vectors", "1000", "--exact-limit", "5000"])
