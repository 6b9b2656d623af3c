"""index.durable: a file replaced whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.durable import fsync_directory, replacing


def test_a_replacement_takes_the_place_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), replacing(path) as file:
        file.write(b"half of the n")
        raise OSError(28, "disk full")
    assert path.read_bytes() == b"old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"]  # no temporary left
    with replacing(path) as file:
        file.write(b"new")
        assert path.read_bytes() == b"old"  # not before the block ends
    assert path.read_bytes() == b"new"
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"]
    fsync_directory(tmp_path)
    fsync_directory(tmp_path / "missing")  # a directory that cannot be opened is skipped
