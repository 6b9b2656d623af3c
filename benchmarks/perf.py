"""Speed of samestory on real data, each figure next to a baseline measured in the same run.

Run from the repository root (about 30 minutes on the 2-core CPU machine the first time,
when the 30k and 60k article stores are seeded and cached under ``benchmarks/results/``)::

    .venv/bin/python benchmarks/perf.py --out benchmarks/results/perf.json
    .venv/bin/python benchmarks/perf.py --quick             # small sizes, a smoke run
    .venv/bin/python benchmarks/perf.py --stages minhash,dedup

Stages (``--stages``, comma-separated; all by default):

- ``pipeline``: documents per second of each step of one article's way through the engine
  (read, clean, normalize, shingle, MinHash, LSH, language, embed, vector search, store),
  measured in process on SaudiNewsNet: where the time goes.
- ``minhash``: MinHash signatures from the same shingles against datasketch's
  ``MinHash.update_batch`` (``benchmarks/minhash_speed.py``).
- ``dedup``: ``samestory dedup --mode dedup`` on all of SaudiNewsNet, read to write, as a
  subprocess, against a plain datasketch loop (``benchmarks/baseline_datasketch.py``), also
  run as a subprocess: both timed from process start to exit.
- ``stories``: ``samestory dedup --mode stories`` on the first 5,000 SaudiNewsNet articles
  against E5 ``encode`` alone at 512 tokens on a sample.
- ``rest``: a real ``samestory serve`` on loopback over a store of 30,000 SaudiNewsNet
  articles; new (ANT) articles posted open-loop at 10/s for 2 minutes
  (``benchmarks/loadgen.py``), then at rising rates to find the highest one sustained with
  p99 <= 1 s; against the same kind of articles posted one at a time.
- ``match``: ``POST /v1/match`` of exact copies of stored articles at 200 requests/s.
- ``memory``: bytes of the derived indexes (and process RSS) per stored article at 30k and
  60k articles (SaudiNewsNet + ANT).
- ``startup``: ``samestory serve`` to ``/readyz`` with 60k articles stored, from the index
  snapshots against a rebuild from the record.
- ``archive`` (only when named; about 8 minutes and 8 GB of disk): ``samestory dedup
  --store`` over a million articles (SaudiNewsNet and ANT, then word-permuted replicas of
  them), its docs/s early and late in the run, peak memory and store size, then ``serve``
  over that store: time to ready and single-request ingest latency.

Seeded stores: storing 30k or 60k articles in ``stories`` mode through the real model
takes 40 to 80 minutes on this CPU, so the stores are seeded in process with stand-in
vectors (:class:`HashedWordsEmbedder`: signed feature hashing of the article's words, the
model's dimension, unit length) and cached, keyed by the engine's parameter fingerprint.
What these stages measure does not depend on the stored vectors' values: index memory
and load time depend on counts and dimension, the ANN search and story scoring of a new
article cost the same whatever its neighbours are, and every *new* article the stages send
is embedded by the real model in the real service. ``--seed-embedder model`` seeds with
the real model instead.

Every subprocess and the seeding use the same configuration: the service's
``SAMESTORY_*`` settings (defaults unless set in the environment), with ``--device``,
``--precision`` and ``--model-cache`` applied.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import gzip
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import loadgen  # noqa: E402
from benchmarks.quality import NewsArticle, load_ant, load_saudinewsnet  # noqa: E402

logger = logging.getLogger("benchmarks.perf")

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_MODEL_CACHE = REPO / ".cache" / "models"
RESULTS = REPO / "benchmarks" / "results"
STAGES = (
    "pipeline",
    "minhash",
    "dedup",
    "stories",
    "rest",
    "match",
    "memory",
    "startup",
    "archive",
)
# ``archive`` (about 8 minutes and 8 GB of disk) runs only when named.
DEFAULT_STAGES = tuple(name for name in STAGES if name != "archive")
SEED_BATCH = 256
# Bumped whenever the seeding changes what a cached store holds.
_SEED_VERSION = 1


@dataclass(frozen=True)
class Sizes:
    """How much each stage measures; ``--quick`` shrinks everything for a smoke run."""

    pipeline_docs: int = 3_000
    embed_sample: int = 64
    minhash_docs: int = 5_000
    minhash_repeat: int = 3
    dedup_docs: int | None = None
    dedup_pairs: int = 3
    stories_docs: int = 5_000
    encode_sample: int = 100
    stored: int = 30_000
    stored_large: int = 60_000
    sequential: int = 60
    rest_rate: float = 10.0
    rest_seconds: float = 120.0
    step_rates: tuple[float, ...] = (
        1.0,
        2.0,
        3.0,
        5.0,
        7.5,
        15.0,
        20.0,
        25.0,
        30.0,
        35.0,
        40.0,
        60.0,
    )
    step_seconds: float = 30.0
    match_rate: float = 200.0
    match_seconds: float = 30.0
    archive_docs: int = 1_000_000


QUICK = Sizes(
    pipeline_docs=500,
    embed_sample=8,
    minhash_docs=1_000,
    minhash_repeat=1,
    dedup_docs=3_000,
    dedup_pairs=1,
    stories_docs=150,
    encode_sample=8,
    stored=2_000,
    stored_large=4_000,
    sequential=10,
    rest_seconds=15.0,
    step_rates=(2.0, 5.0, 20.0, 40.0),
    step_seconds=8.0,
    match_seconds=5.0,
    archive_docs=70_000,
)


@dataclass
class Row:
    """One line of the comparison table."""

    stage: str
    measure: str
    baseline: str
    ours: str
    ratio: float | None
    target: str
    met: bool | None

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None or math.isnan(self.ratio) else f"{self.ratio:.2f}x"
        met = "-" if self.met is None else ("yes" if self.met else "NO")
        return [self.stage, self.measure, self.baseline, self.ours, ratio, self.target, met]


@dataclass
class Run:
    """What one invocation measures, and where it works."""

    args: argparse.Namespace
    sizes: Sizes
    work: Path
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return Path(self.args.data_dir)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        logger.info("%s", " | ".join(row.cells()))


# ---------------------------------------------------------------------------------------
# Data and configuration
# ---------------------------------------------------------------------------------------


def _payload(article: NewsArticle, article_id: str | None = None) -> dict[str, Any]:
    """The article as ``ArticleIn`` JSON."""
    body: dict[str, Any] = {"id": article_id or article.id, "text": article.text}
    if article.title:
        body["title"] = article.title
    if article.source:
        body["source"] = article.source
    if article.published_at:
        body["published_at"] = article.published_at.isoformat()
    return body


def _usable(articles: Sequence[NewsArticle]) -> list[NewsArticle]:
    return [article for article in articles if article.text.strip()]


def _accepted(articles: Sequence[NewsArticle]) -> list[NewsArticle]:
    """Articles the service accepts: ANT holds a few crawl failures whose whole text is a
    publisher disclaimer, which the service rightly refuses (422, boilerplate only); REST
    load is made of real articles, so those are left out rather than counted as errors."""
    from index import text as textlib

    return [article for article in articles if textlib.clean(article.text).body.strip()]


def service_env(run: Run, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every samestory subprocess: one configuration for all (``extra``:
    settings of one run, such as ``SAMESTORY_MODE``)."""
    env = dict(os.environ)
    env.update(
        **extra,
        SAMESTORY_DATA_DIR=str(data_dir),
        SAMESTORY_MODEL_CACHE_DIR=str(run.args.model_cache),
        SAMESTORY_DEVICE=run.args.device,
        SAMESTORY_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    if run.args.precision:
        env["SAMESTORY_PRECISION"] = run.args.precision
    return env


def _settings(run: Run, data_dir: Path) -> Any:
    from service.settings import Settings

    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "model_cache_dir": Path(run.args.model_cache),
        "device": run.args.device,
    }
    if run.args.precision:
        overrides["precision"] = run.args.precision
    return Settings(**overrides)


def _samestory(*arguments: str) -> list[str]:
    """The ``samestory`` console script's command line, run from this checkout."""
    return [sys.executable, "-m", "service.cli", *arguments]


def _rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def _docs(rate: float) -> str:
    """A rate in docs/s with the digits that matter."""
    digits = 0 if rate >= 100 else 1 if rate >= 10 else 2
    return f"{rate:,.{digits}f} docs/s"


def _best_of(repeat: int, work: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


# ---------------------------------------------------------------------------------------
# Seeded stores
# ---------------------------------------------------------------------------------------


class HashedWordsEmbedder:
    """Stand-in vectors for seeding large stores quickly (an :class:`index.embed.Embedder`).

    Each text's word hashes are feature-hashed with random signs into ``dimension`` buckets
    (Weinberger et al., 2009) and the result is scaled to unit length, so texts that share
    words get similar vectors. Used only where the stored vectors' values do not change what
    is measured; see the module docstring.
    """

    def __init__(self, name: str, dimension: int) -> None:
        self.name = name
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of ``texts``, one row each."""
        from index import text as textlib
        from index.shingles import shingle_hashes_many

        hashes = shingle_hashes_many([textlib.normalize(text) for text in texts], size=1)
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, values in enumerate(hashes):
            if values.size == 0:
                result[row, 0] = 1.0
                continue
            buckets = (values % self.dimension).astype(np.intp)
            signs = np.where((values >> 16) & 1, 1.0, -1.0)
            result[row] = np.bincount(buckets, weights=signs, minlength=self.dimension)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        result /= np.maximum(norms, 1e-12)
        return result


def _seed_articles(run: Run, count: int) -> list[NewsArticle]:
    """The first ``count`` usable articles of SaudiNewsNet, then of ANT."""
    articles = _usable(load_saudinewsnet(run.data))[:count]
    if len(articles) < count:
        articles += _usable(load_ant(run.data))[: count - len(articles)]
    return articles


def seeded_store(run: Run, count: int) -> Path:
    """A cached ``stories``-mode store of ``count`` articles (seeded once, then reused).

    Returns:
        The cached data directory; copy it before running anything that writes.
    """
    from index.article import Article
    from index.engine import Engine
    from index.errors import SamestoryError

    settings = _settings(run, RESULTS)
    params = settings.parameters()
    seeder = run.args.seed_embedder
    from index.store import SCHEMA_VERSION

    # A store of an older schema would be migrated by every copy the stages open (and
    # time that migration as start-up), so the schema is part of the key.
    key = hashlib.sha256(
        json.dumps([params.stored_fields(), count, seeder, _SEED_VERSION, SCHEMA_VERSION]).encode()
    ).hexdigest()[:12]
    target = RESULTS / "stores" / f"stories-{count}-{key}"
    if (target / "seeded.json").exists():
        return target
    articles = _seed_articles(run, count)
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    embedder: Any
    if seeder == "model":
        from index.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder.configured(
            params, cache_dir=settings.model_cache_dir, precision=settings.precision
        )
    else:
        embedder = HashedWordsEmbedder(params.model, 384)
    logger.info("seeding a store of %d articles (%s vectors) once: %s", count, seeder, target)
    started = time.perf_counter()
    rejected = 0
    with Engine.open(building, params, embedder=embedder, synchronous="off") as engine:
        _single_threaded_faiss()
        for start in range(0, len(articles), SEED_BATCH):
            batch = [
                Article(
                    id=article.id,
                    text=article.text,
                    title=article.title,
                    source=article.source,
                    published_at=article.published_at,
                )
                for article in articles[start : start + SEED_BATCH]
            ]
            try:
                engine.ingest_many(batch)
            except SamestoryError:
                for article in batch:
                    try:
                        engine.ingest(article)
                    except SamestoryError:
                        rejected += 1
        stored = engine.counts()["articles"]
    seconds = time.perf_counter() - started
    (building / "seeded.json").write_text(
        json.dumps(
            {"articles": stored, "rejected": rejected, "seconds": seconds, "embedder": seeder}
        )
    )
    building.rename(target)
    logger.info("seeded %d articles in %.0f s (%d rejected)", stored, seconds, rejected)
    return target


def _single_threaded_faiss() -> None:
    """One FAISS thread for this process's one-query searches.

    With two OpenMP threads on a busy 2-core machine a one-query flat search waits on its
    fork/join barrier: measured 2.8 ms instead of 0.12 ms at 1k vectors, 18 ms instead of
    1.1 ms at 20k. Seeding is not what is measured, so it need not pay for that.
    """
    import faiss

    faiss.omp_set_num_threads(1)


def _copy_store(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def _seeded_count(store: Path) -> int:
    return int(json.loads((store / "seeded.json").read_text())["articles"])


# ---------------------------------------------------------------------------------------
# The service as a subprocess
# ---------------------------------------------------------------------------------------


@dataclass
class Server:
    """A running ``samestory serve``."""

    base_url: str
    process: subprocess.Popen[bytes]
    ready_s: float


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _await_ready(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float = 900.0
) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"samestory serve exited ({process.returncode}) before it was ready; see {log_path}"
            )
        try:
            asyncio.run(loadgen.wait_ready(base_url, timeout_s=1.0))
            return
        except TimeoutError:
            continue
    raise RuntimeError(f"samestory serve was not ready within {timeout_s:.0f} s; see {log_path}")


@contextmanager
def serve(run: Run, data_dir: Path, log_name: str, **extra_env: str) -> Iterator[Server]:
    """Start ``samestory serve`` on loopback over ``data_dir``; stop it (SIGTERM) after."""
    port = _free_port()
    log_path = run.work / f"{log_name}.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            _samestory("serve", "--host", "127.0.0.1", "--port", str(port)),
            cwd=REPO,
            env=service_env(run, data_dir, **extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _await_ready(process, base_url, log_path)
            ready = time.perf_counter() - started
            logger.info("samestory serve ready in %.1f s (%s)", ready, log_path)
            yield Server(base_url, process, ready)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _bodies(articles: Sequence[NewsArticle], id_prefix: str = "") -> list[bytes]:
    return [
        json.dumps(_payload(article, f"{id_prefix}{article.id}")).encode() for article in articles
    ]


# ---------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------


def stage_pipeline(run: Run) -> None:
    """Documents per second of each step, in process (no baseline: this is the profile)."""
    from index import text as textlib
    from index.engine import Engine
    from index.language import detect_language
    from index.minhash import LSHIndex, MinHasher
    from index.shingles import shingle_hashes_many

    sizes = run.sizes
    started = time.perf_counter()
    articles = _usable(load_saudinewsnet(run.data))
    read_rate = _rate(len(articles), time.perf_counter() - started)
    sample = articles[: sizes.pipeline_docs]
    n = len(sample)
    params = _settings(run, run.work).parameters()
    rates: dict[str, float] = {"read and parse SaudiNewsNet (gzip JSONL)": read_rate}

    started = time.perf_counter()
    bodies = [textlib.clean(article.text).body for article in sample]
    rates["clean (boilerplate removal)"] = _rate(n, time.perf_counter() - started)
    started = time.perf_counter()
    normalized = [textlib.normalize(body) for body in bodies]
    rates["normalize"] = _rate(n, time.perf_counter() - started)
    started = time.perf_counter()
    for text in normalized:
        textlib.is_spaceless(text)
    rates["spaceless-script check"] = _rate(n, time.perf_counter() - started)
    shingle_hashes_many(normalized[:2], size=params.shingle_size)
    started = time.perf_counter()
    shingles = shingle_hashes_many(normalized, size=params.shingle_size)
    rates["word 5-gram shingle hashes (batched)"] = _rate(n, time.perf_counter() - started)
    hasher = MinHasher(num_perm=params.num_perm, seed=params.seed)
    hasher.signatures(shingles[:2])
    started = time.perf_counter()
    signatures = hasher.signatures(shingles)
    rates["MinHash signatures (batched)"] = _rate(n, time.perf_counter() - started)
    lsh = LSHIndex(threshold=params.lsh_threshold, num_perm=params.num_perm)
    started = time.perf_counter()
    for row in range(n):
        lsh.query(signatures[row])
        lsh.insert(row, signatures[row])
    rates["LSH query + insert, one at a time"] = _rate(n, time.perf_counter() - started)
    detect_language(bodies[0])
    started = time.perf_counter()
    for body in bodies:
        detect_language(body)
    rates["language detection"] = _rate(n, time.perf_counter() - started)

    store = run.work / "pipeline-store"
    shutil.rmtree(store, ignore_errors=True)
    items = [_article(article) for article in sample]
    with Engine.open(store, params, mode="dedup") as engine:
        started = time.perf_counter()
        _ingest_all(engine, items)
        rates["engine.ingest_many, dedup mode (all of the above + SQLite)"] = _rate(
            n, time.perf_counter() - started
        )
    shutil.rmtree(store, ignore_errors=True)

    rates.update(_embed_rates(run, [_embed_text(article, params) for article in sample]))
    rates.update(_search_rates(run))
    run.details["pipeline"] = {"documents": n, "docs_per_s": rates}
    for name, rate in rates.items():
        ours = f"{_docs(rate)} ({1e6 / rate:,.0f} us/doc)"
        run.add(Row("pipeline", name, "", ours, None, "", None))


def _article(article: NewsArticle) -> Any:
    from index.article import Article

    return Article(
        id=article.id,
        text=article.text,
        title=article.title,
        source=article.source,
        published_at=article.published_at,
    )


def _ingest_all(engine: Any, items: Sequence[Any]) -> int:
    from index.errors import SamestoryError

    rejected = 0
    for start in range(0, len(items), SEED_BATCH):
        batch = items[start : start + SEED_BATCH]
        try:
            engine.ingest_many(batch)
        except SamestoryError:
            for item in batch:
                try:
                    engine.ingest(item)
                except SamestoryError:
                    rejected += 1
    return rejected


def _embed_text(article: NewsArticle, params: Any) -> str:
    head = article.text if not article.title else f"{article.title}\n{article.text}"
    return str(head[: params.embed_max_chars])


def _embed_rates(run: Run, texts: Sequence[str]) -> dict[str, float]:
    """The model on title + lead as the engine cuts them (``benchmarks/embed_speed.py``)."""
    from benchmarks.embed_speed import measure

    settings = _settings(run, run.work)
    params = settings.parameters()
    results = measure(
        list(texts[: run.sizes.embed_sample]),
        cache_dir=settings.model_cache_dir,
        lengths=(params.embed_max_tokens,),
        precisions=("float32", "bfloat16"),
        repeat=1,
    )
    run.details["embed"] = results
    from index.embed import resolve_precision

    configured = resolve_precision(settings.precision, params.device)
    return {
        f"embed, batches of 32 ({row['variant']}, {row['max_seq_length']} tokens"
        f"{', configured' if row['variant'] == configured else ''})": float(row["docs_per_s"])
        for row in results["rows"]
    }


def _search_rates(run: Run) -> dict[str, float]:
    """Vector search (k = story_neighbours) over as many vectors as the REST stage stores."""
    from benchmarks.vectors_memory import measure

    n = run.sizes.stored
    results = measure(n, queries=200, singles=20)
    index = "hnsw" if n > _settings(run, run.work).parameters().exact_search_limit else "flat"
    run.details["vectors"] = {"n": n, "results": results}
    return {
        f"vector search, one query ({index}, {n:,} vectors)": 1000.0
        / results[index]["search_p50_ms"],
        f"vector add, one vector ({index}, {n:,} vectors)": 1000.0 / results[index]["add_one_ms"],
    }


def stage_minhash(run: Run) -> None:
    """Signatures from the same shingles: ours against datasketch's update_batch."""
    from benchmarks.minhash_speed import load_texts, measure

    texts = load_texts(run.data / "saudinewsnet" / "articles.jsonl.gz", run.sizes.minhash_docs)
    rates = measure(texts, repeat=run.sizes.minhash_repeat)
    baseline = max(rates["datasketch_affine32"], rates["datasketch_legacy"])
    run.details["minhash"] = {"documents": len(texts), **rates}
    for label, key in (("batched", "ours_batch"), ("one at a time", "ours_single")):
        ratio = rates[key] / baseline
        run.add(
            Row(
                "minhash",
                f"signatures, {len(texts):,} docs, {label}",
                _docs(baseline),
                _docs(rates[key]),
                ratio,
                ">= 10x",
                ratio >= 10.0,
            )
        )


def _subset_file(run: Run, source: Path, count: int | None, name: str) -> Path:
    """The first ``count`` lines of a gzip JSONL file (the file itself when ``None``)."""
    if count is None:
        return source
    target = run.work / name
    with (
        gzip.open(source, "rt", encoding="utf-8") as lines,
        gzip.open(target, "wt", encoding="utf-8", compresslevel=1) as out,
    ):
        for number, line in enumerate(lines):
            if number >= count:
                break
            out.write(line)
    return target


def _count_lines(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


_SAUDINEWSNET_FIELDS = ("--text-field", "content", "--date-field", "date_extracted")


def _run_dedup(run: Run, source: Path, mode: str, name: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``samestory dedup`` as a subprocess, and what it wrote."""
    # Plain JSON Lines out, as the baseline loop writes: both read gzip and write plain.
    output = run.work / f"{name}.jsonl"
    output.unlink(missing_ok=True)
    command = _samestory(
        "dedup", str(source), "-o", str(output), "--mode", mode, *_SAUDINEWSNET_FIELDS
    )
    log = run.work / f"{name}.log"
    started = time.perf_counter()
    with open(log, "wb") as handle:
        finished = subprocess.run(
            command,
            cwd=REPO,
            env=service_env(run, run.work / f"{name}-unused"),
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"samestory dedup failed ({finished.returncode}); see {log}")
    statuses: dict[str, int] = {}
    with open(output, encoding="utf-8") as lines:
        for line in lines:
            status = json.loads(line).get("status")
            statuses[status] = statuses.get(status, 0) + 1
    return seconds, {"command": " ".join(command[1:]), "seconds": seconds, "statuses": statuses}


def _run_baseline(run: Run, source: Path) -> tuple[float, dict[str, Any]]:
    """Wall seconds of the plain datasketch loop as a command, and what it reported.

    Run as ``samestory dedup`` is, a process from start to exit (interpreter start and
    imports included), so that neither side's start-up is counted and the other's not.
    """
    output = run.work / "baseline-out.jsonl"
    command = [
        sys.executable,
        "-m",
        "benchmarks.baseline_datasketch",
        str(source),
        "-o",
        str(output),
    ]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(
            f"the datasketch loop failed ({finished.returncode}): {finished.stderr.decode()}"
        )
    output.unlink(missing_ok=True)
    reported = json.loads(finished.stdout)
    return seconds, {
        "command": " ".join(command[1:]),
        "seconds": seconds,
        "loop_seconds": reported["seconds"],
        "documents": reported["documents"],
        "duplicates": reported["duplicates"],
    }


def stage_dedup(run: Run) -> None:
    """``samestory dedup --mode dedup`` end to end against the plain datasketch loop, both
    timed as commands (process start to exit).

    The two run in turn, :attr:`Sizes.dedup_pairs` times, and the row gives the pair of
    median ratio: on a shared machine a single pair moves by 10-15 % with the load of the
    minute it ran in (3.20x to 3.77x across runs of one session), and a pair's two runs
    share that minute. Every pair is in the JSON details.
    """
    source = _subset_file(
        run,
        run.data / "saudinewsnet" / "articles.jsonl.gz",
        run.sizes.dedup_docs,
        "dedup-in.jsonl.gz",
    )
    count = _count_lines(source)
    pairs: list[dict[str, Any]] = []
    for _pair in range(max(1, run.sizes.dedup_pairs)):
        baseline_seconds, baseline = _run_baseline(run, source)
        seconds, details = _run_dedup(run, source, "dedup", "dedup-out")
        pairs.append(
            {
                "baseline": baseline,
                "ours": details,
                "ratio": _rate(count, seconds) / _rate(count, baseline_seconds),
            }
        )
    median = sorted(pairs, key=lambda pair: pair["ratio"])[(len(pairs) - 1) // 2]
    ratios = ", ".join(f"{pair['ratio']:.2f}x" for pair in pairs)
    run.details["dedup"] = {"documents": count, **median, "pairs": pairs}
    base = _rate(count, median["baseline"]["seconds"])
    ours = _rate(count, median["ours"]["seconds"])
    run.add(
        Row(
            "dedup",
            f"--mode dedup, {count:,} SaudiNewsNet docs, read to write"
            + (f" (median of {len(pairs)} pairs: {ratios})" if len(pairs) > 1 else ""),
            _docs(base),
            _docs(ours),
            ours / base,
            ">= 4x",
            ours / base >= 4.0,
        )
    )


def _encode_rate(run: Run, texts: Sequence[str]) -> float:
    """The baseline: E5 ``encode`` alone, fp32, whole articles cut at 512 tokens."""
    from benchmarks.embed_speed import measure

    results = measure(
        texts,
        cache_dir=_settings(run, run.work).model_cache_dir,
        lengths=(512,),
        precisions=("float32",),
        repeat=1,
    )
    run.details["encode_baseline"] = results
    return float(results["rows"][0]["docs_per_s"])


def stage_stories(run: Run) -> None:
    """``samestory dedup --mode stories`` on the first 5,000 articles against E5 at 512 tokens."""
    sample = _usable(load_saudinewsnet(run.data))[: run.sizes.encode_sample]
    texts = [f"{a.title}\n{a.text}" if a.title else a.text for a in sample]
    base = _encode_rate(run, texts)

    source = _subset_file(
        run,
        run.data / "saudinewsnet" / "articles.jsonl.gz",
        run.sizes.stories_docs,
        "stories-in.jsonl.gz",
    )
    count = _count_lines(source)
    seconds, details = _run_dedup(run, source, "stories", "stories-out")
    ours = _rate(count, seconds)
    run.details["stories"] = {
        "documents": count,
        "baseline": {"encode_sample": len(texts), "docs_per_s": base},
        "ours": details,
    }
    run.add(
        Row(
            "stories",
            f"--mode stories, first {count:,} SaudiNewsNet docs",
            f"{_docs(base)} (E5 fp32, 512 tok)",
            _docs(ours),
            ours / base,
            ">= 25 docs/s",
            ours >= 25.0,
        )
    )


def stage_rest(run: Run) -> None:
    """Open-loop ingest of new articles against a store of 30k, and ``/v1/match``."""
    wanted = [name for name in ("rest", "match") if name in run.args.stages]
    sizes = run.sizes
    seeded = seeded_store(run, sizes.stored)
    stored = _seeded_count(seeded)
    data_dir = _copy_store(seeded, run.work / "rest-store")
    fresh = _accepted(_usable(load_ant(run.data)))
    with serve(run, data_dir, "rest-serve") as server:
        if "rest" in wanted:
            _measure_ingest(run, server, fresh, stored)
        if "match" in wanted:
            _measure_match(run, server, data_dir)
        run.details.setdefault("rest", {})["server_rss_bytes"] = _rss_bytes(server.process.pid)
    shutil.rmtree(data_dir, ignore_errors=True)


def _measure_ingest(run: Run, server: Server, fresh: Sequence[NewsArticle], stored: int) -> None:
    sizes = run.sizes
    url = f"{server.base_url}/v1/articles"
    cursor = 0

    def take(count: int) -> list[bytes]:
        nonlocal cursor
        chosen = fresh[cursor : cursor + count]
        cursor += count
        return _bodies(chosen)

    def drain() -> None:
        # Requests a client gave up on are still ingested (they may have been stored), so
        # one more article, queued behind them, returns once the server has caught up.
        asyncio.run(loadgen.sequential(url, take(1), timeout_s=3600.0))

    def sustains(result: loadgen.LoadResult) -> bool:
        return result.p99_ms <= 1000 and result.errors == 0

    asyncio.run(loadgen.sequential(url, take(5)))
    sequential = asyncio.run(loadgen.sequential(url, take(sizes.sequential)))
    count = math.ceil(sizes.rest_rate * sizes.rest_seconds)
    steady = asyncio.run(
        loadgen.open_loop(url, take(count), rate=sizes.rest_rate, duration_s=sizes.rest_seconds)
    )
    drain()
    # Up from the target rate while it holds, or down from it until one holds.
    ascending = sustains(steady)
    sustained = sizes.rest_rate if ascending else 0.0
    rates = sorted(
        (rate for rate in sizes.step_rates if (rate > sizes.rest_rate) == ascending),
        reverse=not ascending,
    )
    steps: list[dict[str, Any]] = []
    for rate in rates:
        step = asyncio.run(
            loadgen.open_loop(
                url,
                take(math.ceil(rate * sizes.step_seconds)),
                rate=rate,
                duration_s=sizes.step_seconds,
            )
        )
        steps.append(step.summary())
        logger.info("open loop at %g/s: %s", rate, step.summary())
        held = sustains(step)
        if not held:
            drain()
        if held:
            sustained = rate
        if held != ascending:
            break
    run.details["rest"] = {
        "stored": stored,
        "sequential": sequential.summary(),
        "open_loop": steady.summary(),
        "steps": steps,
        "max_sustained_rate": sustained,
    }
    base = sequential.throughput
    run.add(
        Row(
            "rest",
            f"sequential POST /v1/articles, {sequential.sent} new, {stored:,} stored",
            f"p50 {sequential.p50_ms:,.0f} ms, {base:,.1f}/s",
            "",
            None,
            "(baseline)",
            None,
        )
    )
    run.add(
        Row(
            "rest",
            f"open loop {sizes.rest_rate:g}/s for {sizes.rest_seconds:g} s: p50",
            f"{sequential.p50_ms:,.0f} ms",
            f"{steady.p50_ms:,.0f} ms",
            None,
            "<= 150 ms",
            steady.p50_ms <= 150,
        )
    )
    run.add(
        Row(
            "rest",
            f"open loop {sizes.rest_rate:g}/s: p99, errors {steady.errors}/{steady.sent}",
            f"{sequential.p99_ms:,.0f} ms",
            f"{steady.p99_ms:,.0f} ms",
            None,
            "<= 500 ms, 0 errors",
            steady.p99_ms <= 500 and steady.errors == 0,
        )
    )
    run.add(
        Row(
            "rest",
            "highest open-loop rate with p99 <= 1 s",
            f"{base:,.1f}/s sequential",
            f"{sustained:g}/s",
            sustained / base if base else None,
            "report",
            None,
        )
    )


def _measure_match(run: Run, server: Server, data_dir: Path) -> None:
    from index.engine import STORE_FILE

    sizes = run.sizes
    # Copies of stored articles only: the few the seeding refused (only boilerplate) would
    # rightly get 422 and be counted as errors.
    with closing(sqlite3.connect(f"file:{data_dir / STORE_FILE}?mode=ro", uri=True)) as db:
        stored_ids = {row[0] for row in db.execute("SELECT id FROM articles")}
    originals = [
        article for article in load_saudinewsnet(run.data)[:5_000] if article.id in stored_ids
    ]
    count = math.ceil(sizes.match_rate * sizes.match_seconds)
    chosen = [originals[index % len(originals)] for index in range(count)]
    bodies = [
        json.dumps(_payload(article, f"match-{index}")).encode()
        for index, article in enumerate(chosen)
    ]
    url = f"{server.base_url}/v1/match"
    asyncio.run(loadgen.sequential(url, bodies[:50]))
    result = asyncio.run(
        loadgen.open_loop(url, bodies, rate=sizes.match_rate, duration_s=sizes.match_seconds)
    )
    run.details["match"] = result.summary()
    run.add(
        Row(
            "match",
            f"POST /v1/match exact copies, {sizes.match_rate:g}/s, p99 "
            f"(p50 {result.p50_ms:.1f} ms, errors {result.errors})",
            "",
            f"{result.p99_ms:,.1f} ms",
            None,
            "<= 20 ms",
            result.p99_ms <= 20 and result.errors == 0,
        )
    )


def memory_probe(
    data_dir: Path, model: str, dimension: int, settings_fields: dict[str, Any]
) -> dict[str, float]:
    """Open a seeded store in this (fresh) process and measure its indexes.

    Runs in a spawned process so the RSS it reports is that of the engine alone.
    """
    from index.engine import Engine
    from index.params import Parameters

    params = Parameters(**settings_fields)
    before = _rss_bytes()
    started = time.perf_counter()
    engine = Engine.open(data_dir, params, embedder=HashedWordsEmbedder(model, dimension))
    opened = time.perf_counter() - started
    after = _rss_bytes()
    counts = engine.counts()
    index_bytes = engine.index_memory_bytes()
    engine.close()
    return {
        "articles": counts["articles"],
        "lsh_entries": counts["lsh_entries"],
        "vector_entries": counts["vector_entries"],
        "index_bytes": index_bytes,
        "rss_delta_bytes": after - before,
        "open_seconds": opened,
    }


def stage_memory(run: Run) -> None:
    """Index bytes per stored article at 30k and 60k articles."""
    params = _settings(run, run.work).parameters()
    fields = params.stored_fields()
    results: dict[int, dict[str, float]] = {}
    for count in (run.sizes.stored, run.sizes.stored_large):
        store = _copy_store(seeded_store(run, count), run.work / f"memory-{count}")
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results[count] = pool.submit(memory_probe, store, params.model, 384, fields).result()
        shutil.rmtree(store, ignore_errors=True)
    run.details["memory"] = {str(count): values for count, values in results.items()}
    small, large = (results[run.sizes.stored], results[run.sizes.stored_large])
    for values in (small, large):
        per = values["index_bytes"] / values["articles"]
        run.add(
            Row(
                "memory",
                f"index bytes per article at {values['articles']:,.0f} "
                f"(RSS {values['rss_delta_bytes'] / values['articles']:,.0f} B/article)",
                "",
                f"{per:,.0f} B",
                None,
                "<= 2,500 B",
                per <= 2500,
            )
        )
    added = large["articles"] - small["articles"]
    marginal = (large["index_bytes"] - small["index_bytes"]) / added
    marginal_rss = (large["rss_delta_bytes"] - small["rss_delta_bytes"]) / added
    run.add(
        Row(
            "memory",
            f"marginal index bytes per article, {small['articles']:,.0f} -> "
            f"{large['articles']:,.0f} (RSS {marginal_rss:,.0f} B/article)",
            "",
            f"{marginal:,.0f} B",
            None,
            "<= 2,500 B",
            marginal <= 2500,
        )
    )


def stage_startup(run: Run) -> None:
    """``samestory serve`` to ready with 60k stored: from snapshots against a rebuild."""
    seeded = seeded_store(run, run.sizes.stored_large)
    stored = _seeded_count(seeded)
    data_dir = _copy_store(seeded, run.work / "startup-store")
    with serve(run, data_dir, "startup-snapshot") as server:
        from_snapshot = server.ready_s
    shutil.rmtree(data_dir / "snapshots", ignore_errors=True)
    with serve(run, data_dir, "startup-rebuild") as server:
        rebuild = server.ready_s
    shutil.rmtree(data_dir, ignore_errors=True)
    run.details["startup"] = {"stored": stored, "snapshot_s": from_snapshot, "rebuild_s": rebuild}
    run.add(
        Row(
            "startup",
            f"serve to /readyz, {stored:,} stored",
            f"{rebuild:,.1f} s (rebuild)",
            f"{from_snapshot:,.1f} s (snapshot)",
            rebuild / from_snapshot,
            "<= 10 s",
            from_snapshot <= 10.0,
        )
    )


def _archive_file(run: Run, count: int) -> Path:
    """``count`` articles: SaudiNewsNet and ANT, then word-permuted replicas of them.

    Replica 0 is the real data. Replica ``k`` maps every word through a permutation of
    the vocabulary (by corpus frequency, within bands of 64 ranks, seeded by ``k``), so its
    texts are new to every other replica while copies inside it stay copies and word
    frequencies stay realistic. Cached under the work directory.
    """
    import random
    from collections import Counter

    target = run.work / f"archive-{count}-v1.jsonl.gz"
    if target.exists():
        return target
    base = load_saudinewsnet(run.data) + load_ant(run.data)
    frequencies: Counter[str] = Counter()
    for article in base:
        frequencies.update(article.text.split())
        frequencies.update((article.title or "").split())
    vocabulary = [word for word, _ in frequencies.most_common()]
    partial = target.with_name(target.name + ".partial")
    written = 0
    with gzip.open(partial, "wb", compresslevel=1) as out:
        for replica in range(math.ceil(count / len(base))):
            mapping: dict[str, str] = {}
            if replica:
                rng = random.Random(replica)
                for start in range(0, len(vocabulary), 64):
                    band = vocabulary[start : start + 64]
                    shuffled = band[:]
                    rng.shuffle(shuffled)
                    mapping.update(zip(band, shuffled, strict=True))

            def mapped(text: str, mapping: dict[str, str] = mapping) -> str:
                if not mapping:
                    return text
                return "\n".join(
                    " ".join(mapping.get(word, word) for word in line.split(" "))
                    for line in text.split("\n")
                )

            chosen = base[: count - written]
            for article in chosen:
                record = {
                    "id": f"{article.id}~r{replica}",
                    "text": mapped(article.text),
                    "title": mapped(article.title or ""),
                    "source": article.source,
                    "published_at": (
                        article.published_at.isoformat() if article.published_at else None
                    ),
                }
                out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            written += len(chosen)
    partial.replace(target)
    return target


def _tree_rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children (the dedup workers)."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        try:
            total += _rss_bytes(candidate)
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in listed]


def stage_archive(run: Run) -> None:
    """``samestory dedup --mode dedup --store`` over an archive of a million articles.

    Throughput over the first and the last tenth of the run (linear growth: the later
    articles are decided against ten times more stored ones), peak memory, the store's
    size, then ``samestory serve`` over the result: time to ready, and new articles and
    exact copies posted one at a time.
    """
    from index.engine import STORE_FILE

    count = run.sizes.archive_docs
    source = _archive_file(run, count)
    store = run.work / "archive-store"
    shutil.rmtree(store, ignore_errors=True)
    output = run.work / "archive-out.jsonl.gz"
    command = _samestory(
        "dedup", str(source), "-o", str(output), "--mode", "dedup", "--store", str(store), "-q"
    )
    env = service_env(run, run.work / "archive-unused")
    progress: list[tuple[float, int]] = []
    peak = 0
    log = run.work / "archive-dedup.log"
    with open(log, "wb") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=handle)
        database = store / STORE_FILE
        while process.poll() is None:
            time.sleep(1.0)
            peak = max(peak, _tree_rss_bytes(process.pid))
            try:
                with closing(
                    sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1.0)
                ) as reader:
                    stored = reader.execute("SELECT max(row) FROM articles").fetchone()[0]
            except sqlite3.Error:
                continue
            progress.append((time.perf_counter() - started, int(stored or 0)))
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"samestory dedup failed ({process.returncode}); see {log}")

    def rate_between(low: float, high: float) -> float:
        # When the store passed each share of the run, read off the polls (interpolated).
        at = np.array([0.0, *(seconds for seconds, _ in progress)])
        rows = np.array([0.0, *(stored for _, stored in progress)])
        begin, end = np.interp([low * count, high * count], rows, at)
        return _rate(int((high - low) * count), float(end - begin))

    early, late = rate_between(0.05, 0.15), rate_between(0.85, 0.95)
    store_bytes = sum(path.stat().st_size for path in store.rglob("*") if path.is_file())
    with closing(sqlite3.connect(store / STORE_FILE)) as reader:
        stored = int(reader.execute("SELECT count(*) FROM articles").fetchone()[0])
    run.add(
        Row(
            "archive",
            f"dedup --store, {count:,} docs: docs/s over 5-15 % against 85-95 % of the run",
            _docs(early),
            _docs(late),
            late / early,
            "report",
            None,
        )
    )
    run.add(
        Row(
            "archive",
            f"the same run: whole run, peak RSS {peak / 2**20:,.0f} MiB (all processes)",
            "",
            f"{_rate(count, seconds):,.0f} docs/s ({seconds:,.0f} s)",
            None,
            "report",
            None,
        )
    )
    run.add(
        Row(
            "archive",
            f"store on disk, {stored:,} articles stored",
            "",
            f"{store_bytes / stored:,.0f} B/article ({store_bytes / 2**30:,.1f} GiB)",
            None,
            "report",
            None,
        )
    )
    details: dict[str, Any] = {
        "documents": count,
        "stored": stored,
        "seconds": seconds,
        "early_docs_s": early,
        "late_docs_s": late,
        "peak_rss_bytes": peak,
        "store_bytes": store_bytes,
        "progress": progress,
        "command": " ".join(command[1:]),
    }
    run.details["archive"] = details
    _archive_service(run, store, source, details)
    shutil.rmtree(store, ignore_errors=True)
    output.unlink(missing_ok=True)


def _archive_service(run: Run, store: Path, source: Path, details: dict[str, Any]) -> None:
    """``samestory serve`` (dedup mode) over the archive's store."""
    probes: list[dict[str, Any]] = []
    with gzip.open(source, "rt", encoding="utf-8") as lines:
        for line in lines:
            probes.append(json.loads(line))
            if len(probes) >= run.sizes.sequential * 2:
                break
    bodies = {
        # New: the words of a stored text in reverse order (no shared 5-gram).
        "new": [
            {
                **probe,
                "id": f"archive-new-{number}",
                "text": " ".join(probe["text"].split(" ")[::-1]),
            }
            for number, probe in enumerate(probes)
        ],
        "copy": [{**probe, "id": f"archive-copy-{number}"} for number, probe in enumerate(probes)],
    }
    results: dict[str, loadgen.LoadResult] = {}
    with serve(run, store, "archive-serve", SAMESTORY_MODE="dedup") as server:
        for kind, payloads in bodies.items():
            results[kind] = asyncio.run(
                loadgen.sequential(
                    f"{server.base_url}/v1/articles",
                    [json.dumps(payload).encode() for payload in payloads],
                )
            )
            # 422: a reversed text that cleaning leaves nothing of; anything else is a fault.
            unexpected = set(results[kind].statuses) - {200, 201, 422}
            if unexpected:
                raise RuntimeError(f"POST /v1/articles answered {sorted(unexpected)}")
        ready = server.ready_s
    run.add(
        Row(
            "archive",
            "serve --mode dedup over that store: to /readyz from the snapshot",
            "",
            f"{ready:,.1f} s",
            None,
            "report",
            None,
        )
    )
    for kind, label in (("new", "new articles"), ("copy", "exact copies")):
        result = results[kind]
        run.add(
            Row(
                "archive",
                f"POST /v1/articles one at a time, {result.sent} {label}: p50 / p99",
                "",
                f"{result.p50_ms:,.1f} / {result.p99_ms:,.1f} ms",
                None,
                "report",
                None,
            )
        )
        details[f"post_{kind}"] = result.summary()
    details["serve_ready_s"] = ready


_STAGE_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "pipeline": stage_pipeline,
    "minhash": stage_minhash,
    "dedup": stage_dedup,
    "stories": stage_stories,
    "rest": stage_rest,
    "memory": stage_memory,
    "startup": stage_startup,
    "archive": stage_archive,
}


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    header = ["stage", "measure", "baseline (same run)", "samestory", "ratio", "target", "met"]
    cells = [header, *[row.cells() for row in rows]]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(values) for values in cells[1:])])


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    model = platform.processor() or ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for text in cpuinfo.read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="samestory speed against same-run baselines (see the module docstring)."
    )
    parser.add_argument(
        "--stages",
        default=",".join(DEFAULT_STAGES),
        help="comma-separated stages (default: all but archive)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS / "perf.json")
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        help="model weights' dtype (default: the service's SAMESTORY_PRECISION)",
    )
    parser.add_argument(
        "--stories-docs",
        type=int,
        help="articles for the stories stage (default 5,000); fewer where the model is slow",
    )
    parser.add_argument(
        "--seed-embedder",
        choices=("hashed", "model"),
        default="hashed",
        help="vectors of the seeded 30k/60k stores: stand-in (fast) or the real model",
    )
    args = parser.parse_args(argv)
    args.stages = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    return args


def compile_bytecode() -> None:
    """Compile the project's modules to bytecode caches, as installing a package does.

    Every command timed here starts a fresh interpreter. An editable install leaves the
    project's modules to be compiled on first import, and where ``PYTHONDONTWRITEBYTECODE``
    is set (it is on the machines these figures come from) on every import: some 50 ms of
    each start-up that an installed package does not spend. Caches that are current are
    left alone; an edited module is compiled again.
    """
    for package in ("index", "service", "benchmarks"):
        compileall.compile_dir(REPO / package, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen stages and print the table."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    compile_bytecode()
    for name in ("httpx", "sentence_transformers", "index"):
        logging.getLogger(name).setLevel(logging.WARNING)
    work = RESULTS / "perf-work"
    work.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else Sizes()
    if args.stories_docs:
        sizes = replace(sizes, stories_docs=args.stories_docs)
    run = Run(args=args, sizes=sizes, work=work)
    run.details["machine"] = machine()
    run.details["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    seconds: dict[str, float] = {}
    run.details["stage_seconds"] = seconds
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in STAGES:
        if name not in args.stages or (name == "match" and "rest" in args.stages):
            continue
        started = time.perf_counter()
        logger.info("stage %s", name)
        try:
            _STAGE_FUNCTIONS["rest" if name == "match" else name](run)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            # One stage failing (a server that would not start, a dedup run that failed)
            # must not lose the others' figures; the row says what happened.
            logger.exception("stage %s failed", name)
            run.add(Row(name, f"FAILED: {error}", "", "", None, "", False))
        seconds[name] = round(time.perf_counter() - started, 1)
        # Written after every stage, so a run cut short keeps what it measured.
        args.out.write_text(
            json.dumps(
                {"rows": [asdict(row) for row in run.rows], **run.details}, indent=2, default=str
            )
        )
    info = run.details["machine"]
    print(
        f"samestory perf, {info['date']}, {info['cpu']} ({info['cores']} cores), "
        f"quick={args.quick}, device={args.device}"
    )
    print(format_table(run.rows))
    print(f"stage seconds: {seconds}; details: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
