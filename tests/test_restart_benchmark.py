"""benchmarks/restart.py on a small dedup-mode store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_dedup_store

from benchmarks import restart
from index.article import Article
from index.engine import Engine


def test_it_times_the_three_opens_of_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = small_dedup_store(tmp_path / "store", 20)
    out = tmp_path / "restart.json"
    arguments = [str(data_dir), "--mode", "dedup", "--deletes", "4", "--out", str(out)]
    assert restart.main(arguments) == 0
    result = json.loads(out.read_text())
    assert result["articles"] == 16
    how = [row["how"] for row in result["opens"]]
    assert how == ["from its snapshot", "its snapshot + 4 deletions", "rebuilt from the record"]
    logs = [" ".join(row["log"]) for row in result["opens"]]
    assert "(+0 rows from the record)" in logs[0]
    assert "4 deletions since snapshot" in logs[1] and "(+0 rows from the record)" in logs[1]
    assert "rebuilding indexes from the record" in logs[2]
    table = capsys.readouterr().out
    assert table.startswith("16 articles, dedup mode")
    assert len(table.strip().splitlines()) == 4 + 3
    # The snapshots are back where they were.
    assert len(list((data_dir / "snapshots").glob("generation-*/state.json"))) == 1
    assert not (data_dir / "snapshots.aside").exists()


def test_it_refuses_more_deletions_than_articles(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with Engine.open(data_dir, mode="dedup") as engine:
        engine.ingest(Article(id="only", text="a single article about nothing much " * 5))
    with pytest.raises(SystemExit, match="fewer than 2"):
        restart.main([str(data_dir), "--mode", "dedup", "--deletes", "2"])
