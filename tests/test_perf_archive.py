"""The million-article archive of ``benchmarks/perf.py --stages archive``, made small."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import perf

WIRE = "وكالة الأنباء أعلنت اليوم افتتاح مشروع جديد في المدينة"
OTHER = "قال المتحدث باسم الوزارة إن الاجتماع سيعقد الأسبوع المقبل في العاصمة"


def _write(path: Path, records: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _archive(tmp_path: Path, count: int) -> list[dict[str, str]]:
    data = tmp_path / "data"
    long_text = "\n".join(f"{WIRE} {number}" for number in range(40))
    _write(
        data / "saudinewsnet" / "articles.jsonl.gz",
        [
            {"id": "snn-1", "source": "spa", "content": long_text, "title": "عنوان"},
            {"id": "snn-2", "source": "okaz", "content": long_text, "title": "عنوان"},
        ],
    )
    _write(
        data / "ant_multisource" / "articles.jsonl.gz",
        [{"docno": "AL-1", "src": "AL", "text": f"{OTHER}\n{WIRE}", "title": "خبر"}],
    )
    args = argparse.Namespace(data_dir=data)
    run = perf.Run(args=args, sizes=perf.Sizes(archive_docs=count), work=tmp_path)
    path = perf._archive_file(run, count)
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_the_archive_repeats_the_corpora_with_every_replica_new(tmp_path: Path) -> None:
    records = _archive(tmp_path, 8)
    assert [record["id"] for record in records] == [
        "snn-1~r0",
        "snn-2~r0",
        "AL-1~r0",
        "snn-1~r1",
        "snn-2~r1",
        "AL-1~r1",
        "snn-1~r2",
        "snn-2~r2",
    ]
    originals, first, second = records[0:3], records[3:6], records[6:8]
    # Replica 0 is the data as it is.
    assert originals[2]["text"] == f"{OTHER}\n{WIRE}"
    assert originals[0]["source"] == "spa"
    for copy, original in zip(first, originals, strict=True):
        # A replica keeps the line structure and the number of words ...
        assert copy["text"].count("\n") == original["text"].count("\n")
        assert len(copy["text"].split()) == len(original["text"].split())
        # ... but its words are others (the vocabulary is permuted within its bands).
        assert copy["text"] != original["text"]
    # Copies inside the data stay copies inside each replica; replicas differ.
    assert first[0]["text"] == first[1]["text"]
    assert second[0]["text"] == second[1]["text"]
    assert first[0]["text"] != second[0]["text"]


def test_the_archive_is_built_once(tmp_path: Path) -> None:
    first = _archive(tmp_path, 5)
    # Without the data, the cached file is what is used.
    for corpus in (tmp_path / "data").iterdir():
        for path in corpus.iterdir():
            path.unlink()
    run = perf.Run(
        args=argparse.Namespace(data_dir=tmp_path / "data"),
        sizes=perf.Sizes(archive_docs=5),
        work=tmp_path,
    )
    with gzip.open(perf._archive_file(run, 5), "rt", encoding="utf-8") as lines:
        assert [json.loads(line) for line in lines] == first
