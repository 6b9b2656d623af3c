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
    assert (data_dir / "snapshots" / "state.json").is_file()
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
