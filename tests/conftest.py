"""Shared fixtures: the offline default model's cache and running apps.

The converted default model (~470 MB) is built once per machine into a persistent cache,
``$SAMESTORY_TEST_MODEL_CACHE`` or ``<repo>/.cache/models``, never once per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]

StartApp = Callable[..., TestClient]


def run_python(script: str, *args: str, timeout: float = 300.0) -> str:
    """What ``script`` prints, run with ``args`` by a fresh interpreter in the repository:
    for what only a new process shows (its imports, its garbage collector, the kernels it
    has loaded). A failing script fails the test."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


# Every operation of REST API v1 (DESIGN.md), as OpenAPI names them.
OPERATIONS = [
    ("POST", "/v1/articles"),
    ("POST", "/v1/articles/batch"),
    ("POST", "/v1/match"),
    ("POST", "/v1/similarity"),
    ("GET", "/v1/articles/{article_id}"),
    ("DELETE", "/v1/articles/{article_id}"),
    ("GET", "/v1/clusters/{cluster_id}"),
    ("GET", "/v1/clusters"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


# Two synthetic wire stories of our own making, each long enough for 5-gram shingles.
ECONOMY = [
    "أعلنت وزارة المالية اليوم عن ارتفاع الإيرادات غير النفطية بنسبة اثني عشر بالمئة خلال "
    "الربع الثالث من العام مقارنة بالفترة نفسها من العام الماضي.",
    "وقال وزير المالية في مؤتمر صحفي إن الإصلاحات الهيكلية بدأت تؤتي ثمارها وإن العجز "
    "سيتراجع إلى أقل من ثلاثة بالمئة من الناتج المحلي الإجمالي.",
    "وأضاف أن الحكومة ماضية في خطط تنويع الاقتصاد وتحفيز القطاع الخاص عبر برامج تمويل "
    "جديدة للشركات الصغيرة والمتوسطة في المناطق كافة.",
    "وتوقع محللون أن تنعكس هذه الأرقام إيجابا على التصنيف الائتماني للمملكة خلال الأشهر "
    "المقبلة في ظل استقرار أسعار النفط العالمية.",
]
FLOOD = [
    "Heavy rain caused severe flooding across the northern province on Tuesday, forcing "
    "thousands of residents to leave their homes as rivers burst their banks overnight.",
    "Emergency services said at least fourteen people were rescued from rooftops and more "
    "than two hundred homes were damaged in the worst floods in a decade.",
    "The regional governor declared a state of emergency and asked the army to help build "
    "temporary shelters and deliver drinking water to isolated villages.",
    "Forecasters warned that more storms were expected later in the week and urged people "
    "living near the river to stay alert and follow evacuation orders.",
]


def model_cache_path() -> Path:
    """Where the converted default model is cached between test runs."""
    return Path(os.environ.get("SAMESTORY_TEST_MODEL_CACHE", REPO / ".cache" / "models"))


def engine_embedder(cache: Path) -> Any:
    """The embedder an engine opens with by default (the offline default model, as the
    default parameters configure it), the model loaded from ``cache``."""
    from index.embed import SentenceTransformerEmbedder
    from index.params import Parameters

    return SentenceTransformerEmbedder.configured(Parameters(), cache_dir=cache)


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """Where the converted default model is cached between test runs."""
    return model_cache_path()


@pytest.fixture(scope="session")
def default_model(model_cache_dir: Path) -> Path:
    """The offline default model, built into :func:`model_cache_dir` if missing."""
    from index.modelcache import build_default_model

    return build_default_model(model_cache_dir)


def wait_ready(client: TestClient, timeout: float = 300.0) -> None:
    """Poll ``/readyz`` until the app has loaded its engine."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        if "failed to load" in response.json()["detail"] or time.monotonic() > deadline:
            raise AssertionError(f"the app did not get ready: {response.json()['detail']}")
        time.sleep(0.05)


def small_dedup_store(data_dir: Path, articles: int) -> Path:
    """A dedup-mode store of ``articles`` unrelated articles ``a0``, ``a1``, ... closed
    with its snapshot (what the store benchmarks run on in their tests)."""
    from index.article import Article
    from index.engine import Engine

    with Engine.open(data_dir, mode="dedup") as engine:
        for number in range(articles):
            engine.ingest(Article(id=f"a{number}", text=f"article number {number} " * 12))
    return data_dir


IndexState = tuple[list[int], list[int], int, list[int]]


def index_state(engine: Any) -> IndexState:
    """What an engine's derived indexes hold: live LSH rows, term counts, documents and
    vector rows (none in dedup mode)."""
    with engine._lock:
        last, _deletions = engine._store.generation()
        rows = [row for row in range(1, last + 1) if row in engine._lsh]
        vectors = [] if engine._vectors is None else sorted(engine._vectors._positions)
        frequencies = engine._frequencies
        return rows, frequencies._counts.tolist(), frequencies.documents, vectors


def fill_up(engine: Any) -> None:
    """Let the engine's record grow by no more than a page: its storage is then full."""
    connection = engine._store._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count={pages + 1}")


def make_room(engine: Any) -> None:
    """Undo :func:`fill_up`: SQLite's largest page limit."""
    engine._store._connection.execute("PRAGMA max_page_count=1073741823")


def _start(data_dir: Path, model_cache: Path | None, **overrides: Any) -> TestClient:
    """A started, ready app client; the caller must ``__exit__`` it."""
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        data_dir=data_dir,
        model_cache_dir=model_cache or data_dir / "models",
        synchronous="normal",
        **overrides,
    )
    client = TestClient(create_app(settings))
    client.__enter__()
    try:
        wait_ready(client)
    except BaseException:
        client.__exit__(None, None, None)
        raise
    return client


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    """Start apps on fresh data directories; ``start_app(mode="dedup", api_key="k")``.

    Each app is shut down (its engine closed) when the test ends.
    """
    clients: list[TestClient] = []
    count = 0

    def start(**overrides: Any) -> TestClient:
        nonlocal count
        count += 1
        client = _start(tmp_path / f"data{count}", None, **overrides)
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def dedup_client(start_app: StartApp) -> TestClient:
    """A ready app in dedup mode (no model) on a fresh data directory."""
    return start_app(mode="dedup")


@pytest.fixture(scope="module")
def stories_client(
    tmp_path_factory: pytest.TempPathFactory, default_model: Path
) -> Iterator[TestClient]:
    """A ready app in stories mode with the real default model, shared by a module."""
    client = _start(tmp_path_factory.mktemp("stories"), default_model.parent)
    yield client
    client.__exit__(None, None, None)
