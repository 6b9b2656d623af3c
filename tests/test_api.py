"""Contract tests of REST API v1 (DESIGN.md) against the real app through TestClient.

Most tests run the app in dedup mode (no model, a fresh data directory each); the stories
tests share one app with the real default model.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import OPERATIONS, StartApp, fill_up, make_room
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

BRIDGE = (
    "The city council approved the budget for the new bridge over the river on Monday "
    "evening after a long debate about tolls, cycle lanes and the closing of the old ferry."
)
BRIDGE_COPY = BRIDGE + " The vote was twelve to three."
MARKET = (
    "Farmers opened the weekly market in the old square on Saturday with more stalls than "
    "ever before, selling dates, honey and fresh bread to crowds of visitors."
)

VERDICT_FIELDS = {
    "id",
    "status",
    "duplicate_of",
    "duplicate_similarity",
    "story_similarity",
    "cluster",
    "stored",
    "copies",
}
COPY_FIELDS = {"id", "jaccard", "containment"}
CLUSTER_FIELDS = {"id", "size", "canonical", "first_published_at", "last_published_at"}
CANONICAL_FIELDS = {"id", "title", "url", "source", "published_at"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def body(article_id: str, text: str = BRIDGE, **fields: Any) -> dict[str, Any]:
    return {"id": article_id, "text": text, **fields}


def assert_problem(
    response: httpx.Response, status: int, slug: str, detail: str = "", **fields: Any
) -> dict[str, Any]:
    """Assert an RFC 9457 problem response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:samestory:problem:{slug}"
    assert problem["status"] == status
    assert problem["title"]
    assert detail.lower() in problem["detail"].lower()
    assert problem["instance"] == response.request.url.path
    for name, value in fields.items():
        assert problem[name] == value, problem
    return problem


def assert_verdict_shape(verdict: dict[str, Any]) -> None:
    assert set(verdict) == VERDICT_FIELDS
    assert set(verdict["cluster"]) == CLUSTER_FIELDS
    assert set(verdict["cluster"]["canonical"]) == CANONICAL_FIELDS
    assert all(set(listed) == COPY_FIELDS for listed in verdict["copies"])
    if verdict["copies"]:
        assert verdict["status"] in ("near_duplicate", "exact_duplicate")
    cluster = verdict["cluster"]
    for stamp in (
        cluster["first_published_at"],
        cluster["last_published_at"],
        cluster["canonical"]["published_at"],
    ):
        assert RFC3339_UTC.match(stamp), stamp


# -- ingest ---------------------------------------------------------------------------------


def test_ingest_returns_the_contract_verdict(dedup_client: TestClient) -> None:
    response = dedup_client.post(
        "/v1/articles",
        json=body(
            "b1",
            title="Bridge budget",
            url="https://news.example/b1",
            source="news.example",
            language="en",
            published_at="2025-01-17T11:30:00+02:00",
        ),
    )

    assert response.status_code == 200
    verdict = response.json()
    assert_verdict_shape(verdict)
    assert verdict["id"] == "b1"
    assert verdict["status"] == "new_story"
    assert verdict["duplicate_of"] is None
    assert verdict["stored"] is True
    assert verdict["cluster"]["size"] == 1
    assert verdict["cluster"]["canonical"] == {
        "id": "b1",
        "title": "Bridge budget",
        "url": "https://news.example/b1",
        "source": "news.example",
        "published_at": "2025-01-17T09:30:00Z",
    }


def test_copies_join_the_original(dedup_client: TestClient) -> None:
    original = dedup_client.post("/v1/articles", json=body("b1")).json()
    near = dedup_client.post("/v1/articles", json=body("b2", BRIDGE_COPY)).json()
    exact = dedup_client.post("/v1/articles", json=body("b3", BRIDGE.upper())).json()

    assert near["status"] == "near_duplicate"
    assert near["duplicate_of"] == "b1"
    assert 0.8 <= near["duplicate_similarity"] < 1.0
    assert exact["status"] == "exact_duplicate"
    assert exact["duplicate_of"] == "b1"
    assert exact["duplicate_similarity"] == 1.0
    assert near["cluster"]["id"] == exact["cluster"]["id"] == original["cluster"]["id"]
    assert exact["cluster"]["size"] == 3


def test_ingest_is_idempotent_on_id(dedup_client: TestClient) -> None:
    first = dedup_client.post("/v1/articles", json=body("b1"))
    again = dedup_client.post("/v1/articles", json=body("b1"))

    assert again.status_code == 200
    assert again.json() == first.json()
    assert dedup_client.get("/v1/clusters").json()["clusters"][0]["size"] == 1


def test_same_id_with_other_text_is_409(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))

    response = dedup_client.post("/v1/articles", json=body("b1", MARKET))

    assert_problem(response, 409, "id-conflict", "already stored with a different text")


BAD_ARTICLES = [
    pytest.param(body("e", "   \n\t "), "empty-text", "text", id="whitespace-text"),
    pytest.param(body("e", ""), "invalid-request", "text", id="empty-text"),
    pytest.param({"id": "e"}, "invalid-request", "text", id="missing-text"),
    pytest.param({"text": BRIDGE}, "invalid-request", "id", id="missing-id"),
    pytest.param(body("  "), "invalid-article", "id", id="whitespace-id"),
    pytest.param(body("e", 42), "invalid-request", "text", id="text-not-a-string"),
    pytest.param(
        body("e", published_at="yesterday"), "invalid-request", "published_at", id="bad-date"
    ),
    pytest.param(
        body("e", published_at="2025-13-40T99:00:00Z"),
        "invalid-request",
        "published_at",
        id="impossible-date",
    ),
    pytest.param(
        body("e", published_at="0001-01-01T00:00:00+05:00"),
        "invalid-request",
        "published_at",
        id="date-out-of-range",
    ),
    pytest.param(
        body("e", published_at=1737106200), "invalid-request", "published_at", id="epoch-date"
    ),
    pytest.param(body("e", language="not a tag"), "invalid-request", "language", id="bad-language"),
    pytest.param(
        body("e", "Skip to content\nScroll to Top\n"), "boilerplate-only", "text", id="boilerplate"
    ),
    pytest.param(body("x" * 513), "invalid-request", "id", id="id-too-long"),
]


@pytest.mark.parametrize(("payload", "slug", "field"), BAD_ARTICLES)
def test_invalid_articles_are_422(
    dedup_client: TestClient, payload: dict[str, Any], slug: str, field: str
) -> None:
    for path in ("/v1/articles", "/v1/match"):
        response = dedup_client.post(path, json=payload)
        assert_problem(response, 422, slug, field=field)
    assert dedup_client.get("/metrics").text.count("samestory_articles_stored 0.0") == 1


def test_lone_surrogates_are_422(dedup_client: TestClient) -> None:
    # Valid JSON, but no UTF-8 text: "\ud800" escapes an unpaired surrogate.
    payload = b'{"id": "e", "text": "broken \\ud800 surrogate"}'

    response = dedup_client.post(
        "/v1/articles", content=payload, headers={"content-type": "application/json"}
    )

    assert_problem(response, 422, "invalid-request", "valid string", field="text")


def test_validation_problem_lists_every_error(dedup_client: TestClient) -> None:
    response = dedup_client.post("/v1/articles", json={"language": "?"})

    problem = assert_problem(response, 422, "invalid-request", "body.id: Field required")
    locations = {tuple(error["loc"]) for error in problem["errors"]}
    assert locations == {("body", "id"), ("body", "text"), ("body", "language")}
    assert "field" not in problem


def test_malformed_json_is_422(dedup_client: TestClient) -> None:
    response = dedup_client.post(
        "/v1/articles", content=b'{"id": "a", "text":', headers={"content-type": "application/json"}
    )

    assert_problem(response, 422, "invalid-request", "JSON")


def test_date_only_and_offsets_are_normalized_to_utc(dedup_client: TestClient) -> None:
    verdict = dedup_client.post("/v1/articles", json=body("d", published_at="2025-01-17")).json()

    assert verdict["cluster"]["canonical"]["published_at"] == "2025-01-17T00:00:00Z"


# -- body limits ----------------------------------------------------------------------------


def test_declared_oversize_body_is_413(start_app: StartApp) -> None:
    client = start_app(mode="dedup", max_body_bytes=1_000)

    response = client.post("/v1/articles", json=body("big", "word " * 400))

    assert_problem(response, 413, "payload-too-large", "at most 1000")
    assert client.get("/v1/articles/big").status_code == 404
    # Refused before routing, and still counted under the route it was sent to.
    batch = client.post("/v1/articles/batch", json={"articles": [body("big", "word " * 400)]})
    assert batch.status_code == 413
    metrics = client.get("/metrics").text
    for route in ("/v1/articles", "/v1/articles/batch"):
        line = f'samestory_http_requests_total{{method="POST",route="{route}",status="413"}} 1.0'
        assert line in metrics, metrics


def test_streamed_oversize_body_is_413(start_app: StartApp) -> None:
    client = start_app(mode="dedup", max_body_bytes=1_000)

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "big", "text": "'
        for _ in range(50):
            yield b"word " * 10
        yield b'"}'

    # A generator body is sent without Content-Length: the limit must count what arrives.
    response = client.post(
        "/v1/articles", content=chunks(), headers={"content-type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large", "more than 1000 bytes")


def test_body_within_limit_streamed_is_accepted(start_app: StartApp) -> None:
    client = start_app(mode="dedup", max_body_bytes=1_000)

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "small", '
        yield ('"text": "' + BRIDGE + '"}').encode()

    response = client.post(
        "/v1/articles", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 200, response.text


# -- batch ----------------------------------------------------------------------------------


def test_batch_returns_verdicts_in_order(dedup_client: TestClient) -> None:
    articles = [body("b1"), body("m1", MARKET), body("b2", BRIDGE_COPY), body("b1")]

    response = dedup_client.post("/v1/articles/batch", json={"articles": articles})

    assert response.status_code == 200
    results = response.json()["results"]
    for verdict in results:
        assert_verdict_shape(verdict)
    assert [verdict["id"] for verdict in results] == ["b1", "m1", "b2", "b1"]
    assert [verdict["status"] for verdict in results] == [
        "new_story",
        "new_story",
        "near_duplicate",
        "new_story",
    ]


def test_batch_equals_one_at_a_time(start_app: StartApp) -> None:
    articles = [body("b1"), body("m1", MARKET), body("b2", BRIDGE_COPY), body("b3", BRIDGE)]
    batched = start_app(mode="dedup").post("/v1/articles/batch", json={"articles": articles})
    single = start_app(mode="dedup")
    one_by_one = [single.post("/v1/articles", json=article).json() for article in articles]

    def decisions(verdicts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(v["status"], v["duplicate_of"], v["cluster"]["id"]) for v in verdicts]

    assert decisions(batched.json()["results"]) == decisions(one_by_one)


def test_batch_is_all_or_nothing(dedup_client: TestClient) -> None:
    articles = [body("ok"), body("bad", "Skip to content\nScroll to Top")]

    response = dedup_client.post("/v1/articles/batch", json={"articles": articles})

    assert_problem(response, 422, "boilerplate-only", "'bad'")
    assert_problem(dedup_client.get("/v1/articles/ok"), 404, "article-not-found")


def test_an_id_twice_in_a_batch_with_other_texts_is_409_and_stores_nothing(
    dedup_client: TestClient,
) -> None:
    articles = [body("ok"), body("twice"), body("twice", MARKET)]

    response = dedup_client.post("/v1/articles/batch", json={"articles": articles})

    assert_problem(response, 409, "id-conflict", "'twice' appears twice in this batch")
    assert_problem(dedup_client.get("/v1/articles/ok"), 404, "article-not-found")
    assert_problem(dedup_client.get("/v1/articles/twice"), 404, "article-not-found")


def test_batch_errors_name_the_article(dedup_client: TestClient) -> None:
    articles = [body("ok"), body("bad", published_at="soon")]

    response = dedup_client.post("/v1/articles/batch", json={"articles": articles})

    problem = assert_problem(response, 422, "invalid-request", "body.articles.1.published_at")
    assert problem["errors"][0]["loc"] == ["body", "articles", 1, "published_at"]


def test_empty_batch_is_422(dedup_client: TestClient) -> None:
    response = dedup_client.post("/v1/articles/batch", json={"articles": []})

    assert_problem(response, 422, "invalid-request", "at least 1", field="articles")


def test_batch_over_max_batch_is_413(start_app: StartApp) -> None:
    client = start_app(mode="dedup", max_batch=2)
    articles = [body(f"n{number}", f"{BRIDGE} {number}") for number in range(3)]

    response = client.post("/v1/articles/batch", json={"articles": articles})

    assert_problem(response, 413, "payload-too-large", "at most 2 are allowed")


# -- match and similarity -------------------------------------------------------------------


def test_match_stores_nothing(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))

    copy = dedup_client.post("/v1/match", json=body("probe", BRIDGE_COPY))
    fresh = dedup_client.post("/v1/match", json=body("probe2", MARKET))

    assert copy.status_code == fresh.status_code == 200
    assert_verdict_shape(copy.json())
    assert copy.json()["stored"] is False
    assert copy.json()["status"] == "near_duplicate"
    assert copy.json()["duplicate_of"] == "b1"
    assert fresh.json()["status"] == "new_story"
    assert fresh.json()["cluster"]["id"] == ""
    assert_problem(dedup_client.get("/v1/articles/probe"), 404, "article-not-found")


def test_match_of_a_stored_id_with_other_text_is_409(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))

    assert_problem(dedup_client.post("/v1/match", json=body("b1", MARKET)), 409, "id-conflict")


def test_similarity(dedup_client: TestClient) -> None:
    response = dedup_client.post(
        "/v1/similarity", json={"a": body("a"), "b": body("b", BRIDGE_COPY)}
    )
    unrelated = dedup_client.post("/v1/similarity", json={"a": body("a"), "b": body("b", MARKET)})

    assert response.status_code == 200
    result = response.json()
    assert set(result) == {
        "jaccard",
        "containment",
        "story_similarity",
        "near_duplicate",
        "same_story",
    }
    assert result["near_duplicate"] is True and result["same_story"] is True
    assert unrelated.json()["near_duplicate"] is False
    assert unrelated.json()["jaccard"] < 0.2


def test_similarity_needs_both_articles(dedup_client: TestClient) -> None:
    response = dedup_client.post("/v1/similarity", json={"a": body("a")})

    assert_problem(response, 422, "invalid-request", "body.b: Field required", field="b")


# -- read and delete ------------------------------------------------------------------------


def test_get_article_returns_it_and_its_verdict(dedup_client: TestClient) -> None:
    verdict = dedup_client.post(
        "/v1/articles", json=body("a/1", title="Bridge", published_at="2025-01-17T09:30:00Z")
    ).json()

    response = dedup_client.get("/v1/articles/a/1")

    assert response.status_code == 200
    stored = response.json()
    assert set(stored) == {"article", "verdict", "received_at"}
    assert stored["article"] == {
        "id": "a/1",
        "text": BRIDGE,
        "title": "Bridge",
        "url": None,
        "source": None,
        "language": None,
        "published_at": "2025-01-17T09:30:00Z",
    }
    assert stored["verdict"] == verdict
    assert RFC3339_UTC.match(stored["received_at"])


def test_get_unknown_article_is_404(dedup_client: TestClient) -> None:
    response = dedup_client.get("/v1/articles/nope")

    assert_problem(response, 404, "article-not-found", "'nope'")


def test_delete_removes_the_article(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))

    response = dedup_client.delete("/v1/articles/b1")

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(dedup_client.get("/v1/articles/b1"), 404, "article-not-found")
    assert_problem(dedup_client.delete("/v1/articles/b1"), 404, "article-not-found")
    # Deleted means gone from the indexes too: the same text is new again.
    again = dedup_client.post("/v1/articles", json=body("b9")).json()
    assert again["status"] == "new_story"


def test_deleting_the_canonical_elects_another(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1", published_at="2025-01-01T00:00:00Z"))
    copy = dedup_client.post(
        "/v1/articles", json=body("b2", BRIDGE_COPY, published_at="2025-01-02T00:00:00Z")
    ).json()

    dedup_client.delete("/v1/articles/b1")

    cluster = dedup_client.get(f"/v1/clusters/{copy['cluster']['id']}").json()
    assert cluster["canonical"]["id"] == "b2"
    assert cluster["size"] == 1
    assert dedup_client.get("/v1/articles/b2").json()["verdict"]["duplicate_of"] is None


# -- clusters -------------------------------------------------------------------------------


def test_cluster_page(dedup_client: TestClient) -> None:
    for number, text in enumerate([BRIDGE, BRIDGE_COPY, BRIDGE.upper(), BRIDGE + " Again."]):
        stamp = f"2025-01-0{number + 1}T08:00:00Z"
        verdict = dedup_client.post(
            "/v1/articles", json=body(f"b{number}", text, published_at=stamp)
        ).json()
    cluster_id = verdict["cluster"]["id"]

    page = dedup_client.get(f"/v1/clusters/{cluster_id}", params={"limit": 2, "offset": 1})

    assert page.status_code == 200
    story = page.json()
    assert set(story) == CLUSTER_FIELDS | {"updated_at", "members", "limit", "offset"}
    assert story["id"] == cluster_id
    assert story["size"] == 4
    assert story["canonical"]["id"] == "b0"
    assert story["first_published_at"] == "2025-01-01T08:00:00Z"
    assert story["last_published_at"] == "2025-01-04T08:00:00Z"
    assert (story["limit"], story["offset"]) == (2, 1)
    assert [member["id"] for member in story["members"]] == ["b2", "b1"]
    for member in story["members"]:
        assert set(member) == CANONICAL_FIELDS


# Numbers past SQLite's integers, other digits and other spellings of a story id included.
@pytest.mark.parametrize(
    "cluster_id", ["s999", "nonsense", "s", "s" + "9" * 30, "s١", "s01", "s+1", "S1"]
)
def test_unknown_cluster_is_404(dedup_client: TestClient, cluster_id: str) -> None:
    response = dedup_client.get(f"/v1/clusters/{cluster_id}")

    assert_problem(response, 404, "cluster-not-found", repr(cluster_id))


def test_recent_clusters(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))
    dedup_client.post("/v1/articles", json=body("m1", MARKET))

    listed = dedup_client.get("/v1/clusters").json()["clusters"]
    limited = dedup_client.get("/v1/clusters", params={"limit": 1}).json()["clusters"]
    future = dedup_client.get("/v1/clusters", params={"updated_since": "2999-01-01T00:00:00Z"})
    empty = dedup_client.get("/v1/clusters", params={"updated_since": ""}).json()["clusters"]

    assert [cluster["canonical"]["id"] for cluster in listed] == ["m1", "b1"]
    assert set(listed[0]) == CLUSTER_FIELDS | {"updated_at"}
    assert len(limited) == 1
    assert future.json() == {"clusters": []}
    assert empty == listed  # an empty updated_since is no filter, as documented


def test_an_empty_published_at_is_the_receipt_time(dedup_client: TestClient) -> None:
    # Ingestion systems often send "" for a missing field: documented as absent.
    verdict = dedup_client.post("/v1/articles", json=body("b1", published_at="")).json()

    published = datetime.fromisoformat(verdict["cluster"]["canonical"]["published_at"])
    assert abs(published - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"updated_since": "last week"}, "updated_since"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
def test_bad_cluster_queries_are_422(
    dedup_client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = dedup_client.get("/v1/clusters", params=params)

    assert_problem(response, 422, "invalid-request", f"query.{field}", field=field)


# -- routing, auth, operations ----------------------------------------------------------------


def test_unknown_route_is_404_problem(dedup_client: TestClient) -> None:
    assert_problem(dedup_client.get("/v2/articles"), 404, "not-found", "no route matches")


def test_a_trailing_slash_is_no_route_not_a_redirect(dedup_client: TestClient) -> None:
    response = dedup_client.get("/v1/clusters/", follow_redirects=False)

    assert_problem(response, 404, "not-found", "no route matches GET /v1/clusters/")


def test_wrong_method_is_405_problem(dedup_client: TestClient) -> None:
    response = dedup_client.put("/v1/articles", json=body("x"))

    assert_problem(response, 405, "method-not-allowed", "PUT is not allowed")
    assert response.headers["allow"] == "POST"


def test_405_allows_every_method_of_the_path(dedup_client: TestClient) -> None:
    # GET and DELETE are two routes on one path; the Allow header names both.
    response = dedup_client.request("OPTIONS", "/v1/articles/some-id")

    assert_problem(response, 405, "method-not-allowed", "OPTIONS is not allowed")
    assert response.headers["allow"] == "DELETE, GET, HEAD"


@pytest.mark.parametrize("raw", [b"\x80", b'{"id": "x", "text": "\xc3("}'])
def test_a_body_that_is_not_utf8_is_422_like_bad_json(dedup_client: TestClient, raw: bytes) -> None:
    response = dedup_client.post(
        "/v1/articles", content=raw, headers={"content-type": "application/json"}
    )

    problem = assert_problem(response, 422, "invalid-request", "body: not UTF-8")
    assert problem["errors"][0]["loc"] == ["body"]


def test_api_key_is_required_when_configured(start_app: StartApp) -> None:
    client = start_app(mode="dedup", api_key="s3cret")

    missing = client.post("/v1/articles", json=body("k"))
    wrong = client.get("/v1/clusters", headers={"X-API-Key": "guess"})
    wrong_bearer = client.get("/v1/clusters", headers={"Authorization": "Bearer guess"})
    with_header = client.post("/v1/articles", json=body("k"), headers={"X-API-Key": "s3cret"})
    with_bearer = client.get("/v1/articles/k", headers={"Authorization": "Bearer s3cret"})

    problem = assert_problem(missing, 401, "unauthorized", "X-API-Key")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "s3cret" not in str(problem)
    assert_problem(wrong, 401, "unauthorized", "wrong")
    assert_problem(wrong_bearer, 401, "unauthorized", "wrong")
    assert with_header.status_code == 200
    assert with_bearer.status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(open_path).status_code == 200, open_path


def test_no_api_key_needed_when_none_is_configured(
    dedup_client: TestClient, start_app: StartApp
) -> None:
    empty_key = start_app(mode="dedup", api_key="")

    assert dedup_client.get("/v1/clusters", headers={"X-API-Key": "anything"}).status_code == 200
    assert empty_key.get("/v1/clusters").status_code == 200


def test_health_and_readiness(dedup_client: TestClient) -> None:
    assert dedup_client.get("/healthz").json() == {"status": "ok"}
    assert dedup_client.get("/readyz").json() == {"status": "ready"}


def test_a_failed_load_is_reported(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model=str(tmp_path / "no-such-model"))
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        ready = client.get("/readyz")
        while "failed" not in ready.json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.05)
            ready = client.get("/readyz")

        assert_problem(ready, 503, "not-ready", "does not exist")
        assert ready.headers["retry-after"] == "5"
        assert_problem(client.get("/healthz"), 503, "not-ready", "failed to load")
        assert_problem(client.post("/v1/articles", json=body("x")), 503, "not-ready")


def test_metrics(dedup_client: TestClient) -> None:
    dedup_client.post("/v1/articles", json=body("b1"))
    dedup_client.post("/v1/articles", json=body("b2", BRIDGE_COPY))
    dedup_client.post("/v1/articles", json=body("b2", MARKET))
    dedup_client.get("/v1/articles/b1")

    response = dedup_client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'samestory_http_requests_total{method="POST",route="/v1/articles",status="200"} 2.0',
        'samestory_http_requests_total{method="POST",route="/v1/articles",status="409"} 1.0',
        'samestory_http_requests_total{method="GET",route="/v1/articles/{article_id}",'
        'status="200"} 1.0',
        'samestory_verdicts_total{status="new_story"} 1.0',
        'samestory_verdicts_total{status="near_duplicate"} 1.0',
        "samestory_articles_stored 2.0",
        "samestory_stories_stored 1.0",
        'samestory_index_entries{index="lsh"} 2.0',
        'samestory_index_entries{index="vectors"} 0.0',
        "samestory_ready 1.0",
        "samestory_writer_batch_articles_sum 2.0",
    ):
        assert line in text, line
    assert re.search(
        r'samestory_http_request_duration_seconds_count\{method="POST",route="/v1/articles",'
        r'status="200"\} 2\.0',
        text,
    )
    assert re.search(r"samestory_index_memory_bytes \d", text)


def test_openapi_documents_the_contract(dedup_client: TestClient) -> None:
    schema = dedup_client.get("/openapi.json").json()

    operations = {
        (method.upper(), path) for path, item in schema["paths"].items() for method in item
    }
    assert operations == set(OPERATIONS)
    ingest = schema["paths"]["/v1/articles"]["post"]["responses"]
    assert set(ingest) == {"200", "401", "409", "413", "422", "503"}
    assert ingest["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert components["ArticleIn"]["examples"][0]["language"] == "ar"
    assert components["Verdict"]["examples"]
    assert dedup_client.get("/docs").status_code == 200


# -- stories mode (the real default model) ------------------------------------------------------

FLOOD = (
    "Heavy rain flooded the streets of the port city on Tuesday, forcing schools to close "
    "and cutting power to thousands of homes, the civil defence authority said."
)
FLOOD_RETOLD = (
    "Floods hit the port city after a day of heavy rain on Tuesday; schools were closed and "
    "thousands of homes lost electricity, according to the civil defence authority."
)
FOOTBALL = (
    "The national football team won the regional championship final on penalties after a "
    "goalless draw in front of a full stadium in the capital on Friday night."
)
EARTHQUAKE_AR = (
    "وقع زلزال بقوة ست درجات في شمال إيران صباح اليوم، ولم ترد أنباء عن إصابات أو أضرار "
    "كبيرة في المباني، بحسب مركز رصد الزلازل."
)


@pytest.mark.model
def test_stories_are_formed_and_copies_found(stories_client: TestClient) -> None:
    client = stories_client
    stamp = {"published_at": "2025-03-04T10:00:00Z"}

    flood = client.post("/v1/articles", json=body("flood-1", FLOOD, **stamp)).json()
    retold = client.post("/v1/articles", json=body("flood-2", FLOOD_RETOLD, **stamp)).json()
    copy = client.post(
        "/v1/articles", json=body("flood-3", FLOOD + " Roads reopened at night.", **stamp)
    ).json()
    football = client.post("/v1/articles", json=body("football", FOOTBALL, **stamp)).json()
    arabic = client.post("/v1/articles", json=body("quake", EARTHQUAKE_AR, **stamp)).json()

    assert flood["status"] == "new_story"
    assert retold["status"] == "same_story"
    assert retold["story_similarity"] >= 0.5
    assert retold["cluster"]["id"] == flood["cluster"]["id"]
    assert copy["status"] == "near_duplicate"
    assert copy["duplicate_of"] == "flood-1"
    assert copy["cluster"]["id"] == flood["cluster"]["id"]
    assert copy["cluster"]["size"] == 3
    assert football["status"] == "new_story"
    assert arabic["status"] == "new_story"
    assert len({flood["cluster"]["id"], football["cluster"]["id"], arabic["cluster"]["id"]}) == 3
    assert client.get("/v1/articles/quake").json()["article"]["language"] == "ar"

    probe = client.post(
        "/v1/match", json=body("probe", FLOOD_RETOLD + " Officials warned.", **stamp)
    )
    assert probe.json()["stored"] is False
    assert probe.json()["cluster"]["id"] == flood["cluster"]["id"]

    pair = client.post(
        "/v1/similarity", json={"a": body("a", FLOOD), "b": body("b", FLOOD_RETOLD)}
    ).json()
    assert pair["same_story"] is True and pair["near_duplicate"] is False


@pytest.mark.model
def test_concurrent_ingests_are_micro_batched(stories_client: TestClient) -> None:
    client = stories_client
    topics = ["bridge", "market", "school", "hospital", "railway", "harbour", "museum", "park"]

    def post(number: int) -> dict[str, Any]:
        text = (
            f"Report {number}: the new {topics[number % len(topics)]} in district {number} "
            f"opened on day {number} with {number * 11} visitors and a speech by the mayor."
        )
        response = client.post("/v1/articles", json=body(f"conc-{number}", text))
        assert response.status_code == 200, response.text
        verdict: dict[str, Any] = response.json()
        return verdict

    def engine_calls() -> float:
        match = re.search(
            r"samestory_writer_batch_articles_count (\S+)", client.get("/metrics").text
        )
        assert match
        return float(match.group(1))

    before = engine_calls()
    with ThreadPoolExecutor(max_workers=12) as pool:
        verdicts = list(pool.map(post, range(12)))

    assert [verdict["id"] for verdict in verdicts] == [f"conc-{number}" for number in range(12)]
    assert all(verdict["stored"] for verdict in verdicts)
    assert engine_calls() - before < 12


def test_a_full_disk_answers_503_storage_full_and_the_service_goes_on(
    dedup_client: TestClient,
) -> None:
    assert dedup_client.post("/v1/articles", json=body("bridge")).status_code == 200
    engine = dedup_client.app.state.runtime.engine  # type: ignore[attr-defined]
    fill_up(engine)
    # Longer than a few of the store's pages, whatever their size: it cannot fit in one.
    long_market = " ".join(f"{MARKET} ({i})" for i in range(400))

    refused = dedup_client.post("/v1/articles", json=body("market", long_market))
    problem = assert_problem(refused, 503, "storage-full", "nothing of this request was stored")
    assert refused.headers["retry-after"] == "5"
    assert problem["instance"] == "/v1/articles"
    assert dedup_client.get("/healthz").status_code == 200
    assert dedup_client.get("/v1/articles/market").status_code == 404
    assert dedup_client.get("/v1/articles/bridge").status_code == 200

    make_room(engine)
    stored = dedup_client.post("/v1/articles", json=body("market", long_market))
    assert stored.status_code == 200 and stored.json()["status"] == "new_story"
