"""VectorIndex against brute-force cosine in numpy, on real FAISS, in both modes."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import vectors as vectors_module
from index.errors import IndexMismatchError
from index.vectors import MAX_TOMBSTONE_FRACTION, VectorIndex

FINGERPRINT = "0123456789abcdef"
# float16 keeps 11 significant bits: inner products of unit vectors move by about 1e-3.
FP16_TOLERANCE = 2e-3


def unit_vectors(rng: np.random.Generator, n: int, dimension: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dimension))
    normalized: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalized.astype(np.float32)


def clustered_vectors(rng: np.random.Generator, n: int, dimension: int) -> np.ndarray:
    """Unit vectors around 60 centres, like embeddings of articles about 60 stories."""
    centres = unit_vectors(rng, 60, dimension)
    noisy = centres[rng.integers(0, 60, n)] + 0.08 * rng.standard_normal((n, dimension))
    normalized: np.ndarray = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return normalized.astype(np.float32)


def brute_force(
    ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def filled(
    n: int, dimension: int, *, exact_limit: int, seed: int = 0
) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(10 * n).astype(np.int64)[:n]
    vectors = clustered_vectors(rng, n, dimension)
    index = VectorIndex(dimension, exact_limit=exact_limit)
    index.add(ids, vectors, bulk=True)
    return index, ids, vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_search_equals_brute_force_cosine(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = rng.choice(1_000_000, size=300, replace=False).astype(np.int64)
    vectors = unit_vectors(rng, 300, 48)
    queries = unit_vectors(rng, 25, 48)
    index = VectorIndex(48)
    index.add(ids, vectors)

    scores, found = index.search(queries, 10)

    assert not index.approximate
    assert scores.dtype == np.float32 and found.dtype == np.int64
    # The ranking oracle sees the float16 values the index stores; the scores are
    # checked against full-precision cosine.
    stored = vectors.astype(np.float16).astype(np.float32)
    _, expected_ids = brute_force(ids, stored, queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    sorter = np.argsort(ids)
    rows = sorter[np.searchsorted(ids, found, sorter=sorter)]
    exact = np.take_along_axis(queries @ vectors.T, rows, axis=1)
    np.testing.assert_allclose(scores, exact, atol=FP16_TOLERANCE)


def test_search_pads_when_fewer_than_k_are_stored() -> None:
    index, ids, vectors = filled(3, 16, exact_limit=100)

    scores, found = index.search(vectors[:2], 5)

    assert sorted(found[0, :3].tolist()) == sorted(ids.tolist())
    np.testing.assert_array_equal(found[:, 3:], -1)
    assert np.isneginf(scores[:, 3:]).all()
    assert np.isfinite(scores[:, :3]).all()


def test_empty_index_returns_only_padding() -> None:
    scores, found = VectorIndex(8).search(np.ones((2, 8), dtype=np.float32), 3)

    assert found.shape == (2, 3) and (found == -1).all() and np.isneginf(scores).all()


def test_hnsw_recall_at_10_against_brute_force() -> None:
    index, ids, vectors = filled(3_000, 64, exact_limit=200, seed=3)
    queries = clustered_vectors(np.random.default_rng(4), 200, 64)

    _, found = index.search(queries, 10)

    assert index.approximate
    _, expected = brute_force(ids, vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected, strict=True)])
    assert recall >= 0.95


def test_a_bulk_add_past_the_limit_converts_at_once() -> None:
    rng = np.random.default_rng(5)
    vectors = unit_vectors(rng, 51, 32)
    index = VectorIndex(32, exact_limit=50)

    index.add(np.arange(50), vectors[:50], bulk=True)
    assert not index.approximate
    index.add(np.array([50]), vectors[50:], bulk=True)

    assert index.approximate and not index.rebuilding
    assert index.replacements == 1  # a snapshot taken before holds the flat index
    assert len(index) == 51
    _, found = index.search(vectors, 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(51))


@pytest.mark.parametrize("exact_limit", [10_000, 100], ids=["flat", "hnsw"])
def test_removed_ids_never_come_back_and_k_is_kept(exact_limit: int) -> None:
    index, ids, vectors = filled(400, 32, exact_limit=exact_limit, seed=6)
    removed = ids[::20]  # 5 %, below the HNSW rebuild fraction

    assert index.remove(removed) == len(removed)

    if exact_limit == 100:
        assert index.approximate and index.tombstones == len(removed)
    assert len(index) == len(ids) - len(removed)
    assert all(int(i) not in index for i in removed)
    scores, found = index.search(vectors[::20], 10)
    assert not np.isin(found, removed).any()
    assert (found >= 0).all() and np.isfinite(scores).all()


def test_hnsw_rebuilds_without_tombstones_past_the_fraction() -> None:
    index, ids, vectors = filled(300, 16, exact_limit=100, seed=7)
    below = int(MAX_TOMBSTONE_FRACTION * 300)

    index.remove(ids[:below])
    assert index.tombstones == below and not index.rebuilding
    index.remove(ids[below : below + 1])

    assert index.wait_for_rebuild(timeout=60)
    assert index.tombstones == 0
    assert index.approximate
    assert len(index) == 300 - below - 1
    _, found = index.search(vectors[below + 1 : below + 51], 1)
    np.testing.assert_array_equal(found[:, 0], ids[below + 1 : below + 51])


def test_hnsw_rebuild_returns_to_flat_below_the_limit() -> None:
    index, ids, _ = filled(300, 16, exact_limit=200, seed=8)

    index.remove(ids[:150])

    assert index.wait_for_rebuild(timeout=60)
    assert not index.approximate and index.tombstones == 0 and len(index) == 150


def _small_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Rebuilds copy ``chunk`` vectors at a time and finish under the lock only for the
    last 8: a pause at a chunk comes outside the lock, and changes can come between."""
    monkeypatch.setattr(vectors_module, "_REBUILD_CHUNK", chunk)
    monkeypatch.setattr(vectors_module, "_CATCH_UP_UNDER_LOCK", 8)


@pytest.fixture
def paused_rebuild(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """A background rebuild that stops before adding its first chunk until released:
    (it reached the pause, release it). Synchronous conversions from flat go on."""
    reached, release = threading.Event(), threading.Event()
    add_chunk = vectors_module._add_chunk

    def paused(index: object, vectors: np.ndarray) -> None:
        in_background = threading.current_thread().name == "samestory-vectors-rebuild"
        if in_background and not reached.is_set():
            reached.set()
            assert release.wait(60)
        add_chunk(index, vectors)

    monkeypatch.setattr(vectors_module, "_add_chunk", paused)
    return reached, release


@pytest.mark.parametrize("remaining", [250, 40], ids=["hnsw", "flat"])
def test_changes_during_a_background_rebuild_are_kept(
    paused_rebuild: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
    remaining: int,
) -> None:
    # The graph is rebuilt while searches, adds, removals and replacements go on; the new
    # graph has all of them when it takes over, whether it is HNSW or (few vectors left)
    # flat again. Small chunks, so that the rebuild copies some vectors after the changes.
    _small_chunks(monkeypatch, 64)
    reached, release = paused_rebuild
    rng = np.random.default_rng(12)
    exact_limit = 100 if remaining > 100 else 60
    index, ids, vectors = filled(400, 16, exact_limit=exact_limit, seed=12)
    stored = dict(zip(ids.tolist(), vectors, strict=True))
    doomed = ids[remaining:]
    index.remove(doomed)
    for gone in doomed.tolist():
        del stored[gone]
    assert reached.wait(60) and index.rebuilding
    # Meanwhile, under the old graph: removals of two vectors the rebuild has copied (the
    # first chunk) and of one it has not, additions, and a replacement of a copied vector.
    removed_now = [int(ids[0]), int(ids[1]), int(ids[remaining - 1])]
    index.remove(np.array(removed_now))
    for gone in removed_now:
        del stored[gone]
    added = unit_vectors(rng, 30, 16)
    index.add(np.arange(10_000, 10_030), added)
    stored.update(zip(range(10_000, 10_030), added, strict=True))
    replaced = int(ids[2])
    stored[replaced] = unit_vectors(rng, 1, 16)[0]
    index.add(np.array([replaced]), stored[replaced][None, :])
    _, during = index.search(np.stack(list(stored.values())), 1)
    assert not np.isin(during, [*doomed.tolist(), *removed_now]).any()
    release.set()

    assert index.wait_for_rebuild(timeout=60)
    assert index.approximate == (remaining > exact_limit)
    assert len(index) == len(stored)
    # The copied ones removed meanwhile are tombstones in the new graph (a flat index has
    # none: it drops them).
    assert index.tombstones == (3 if index.approximate else 0)
    every = np.array(sorted(stored))
    _, found = index.search(np.stack([stored[i] for i in every.tolist()]), 1)
    np.testing.assert_array_equal(found[:, 0], every)
    assert not np.isin(found, [*doomed.tolist(), *removed_now]).any()


def test_closing_stops_a_background_rebuild(
    paused_rebuild: tuple[threading.Event, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_chunks(monkeypatch, 64)
    reached, release = paused_rebuild
    index, ids, _ = filled(300, 16, exact_limit=100, seed=13)
    index.remove(ids[:100])
    assert reached.wait(60)
    closing = threading.Thread(target=index.close)
    closing.start()
    assert index._stop_rebuilding.wait(60)
    release.set()
    closing.join(60)
    assert not closing.is_alive() and not index.rebuilding
    # Nothing replaced: the tombstones stay, and a closed index starts no rebuild again.
    assert index.tombstones == 100
    index.remove(ids[100:110])
    assert not index.rebuilding and index.tombstones == 110


def test_crossing_the_limit_converts_in_the_background_while_flat_serves(
    paused_rebuild: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _small_chunks(monkeypatch, 16)
    reached, release = paused_rebuild
    vectors = unit_vectors(np.random.default_rng(21), 81, 32)
    index = VectorIndex(32, exact_limit=50)
    index.add(np.arange(50), vectors[:50])

    index.add(np.array([50]), vectors[50:51])
    assert reached.wait(60) and index.rebuilding

    # Meanwhile the flat index answers exactly; its removals are tombstones until then.
    assert not index.approximate
    assert index.remove(np.array([3, 4])) == 2 and index.tombstones == 2
    index.add(np.arange(51, 81), vectors[51:])
    live = np.setdiff1d(np.arange(81), [3, 4])
    _, found = index.search(vectors, 80)
    assert not np.isin(found, [3, 4]).any()
    np.testing.assert_array_equal(found[live, 0], live)
    assert (found[:, :79] >= 0).all() and (found[:, 79:] == -1).all()
    # A snapshot taken now is a flat index without the tombstones.
    index.save(tmp_path / "vectors.npz", fingerprint=FINGERPRINT)
    loaded = VectorIndex.load(tmp_path / "vectors.npz", fingerprint=FINGERPRINT)
    assert not loaded.approximate and loaded.tombstones == 0 and len(loaded) == 79
    for left, right in zip(loaded.search(vectors, 5), index.search(vectors, 5), strict=True):
        np.testing.assert_array_equal(left, right)
    release.set()

    assert index.wait_for_rebuild(timeout=60)
    assert index.approximate and len(index) == 79
    _, found = index.search(vectors[live], 1)
    np.testing.assert_array_equal(found[:, 0], live)
    assert not np.isin(index.search(vectors, 10)[1], [3, 4]).any()


def test_closing_waits_for_a_conversion(
    paused_rebuild: tuple[threading.Event, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unlike a rebuild, the conversion is finished: the next start would load it flat.
    _small_chunks(monkeypatch, 16)
    reached, release = paused_rebuild
    vectors = unit_vectors(np.random.default_rng(22), 60, 16)
    index = VectorIndex(16, exact_limit=50)
    index.add(np.arange(60), vectors)
    assert reached.wait(60)
    closing = threading.Thread(target=index.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive() and not index._stop_rebuilding.is_set()
    release.set()
    closing.join(60)

    assert not closing.is_alive() and index.approximate and len(index) == 60


def test_a_failed_conversion_leaves_a_compact_flat_index_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _small_chunks(monkeypatch, 16)
    reached, release = threading.Event(), threading.Event()
    add_chunk = vectors_module._add_chunk

    def failing(index: object, vectors: np.ndarray) -> None:
        if threading.current_thread().name == "samestory-vectors-rebuild":
            reached.set()
            assert release.wait(60)
            raise MemoryError("no room for the graph")
        add_chunk(index, vectors)

    monkeypatch.setattr(vectors_module, "_add_chunk", failing)
    vectors = unit_vectors(np.random.default_rng(24), 70, 16)
    index = VectorIndex(16, exact_limit=50)
    index.add(np.arange(60), vectors[:60])
    assert reached.wait(60)
    index.remove(np.arange(10))
    assert index.tombstones == 10
    release.set()

    assert index.wait_for_rebuild(timeout=60)
    assert "background rebuild of the vector index failed" in caplog.text
    assert not index.approximate and index.tombstones == 0 and len(index) == 50
    _, found = index.search(vectors[:60], 50)
    np.testing.assert_array_equal(found[10:, 0], np.arange(10, 60))
    assert not np.isin(found, np.arange(10)).any()
    # The next change past the limit converts again.
    monkeypatch.setattr(vectors_module, "_add_chunk", add_chunk)
    index.add(np.arange(60, 70), vectors[60:])
    assert index.wait_for_rebuild(timeout=60) and index.approximate and len(index) == 60


def test_memory_counts_the_graph_being_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paused before the second chunk of a conversion: the first chunk's graph counts.
    _small_chunks(monkeypatch, 64)
    reached, release = threading.Event(), threading.Event()
    add_chunk = vectors_module._add_chunk

    calls = []

    def paused(index: object, vectors: np.ndarray) -> None:
        if threading.current_thread().name == "samestory-vectors-rebuild":
            calls.append(len(vectors))
            if len(calls) == 2:  # the first chunk is built and counted
                reached.set()
                assert release.wait(60)
        add_chunk(index, vectors)

    monkeypatch.setattr(vectors_module, "_add_chunk", paused)
    vectors = unit_vectors(np.random.default_rng(23), 300, 16)
    index = VectorIndex(16, exact_limit=250)
    index.add(np.arange(250), vectors[:250])
    flat_only = index.memory_bytes()
    index.add(np.arange(250, 300), vectors[250:])
    assert reached.wait(60)
    try:
        # The first chunk is in the graph: 64 codes of 32 bytes and their links.
        assert index.memory_bytes() - flat_only >= 50 * 32 + 64 * 32 + 64 * 4 * 2 * 16
    finally:
        release.set()
    assert index.wait_for_rebuild(timeout=60) and index.approximate


@pytest.mark.parametrize("exact_limit", [10_000, 10], ids=["flat", "hnsw"])
def test_adding_an_existing_id_replaces_its_vector(exact_limit: int) -> None:
    index, ids, vectors = filled(200, 32, exact_limit=exact_limit, seed=9)
    replacement = unit_vectors(np.random.default_rng(10), 1, 32)

    index.add(ids[:1], replacement)

    assert len(index) == 200
    scores, found = index.search(replacement, 1)
    assert found[0, 0] == ids[0] and scores[0, 0] == pytest.approx(1.0, abs=FP16_TOLERANCE)
    scores, found = index.search(vectors[:1], 200)
    assert list(found[0]).count(ids[0]) == 1
    assert scores[0, list(found[0]).index(ids[0])] < 0.99


def test_an_id_repeated_in_one_batch_keeps_its_last_vector() -> None:
    vectors = unit_vectors(np.random.default_rng(11), 3, 16)
    index = VectorIndex(16)

    index.add(np.array([7, 8, 7]), vectors)

    assert len(index) == 2
    scores, found = index.search(vectors[2:], 1)
    assert found[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=FP16_TOLERANCE)


def test_removing_unknown_ids_is_ignored() -> None:
    index, ids, _ = filled(20, 8, exact_limit=100)

    assert index.remove(np.array([10**9, int(ids[0]), int(ids[0])])) == 1
    assert index.remove(np.array([], dtype=np.int64)) == 0
    assert len(index) == 19


@given(
    operations=st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(0, 40), min_size=1, max_size=8)),
        min_size=1,
        max_size=12,
    ),
    exact_limit=st.sampled_from([0, 10, 1_000]),
)
@settings(max_examples=40, deadline=None)
def test_search_agrees_with_a_dict_model_after_any_adds_and_removes(
    operations: list[tuple[bool, list[int]]], exact_limit: int
) -> None:
    rng = np.random.default_rng(12)
    index = VectorIndex(8, exact_limit=exact_limit)
    model: dict[int, np.ndarray] = {}
    for is_add, batch in operations:
        ids = np.array(batch, dtype=np.int64)
        if is_add:
            vectors = unit_vectors(rng, len(ids), 8)
            index.add(ids, vectors)
            model.update(zip(batch, vectors, strict=True))
        else:
            assert index.remove(ids) == len(set(batch) & model.keys())
            for i in batch:
                model.pop(i, None)
    assert len(index) == len(model)
    assert all(i in index for i in model)
    query = unit_vectors(rng, 1, 8)

    scores, found = index.search(query, 50)

    hits = found[0][found[0] >= 0]
    assert set(hits.tolist()) <= model.keys()
    assert len(set(hits.tolist())) == len(hits)
    if not index.approximate:
        assert len(hits) == len(model)
    expected = np.array([model[i] @ query[0] for i in hits.tolist()], dtype=np.float32)
    np.testing.assert_allclose(scores[0, : len(hits)], expected, atol=FP16_TOLERANCE)


def test_batch_add_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(13)
    vectors = unit_vectors(rng, 60, 16)
    batched, single = VectorIndex(16), VectorIndex(16)

    batched.add(np.arange(60), vectors)
    for i in range(60):
        single.add(np.array([i]), vectors[i : i + 1])

    queries = unit_vectors(rng, 10, 16)
    for left, right in zip(batched.search(queries, 7), single.search(queries, 7), strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("exact_limit", [10_000, 100], ids=["flat", "hnsw"])
def test_save_load_round_trip(tmp_path: Path, exact_limit: int) -> None:
    index, ids, vectors = filled(400, 32, exact_limit=exact_limit, seed=14)
    index.remove(ids[:40])
    path = tmp_path / "vectors.npz"

    index.save(path, fingerprint=FINGERPRINT)
    loaded = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=32)

    assert loaded.approximate == index.approximate
    assert len(loaded) == len(index) == 360
    assert loaded.tombstones == index.tombstones
    assert int(ids[0]) not in loaded and int(ids[40]) in loaded
    for left, right in zip(loaded.search(vectors, 10), index.search(vectors, 10), strict=True):
        np.testing.assert_array_equal(left, right)
    loaded.add(ids[:1], vectors[:1])
    assert loaded.remove(ids[40:41]) == 1
    assert len(loaded) == 360
    assert ids[40] not in loaded.search(vectors[40:41], 10)[1]
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.npz"]


def test_save_replaces_an_existing_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "vectors.npz"
    first, _, _ = filled(10, 8, exact_limit=100, seed=15)
    second, _, _ = filled(20, 8, exact_limit=100, seed=16)

    first.save(path, fingerprint=FINGERPRINT)
    second.save(path, fingerprint=FINGERPRINT)

    assert len(VectorIndex.load(path, fingerprint=FINGERPRINT)) == 20


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"fingerprint": "fedcba9876543210"}, "fingerprint='0123456789abcdef'"),
        ({"dimension": 64}, "dimension=32"),
        ({"exact_limit": 5}, "exact_limit=100"),
        ({"hnsw_m": 16}, "hnsw_m=32"),
        ({"ef_construction": 40}, "ef_construction=80"),
    ],
)
def test_load_refuses_other_settings(
    tmp_path: Path, expectation: dict[str, object], message: str
) -> None:
    index, _, _ = filled(150, 32, exact_limit=100)
    path = tmp_path / "vectors.npz"
    index.save(path, fingerprint=FINGERPRINT)
    arguments: dict[str, object] = {"fingerprint": FINGERPRINT, **expectation}

    with pytest.raises(IndexMismatchError, match="rebuilt from the record") as raised:
        VectorIndex.load(path, **arguments)  # type: ignore[arg-type]

    assert message in str(raised.value)


def test_load_accepts_another_ef_search(tmp_path: Path) -> None:
    index, _, vectors = filled(300, 16, exact_limit=100)
    path = tmp_path / "vectors.npz"
    index.save(path, fingerprint=FINGERPRINT)

    loaded = VectorIndex.load(path, fingerprint=FINGERPRINT, ef_search=200)

    assert loaded.ef_search == 200
    assert loaded.search(vectors[:5], 3)[1].shape == (5, 3)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_load_refuses_a_corrupted_file(tmp_path: Path, damage: str) -> None:
    index, _, _ = filled(300, 16, exact_limit=100)
    path = tmp_path / "vectors.npz"
    index.save(path, fingerprint=FINGERPRINT)
    content = bytearray(path.read_bytes())
    if damage == "flip":
        content[len(content) // 2] ^= 0xFF
    elif damage == "truncate":
        del content[len(content) // 2 :]
    elif damage == "garbage":
        content = bytearray(b"not an index" * 100)
    else:
        content = bytearray()
    path.write_bytes(bytes(content))

    with pytest.raises(IndexMismatchError, match=r"unreadable.*rebuilt from the record"):
        VectorIndex.load(path, fingerprint=FINGERPRINT)


def test_load_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "absent.npz", fingerprint=FINGERPRINT)


def test_memory_estimate_tracks_faiss_serialized_size() -> None:
    flat, _, _ = filled(1_000, 384, exact_limit=10_000)
    hnsw, _, _ = filled(1_000, 384, exact_limit=100)

    for index in (flat, hnsw):
        serialized = len(faiss.serialize_index(index._index))
        assert serialized < index.memory_bytes() < serialized + 200 * len(index)
    assert 768 < flat.memory_bytes() / 1_000 < hnsw.memory_bytes() / 1_000 < 1_300


def test_invalid_input_is_refused_with_a_clear_message() -> None:
    index = VectorIndex(4)
    good = np.eye(4, dtype=np.float32)

    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        index.add(np.arange(4), good[:, :3])
    with pytest.raises(ValueError, match="one id per vector"):
        index.add(np.arange(3), good)
    with pytest.raises(ValueError, match="negative"):
        index.add(np.array([0, 1, 2, -1]), good)
    with pytest.raises(ValueError, match="integers"):
        index.add(np.array([0.0, 1.0, 2.0, 3.0]), good)
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.arange(4), good * np.nan)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(good, 0)
    with pytest.raises(ValueError, match="exact_limit"):
        VectorIndex(4, exact_limit=-1)


def test_concurrent_adds_and_searches() -> None:
    dimension = 32
    vectors = unit_vectors(np.random.default_rng(17), 2_400, dimension)
    index = VectorIndex(dimension, exact_limit=500)
    errors: list[BaseException] = []
    done = threading.Event()

    def write(worker: int) -> None:
        try:
            for start in range(worker * 600, (worker + 1) * 600, 50):
                index.add(np.arange(start, start + 50), vectors[start : start + 50])
                index.remove(np.array([start]))
        except BaseException as error:
            errors.append(error)

    def read() -> None:
        try:
            while not done.is_set():
                _, found = index.search(vectors[:8], 5)
                assert found.shape == (8, 5)
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()

    assert not errors
    assert index.wait_for_rebuild(timeout=60)  # the conversion past 500 runs in the background
    assert index.approximate
    assert len(index) == 2_400 - 48
