"""End to end: a real ``samestory serve`` process on loopback, driven over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

SAMESTORY = shutil.which("samestory", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(
    SAMESTORY is None, reason="the samestory console script is not installed"
)

ORIGINAL = (
    "أعلنت وزارة النقل اليوم افتتاح خط القطار السريع الجديد بين المدينتين، ويقطع القطار "
    "المسافة في ساعة واحدة بدلاً من ثلاث ساعات، وسيبدأ تشغيله للركاب الأسبوع المقبل."
)
COPY = ORIGINAL + " وقال الوزير إن التذاكر متاحة عبر الإنترنت."
OTHER = (
    "The museum of modern art reopened its east wing on Sunday after two years of "
    "renovation, showing a collection of paintings donated by a private collector."
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(data_dir: Path, model_cache: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    assert SAMESTORY is not None
    port = free_port()
    env = {
        **os.environ,
        "SAMESTORY_MODEL_CACHE_DIR": str(model_cache),
        "SAMESTORY_SYNCHRONOUS": "normal",
    }
    process = subprocess.Popen(
        [SAMESTORY, "serve", "--port", str(port), "--data-dir", str(data_dir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen[str], base: str, timeout: float = 300.0) -> list[int]:
    """Poll until ready; returns the /healthz statuses seen on the way."""
    health: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{output_of(process)}"
        try:
            health.append(httpx.get(f"{base}/healthz", timeout=5).status_code)
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not get ready in time")


def output_of(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.kill()
    out, _ = process.communicate(timeout=30)
    return out


@pytest.fixture
def server(
    tmp_path: Path, default_model: Path
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    data_dir = tmp_path / "data"
    process, base = serve(data_dir, default_model.parent)
    try:
        yield process, base, data_dir
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


@pytest.mark.model
@pytest.mark.slow
def test_serve_answers_and_shuts_down_cleanly(
    server: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base, data_dir = server
    health = wait_ready(process, base)
    assert health and set(health) == {200}

    with httpx.Client(base_url=base, timeout=60) as client:
        first = client.post(
            "/v1/articles",
            json={"id": "rail-1", "text": ORIGINAL, "published_at": "2025-02-01T08:00:00Z"},
        )
        other = client.post("/v1/articles", json={"id": "museum", "text": OTHER})
        copy = client.post(
            "/v1/articles/batch",
            json={"articles": [{"id": "rail-2", "text": COPY, "source": "copy.example"}]},
        )
        match = client.post("/v1/match", json={"id": "probe", "text": COPY})
        cluster_id = first.json()["cluster"]["id"]
        cluster = client.get(f"/v1/clusters/{cluster_id}")
        missing = client.get("/v1/articles/none")
        metrics = client.get("/metrics")

    assert first.status_code == 200 and first.json()["status"] == "new_story"
    assert other.json()["status"] == "new_story"
    assert other.json()["cluster"]["id"] != cluster_id
    (copied,) = copy.json()["results"]
    assert copied["status"] == "near_duplicate"
    assert copied["duplicate_of"] == "rail-1"
    assert match.json()["stored"] is False
    assert match.json()["cluster"]["id"] == cluster_id
    assert cluster.json()["size"] == 2
    assert {member["id"] for member in cluster.json()["members"]} == {"rail-1", "rail-2"}
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "samestory_articles_stored 3.0" in metrics.text

    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    log = output_of(process)
    assert "Application shutdown complete" in log
    assert "engine closed" in log
    assert "Traceback" not in log
    # Nothing misleading at start: no model default-prompt warning, no FAISS probe failures.
    assert " WARNING " not in log, log
    assert "Could not load library" not in log, log
    assert len(list((data_dir / "snapshots").glob("generation-*/state.json"))) == 1
    assert (data_dir / "samestory.sqlite3").is_file()


@pytest.mark.slow
def test_serve_exits_when_the_engine_cannot_load(tmp_path: Path) -> None:
    process, _base = serve(
        tmp_path / "data", tmp_path / "models", "--model", str(tmp_path / "none")
    )

    assert process.wait(timeout=120) == 1
    out = output_of(process)
    assert "samestory: error: the engine failed to load" in out
    assert "does not exist" in out


# -- a crash under concurrent load ---------------------------------------------------------

_WORDS = (
    "الوزارة المدينة القطار المطار الميناء الحكومة المجلس الشركة المستشفى الجامعة "
    "أعلنت افتتحت قررت ناقشت أطلقت رفضت وافقت بدأت أكملت أجلت "
    "مشروع خطة اتفاق مؤتمر برنامج مبنى طريق جسر مصنع معرض "
    "الجديد الكبير الثاني الدولي الوطني الشمالي الجنوبي السريع الأول الأخير"
)


def _story_texts(count: int, seed: int) -> list[str]:
    """Distinct synthetic reports: long enough to shingle, unrelated to each other."""
    import random

    rng = random.Random(seed)
    words = _WORDS.split()
    return [
        " ".join(
            " ".join(rng.choice(words) for _ in range(12)) + f" {story} {sentence}."
            for sentence in range(6)
        )
        for story in range(count)
    ]


@dataclass
class _LoadLog:
    """What one load thread saw: the acknowledged state of its ids."""

    present: dict[str, str] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  # in flight when the server went away
    failure: str | None = None


def _load(base: str, owned: list[dict[str, str]], seed: int, log: _LoadLog) -> None:
    """Ingest, delete and match this thread's own articles until the server goes away.

    Each id belongs to one thread, so the order of its acknowledgements is the order the
    server applied them in.
    """
    import random

    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        while True:
            article = rng.choice(owned)
            key = article["id"]
            try:
                if key in log.present and rng.random() < 0.3:
                    response = client.delete(f"/v1/articles/{key}")
                    assert response.status_code == 204, response.text
                    log.present.pop(key)
                    log.absent.add(key)
                elif rng.random() < 0.2:
                    response = client.post("/v1/match", json=article)
                    assert response.status_code == 200, response.text
                else:
                    response = client.post("/v1/articles", json=article)
                    assert response.status_code == 200, response.text
                    log.present[key] = article["text"]
                    log.absent.discard(key)
            except httpx.TransportError:
                log.unknown.add(key)
                return
            except AssertionError as failure:
                log.failure = str(failure)
                return


@pytest.mark.model
@pytest.mark.slow
def test_a_kill_under_concurrent_load_loses_no_acknowledged_write(
    server: tuple[subprocess.Popen[str], str, Path], default_model: Path
) -> None:
    import threading

    process, base, data_dir = server
    wait_ready(process, base)
    stories = _story_texts(12, seed=7)
    threads: list[threading.Thread] = []
    logs: list[_LoadLog] = []
    for worker in range(4):
        # Each thread owns its ids: originals, exact copies and extended copies of shared
        # stories, so the threads' articles still meet in duplicates and stories.
        owned = [
            {"id": f"w{worker}-{kind}-{story}", "text": text}
            for story, original in enumerate(stories)
            for kind, text in (
                ("orig", original),
                ("copy", original),
                ("more", original + f" وأضاف المتحدث أن العمل سيستمر {worker}."),
            )
        ]
        logs.append(_LoadLog())
        threads.append(threading.Thread(target=_load, args=(base, owned, worker, logs[-1])))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(len(log.present) for log in logs) < 20:
        time.sleep(0.1)
    time.sleep(0.5)
    process.kill()  # SIGKILL: no shutdown, no snapshot
    assert process.wait(timeout=30) == -signal.SIGKILL
    output_of(process)
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert [log.failure for log in logs if log.failure] == []

    present = {
        key: text for log in logs for key, text in log.present.items() if key not in log.unknown
    }
    absent = {key for log in logs for key in log.absent - log.unknown}
    assert len(present) >= 10 and absent, "the load never got going"
    restarted, base = serve(data_dir, default_model.parent)
    try:
        wait_ready(restarted, base)
        with httpx.Client(base_url=base, timeout=60) as client:
            for key, text in present.items():
                stored = client.get(f"/v1/articles/{key}")
                assert stored.status_code == 200, (key, stored.text)
                assert stored.json()["article"]["text"] == text
                cluster_id = stored.json()["verdict"]["cluster"]["id"]
                cluster = client.get(f"/v1/clusters/{cluster_id}", params={"limit": 1000})
                assert cluster.status_code == 200, cluster.text
                members = {member["id"] for member in cluster.json()["members"]}
                assert key in members
                assert cluster.json()["canonical"]["id"] in members
                assert cluster.json()["size"] == len(members)
            for key in absent:
                assert client.get(f"/v1/articles/{key}").status_code == 404, key
            # The indexes came back with the record: a new copy of a stored text is found.
            key, text = next(iter(present.items()))
            again = client.post("/v1/articles", json={"id": "after-restart", "text": text})
            assert again.status_code == 200
            assert again.json()["status"] == "exact_duplicate"
            original = client.get(f"/v1/articles/{again.json()['duplicate_of']}")
            assert original.status_code == 200
            assert original.json()["article"]["text"] == text
    finally:
        if restarted.poll() is None:
            restarted.kill()
        output_of(restarted)
