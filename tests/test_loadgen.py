"""The open-loop load generator of ``benchmarks/perf.py``, against a real loopback server."""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loadgen

SERVICE_SECONDS = 0.1


# Whether the cyclic garbage collector was on at each request (the test server runs in
# the generator's process).
COLLECTOR_ON: list[bool] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        COLLECTOR_ON.append(gc.isenabled())
        if self.path == "/slow":
            time.sleep(SERVICE_SECONDS)
        status = 500 if self.path == "/fail" else 200
        body = b"{}"
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.do_POST()

    def log_message(self, format: str, *args: object) -> None:
        return


def _serve(server: HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def threaded_url() -> Iterator[str]:
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Handler))


@pytest.fixture
def serial_url() -> Iterator[str]:
    """A server that answers one request at a time."""
    yield from _serve(HTTPServer(("127.0.0.1", 0), _Handler))


def test_open_loop_sends_rate_times_duration(threaded_url: str) -> None:
    bodies = [b'{"id": "%d"}' % index for index in range(100)]
    result = asyncio.run(loadgen.open_loop(f"{threaded_url}/ok", bodies, rate=40, duration_s=0.5))
    assert result.sent == 20
    assert result.errors == 0
    assert result.statuses == {200: 20}
    assert len(result.latencies_ms) == 20
    assert all(latency > 0 for latency in result.latencies_ms)
    # The last request is scheduled 19/40 s after the first.
    assert result.duration_s >= 19 / 40


def test_latency_counts_from_the_schedule_not_the_send(serial_url: str) -> None:
    # Ten requests scheduled within 0.09 s at a server that takes 0.1 s each, one at a
    # time: the last answer comes at least 10 * 0.1 s after the first was due, so its
    # latency from its own scheduled time is at least 1.0 - 0.09 s whatever the machine.
    bodies = [b"{}"] * 10
    result = asyncio.run(loadgen.open_loop(f"{serial_url}/slow", bodies, rate=100))
    assert result.sent == 10
    assert result.max_ms >= (10 * SERVICE_SECONDS - 0.09) * 1000
    sequential = asyncio.run(loadgen.sequential(f"{serial_url}/slow", bodies[:3]))
    assert sequential.sent == 3
    assert min(sequential.latencies_ms) >= SERVICE_SECONDS * 1000


def test_error_statuses_and_refused_connections_are_errors(threaded_url: str) -> None:
    failed = asyncio.run(loadgen.open_loop(f"{threaded_url}/fail", [b"{}"] * 4, rate=50))
    assert (failed.errors, failed.statuses) == (4, {500: 4})
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    closed_port = server.server_address[1]
    server.server_close()
    refused = asyncio.run(
        loadgen.sequential(f"http://127.0.0.1:{closed_port}/ok", [b"{}"] * 2, timeout_s=2)
    )
    assert (refused.errors, refused.statuses) == (2, {0: 2})


def test_wait_ready_returns_once_ready(threaded_url: str) -> None:
    assert asyncio.run(loadgen.wait_ready(threaded_url, timeout_s=10)) >= 0


def test_only_loopback_is_loaded() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(loadgen.open_loop("http://example.com/v1/match", [b"{}"], rate=1))
    with pytest.raises(ValueError, match="rate"):
        asyncio.run(loadgen.open_loop("http://127.0.0.1:9/v1/match", [b"{}"], rate=0))


def test_percentiles_are_nearest_rank() -> None:
    result = loadgen.LoadResult(
        rate=1.0,
        sent=100,
        errors=0,
        duration_s=1.0,
        latencies_ms=[float(value) for value in range(100, 0, -1)],
        statuses={200: 100},
        lag_ms=0.0,
    )
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (50.0, 99.0, 100.0)
    assert result.percentile(100) == 100.0
    assert result.summary()["p90_ms"] == 90.0
    empty = loadgen.LoadResult(0.0, 0, 0, 0.0, [], {}, 0.0)
    assert math.isnan(empty.p99_ms)
    assert empty.throughput == 0.0


def test_the_generator_runs_without_collections_and_restores_the_setting(
    threaded_url: str,
) -> None:
    # A collection of a benchmark process's objects paused the generator for 0.6 s,
    # counted as server latency (latency runs from the schedule).
    COLLECTOR_ON.clear()
    assert gc.isenabled()
    asyncio.run(loadgen.open_loop(f"{threaded_url}/ok", [b"{}"] * 5, rate=100))
    asyncio.run(loadgen.sequential(f"{threaded_url}/ok", [b"{}"] * 3))
    assert COLLECTOR_ON == [False] * 8
    assert gc.isenabled()
    gc.disable()
    try:
        asyncio.run(loadgen.sequential(f"{threaded_url}/ok", [b"{}"]))
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()
