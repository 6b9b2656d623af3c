"""Record files: every format round-trips in chunks, bad lines are named, bad files refused."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.records import (
    BadRecord,
    FileFormat,
    InputUnreadableError,
    Item,
    OutputError,
    UnsupportedFormatError,
    open_reader,
    open_writer,
)

NAMES = ["a.jsonl", "a.jsonl.gz", "a.ndjson", "a.csv", "a.csv.gz", "a.parquet"]

RECORDS: list[dict[str, Any]] = [
    {"id": f"r{number}", "text": f'نص الخبر رقم {number}, with "quotes"\nand a newline'}
    for number in range(10)
]


def _read_all(path: Path, size: int = 4) -> list[Item]:
    with open_reader(path) as reader:
        return [item for chunk in reader.chunks(size) for item in chunk]


@pytest.mark.parametrize(
    ("name", "kind", "compressed"),
    [
        ("a.jsonl", "jsonl", False),
        ("a.JSONL.GZ", "jsonl", True),
        ("dump.2015.ndjson", "jsonl", False),
        ("a.csv", "csv", False),
        ("a.csv.gz", "csv", True),
        ("a.parquet", "parquet", False),
    ],
)
def test_the_format_comes_from_the_name(name: str, kind: str, compressed: bool) -> None:
    assert FileFormat.of(Path(name)) == FileFormat(kind, compressed)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a.txt", "a", "a.gz", "a.parquet.gz", "a.json"])
def test_unknown_extensions_are_refused_with_the_supported_list(name: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"\.jsonl, \.jsonl\.gz"):
        FileFormat.of(Path(name))


@pytest.mark.parametrize("name", NAMES)
def test_every_format_round_trips_in_chunks(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with open_writer(path) as writer:
        writer.write(RECORDS[:3])
        writer.write([])
        writer.write(RECORDS[3:])
    with open_reader(path) as reader:
        chunks = list(reader.chunks(4))
        assert reader.position() == reader.total
    assert [len(chunk) for chunk in chunks] == [4, 4, 2]
    assert [record for chunk in chunks for _line, record in chunk] == RECORDS


def test_jsonl_lines_are_numbered_blank_lines_skipped_and_bad_lines_named(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1}\n\n   \n{"id": \n[1, 2]\n{"id": 2}')
    items = _read_all(path)
    assert [line for line, _ in items] == [1, 4, 5, 6]
    assert items[0][1] == {"id": 1}
    assert isinstance(items[1][1], BadRecord) and items[1][1].reason.startswith("bad JSON")
    assert items[2][1] == BadRecord("the line is JSON but not an object")
    assert items[3][1] == {"id": 2}


def test_invalid_utf8_in_jsonl_is_a_bad_record_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "\xff\xfe"}\n{"text": "ok"}\n')
    items = _read_all(path)
    assert isinstance(items[0][1], BadRecord)
    assert items[1] == (2, {"text": "ok"})


def test_csv_lines_are_those_where_records_start(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('\ufeffid,text\nA,"two\nlines"\nB,one\n\nC,x,extra\nD\n', encoding="utf-8")
    items = _read_all(path)
    assert items[0] == (2, {"id": "A", "text": "two\nlines"})
    assert items[1] == (4, {"id": "B", "text": "one"})
    assert items[2] == (6, BadRecord("the row has 3 fields; the header has 2"))
    assert items[3] == (7, BadRecord("the row has 1 fields; the header has 2"))


def test_csv_fields_longer_than_the_csv_module_default_are_read(tmp_path: Path) -> None:
    body = "كلمة " * 100_000
    path = tmp_path / "long.csv"
    with open_writer(path) as writer:
        writer.write([{"id": "1", "text": body}])
    assert _read_all(path) == [(2, {"id": "1", "text": body})]


def test_csv_with_a_repeated_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text,id\n1,a,2\n")
    with pytest.raises(InputUnreadableError, match=r"repeats the columns \['id'\]"):
        open_reader(path)


def test_csv_that_is_not_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\n1," + "نص".encode("cp1256") + b"\n")
    with pytest.raises(InputUnreadableError, match="codec can't decode"):
        _read_all(path)


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputUnreadableError, match="No such file"):
        open_reader(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz"])
@pytest.mark.parametrize("block", [1, 2, 5, 64, 1 << 20])
def test_json_lines_read_in_any_block_size_give_the_same_items_and_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, block: int
) -> None:
    import service.records as records_module

    long = orjson.dumps({"id": "long", "text": "نص " * 400})
    payload = b"".join(
        [
            b'{"id": "a", "text": "one"}\n',
            b"\n",
            b"   \t \n",
            b'{"id": "b", "text": "two"}\r\n',
            b"not json\n",
            long + b"\n",
            b"[1, 2]\n",
            b'{"id": "c", "text": "last, no newline"}',
        ]
    )
    path = tmp_path / name
    path.write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    monkeypatch.setattr(records_module, "_READ_BLOCK", block)
    with open_reader(path) as reader:
        chunks = list(reader.chunks_with_lines(3))
    items = [item for chunk, _texts in chunks for item in chunk]
    texts = [text for _chunk, found in chunks for text in found or []]
    assert [line for line, _record in items] == [1, 4, 5, 6, 7, 8]
    assert items[0][1] == {"id": "a", "text": "one"} and items[1][1] == {"id": "b", "text": "two"}
    assert isinstance(items[2][1], BadRecord) and isinstance(items[4][1], BadRecord)
    assert items[3][1] == orjson.loads(long)
    assert texts == [
        b'{"id": "a", "text": "one"}\n',
        b'{"id": "b", "text": "two"}\r\n',
        b"not json\n",
        long + b"\n",
        b"[1, 2]\n",
        b'{"id": "c", "text": "last, no newline"}',
    ]


def test_a_truncated_gzip_file_is_unreadable_when_reading_reaches_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    payload = b"".join(orjson.dumps({"id": str(n), "text": "x" * 50}) + b"\n" for n in range(2000))
    whole = gzip.compress(payload)
    path.write_bytes(whole[: len(whole) // 2])
    with open_reader(path) as reader, pytest.raises(InputUnreadableError):
        list(reader.chunks(100))


@pytest.mark.parametrize("name", ["in.jsonl.gz", "in.csv.gz"])
def test_a_gzip_file_with_a_damaged_deflate_stream_is_unreadable(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    header = b"id,text\n" if name.endswith(".csv.gz") else b""
    rows = b"".join(
        (f"{n},{'x' * 50}".encode() if header else orjson.dumps({"id": str(n), "text": "y"}))
        + b"\n"
        for n in range(2000)
    )
    whole = bytearray(gzip.compress(header + rows))
    whole[20:60] = b"\xff" * 40  # past the 10-byte header: inside the first deflate block
    path.write_bytes(bytes(whole))
    with pytest.raises(InputUnreadableError, match="cannot read"), open_reader(path) as reader:
        list(reader.chunks(100))


def test_gzip_output_reads_back_with_the_standard_library(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    records = [{"id": str(n), "text": "نص " * n} for n in range(300)]
    with open_writer(path) as writer:
        writer.write(records)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert [orjson.loads(line) for line in lines] == records


def test_a_corrupt_parquet_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputUnreadableError):
        open_reader(path)


def test_parquet_rows_are_numbered_and_progress_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(5)), "text": list("abcde")}), path)
    with open_reader(path) as reader:
        assert (reader.unit, reader.total, reader.columns) == ("records", 5, ["id", "text"])
        chunks = list(reader.chunks(2))
        assert reader.position() == 5
    assert [[line for line, _ in chunk] for chunk in chunks] == [[1, 2], [3, 4], [5]]
    assert chunks[0][0][1] == {"id": 0, "text": "a"}


def test_parquet_output_keeps_the_input_schema_and_makes_string_fields_strings(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "score": [0.5, 1.5]}), source)
    target = tmp_path / "out.parquet"
    with (
        open_reader(source) as reader,
        open_writer(target, schema=reader.schema, string_fields=["id", "status"]) as writer,
    ):
        for chunk in reader.chunks(10):
            records = [record for _line, record in chunk if isinstance(record, dict)]
            for record in records:
                record["id"] = str(record["id"])
                record["status"] = "new_story"
            writer.write(records)
    table = pq.read_table(target)
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("score").type == pa.float64()
    assert table.to_pylist() == [
        {"id": "1", "score": 0.5, "status": "new_story"},
        {"id": "2", "score": 1.5, "status": "new_story"},
    ]


def test_parquet_schema_inferred_from_records_turns_null_columns_into_strings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.parquet"
    with open_writer(path, string_fields=["cluster_id"]) as writer:
        writer.write([{"id": "a", "author": None, "cluster_id": "s1"}])
        writer.write([{"id": "b", "author": "someone", "cluster_id": "s2"}])
    assert pq.read_table(path).to_pylist() == [
        {"id": "a", "author": None, "cluster_id": "s1"},
        {"id": "b", "author": "someone", "cluster_id": "s2"},
    ]


def test_records_that_do_not_fit_the_parquet_schema_are_an_output_error(tmp_path: Path) -> None:
    with open_writer(tmp_path / "out.parquet") as writer:
        writer.write([{"id": "a", "count": 1}])
        with pytest.raises(OutputError, match=r"write \.jsonl instead"):
            writer.write([{"id": "b", "count": "many"}])


def test_an_empty_parquet_output_is_still_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    with open_writer(path, string_fields=["id"]) as writer:
        writer.write([])
    assert pq.read_table(path).num_rows == 0


def test_json_output_writes_parquet_bytes_and_decimals(tmp_path: Path) -> None:
    from decimal import Decimal

    path = tmp_path / "out.jsonl"
    with open_writer(path) as writer:
        writer.write([{"blob": b"\x00\x01", "price": Decimal("1.10")}])
    assert orjson.loads(path.read_bytes()) == {"blob": "AAE=", "price": "1.10"}


def test_csv_output_writes_containers_as_json_and_warns_once_about_dropped_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.csv"
    with caplog.at_level(logging.WARNING), open_writer(path) as writer:
        writer.write([{"id": "a", "tags": ["x", "y"], "note": None}])
        writer.write([{"id": "b", "later": 1}, {"id": "c", "later": 2}])
    assert path.read_text().splitlines() == ["id,tags,note", 'a,"[""x"",""y""]",', "b,,", "c,,"]
    assert [record.getMessage() for record in caplog.records] == [
        "some records have fields outside the CSV columns ['id', 'tags', 'note']; "
        "those fields are dropped"
    ]


text_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(text_values, min_size=1, max_size=12),
    size=st.integers(min_value=1, max_value=5),
    name=st.sampled_from(["r.jsonl", "r.jsonl.gz", "r.csv", "r.parquet"]),
)
def test_any_text_round_trips_through_every_format(
    tmp_path: Path, texts: list[str], size: int, name: str
) -> None:
    records = [{"id": str(number), "text": text} for number, text in enumerate(texts)]
    path = tmp_path / name
    with open_writer(path) as writer:
        for start in range(0, len(records), size):
            writer.write(records[start : start + size])
    assert [record for _line, record in _read_all(path, size)] == records


@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000\u200bab")))
def test_is_blank_is_not_strip(text: str) -> None:
    from index.article import is_blank

    assert is_blank(text) == (not text.strip())
