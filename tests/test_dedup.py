"""``samestory dedup``: every format, both modes, --keep, rejects, --strict, resume after a
killed run, and batch verdicts equal to the service's for the same articles in the same order.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import engine_embedder, run_python
from fastapi.testclient import TestClient

from index.article import Article, parse_timestamp
from index.engine import Engine
from service import dedup as dedup_module
from service.dedup import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    DedupOptions,
    Summary,
    configure_parser,
    deduplicate,
    main,
    run,
)
from service.records import BadRecord, InputUnreadableError, open_reader, open_writer
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ANNOTATION = ("status", "duplicate_of", "cluster_id", "canonical_id")
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _sentence(rng: random.Random, vocabulary: list[str]) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(14, 22))).capitalize() + "."


def _body(rng: random.Random, vocabulary: list[str]) -> str:
    return "\n\n".join(
        " ".join(_sentence(rng, vocabulary) for _ in range(3)) for _ in range(rng.randint(2, 3))
    )


def corpus(originals: int = 24, seed: int = 11) -> list[dict[str, Any]]:
    """Synthetic articles (no real text): originals, exact copies and near copies, in a
    fixed shuffled order with the copies after their originals."""
    rng = random.Random(seed)
    vocabulary = sorted(
        {
            "".join(rng.choice("abcdefghiklmnoprstuvwyz") for _ in range(rng.randint(3, 9)))
            for _ in range(3000)
        }
    )
    records: list[dict[str, Any]] = []
    for number in range(originals):
        records.append(
            {
                "id": f"a{number:03d}",
                "text": _body(rng, vocabulary),
                "title": f"Headline {number}",
                "published_at": (START + timedelta(hours=number)).isoformat(),
                "source": f"outlet{number % 3}",
                "url": f"https://example.org/{number}",
            }
        )
    copies: list[dict[str, Any]] = []
    for number in range(0, originals, 3):
        original = records[number]
        copies.append(
            {
                **original,
                "id": f"e{number:03d}",
                "source": "mirror",
                "text": original["text"].upper(),
            }
        )
        near = records[number + 1]
        copies.append(
            {
                **near,
                "id": f"n{number + 1:03d}",
                "source": "mirror",
                "text": near["text"] + "\n\n" + _sentence(rng, vocabulary),
            }
        )
    rng.shuffle(copies)
    return records + copies


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    with open_writer(path) as writer:
        writer.write([dict(record) for record in records])
    return path


def read(path: Path) -> list[dict[str, Any]]:
    with open_reader(path) as reader:
        items = [record for chunk in reader.chunks(100) for _line, record in chunk]
    assert not any(isinstance(item, BadRecord) for item in items)
    return items  # type: ignore[return-value]


def annotations(records: list[dict[str, Any]], id_field: str = "id") -> dict[str, tuple[Any, ...]]:
    return {
        str(record[id_field]): tuple(record[name] or None for name in ANNOTATION)
        for record in records
    }


def _article_of(record: dict[str, Any]) -> Article:
    """The article the service gets for a corpus record."""
    return Article(
        id=record["id"],
        text=record["text"],
        title=record.get("title"),
        url=record.get("url"),
        source=record.get("source"),
        published_at=parse_timestamp(record.get("published_at")),
    )


def service_verdicts(engine: Engine, records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What the service answers one article at a time: status, duplicate_of and cluster at
    ingest, canonical as stored once all are in."""
    ingested = [engine.ingest(_article_of(record)) for record in records]
    return {
        verdict.id: (
            verdict.status,
            verdict.duplicate_of,
            verdict.cluster.id,
            engine.get(verdict.id).verdict.cluster.canonical.id,
        )
        for verdict in ingested
    }


@pytest.fixture(scope="module")
def articles() -> list[dict[str, Any]]:
    return corpus()


@pytest.fixture(scope="module")
def expected(
    articles: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, ...]]:
    with Engine.open(tmp_path_factory.mktemp("reference"), mode="dedup") as engine:
        return service_verdicts(engine, articles)


def options(source: Path, output: Path, **changes: Any) -> DedupOptions:
    return DedupOptions(input=source, output=output, **{"mode": "dedup", **changes})


def test_the_corpus_exercises_every_duplicate_verdict(expected: dict[str, tuple[Any, ...]]) -> None:
    statuses = [status for status, *_ in expected.values()]
    assert statuses.count("exact_duplicate") == 8
    assert statuses.count("near_duplicate") == 8
    assert expected["e003"][:3] == ("exact_duplicate", "a003", expected["a003"][2])
    assert expected["n004"][:3] == ("near_duplicate", "a004", expected["a004"][2])


@pytest.mark.parametrize(
    ("source_name", "output_name"),
    [
        ("in.jsonl", "out.jsonl"),
        ("in.jsonl.gz", "out.jsonl.gz"),
        ("in.csv", "out.csv"),
        ("in.csv.gz", "out.jsonl"),
        ("in.parquet", "out.parquet"),
        ("in.jsonl", "out.parquet"),
        ("in.parquet", "out.csv"),
    ],
)
def test_every_format_is_annotated_like_the_service(
    tmp_path: Path,
    articles: list[dict[str, Any]],
    expected: dict[str, tuple[Any, ...]],
    source_name: str,
    output_name: str,
) -> None:
    source = write(tmp_path / source_name, articles)
    summary = deduplicate(options(source, tmp_path / output_name, batch_size=7))
    output = read(tmp_path / output_name)
    assert [record["id"] for record in output] == [record["id"] for record in articles]
    assert annotations(output) == expected
    for written, given in zip(output, articles, strict=True):
        assert {name: written[name] for name in given} == given
    assert (summary.read, summary.written, summary.rejected) == (40, 40, 0)
    assert summary.statuses == {
        "new_story": 24,
        "same_story": 0,
        "near_duplicate": 8,
        "exact_duplicate": 8,
    }
    assert summary.stories == 24
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".samestory-*"))


def test_json_lines_output_keeps_each_line_as_read_and_rewrites_only_what_it_must(
    tmp_path: Path, articles: list[dict[str, Any]], expected: dict[str, tuple[Any, ...]]
) -> None:
    # A line whose record has none of the added fields and a string id (or none) is
    # written as read with the added fields appended; any other record is written anew.
    first, second, third, fourth, fifth = (dict(record) for record in articles[:5])
    escaped = orjson.dumps(first).decode().replace('"text"', '"\\u0074ext"')
    lines = [
        ("  " + escaped.replace(",", ",  ") + "\r\n").encode(),  # spacing, escapes, CRLF
        orjson.dumps({**second, "id": 7, "score": 1.50}).replace(b"1.5", b"1.50") + b"\n",
        orjson.dumps({"status": "old", **third}) + b"\n",
        orjson.dumps({key: value for key, value in fourth.items() if key != "id"}) + b"\n",
        orjson.dumps({**fifth, "id": ""}) + b"\n",
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    deduplicate(options(source, tmp_path / "out.jsonl"))
    written = (tmp_path / "out.jsonl").read_bytes().split(b"\n")
    assert written[-1] == b"" and len(written) == 6
    records = [orjson.loads(line) for line in written[:-1]]
    # Kept as read: the first line's bytes up to its closing brace, then the added fields.
    kept = lines[0].rstrip()[:-1]
    assert written[0].startswith(kept + b',"status":"new_story"')
    assert {name: records[0][name] for name in first} == first
    assert annotations(records[:1]) == {first["id"]: expected[first["id"]]}
    # Written anew: an integer id becomes the string id used, in its place.
    assert list(records[1])[:2] == ["id", "text"] and records[1]["id"] == "7"
    assert records[1]["score"] == 1.5
    # A field to add that the record holds is replaced in its place, not written twice.
    assert written[2].count(b'"status"') == 1 and next(iter(records[2])) == "status"
    assert records[2]["status"] == "new_story" and records[2]["id"] == third["id"]
    # A missing or empty id gets the generated one, added once.
    assert records[3]["id"] == "in.jsonl:4" and written[3].count(b'"id"') == 1
    assert records[4]["id"] == "in.jsonl:5" and written[4].count(b'"id"') == 1
    assert [list(record)[-4:] for index, record in enumerate(records) if index != 2] == [
        list(ANNOTATION)
    ] * 4
    for record in records:
        assert record["cluster_id"] and record["canonical_id"]


def test_batch_verdicts_equal_the_rest_service_one_article_at_a_time(
    tmp_path: Path, articles: list[dict[str, Any]], dedup_client: TestClient
) -> None:
    served = {}
    for record in articles:
        response = dedup_client.post("/v1/articles", json=record)
        assert response.status_code in (200, 201), response.text
        verdict = response.json()
        served[verdict["id"]] = (
            verdict["status"],
            verdict["duplicate_of"],
            verdict["cluster"]["id"],
            verdict["cluster"]["canonical"]["id"],
        )
    source = write(tmp_path / "in.jsonl", articles)
    deduplicate(options(source, tmp_path / "out.jsonl"))
    assert annotations(read(tmp_path / "out.jsonl")) == served


@pytest.mark.parametrize(("keep", "written"), [("all", 40), ("first", 24), ("canonical", 24)])
def test_keep_writes_every_record_or_one_per_duplicate_group(
    tmp_path: Path,
    articles: list[dict[str, Any]],
    expected: dict[str, tuple[Any, ...]],
    keep: str,
    written: int,
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    summary = deduplicate(options(source, tmp_path / "out.jsonl", keep=keep))
    output = read(tmp_path / "out.jsonl")
    assert summary.written == len(output) == written
    if keep != "all":
        assert [record["id"] for record in output] == [
            record["id"] for record in articles if expected[record["id"]][0] == "new_story"
        ]
        assert all(record["canonical_id"] == record["id"] for record in output)


def test_the_chunk_size_does_not_change_the_output(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    outputs = []
    for size in (1, 6, 512):
        target = tmp_path / f"out{size}.jsonl"
        deduplicate(options(source, target, batch_size=size))
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_worker_processes_do_not_change_the_output(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = _bad_input(tmp_path, articles)
    outputs = []
    for workers in (0, 1, 2):
        target = tmp_path / f"out{workers}.jsonl"
        summary = deduplicate(options(source, target, batch_size=3, workers=workers))
        rejects = (tmp_path / f"out{workers}.jsonl.rejects.jsonl").read_bytes()
        outputs.append((target.read_bytes(), rejects, summary.statuses, summary.rejected))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][3] > 0


def test_articles_the_ingesting_process_prepares_itself_change_no_output(
    tmp_path: Path, articles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # While it waits for the workers, the ingesting process keeps the last articles of
    # each chunk to prepare itself; here it always keeps as many as it may (half).
    source = _bad_input(tmp_path, articles)
    alone = tmp_path / "alone.jsonl"
    deduplicate(options(source, alone, batch_size=8, workers=0))

    def always_waited(balance: Any, waiting: bool) -> None:
        balance.own = balance._most

    monkeypatch.setattr(dedup_module._Balance, "waited", always_waited)
    shared = tmp_path / "shared.jsonl"
    deduplicate(options(source, shared, batch_size=8, workers=1))
    assert shared.read_bytes() == alone.read_bytes()
    assert (tmp_path / "shared.jsonl.rejects.jsonl").read_bytes() == (
        tmp_path / "alone.jsonl.rejects.jsonl"
    ).read_bytes()


def test_a_run_sets_the_garbage_collector_back_as_it_found_it(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    # A run freezes what is alive and collects less often; a caller's process must not
    # keep that, nor when the run fails.
    source = write(tmp_path / "in.jsonl", articles)
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    deduplicate(options(source, tmp_path / "out.jsonl", workers=0))
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
    with pytest.raises(InputUnreadableError):
        deduplicate(options(tmp_path / "missing.jsonl", tmp_path / "out2.jsonl", workers=0))
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)


def test_workers_start_afresh_when_another_thread_runs(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    # Forking beside a running thread is unsafe; the workers are spawned instead.
    import threading

    source = write(tmp_path / "in.jsonl", articles)
    deduplicate(options(source, tmp_path / "alone.jsonl", batch_size=5, workers=0))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        deduplicate(options(source, tmp_path / "beside.jsonl", batch_size=5, workers=1))
    finally:
        stop.set()
        other.join()
    assert (tmp_path / "beside.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()


def _bad_input(tmp_path: Path, articles: list[dict[str, Any]]) -> Path:
    good = [orjson.dumps(record) for record in articles[:6]]
    lines = [
        good[0],
        b'{"id": "broken", "text": ',
        good[1],
        b'["not", "an", "object"]',
        orjson.dumps({"id": "empty", "text": "   "}),
        good[2],
        orjson.dumps({"id": "no-text", "title": "only a title"}),
        orjson.dumps({**articles[6], "published_at": "last tuesday"}),
        orjson.dumps({"id": "nav", "text": "Skip to content\n\nScroll to Top"}),
        good[3],
        orjson.dumps({**articles[7], "id": articles[0]["id"]}),
        orjson.dumps({**articles[8], "id": None}),
        orjson.dumps({**articles[9], "id": 12345}),
        orjson.dumps({"id": {"nested": 1}, "text": articles[10]["text"]}),
        good[4],
        good[5],
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# In chunks of 16 all lines are one engine batch: the boilerplate-only record is split out
# by the id its error names, the conflicting one (its id twice in the batch) by halving.
@pytest.mark.parametrize("batch_size", [4, 16])
def test_bad_records_go_to_the_rejects_file_and_the_run_goes_on(
    tmp_path: Path, articles: list[dict[str, Any]], batch_size: int
) -> None:
    source = _bad_input(tmp_path, articles)
    summary = deduplicate(options(source, tmp_path / "out.jsonl", batch_size=batch_size))
    # Within a chunk, records refused when read are listed before those the engine refuses.
    rejects = sorted(
        (
            orjson.loads(line)
            for line in (tmp_path / "out.jsonl.rejects.jsonl").read_bytes().splitlines()
        ),
        key=lambda reject: int(reject["line"]),
    )
    assert [(reject["line"], reject["id"]) for reject in rejects] == [
        (2, None),
        (4, None),
        (5, "empty"),
        (7, "no-text"),
        (8, articles[6]["id"]),
        (9, "nav"),
        (11, articles[0]["id"]),
        (14, None),
    ]
    reasons = [reject["reason"] for reject in rejects]
    assert reasons[0].startswith("bad JSON: ")
    assert reasons[1] == "the line is JSON but not an object"
    assert reasons[2] == "no usable text: field 'text' is empty or only whitespace"
    assert reasons[3] == "no usable text: field 'text' is missing"
    assert "'last tuesday' is not an RFC 3339 timestamp" in reasons[4]
    assert "nothing is left after removing boilerplate" in reasons[5]
    assert "already stored with a different text" in reasons[6]
    assert reasons[7] == "id is a dict; ids must be strings or integers"
    output = read(tmp_path / "out.jsonl")
    assert [record["id"] for record in output] == [
        *(record["id"] for record in articles[:4]),
        "in.jsonl:12",
        "12345",
        articles[4]["id"],
        articles[5]["id"],
    ]
    assert (summary.read, summary.written, summary.rejected) == (16, 8, 8)


@pytest.mark.parametrize("pairs_name", ["pairs.csv", "pairs.jsonl", "pairs.parquet"])
def test_pairs_file_lists_every_verified_copy_like_the_service(
    tmp_path: Path, articles: list[dict[str, Any]], pairs_name: str
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    target = tmp_path / pairs_name
    summary = deduplicate(options(source, tmp_path / "out.jsonl", batch_size=5, pairs=target))
    with Engine.open(tmp_path / "reference", mode="dedup") as engine:
        verdicts = [engine.ingest(_article_of(record)) for record in articles]
    wanted = [
        (verdict.id, listed.id, listed.jaccard, listed.containment)
        for verdict in verdicts
        for listed in verdict.copies
    ]
    written = [
        (record["id"], record["copy_of"], float(record["jaccard"]), float(record["containment"]))
        for record in read(target)
    ]
    # Each article's copies in arrival order of the copy; every exact and near-duplicate
    # of the corpus has at least one.
    assert sorted(written) == sorted(wanted)
    assert summary.pairs == len(wanted) >= 16
    assert {pair[0] for pair in written} == {
        verdict.id for verdict in verdicts if verdict.status.endswith("duplicate")
    }
    assert not list(tmp_path.glob("*.partial"))


def test_pairs_file_must_not_overwrite_the_input_or_the_output(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    for clash in (source, tmp_path / "out.jsonl"):
        code = run(
            _args(str(source), "-o", str(tmp_path / "out.jsonl"), "--pairs", str(clash)),
            stream=io.StringIO(),
        )
        assert code == EXIT_USAGE
    assert source.read_bytes() == write(tmp_path / "again.jsonl", articles).read_bytes()
    # A pairs file that cannot be written fails the run before it starts, and leaves nothing.
    stream = io.StringIO()
    nowhere = tmp_path / "missing" / "pairs.csv"
    code = run(
        _args(
            str(source), "-o", str(tmp_path / "o.jsonl"), "--mode", "dedup", "--pairs", str(nowhere)
        ),
        stream=stream,
    )
    assert code == EXIT_FAILED and "pairs.csv.partial" in stream.getvalue()
    assert not (tmp_path / "o.jsonl").exists() and not list(tmp_path.glob("*.partial"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_strict_stops_at_the_first_bad_record_with_exit_code_1(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = _bad_input(tmp_path, articles)
    target = tmp_path / "out.jsonl"
    stream = io.StringIO()
    code = run(_args(str(source), "-o", str(target), "--mode", "dedup", "--strict"), stream=stream)
    assert code == EXIT_FAILED
    assert not target.exists() and not list(tmp_path.glob("*.partial"))
    assert stream.getvalue().startswith("samestory dedup: line 2: bad JSON: ")
    assert "(stopped by --strict)" in stream.getvalue()
    rejects = (tmp_path / "out.jsonl.rejects.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["line"] for line in rejects] == [2]


def test_strict_also_stops_at_a_record_the_engine_refuses(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    lines = [orjson.dumps(articles[0]), orjson.dumps({"id": "nav", "text": "Skip to content"})]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines))
    stream = io.StringIO()
    code = run(
        _args(str(source), "-o", str(tmp_path / "o.jsonl"), "--mode", "dedup", "--strict"),
        stream=stream,
    )
    assert code == EXIT_FAILED
    assert "line 2: article 'nav': nothing is left after removing boilerplate" in stream.getvalue()


def test_a_run_prints_its_summary_table(tmp_path: Path, articles: list[dict[str, Any]]) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    stream = io.StringIO()
    code = run(
        _args(str(source), "-o", str(tmp_path / "o.jsonl"), "--mode", "dedup"), stream=stream
    )
    assert code == EXIT_OK
    table = stream.getvalue()
    for row in ("records read", "written", "rejected", "near_duplicate", "stories", "docs/s"):
        assert row in table
    assert re.search(r"\nexact_duplicate +8\n", table)
    quiet = io.StringIO()
    run(_args(str(source), "-o", str(tmp_path / "q.jsonl"), "--mode", "dedup", "-q"), stream=quiet)
    assert quiet.getvalue() == ""


def test_the_progress_bar_shows_rate_on_stderr(
    tmp_path: Path, articles: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    deduplicate(options(source, tmp_path / "o.jsonl", progress=True))
    err = capsys.readouterr().err
    assert "dedup" in err and "40 docs" in err and "docs/s" in err


def test_summary_table_lines_up() -> None:
    summary = Summary(read=31030, written=30659, rejected=371, stories=27580, seconds=5.0)
    lines = summary.table().splitlines()
    assert lines[0] == lines[-1] and set(lines[0]) == {"-"}
    assert lines[1] == "records read     31,030"
    assert lines[-2] == "docs/s            6,206"
    assert len({len(line) for line in lines}) == 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["missing.jsonl", "-o", "out.jsonl"], EXIT_UNREADABLE, "No such file"),
        (["in.jsonl", "-o", "out.txt"], EXIT_USAGE, "cannot tell the format"),
        (["in.jsonl", "-o", "in.jsonl"], EXIT_USAGE, "is the input"),
        (["in.xml", "-o", "out.jsonl"], EXIT_USAGE, "cannot tell the format"),
        (["cut.jsonl.gz", "-o", "out.jsonl"], EXIT_UNREADABLE, "cannot read"),
    ],
)
def test_exit_codes(
    tmp_path: Path, articles: list[dict[str, Any]], argv: list[str], code: int, message: str
) -> None:
    write(tmp_path / "in.jsonl", articles)
    (tmp_path / "in.xml").write_text("<a/>")
    whole = tmp_path / "whole.jsonl.gz"
    write(whole, articles * 20)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole.read_bytes()[:-200])
    paths = [str(tmp_path / arg) if not arg.startswith("-") else arg for arg in argv]
    stream = io.StringIO()
    assert run(_args(*paths, "--mode", "dedup"), stream=stream) == code
    assert stream.getvalue().startswith("samestory dedup: error: ")
    assert message in stream.getvalue()
    assert not (tmp_path / "out.jsonl").exists()


def test_invalid_settings_in_the_environment_are_a_usage_error(
    tmp_path: Path, articles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    monkeypatch.setenv("SAMESTORY_STORY_THRESHOLD", "7")
    stream = io.StringIO()
    assert run(_args(str(source), "-o", str(tmp_path / "o.jsonl")), stream=stream) == EXIT_USAGE
    assert "invalid SAMESTORY_* settings" in stream.getvalue()
    assert "story_threshold" in stream.getvalue()


def test_usage_errors_exit_with_2_and_help_documents_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["in.jsonl", "-o", "out.jsonl", "--keep", "some"])
    assert usage.value.code == EXIT_USAGE
    assert "invalid choice: 'some'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as help_:
        main(["--help"])
    assert help_.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "3  the input cannot be read" in text
    for flag in (
        "--id-field",
        "--text-field",
        "--title-field",
        "--date-field",
        "--url-field",
        "--source-field",
        "--keep",
        "--store",
        "--strict",
        "--quiet",
    ):
        assert flag in text


def test_field_flags_map_other_field_names(tmp_path: Path, articles: list[dict[str, Any]]) -> None:
    renamed = [
        {
            "key": record["id"],
            "content": record["text"],
            "headline": record["title"],
            "date": record["published_at"],
            "outlet": record["source"],
        }
        for record in articles
    ]
    source = write(tmp_path / "in.csv", renamed)
    stream = io.StringIO()
    code = run(
        _args(
            str(source),
            "-o",
            str(tmp_path / "out.csv"),
            "--mode",
            "dedup",
            "--id-field",
            "key",
            "--text-field",
            "content",
            "--title-field",
            "headline",
            "--date-field",
            "date",
            "--source-field",
            "outlet",
        ),
        stream=stream,
    )
    assert code == EXIT_OK, stream.getvalue()
    output = read(tmp_path / "out.csv")
    assert list(output[0]) == ["key", "content", "headline", "date", "outlet", *ANNOTATION]
    assert [record["status"] for record in output].count("exact_duplicate") == 8


def test_dedup_mode_imports_no_model_and_no_web_stack(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    script = (
        "import sys\n"
        "from service.dedup import main\n"
        f"code = main([{str(source)!r}, '-o', {str(tmp_path / 'o.jsonl')!r}, "
        "'--mode', 'dedup', '-q'])\n"
        "heavy = sorted({'torch', 'sentence_transformers', 'transformers', 'fastapi', 'uvicorn'}"
        " & set(sys.modules))\n"
        "print(code, heavy)\n"
    )
    assert run_python(script).strip() == "0 []"


def _stored_ids(store: Path) -> list[str]:
    with closing(sqlite3.connect(store / "samestory.sqlite3")) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM articles ORDER BY row")]


def test_a_killed_run_resumes_without_storing_or_writing_anything_twice(tmp_path: Path) -> None:
    records = corpus(originals=600, seed=5)
    source = write(tmp_path / "in.jsonl", records)
    store = tmp_path / "store"
    target = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "service.dedup",
        str(source),
        "-o",
        str(target),
        "--mode",
        "dedup",
        "--store",
        str(store),
        "-q",
    ]
    killed = subprocess.Popen([*command, "--batch-size", "3"], cwd=REPO)
    database = store / "samestory.sqlite3"
    deadline = time.monotonic() + 120
    stored = 0
    while stored < 60 and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.02)
        if database.exists():
            try:
                stored = len(_stored_ids(store))
            except sqlite3.OperationalError:
                stored = 0
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    before = _stored_ids(store)
    assert 0 < len(before) < len(records), "the run was not interrupted midway"
    assert not target.exists()

    resumed = subprocess.run(command[:-1], cwd=REPO, capture_output=True, text=True, check=False)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert re.search(rf"\nalready stored +{len(before):,}\n", resumed.stderr), resumed.stderr
    after = _stored_ids(store)
    assert after[: len(before)] == before
    assert sorted(after) == sorted(record["id"] for record in records)

    reference = tmp_path / "reference.jsonl"
    deduplicate(options(source, reference))
    assert target.read_bytes() == reference.read_bytes()


def test_a_rerun_on_a_finished_store_skips_every_record(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    source = write(tmp_path / "in.jsonl", articles)
    store = tmp_path / "store"
    first = deduplicate(options(source, tmp_path / "one.jsonl", store=store))
    again = deduplicate(options(source, tmp_path / "two.jsonl", store=store))
    assert (first.already_stored, again.already_stored) == (0, 40)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_only_a_kept_store_has_its_index_snapshots_written(
    tmp_path: Path, articles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary store is deleted at the end: snapshots of it would be written for nothing.
    written: list[Path] = []
    snapshot = Engine.snapshot

    def counted(engine: Engine) -> None:
        written.append(engine._snapshot_dir)
        snapshot(engine)

    monkeypatch.setattr(Engine, "snapshot", counted)
    source = write(tmp_path / "in.jsonl", articles)
    deduplicate(options(source, tmp_path / "temporary.jsonl", batch_size=4, workers=0))
    assert written == []
    store = tmp_path / "store"
    deduplicate(options(source, tmp_path / "kept.jsonl", batch_size=4, workers=0, store=store))
    assert written == [store / "snapshots"]
    assert len(list((store / "snapshots").glob("generation-*/state.json"))) == 1
    assert (tmp_path / "temporary.jsonl").read_bytes() == (tmp_path / "kept.jsonl").read_bytes()


def test_a_batch_store_seeds_the_live_service(
    tmp_path: Path, articles: list[dict[str, Any]]
) -> None:
    from service.app import create_app

    store = tmp_path / "store"
    source = write(tmp_path / "in.jsonl", articles[:24])
    deduplicate(options(source, tmp_path / "out.jsonl", store=store))
    batch = annotations(read(tmp_path / "out.jsonl"))
    settings = Settings(data_dir=store, mode="dedup", model_cache_dir=tmp_path / "models")  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = client.get(f"/v1/articles/{articles[3]['id']}").json()
        assert stored["verdict"]["cluster"]["id"] == batch[articles[3]["id"]][2]
        copy = client.post("/v1/articles", json={**articles[3], "id": "live-copy"}).json()
    assert (copy["status"], copy["duplicate_of"]) == ("exact_duplicate", "a003")
    assert copy["cluster"]["id"] == batch["a003"][2]


@pytest.mark.model
def test_stories_mode_equals_the_service_and_keeps_one_canonical_per_story(
    tmp_path: Path, default_model: Path
) -> None:
    records = _story_articles()
    settings = Settings(model_cache_dir=default_model.parent)  # type: ignore[call-arg]
    embedder = engine_embedder(default_model.parent)
    with Engine.open(tmp_path / "reference", embedder=embedder) as engine:
        served = service_verdicts(engine, records)
    source = write(tmp_path / "in.jsonl", records)
    summary = deduplicate(
        DedupOptions(input=source, output=tmp_path / "all.jsonl", batch_size=5), settings
    )
    assert annotations(read(tmp_path / "all.jsonl")) == served
    statuses = {status for status, *_ in served.values()}
    assert {"new_story", "same_story", "exact_duplicate"} <= statuses
    assert summary.stories == len({cluster for _s, _d, cluster, _c in served.values()})

    deduplicate(
        DedupOptions(input=source, output=tmp_path / "canonical.parquet", keep="canonical"),
        settings,
    )
    kept = read(tmp_path / "canonical.parquet")
    assert sorted(record["id"] for record in kept) == sorted(
        {canonical for _s, _d, _cluster, canonical in served.values()}
    )


def _story_articles() -> list[dict[str, Any]]:
    """Three stories told by several outlets in different words, and a copy of one."""
    stories = [
        [
            "Heavy rain caused severe flooding across the northern province on Tuesday, forcing "
            "thousands of residents to leave their homes as rivers burst their banks overnight. "
            "Emergency services rescued fourteen people from rooftops.",
            "Thousands fled their homes in the northern province after torrential rain on "
            "Tuesday made rivers overflow during the night. Rescue teams pulled fourteen people "
            "from the roofs of flooded houses, officials said.",
            "Floods hit the north of the country on Tuesday: overnight downpours pushed rivers "
            "over their banks, thousands of residents were evacuated and fourteen were rescued "
            "from rooftops by emergency crews.",
        ],
        [
            "The central bank raised its main interest rate by half a percentage point on "
            "Thursday to fight inflation, which reached its highest level in twelve years last "
            "month. The governor said further increases could follow.",
            "Fighting the fastest inflation in twelve years, the central bank lifted its key "
            "rate by fifty basis points on Thursday and its governor warned that more hikes "
            "may come in the months ahead.",
        ],
        [
            "The national football team won the regional championship final on Sunday, beating "
            "the hosts two goals to one after extra time in front of a crowd of sixty thousand. "
            "The winning goal came in the last minute.",
            "A last-minute goal in extra time gave the national team a two to one victory over "
            "the hosts in Sunday's regional championship final, played before sixty thousand "
            "spectators.",
        ],
    ]
    records: list[dict[str, Any]] = []
    for number, versions in enumerate(stories):
        for version, text in enumerate(versions):
            records.append(
                {
                    "id": f"story{number}-v{version}",
                    "text": text,
                    "title": None,
                    "published_at": (START + timedelta(days=number, hours=version)).isoformat(),
                }
            )
    records.append({**records[0], "id": "story0-copy"})
    return records


def test_default_chunk_is_larger_for_the_model_on_a_gpu() -> None:
    from service.dedup import BATCH_SIZE, GPU_BATCH_SIZE, default_batch_size

    assert default_batch_size("stories", "cuda") == GPU_BATCH_SIZE > BATCH_SIZE
    assert default_batch_size("stories", "cuda:1") == GPU_BATCH_SIZE
    assert default_batch_size("stories", "cpu") == BATCH_SIZE
    assert default_batch_size("dedup", "cuda") == BATCH_SIZE


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 2), (3, 3), (16, 3)])
def test_default_workers_are_one_per_cpu_none_on_one_cpu(
    cpus: int, workers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    source = tmp_path / "in.jsonl"
    assert dedup_module._worker_count(options(source, tmp_path / "out.jsonl")) == workers
    assert dedup_module._worker_count(options(source, tmp_path / "o.jsonl", workers=1)) == 1


_KERNELS_AFTER_THE_POOL_STARTS = """
import sys
from pathlib import Path

from index.minhash import _signature_kernel
from index.params import Parameters
from index.shingles import _shingle_many
from index.text import _fold_many_kernel
from service.dedup import DedupOptions, _preparing_pool

options = DedupOptions(Path("in.jsonl"), Path("out.jsonl"), mode="dedup", workers=int(sys.argv[1]))
with _preparing_pool(options, Parameters()) as pool:
    kernels = (_signature_kernel, _shingle_many, _fold_many_kernel)
    print(pool is not None, *(len(kernel.signatures) for kernel in kernels))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the workers fork on Linux")
def test_the_workers_fork_with_the_preparing_kernels_loaded() -> None:
    # A fresh interpreter: this one's tests may have loaded the kernels already.
    def run(workers: int) -> list[str]:
        return run_python(_KERNELS_AFTER_THE_POOL_STARTS, str(workers)).split()

    # Loaded before forking, so each worker inherits them (its first chunk loads nothing)...
    assert run(1) == ["True", "1", "1", "1"]
    # ... and only then: without workers, this process loads them when it first prepares.
    assert run(0) == ["False", "0", "0", "0"]
