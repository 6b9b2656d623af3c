"""Ingest throughput of ``POST /v1/articles`` with and without the writer's micro-batching.

Run from the repository root::

    .venv/bin/python benchmarks/microbatch.py [--articles 96] [--clients 16]

Starts a real ``samestory serve`` (stories mode, the default model) on loopback three times
on fresh data directories and posts the same distinct, model-bound articles (no copies, so
every one is embedded):

- one client, one request at a time;
- ``--clients`` concurrent clients with micro-batching off (``SAMESTORY_MICRO_BATCH_SIZE=1``);
- ``--clients`` concurrent clients with the default micro-batching.

Prints articles per second and the mean number of articles per engine write (from
``/metrics``). The texts are generated, about 60 words each, so runs are comparable across
machines; the model cache is ``$SAMESTORY_MODEL_CACHE_DIR`` or ``.cache/models``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = (
    "council minister river bridge market school hospital railway harbour museum storm "
    "election budget festival airport factory farmers drought police court treaty summit "
    "energy prices inflation students teachers doctors exports imports tourism desert port"
)


def articles(count: int, seed: int = 7) -> list[dict[str, str]]:
    """Distinct generated articles of about 60 words."""
    rng = random.Random(seed)
    words = VOCABULARY.split()
    return [
        {"id": f"bench-{number}", "text": " ".join(rng.choice(words) for _ in range(60)) + "."}
        for number in range(count)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    samestory = shutil.which("samestory", path=str(Path(sys.executable).parent))
    if samestory is None:
        sys.exit("samestory is not installed in this environment: run scripts/setup.sh")
    port = free_port()
    process = subprocess.Popen(
        [samestory, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("samestory serve exited before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit("samestory serve did not get ready")


async def post_all(base: str, bodies: list[dict[str, str]], clients: int) -> float:
    """Seconds to post every body with ``clients`` concurrent workers."""
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post("/v1/articles", json=body)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return time.perf_counter() - started


def articles_per_write(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = re.search(r"samestory_writer_batch_articles_sum (\S+)", text)
    count = re.search(r"samestory_writer_batch_articles_count (\S+)", text)
    assert total and count
    return float(total.group(1)) / max(float(count.group(1)), 1.0)


def run(label: str, bodies: list[dict[str, str]], clients: int, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        process, base = start(Path(scratch) / "data", env)
        try:
            # One warm-up article outside the timing: the first forward pass is slower.
            httpx.post(f"{base}/v1/articles", json={"id": "warm", "text": "warm up"}, timeout=600)
            seconds = asyncio.run(post_all(base, bodies, clients))
            per_write = articles_per_write(base)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    rate = len(bodies) / seconds
    print(f"| {label} | {clients} | {len(bodies)} | {seconds:.1f} | {rate:.1f} | {per_write:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=96)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    cache = os.environ.get("SAMESTORY_MODEL_CACHE_DIR", str(REPO / ".cache" / "models"))
    env = {"SAMESTORY_MODEL_CACHE_DIR": cache, "SAMESTORY_LOG_LEVEL": "WARNING"}
    bodies = articles(args.articles)
    print(f"cpus: {os.cpu_count()}")
    print("| run | clients | articles | seconds | articles/s | articles per write |")
    print("|---|---|---|---|---|---|")
    run("sequential", bodies, 1, env)
    run(
        "concurrent, micro-batching off",
        bodies,
        args.clients,
        {**env, "SAMESTORY_MICRO_BATCH_SIZE": "1"},
    )
    run("concurrent, micro-batching on", bodies, args.clients, env)


if __name__ == "__main__":
    main()
