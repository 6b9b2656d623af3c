"""MinHash signatures against datasketch, LSH against datasketch and exact Jaccard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from conftest import run_python
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.lsh import _optimal_param
from hypothesis import given, settings
from hypothesis import strategies as st

from index.errors import IndexMismatchError, ParameterError
from index.minhash import LSHIndex, MinHasher, containment, jaccard

NUM_PERM = 128


def _datasketch_signature(
    hashes: npt.NDArray[np.integer], num_perm: int, seed: int
) -> npt.NDArray[np.uint64]:
    sketch = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme="legacy")
    sketch.update_batch([int(value) for value in hashes])
    return np.asarray(sketch.hashvalues, dtype=np.uint64)


def _random_sets(rng: np.random.Generator, count: int, size: int) -> list[npt.NDArray[np.uint32]]:
    return [
        np.unique(rng.integers(0, 2**32, size, dtype=np.uint64).astype(np.uint32))
        for _ in range(count)
    ]


def _near_copies(
    rng: np.random.Generator, pairs: int, size: int = 200
) -> list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]]:
    """Pairs of sets whose Jaccard similarity is spread over [0.6, 1.0]."""
    result = []
    for _ in range(pairs):
        target = rng.uniform(0.6, 1.0)
        # |A ∩ B| = shared, |A| = |B| = size: J = shared / (2 * size - shared).
        shared = round(2 * size * target / (1 + target))
        values = rng.choice(2**32, 2 * size - shared, replace=False).astype(np.uint32)
        first = np.sort(values[:size])
        second = np.sort(np.concatenate([values[:shared], values[size:]]))
        result.append((first, second))
    return result


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 7), (256, 42), (9, 0)])
def test_signatures_equal_datasketch(num_perm: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sets = [*_random_sets(rng, 6, 300), np.array([5], dtype=np.uint32)]
    hasher = MinHasher(num_perm, seed)
    for hashes in sets:
        signature = hasher.signature(hashes)
        assert signature.dtype == np.uint64
        assert np.array_equal(signature, _datasketch_signature(hashes, num_perm, seed))


def test_signature_of_any_uint64_equals_datasketch() -> None:
    hashes = np.array([0, 1, 2**32 - 1, 2**32, 2**61, 2**64 - 1], dtype=np.uint64)
    assert np.array_equal(MinHasher().signature(hashes), _datasketch_signature(hashes, 128, 1))


def test_empty_signature_is_datasketchs_empty_signature() -> None:
    empty = MinHasher().signature(np.empty(0, dtype=np.uint32))
    assert np.array_equal(empty, MinHash(num_perm=128, seed=1, scheme="legacy").hashvalues)
    assert np.array_equal(MinHasher().signatures([np.empty(0, dtype=np.uint32)])[0], empty)


def test_batch_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    sets: list[npt.NDArray[np.integer]] = [
        *_random_sets(rng, 20, 150),
        np.empty(0, dtype=np.uint32),
        np.arange(7, dtype=np.int64),
    ]
    hasher = MinHasher(NUM_PERM, 1)
    batch = hasher.signatures(sets)
    assert batch.shape == (len(sets), NUM_PERM)
    for hashes, row in zip(sets, batch, strict=True):
        assert np.array_equal(row, hasher.signature(hashes))
    assert hasher.signatures([]).shape == (0, NUM_PERM)


def test_to_datasketch_interoperates() -> None:
    rng = np.random.default_rng(5)
    first, second = _near_copies(rng, 1)[0]
    hasher = MinHasher()
    lean = hasher.to_datasketch(hasher.signature(first))
    assert isinstance(lean, LeanMinHash)
    reference = MinHash(num_perm=128, seed=1, hashfunc=int, scheme="legacy")
    reference.update_batch([int(value) for value in second])
    assert lean.jaccard(LeanMinHash(reference)) == pytest.approx(
        float(np.mean(hasher.signature(first) == hasher.signature(second)))
    )


def test_bad_hash_input_is_refused() -> None:
    hasher = MinHasher()
    with pytest.raises(ParameterError, match="negative"):
        hasher.signature(np.array([3, -1], dtype=np.int64))
    with pytest.raises(ParameterError, match="1-d integer"):
        hasher.signature(np.zeros((2, 2), dtype=np.uint32))
    with pytest.raises(ParameterError, match="shape"):
        hasher.to_datasketch(np.zeros(3, dtype=np.uint64))
    with pytest.raises(ParameterError, match="num_perm"):
        MinHasher(0)


def test_jaccard_and_containment_on_small_sets() -> None:
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([3, 4, 5], dtype=np.uint32)
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert containment(a, b) == pytest.approx(2 / 3)
    assert jaccard(a, a) == 1.0
    assert containment(a, a[:2]) == 1.0
    empty = np.empty(0, dtype=np.uint32)
    assert jaccard(empty, empty) == 0.0
    assert containment(a, empty) == 0.0


_SETS = st.lists(st.integers(0, 50), max_size=30).map(
    lambda values: np.unique(np.array(values, dtype=np.uint32))
)


@settings(max_examples=100, deadline=None)
@given(a=_SETS, b=_SETS)
def test_similarities_are_symmetric_bounded_and_exact(
    a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]
) -> None:
    assert jaccard(a, b) == jaccard(b, a)
    assert containment(a, b) == containment(b, a)
    assert 0.0 <= jaccard(a, b) <= containment(a, b) <= 1.0
    left, right = set(a.tolist()), set(b.tolist())
    if left | right:
        assert jaccard(a, b) == pytest.approx(len(left & right) / len(left | right))
    if left:
        assert jaccard(a, a) == 1.0


def test_banding_is_datasketchs() -> None:
    for threshold in (0.3, 0.5, 0.8):
        index = LSHIndex(threshold=threshold, num_perm=NUM_PERM)
        assert (index.bands, index.rows) == _optimal_param(threshold, NUM_PERM, 0.1, 0.9)
    balanced = LSHIndex(threshold=0.5, num_perm=NUM_PERM, weights=(0.5, 0.5))
    assert (balanced.bands, balanced.rows) == _optimal_param(0.5, NUM_PERM, 0.5, 0.5)


@pytest.mark.parametrize("num_perm", [8, 16, 32, 64, 100, 128, 256])
def test_banding_without_scipy_equals_datasketchs_over_a_grid(num_perm: int) -> None:
    from index.minhash import _banding

    for threshold in [round(0.05 * step, 2) for step in range(1, 20)]:
        for weights in ((0.5, 0.5), (0.1, 0.9), (0.9, 0.1), (0.3, 0.7)):
            expected = _optimal_param(threshold, num_perm, *weights)
            assert _banding(threshold, num_perm, weights) == expected, (threshold, weights)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 34, 66, 129, 514])
def test_gauss_legendre_is_numpys_rule_and_exact_for_polynomials(n: int) -> None:
    from index.minhash import _gauss_legendre

    nodes, weights = _gauss_legendre(n)
    numpy_nodes, numpy_weights = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(nodes, numpy_nodes, rtol=0, atol=1e-15)
    np.testing.assert_allclose(weights, numpy_weights, rtol=1e-9)
    # Exact, to rounding, for every polynomial of degree below 2n: x^k integrates to
    # 2 / (k + 1) over [-1, 1] for even k, 0 for odd k.
    for k in range(2 * n):
        exact = 2.0 / (k + 1) if k % 2 == 0 else 0.0
        assert float(np.sum(weights * nodes**k)) == pytest.approx(exact, rel=1e-12, abs=1e-14)


def test_banding_wakes_no_blas_threads() -> None:
    """The LSH set-up does no linear algebra, whose BLAS threads would spin on the cores
    that ``samestory dedup``'s workers use (see ``_gauss_legendre``)."""
    script = (
        "import numpy as np\n"
        "np.linalg.eigvalsh = np.linalg.eigvals = None\n"
        "from index.minhash import _banding\n"
        "print(_banding(0.8, 128, (0.5, 0.5)))\n"
    )
    assert run_python(script).strip() == str(_optimal_param(0.8, 128, 0.5, 0.5))


def test_the_engine_path_imports_no_scipy_integrate() -> None:
    script = (
        "import sys\n"
        "import index.engine\n"
        "from index.minhash import LSHIndex\n"
        "LSHIndex(threshold=0.5, num_perm=128)\n"
        "print(sorted({'datasketch', 'scipy.integrate'} & set(sys.modules)))\n"
    )
    assert run_python(script).strip() == "[]"


def test_bad_lsh_parameters_are_refused() -> None:
    with pytest.raises(ParameterError, match="threshold"):
        LSHIndex(threshold=0.0, num_perm=NUM_PERM)
    with pytest.raises(ParameterError, match="sum"):
        LSHIndex(threshold=0.5, num_perm=NUM_PERM, weights=(0.5, 0.6))
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    with pytest.raises(ParameterError, match="shape"):
        index.insert(1, np.zeros(64, dtype=np.uint64))
    with pytest.raises(ParameterError, match="shape"):
        index.query(np.zeros(64, dtype=np.uint64))


def test_recall_against_exact_jaccard() -> None:
    rng = np.random.default_rng(11)
    pairs = _near_copies(rng, 400)
    hasher = MinHasher()
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    first = hasher.signatures([a for a, _ in pairs])
    second = hasher.signatures([b for _, b in pairs])
    index.insert_many(np.arange(len(pairs), dtype=np.int64), first)
    found = 0
    for key, ((a, b), signature) in enumerate(zip(pairs, second, strict=True)):
        assert jaccard(a, b) >= 0.6 - 0.005
        found += key in index.query(signature)
    # Theory gives 1 - (1 - J^4)^32 averaged over J in [0.6, 1]: 99.9 %.
    assert found / len(pairs) >= 0.99


def _clustered_signatures(rng: np.random.Generator, count: int) -> npt.NDArray[np.uint64]:
    """Signatures of sets that form groups of near copies, so candidate sets are rich."""
    sets: list[npt.NDArray[np.uint32]] = []
    while len(sets) < count:
        base = rng.choice(2**32, 120, replace=False).astype(np.uint32)
        for _ in range(int(rng.integers(1, 6))):
            keep = base[rng.random(base.size) < rng.uniform(0.4, 1.0)]
            extra = rng.integers(0, 2**32, int(rng.integers(0, 40)), dtype=np.uint64)
            sets.append(np.unique(np.concatenate([keep, extra.astype(np.uint32)])))
    return MinHasher().signatures(sets[:count])


def _datasketch_lsh(index: LSHIndex) -> MinHashLSH:
    return MinHashLSH(num_perm=NUM_PERM, params=(index.bands, index.rows))


def _lean(signature: npt.NDArray[np.uint64]) -> LeanMinHash:
    return LeanMinHash(seed=1, hashvalues=signature, scheme="legacy")


def test_candidates_equal_datasketch_through_inserts_and_removals() -> None:
    rng = np.random.default_rng(21)
    signatures = _clustered_signatures(rng, 1500)
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    reference = _datasketch_lsh(index)
    stored: set[int] = set()
    for step in range(3000):
        key = int(rng.integers(0, 1500))
        if rng.random() < 0.3 and stored:
            index.remove(key)
            if key in stored:
                reference.remove(key)
                stored.discard(key)
        else:
            if key in stored:
                reference.remove(key)
            index.insert(key, signatures[key])
            reference.insert(key, _lean(signatures[key]))
            stored.add(key)
        if step % 10 == 0:
            probe = signatures[int(rng.integers(0, 1500))]
            assert index.query(probe).tolist() == sorted(reference.query(_lean(probe)))
    # Removing most keys compacts the tombstones away.
    for key in sorted(stored)[: len(stored) * 3 // 4]:
        index.remove(key)
        reference.remove(key)
        stored.discard(key)
    assert len(index) == len(stored)
    assert all(key in index for key in stored)
    for key in range(0, 1500, 7):
        assert index.query(signatures[key]).tolist() == sorted(
            reference.query(_lean(signatures[key]))
        )


def test_insert_many_equals_inserting_one_at_a_time() -> None:
    rng = np.random.default_rng(8)
    signatures = _clustered_signatures(rng, 1400)
    keys = rng.integers(0, 1000, 1400).astype(np.int64)
    one_by_one = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    for key, signature in zip(keys, signatures, strict=True):
        one_by_one.insert(int(key), signature)
    batched = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    for start, stop in ((0, 100), (100, 1000), (1000, 1400)):
        batched.insert_many(keys[start:stop], signatures[start:stop])
    assert len(batched) == len(one_by_one) == np.unique(keys).size
    for signature in signatures[::5]:
        assert np.array_equal(batched.query(signature), one_by_one.query(signature))


def test_remove_and_replace() -> None:
    rng = np.random.default_rng(2)
    first, second = _clustered_signatures(rng, 2)[0], MinHasher().signature(np.arange(50))
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert(7, first)
    assert 7 in index and np.int64(7) in index and 8 not in index and "7" not in index
    assert index.query(first).tolist() == [7]
    index.insert(7, second)
    assert len(index) == 1
    assert index.query(first).size == 0
    assert index.query(second).tolist() == [7]
    index.remove(7)
    index.remove(12345)
    assert len(index) == 0 and 7 not in index
    assert index.query(second).size == 0


def test_growing_keys_then_replacements_after_compaction_and_loading(tmp_path: Path) -> None:
    # An engine inserts ever larger keys (the fast way in); a key at or below the largest
    # one ever stored must still replace what it holds, also once compacted or reloaded.
    rng = np.random.default_rng(5)
    signatures = _clustered_signatures(rng, 1300)
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    for key in range(1000):
        index.insert(key, signatures[key])
    for key in range(0, 1000, 2):
        index.remove(key)  # compacts: more tombstones than live entries
    index.insert(999, signatures[1100])
    index.insert(2, signatures[1101])
    path = tmp_path / "lsh.bin"
    index.save(path, fingerprint="f")
    loaded = LSHIndex.load(path, fingerprint="f")
    loaded.insert(3, signatures[1102])
    loaded.insert(5000, signatures[1103])
    for lsh, expected in ((index, 501), (loaded, 502)):
        assert len(lsh) == expected
        assert 999 not in lsh.query(signatures[999]).tolist()
        assert 999 in lsh.query(signatures[1100]).tolist()
        assert 2 in lsh.query(signatures[1101]).tolist()
    assert 3 not in loaded.query(signatures[3]).tolist()
    assert 3 in loaded.query(signatures[1102]).tolist()
    assert 5000 in loaded.query(signatures[1103]).tolist()


def test_identical_signatures_are_all_candidates() -> None:
    signature = MinHasher().signature(np.arange(30))
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert_many(np.arange(1000, dtype=np.int64), np.tile(signature, (1000, 1)))
    for key in range(1000, 1100):
        index.insert(key, signature)
    assert index.query(signature).tolist() == list(range(1100))


def test_memory_per_signature_is_compact() -> None:
    rng = np.random.default_rng(4)
    count = 20_000
    signatures = np.tile(MinHasher().signature(np.arange(10)), (count, 1))
    signatures ^= rng.integers(0, 2**32, signatures.shape, dtype=np.uint64)
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert_many(np.arange(count, dtype=np.int64), signatures)
    assert index.memory_bytes() / count < 400


def test_snapshot_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    signatures = _clustered_signatures(rng, 900)
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert_many(np.arange(600, dtype=np.int64), signatures[:600])
    for key in range(600, 900):
        index.insert(key, signatures[key])
    for key in range(0, 900, 3):
        index.remove(key)
    path = tmp_path / "lsh.bin"
    index.save(path, fingerprint="abc")
    assert [entry.name for entry in tmp_path.iterdir()] == ["lsh.bin"]
    loaded = LSHIndex.load(path, fingerprint="abc", threshold=0.5)
    assert len(loaded) == len(index) == 600
    assert (loaded.bands, loaded.rows) == (index.bands, index.rows)
    for key, signature in enumerate(signatures):
        assert (key in loaded) == (key % 3 != 0)
        assert np.array_equal(loaded.query(signature), index.query(signature))
    loaded.insert(5000, signatures[0])
    assert 5000 in loaded.query(signatures[0])
    empty = tmp_path / "empty.bin"
    LSHIndex(threshold=0.5, num_perm=NUM_PERM).save(empty, fingerprint="abc")
    assert len(LSHIndex.load(empty, fingerprint="abc")) == 0


def test_a_snapshot_taken_is_written_as_it_was_while_the_index_changes(
    tmp_path: Path,
) -> None:
    # The engine takes a snapshot under its lock and writes it later on another thread:
    # what is written must be the index at the taking, whatever happened since (inserts
    # into the buffer and new runs, removals, a compaction that renumbers every slot).
    rng = np.random.default_rng(8)
    signatures = _clustered_signatures(rng, 2400)
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert_many(np.arange(700, dtype=np.int64), signatures[:700])
    for key in range(700, 1000):
        index.insert(key, signatures[key])  # partly still in the buffer
    for key in range(0, 1000, 4):
        index.remove(key)
    expected = {key: index.query(signatures[key]).tolist() for key in range(1000)}
    write = index.saver("abc")
    for key in range(1000, 2400):
        index.insert(key, signatures[key])
    for key in range(1, 2400, 2):
        index.remove(key)  # more tombstones than live entries: compacts
    path = tmp_path / "lsh.bin"
    write(path)
    loaded = LSHIndex.load(path, fingerprint="abc", threshold=0.5)
    assert len(loaded) == 750
    for key in range(2400):
        assert (key in loaded) == (key < 1000 and key % 4 != 0)
        if key < 1000:
            assert loaded.query(signatures[key]).tolist() == expected[key]
    assert len(index) == 950


def test_snapshot_with_other_parameters_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lsh.bin"
    index = LSHIndex(threshold=0.5, num_perm=NUM_PERM)
    index.insert(1, MinHasher().signature(np.arange(10)))
    index.save(path, fingerprint="abc")
    with pytest.raises(IndexMismatchError, match=r"fingerprint 'abc'.*not 'xyz'"):
        LSHIndex.load(path, fingerprint="xyz")
    with pytest.raises(IndexMismatchError, match=r"threshold 0\.8 needs \(14, 9\)"):
        LSHIndex.load(path, fingerprint="abc", threshold=0.8)
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"not a snapshot")
    with pytest.raises(IndexMismatchError, match="unreadable"):
        LSHIndex.load(corrupt, fingerprint="abc")
    with pytest.raises(FileNotFoundError):
        LSHIndex.load(tmp_path / "missing.bin", fingerprint="abc")


@pytest.mark.parametrize("stored", [0, 5, 700, 2_100])
def test_query_then_insert_many_equals_query_and_insert_one_at_a_time(stored: int) -> None:
    # What a dedup-mode engine batch does: each new row sees the stored rows and the
    # batch's earlier rows. Near copies (a few values changed) share bands.
    rng = np.random.default_rng(stored)
    bases = rng.integers(0, 2**32, size=(40, NUM_PERM), dtype=np.uint64)

    def signatures(count: int) -> npt.NDArray[np.uint64]:
        out = bases[rng.integers(0, bases.shape[0], size=count)].copy()
        changed = rng.random(out.shape) < 0.15
        out[changed] = rng.integers(0, 2**32, size=int(changed.sum()), dtype=np.uint64)
        return out

    one, many = (LSHIndex(threshold=0.8, num_perm=NUM_PERM) for _ in range(2))
    old = signatures(stored)
    for index in (one, many):  # several runs and a partly filled buffer
        for start in range(0, stored, 300):
            rows = np.arange(start + 1, min(stored, start + 300) + 1, dtype=np.int64)
            index.insert_many(rows, old[rows - 1])
        for row in range(1, stored + 1, 7):
            index.remove(row)

    def both_ways(
        keys: npt.NDArray[np.int64], new: npt.NDArray[np.uint64]
    ) -> list[npt.NDArray[np.int64]]:
        """``many`` answers the batch at once; ``one`` the same one key at a time."""
        expected = []
        for key, signature in zip(keys, new, strict=True):
            expected.append(one.query(signature))
            one.insert(int(key), signature)
        found = many.query_then_insert_many(keys, new)
        assert [result.tolist() for result in found] == [result.tolist() for result in expected]
        return found

    for first, count in ((stored + 1, 300), (stored + 301, 1), (stored + 305, 600)):
        keys = np.arange(first, first + count, dtype=np.int64)
        found = both_ways(keys, signatures(count))
        assert sum(result.size for result in found) > count // 4
    # Keys not above every stored one: the loop, same results.
    both_ways(np.arange(3, 103, 2, dtype=np.int64), signatures(50))
    probe = signatures(30)
    assert [many.query(s).tolist() for s in probe] == [one.query(s).tolist() for s in probe]
    assert len(many) == len(one)
