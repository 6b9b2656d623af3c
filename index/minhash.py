"""MinHash signatures, banded LSH over them, and exact set similarity for verification.

Signatures are bit-identical to datasketch's ``MinHash(num_perm, seed, scheme="legacy",
hashfunc=int)`` fed the shingle hashes: the same permutations from
``np.random.RandomState(seed)`` and the same ``(a * h + b) mod (2^61 - 1)`` truncated to 32
bits. The legacy scheme is used because every datasketch release reads it; its bias (two
shingles folding onto one 32-bit value, datasketch issue 212) is of order n / 2^32 for a
set of n shingles, negligible at article sizes. The arithmetic runs in a numba kernel over
a whole batch and uses the Mersenne identity ``x mod (2^61 - 1) = (x & p) + (x >> 61)``
(one conditional subtraction left) instead of a 64-bit division.

:class:`LSHIndex` keeps datasketch's banding (``MinHashLSH``'s ``_optimal_param``) but
stores it compactly: per band, a sorted array of 32-bit band hashes with the 32-bit slot of
each entry, in a few sorted runs merged like a binary counter (a log-structured merge), a
small unsorted buffer for the newest entries, and tombstones compacted once they outnumber
the live entries.
"""

from __future__ import annotations

import functools
import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.durable import replacing
from index.errors import IndexMismatchError, ParameterError
from index.native import native

if TYPE_CHECKING:
    import datasketch

__all__ = ["DEFAULT_WEIGHTS", "LSHIndex", "MinHasher", "containment", "jaccard"]

logger = logging.getLogger(__name__)

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_S61 = np.uint64(61)
_S32 = np.uint64(32)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
# splitmix64's increment and finalizer multipliers, as in index.shingles.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

DEFAULT_WEIGHTS: tuple[float, float] = (0.1, 0.9)
"""(false positive, false negative) weights: recall first, as every candidate is verified."""

# Newest entries wait unsorted in a buffer of this many rows; a query scans it linearly.
_BUFFER_ROWS = 512
_SNAPSHOT_FORMAT = 1


@native
def _signature_kernel(
    values: npt.NDArray[Any],
    offsets: I64,
    a: U64,
    b: U64,
    out: U64,
) -> None:
    # Permutation outside, shingles inside: the inner loop is a min-reduction that LLVM
    # vectorizes; the other order ran 1.4x slower on SaudiNewsNet articles.
    for d in range(offsets.shape[0] - 1):
        hashes = values[offsets[d] : offsets[d + 1]]
        for p in range(a.shape[0]):
            multiplier = a[p]
            increment = b[p]
            smallest = out[d, p]
            for i in range(hashes.shape[0]):
                x = multiplier * np.uint64(hashes[i]) + increment
                x = (x & _MERSENNE) + (x >> _S61)
                x = x - _MERSENNE if x >= _MERSENNE else x
                smallest = min(smallest, x & _MAX_HASH)
            out[d, p] = smallest


@native
def _signature_one(values: npt.NDArray[Any], a: U64, b: U64) -> U64:
    out = np.full((1, a.shape[0]), _MAX_HASH, dtype=np.uint64)
    _signature_kernel(values, np.array([0, values.shape[0]], dtype=np.int64), a, b, out)
    signature: U64 = out[0]
    return signature


@native
def _band_kernel(signatures: U64, bands: int, rows: int) -> U32:
    out = np.empty((signatures.shape[0], bands), dtype=np.uint32)
    for d in range(signatures.shape[0]):
        for band in range(bands):
            h = np.uint64(band)
            for value in signatures[d, band * rows : (band + 1) * rows]:
                z = (h ^ value) + _GAMMA
                z = (z ^ (z >> _S30)) * _MIX1
                z = (z ^ (z >> _S27)) * _MIX2
                h = z ^ (z >> _S31)
            out[d, band] = np.uint32(h >> _S32)
    return out


@native
def _probe_run(hashes: U32, slots: U32, query: U32, alive: npt.NDArray[np.bool_]) -> I64:
    bands = hashes.shape[0]
    size = hashes.shape[1]
    if size == 0:
        return np.empty(0, dtype=np.int64)
    # Branchless lower bounds, one level for every band at a time, so the bands' cache
    # misses overlap: 4.6 us for a 200k-entry run, against 9 us for one np.searchsorted
    # per band.
    starts = np.zeros(bands, dtype=np.int64)
    length = size
    while length > 1:
        half = length >> 1
        for band in range(bands):
            starts[band] += half * (hashes[band, starts[band] + half] < query[band])
        length -= half
    count = 0
    found = np.empty(16, dtype=np.int64)
    for band in range(bands):
        i = starts[band] + (hashes[band, starts[band]] < query[band])
        while i < size and hashes[band, i] == query[band]:
            slot = slots[band, i]
            if alive[slot]:
                if count == found.shape[0]:
                    found = np.concatenate((found, np.empty(count, dtype=np.int64)))
                found[count] = slot
                count += 1
            i += 1
    return found[:count]


@native
def _probe_buffer(buffer: U32, first_slot: int, query: U32, alive: npt.NDArray[np.bool_]) -> I64:
    found = np.empty(buffer.shape[0], dtype=np.int64)
    count = 0
    for row in range(buffer.shape[0]):
        slot = first_slot + row
        if not alive[slot]:
            continue
        for band in range(buffer.shape[1]):
            if buffer[row, band] == query[band]:
                found[count] = slot
                count += 1
                break
    return found[:count]


@native
def _probe_run_many(
    hashes: U32, slots: U32, queries: U32, alive: npt.NDArray[np.bool_]
) -> tuple[I64, I64]:
    """:func:`_probe_run` of each row of ``queries``: (query index, slot) pairs."""
    count = 0
    which = np.empty(16, dtype=np.int64)
    found = np.empty(16, dtype=np.int64)
    for q in range(queries.shape[0]):
        hits = _probe_run(hashes, slots, queries[q], alive)
        if count + hits.shape[0] > found.shape[0]:
            grown = max(2 * found.shape[0], count + hits.shape[0])
            which = np.concatenate((which, np.empty(grown - which.shape[0], dtype=np.int64)))
            found = np.concatenate((found, np.empty(grown - found.shape[0], dtype=np.int64)))
        for hit in hits:
            which[count] = q
            found[count] = hit
            count += 1
    return which[:count], found[:count]


@native
def _earlier_sharing_a_band(band_hashes: U32, first: int) -> tuple[I64, I64]:
    """(i, j) for every i >= ``first`` and j < i whose band hashes share a band with row
    i's (a pair once for each band shared)."""
    n = band_hashes.shape[0]
    count = 0
    rows = np.empty(16, dtype=np.int64)
    earlier = np.empty(16, dtype=np.int64)
    # Per band, an open-addressing table of the hashes seen so far, each slot the last row
    # with its hash, and each row linked to the one before it with the same hash: one probe
    # a row, where sorting each band's column cost a tenth of the LSH's batch time.
    size = 16
    while size < 2 * n:
        size *= 2
    table = np.empty(size, dtype=np.int64)
    before = np.empty(max(n, 1), dtype=np.int64)
    for band in range(band_hashes.shape[1]):
        column = band_hashes[:, band].copy()
        table[:] = -1
        for i in range(n):
            value = column[i]
            slot = (np.uint64(value) * _GAMMA) >> np.uint64(40)  # Fibonacci hashing
            position = int(slot) & (size - 1)
            while table[position] >= 0 and column[table[position]] != value:
                position = (position + 1) & (size - 1)
            before[i] = table[position]
            table[position] = i
            if i < first:
                continue
            j = before[i]
            while j >= 0:
                if count == rows.shape[0]:
                    rows = np.concatenate((rows, np.empty(count, dtype=np.int64)))
                    earlier = np.concatenate((earlier, np.empty(count, dtype=np.int64)))
                rows[count] = i
                earlier[count] = j
                count += 1
                j = before[j]
    return rows[:count], earlier[:count]


@native
def _merge_rows(
    left_values: npt.NDArray[Any],
    left_slots: U32,
    right_values: npt.NDArray[Any],
    right_slots: U32,
    out_values: npt.NDArray[Any],
    out_slots: U32,
) -> None:
    for row in range(out_values.shape[0]):
        i = 0
        j = 0
        k = 0
        left_size = left_values.shape[1]
        right_size = right_values.shape[1]
        while i < left_size and j < right_size:
            if right_values[row, j] < left_values[row, i]:
                out_values[row, k] = right_values[row, j]
                out_slots[row, k] = right_slots[row, j]
                j += 1
            else:
                out_values[row, k] = left_values[row, i]
                out_slots[row, k] = left_slots[row, i]
                i += 1
            k += 1
        while i < left_size:
            out_values[row, k] = left_values[row, i]
            out_slots[row, k] = left_slots[row, i]
            i += 1
            k += 1
        while j < right_size:
            out_values[row, k] = right_values[row, j]
            out_slots[row, k] = right_slots[row, j]
            j += 1
            k += 1


@native
def _find_in_run(
    run_keys: I64, key_slots: U32, alive: npt.NDArray[np.bool_], keys: I64, slots: I64
) -> None:
    for i in range(keys.shape[0]):
        if slots[i] >= 0:
            continue
        # Dead copies of a key may precede its live one: scan all equal entries.
        position = np.searchsorted(run_keys, keys[i])
        while position < run_keys.shape[0] and run_keys[position] == keys[i]:
            slot = key_slots[position]
            if alive[slot]:
                slots[i] = slot
                break
            position += 1


@native
def _find_in_buffer(
    buffered_keys: I64, first_slot: int, alive: npt.NDArray[np.bool_], keys: I64, slots: I64
) -> None:
    for i in range(keys.shape[0]):
        if slots[i] >= 0:
            continue
        for j in range(buffered_keys.shape[0]):
            if buffered_keys[j] == keys[i] and alive[first_slot + j]:
                slots[i] = first_slot + j
                break


@native
def _intersection_size(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> int:
    i = 0
    j = 0
    shared = 0
    while i < a.shape[0] and j < b.shape[0]:
        if a[i] < b[j]:
            i += 1
        elif b[j] < a[i]:
            j += 1
        else:
            shared += 1
            i += 1
            j += 1
    return shared


def _as_hashes(hashes: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint32 and hashes.ndim == 1:
        return hashes
    values = np.asarray(hashes)
    if values.ndim == 1 and values.size == 0:
        return np.empty(0, dtype=np.uint32)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ParameterError(
            f"shingle hashes must be a 1-d integer array, got shape {values.shape} "
            f"and dtype {values.dtype}; use index.shingles.shingle_hashes"
        )
    if values.dtype.kind == "i" and int(values.min()) < 0:
        raise ParameterError("shingle hashes must not be negative")
    return values


class MinHasher:
    """Computes datasketch-compatible MinHash signatures of shingle hash sets.

    Args:
        num_perm: permutations, i.e. the signature length.
        seed: seeds the permutations exactly as datasketch's ``MinHash(seed=...)`` does.

    Raises:
        ParameterError: ``num_perm`` is below 1.
    """

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        if num_perm < 1:
            raise ParameterError(f"num_perm must be at least 1 (128 is usual), got {num_perm}")
        self.num_perm = num_perm
        self.seed = seed
        # Drawn in datasketch's order (a then b, per permutation) so the values match it.
        generator = np.random.RandomState(seed)
        pairs = np.array(
            [
                (
                    generator.randint(1, _MERSENNE, dtype=np.uint64),
                    generator.randint(0, _MERSENNE, dtype=np.uint64),
                )
                for _ in range(num_perm)
            ],
            dtype=np.uint64,
        )
        self._a: U64 = np.ascontiguousarray(pairs[:, 0])
        self._b: U64 = np.ascontiguousarray(pairs[:, 1])

    def signature(self, hashes: npt.NDArray[Any]) -> U64:
        """The MinHash signature of one set of shingle hashes.

        Args:
            hashes: non-negative integers below 2**32 (order and repeats do not matter).

        Returns:
            ``(num_perm,)`` uint64 array equal to datasketch's ``hashvalues`` after
            ``update_batch`` of the same integers with ``hashfunc=int``; all ``2**32 - 1``
            (datasketch's empty signature) when ``hashes`` is empty.
        """
        return _signature_one(_as_hashes(hashes), self._a, self._b)

    def signatures(self, hash_sets: Sequence[npt.NDArray[Any]]) -> U64:
        """Signatures of many hash sets in one native call.

        Args:
            hash_sets: one array of shingle hashes per document.

        Returns:
            ``(len(hash_sets), num_perm)`` uint64 array; row ``i`` equals
            ``signature(hash_sets[i])``.
        """
        arrays = [_as_hashes(hashes) for hashes in hash_sets]
        out = np.full((len(arrays), self.num_perm), _MAX_HASH, dtype=np.uint64)
        if not arrays:
            return out
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([array.shape[0] for array in arrays], out=offsets[1:])
        common = np.result_type(*arrays)
        # int64 mixed with uint64 would promote to float64 and lose bits.
        values = np.concatenate(arrays, dtype=common if common.kind in "iu" else np.uint64)
        _signature_kernel(values, offsets, self._a, self._b, out)
        return out

    def to_datasketch(self, signature: npt.NDArray[np.uint64]) -> datasketch.LeanMinHash:
        """The signature as a datasketch ``LeanMinHash`` (legacy scheme), for interop."""
        if signature.shape != (self.num_perm,):
            raise ParameterError(
                f"signature has shape {signature.shape}, this MinHasher makes ({self.num_perm},)"
            )
        import datasketch  # its lsh module imports scipy.integrate: only when asked for

        return datasketch.LeanMinHash(seed=self.seed, hashvalues=signature, scheme="legacy")


def jaccard(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Exact Jaccard similarity of two sorted arrays without repeats.

    Args:
        a: sorted array without repeats (e.g. :func:`index.shingles.shingle_hashes`).
        b: sorted array without repeats.

    Returns:
        ``|a ∩ b| / |a ∪ b|``; 0.0 when both are empty (no evidence of a copy).
    """
    shared = _intersection_size(a, b)
    union = a.shape[0] + b.shape[0] - shared
    return shared / union if union else 0.0


def containment(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Share of the smaller set found in the larger, for truncated or padded copies.

    Args:
        a: sorted array without repeats.
        b: sorted array without repeats.

    Returns:
        ``|a ∩ b| / min(|a|, |b|)``; 0.0 when either is empty.
    """
    smaller = min(a.shape[0], b.shape[0])
    return _intersection_size(a, b) / smaller if smaller else 0.0


def _legendre_and_derivative(
    n: int, x: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """P_n(x) and P_n'(x) by the three-term recurrence (``|x| < 1``)."""
    current, previous = np.ones_like(x), np.zeros_like(x)
    for degree in range(1, n + 1):
        current, previous = (
            ((2 * degree - 1) * x * current - (degree - 1) * previous) / degree,
            current,
        )
    return current, n * (previous - x * current) / ((1.0 - x) * (1.0 + x))


def _gauss_legendre(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ``n`` nodes (ascending) and weights of Gauss-Legendre quadrature on [-1, 1].

    What ``np.polynomial.legendre.leggauss`` gives, to a few ulps in the nodes, without
    its eigenvalue solve: LAPACK wakes OpenBLAS's thread pool, whose threads then spin for
    about a tenth of a CPU-second (measured) on cores that the preparing workers of
    ``samestory dedup`` need. Newton's method from the usual cosine guesses instead.
    """
    x = np.cos(np.pi * (np.arange(n, 0, -1) - 0.25) / (n + 0.5))
    for _ in range(100):
        value, derivative = _legendre_and_derivative(n, x)
        step = value / derivative
        x = x - step
        if float(np.max(np.abs(step))) <= 1e-15:
            break
    _value, derivative = _legendre_and_derivative(n, x)
    weights = 1.0 / ((1.0 - x) * (1.0 + x) * derivative * derivative)
    weights = (weights + weights[::-1]) / 2.0  # symmetric, as the exact weights are
    return x, weights * (2.0 / float(weights.sum()))


@functools.lru_cache(maxsize=64)
def _banding(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """datasketch's ``MinHashLSH._optimal_param``: the (bands, rows) with the least weighted
    sum of false positive and false negative probability mass.

    datasketch integrates with ``scipy.integrate.quad``, whose import costs a fifth of a
    second; the integrands ``1 - (1 - s^r)^b`` and ``(1 - s^r)^b`` are polynomials of
    degree ``r * b <= num_perm``, which Gauss-Legendre quadrature with ``num_perm / 2 + 1``
    nodes integrates exactly. ``tests/test_minhash.py`` checks the choice against
    datasketch's over a grid of thresholds, lengths and weights.
    """
    nodes, node_weights = _gauss_legendre(num_perm // 2 + 2)
    below = (nodes + 1.0) * (threshold / 2.0)
    below_weights = node_weights * (threshold / 2.0)
    above = threshold + (nodes + 1.0) * ((1.0 - threshold) / 2.0)
    above_weights = node_weights * ((1.0 - threshold) / 2.0)
    false_positive_weight, false_negative_weight = weights
    least = float("inf")
    best = (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = float(np.dot(below_weights, 1.0 - (1.0 - below**rows) ** bands))
            false_negative = float(np.dot(above_weights, (1.0 - above**rows) ** bands))
            error = false_positive * false_positive_weight + false_negative * false_negative_weight
            if error < least:
                least = error
                best = (bands, rows)
    return best


@dataclass(frozen=True, slots=True)
class _Run:
    """A sorted slice of the index: per band, hashes ascending with their slots."""

    hashes: U32  # (bands, size)
    slots: U32  # (bands, size)
    keys: I64  # (size,) ascending
    key_slots: U32  # (size,)

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    def nbytes(self) -> int:
        return self.hashes.nbytes + self.slots.nbytes + self.keys.nbytes + self.key_slots.nbytes

    @classmethod
    def build(cls, band_hashes: U32, keys: I64, first_slot: int) -> _Run:
        """A run from rows of band hashes (row i belongs to slot ``first_slot + i``)."""
        columns = np.ascontiguousarray(band_hashes.T)
        order = np.argsort(columns, axis=1, kind="stable")
        key_order = np.argsort(keys, kind="stable")
        return cls(
            hashes=np.take_along_axis(columns, order, axis=1),
            slots=(order + first_slot).astype(np.uint32),
            keys=keys[key_order],
            key_slots=(key_order + first_slot).astype(np.uint32),
        )

    def merge(self, other: _Run) -> _Run:
        size = self.size + other.size
        hashes = np.empty((self.hashes.shape[0], size), dtype=np.uint32)
        slots = np.empty_like(hashes)
        _merge_rows(self.hashes, self.slots, other.hashes, other.slots, hashes, slots)
        keys = np.empty((1, size), dtype=np.int64)
        key_slots = np.empty((1, size), dtype=np.uint32)
        _merge_rows(
            self.keys[None, :],
            self.key_slots[None, :],
            other.keys[None, :],
            other.key_slots[None, :],
            keys,
            key_slots,
        )
        return _Run(hashes, slots, keys[0], key_slots[0])

    def compacted(self, alive: npt.NDArray[np.bool_], renumber: U32) -> _Run:
        """The run without dead slots, slots renumbered; sort order is kept."""
        keep = alive[self.slots]
        key_keep = alive[self.key_slots]
        # Every slot occurs once per band, so each band keeps the same number of entries.
        shape = (self.hashes.shape[0], int(key_keep.sum()))
        return _Run(
            hashes=self.hashes[keep].reshape(shape),
            slots=renumber[self.slots[keep]].reshape(shape),
            keys=self.keys[key_keep],
            key_slots=renumber[self.key_slots[key_keep]],
        )


def _compacted(
    runs: Sequence[_Run], keys: I64, alive: npt.NDArray[np.bool_]
) -> tuple[I64, _Run | None]:
    """The live ``keys`` (a new array) and ``runs`` merged into one without dead slots,
    slots renumbered to index the former; None when there are no runs."""
    renumber = (np.cumsum(alive, dtype=np.int64) - 1).astype(np.uint32)
    merged: _Run | None = None
    for run in runs:
        compacted = run.compacted(alive, renumber)
        merged = compacted if merged is None else merged.merge(compacted)
    return keys[alive].copy(), merged


class LSHIndex:
    """Banded MinHash LSH with int64 keys, compact enough for millions of signatures.

    Candidates are the keys sharing at least one band with the query, as in datasketch's
    ``MinHashLSH`` with the same ``(bands, rows)``. A band is represented by a 32-bit hash
    of its values, so two different bands collide with probability 2**-32 per stored
    entry and band; such rare extra candidates are removed by the verification that
    follows every query. Not thread-safe: guard it with a lock when shared.

    Args:
        threshold: Jaccard similarity the banding is tuned for.
        num_perm: signature length.
        weights: (false positive, false negative) weights for datasketch's parameter
            choice; the default favours recall.

    Raises:
        ParameterError: a value is out of range or the banding has fewer than 2 bands.
    """

    def __init__(
        self,
        *,
        threshold: float,
        num_perm: int,
        weights: tuple[float, float] = DEFAULT_WEIGHTS,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ParameterError(f"LSH threshold must be in (0, 1], got {threshold}")
        if num_perm < 2:
            raise ParameterError(f"num_perm must be at least 2 for banding, got {num_perm}")
        if len(weights) != 2 or min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-9:
            raise ParameterError(
                f"weights must be two non-negative numbers summing to 1, got {weights}"
            )
        self.threshold = float(threshold)
        self.num_perm = num_perm
        self.weights = (float(weights[0]), float(weights[1]))
        self.bands, self.rows = _banding(self.threshold, num_perm, self.weights)
        if self.bands < 2:
            raise ParameterError(
                f"threshold {threshold} with num_perm {num_perm} gives {self.bands} band; "
                "LSH needs at least 2: lower the threshold or raise num_perm"
            )
        self._clear()

    def _clear(self) -> None:
        self._keys: I64 = np.empty(0, dtype=np.int64)
        self._alive: npt.NDArray[np.bool_] = np.empty(0, dtype=np.bool_)
        self._slots_used = 0
        self._live = 0
        self._runs: list[_Run] = []
        self._buffer: U32 = np.empty((_BUFFER_ROWS, self.bands), dtype=np.uint32)
        self._buffer_first = 0
        # At least every live key (no stored key exceeds it); None while nothing was stored.
        self._max_key: int | None = None

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int | np.integer):
            return False
        return bool(self._find(np.array([key], dtype=np.int64))[0] >= 0)

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (keys, tombstones, runs and buffer)."""
        return (
            self._keys.nbytes
            + self._alive.nbytes
            + self._buffer.nbytes
            + sum(run.nbytes() for run in self._runs)
        )

    def insert(self, key: int, signature: npt.NDArray[np.uint64]) -> None:
        """Add one signature under ``key``; an existing ``key`` is replaced.

        Raises:
            ParameterError: the signature does not have ``num_perm`` values.
        """
        values = np.ascontiguousarray(self._check(signature)[None, :])
        keys = np.array([key], dtype=np.int64)
        if self._max_key is not None and key <= self._max_key:
            self.insert_many(keys, values)
            return
        # Above every key ever stored (an engine's rows only grow): nothing to replace.
        self._append(keys, _band_kernel(values, self.bands, self.rows))

    def _checked_batch(
        self, keys: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
        """``keys`` and ``signatures`` as arrays of a batch's shapes, or ParameterError."""
        keys = np.asarray(keys, dtype=np.int64)
        signatures = np.asarray(signatures, dtype=np.uint64)
        if keys.ndim != 1 or signatures.shape != (keys.shape[0], self.num_perm):
            raise ParameterError(
                f"expected keys (n,) and signatures (n, {self.num_perm}), got "
                f"{keys.shape} and {signatures.shape}"
            )
        return keys, signatures

    def insert_many(self, keys: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint64]) -> None:
        """Add many signatures; equals inserting them one at a time in order.

        Args:
            keys: ``(n,)`` int64 keys. An existing key is replaced; a key repeated within
                ``keys`` keeps its last signature.
            signatures: ``(n, num_perm)`` uint64.

        Raises:
            ParameterError: the shapes do not match.
        """
        keys, signatures = self._checked_batch(keys, signatures)
        if keys.size == 0:
            return
        _, last_from_end = np.unique(keys[::-1], return_index=True)
        if last_from_end.size != keys.size:
            keep = np.sort(keys.size - 1 - last_from_end)
            keys, signatures = keys[keep], signatures[keep]
        self._kill(self._find(keys))
        self._append(keys, _band_kernel(np.ascontiguousarray(signatures), self.bands, self.rows))

    def _append(self, keys: I64, band_hashes: U32) -> None:
        """Store keys that are not stored (distinct), with their band hashes."""
        top = int(keys.max())
        if self._max_key is None or top > self._max_key:
            self._max_key = top
        first = self._reserve(keys.size)
        self._keys[first : first + keys.size] = keys
        self._alive[first : first + keys.size] = True
        self._live += keys.size
        buffered = first - self._buffer_first
        if buffered + keys.size <= _BUFFER_ROWS:
            self._buffer[buffered : buffered + keys.size] = band_hashes
            self._slots_used += keys.size
            if buffered + keys.size == _BUFFER_ROWS:
                self._flush()
            return
        self._flush()
        self._slots_used += keys.size
        self._push(_Run.build(band_hashes, keys, first))
        self._buffer_first = self._slots_used

    def remove(self, key: int) -> None:
        """Remove ``key``; removing a key that is not stored does nothing."""
        self._kill(self._find(np.array([key], dtype=np.int64)))

    def query(self, signature: npt.NDArray[np.uint64]) -> I64:
        """Keys sharing at least one band with ``signature``.

        Returns:
            Sorted unique int64 keys.

        Raises:
            ParameterError: the signature does not have ``num_perm`` values.
        """
        band_hashes = _band_kernel(self._check(signature)[None, :], self.bands, self.rows)[0]
        alive = self._alive
        found = [
            slots
            for run in self._runs
            if (slots := _probe_run(run.hashes, run.slots, band_hashes, alive)).size
        ]
        buffered = _probe_buffer(
            self._buffer[: self._slots_used - self._buffer_first],
            self._buffer_first,
            band_hashes,
            alive,
        )
        if buffered.size:
            found.append(buffered)
        if not found:  # most queries: no candidate at all
            return np.empty(0, dtype=np.int64)
        return np.unique(self._keys[np.concatenate(found)])

    def query_then_insert_many(
        self, keys: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint64]
    ) -> list[I64]:
        """Query each signature, then insert it under its key, in order, in a few calls.

        Equals ``[(self.query(s), self.insert(k, s))[0] for k, s in zip(keys, signatures)]``:
        each result holds the stored keys and the keys of the signatures before it that
        share a band with it. Keys above every stored one, increasing (an engine's new
        rows), are done at once; others one at a time.

        Raises:
            ParameterError: the shapes do not match.
        """
        keys, signatures = self._checked_batch(keys, signatures)
        count = keys.shape[0]
        if count == 0:
            return []
        if (self._max_key is not None and int(keys[0]) <= self._max_key) or (
            count > 1 and not bool(np.all(keys[1:] > keys[:-1]))
        ):
            results: list[I64] = []
            for key, signature in zip(keys, signatures, strict=True):
                results.append(self.query(signature))
                self.insert(int(key), signature)
            return results
        band_hashes = _band_kernel(np.ascontiguousarray(signatures), self.bands, self.rows)
        alive = self._alive
        which: list[I64] = []
        found: list[I64] = []
        for run in self._runs:
            run_which, slots = _probe_run_many(run.hashes, run.slots, band_hashes, alive)
            which.append(run_which)
            found.append(self._keys[slots])
        # The buffered rows and the new ones: pairs of equal band hashes (sorted per band).
        buffered = self._slots_used - self._buffer_first
        later, earlier = _earlier_sharing_a_band(
            np.concatenate((self._buffer[:buffered], band_hashes)), buffered
        )
        in_buffer = earlier < buffered
        slots = self._buffer_first + earlier[in_buffer]
        live = alive[slots]
        which.append(later[in_buffer][live] - buffered)
        found.append(self._keys[slots[live]])
        which.append(later[~in_buffer] - buffered)
        found.append(keys[earlier[~in_buffer] - buffered])
        self._append(keys, band_hashes)
        all_which = np.concatenate(which)
        all_found = np.concatenate(found)
        order = np.lexsort((all_found, all_which))
        all_which, all_found = all_which[order], all_found[order]
        if all_which.size > 1:
            distinct = np.ones(all_which.size, dtype=np.bool_)
            distinct[1:] = (all_which[1:] != all_which[:-1]) | (all_found[1:] != all_found[:-1])
            all_which, all_found = all_which[distinct], all_found[distinct]
        bounds = np.searchsorted(all_which, np.arange(count + 1)).tolist()
        return [all_found[bounds[i] : bounds[i + 1]] for i in range(count)]

    def save(self, path: Path, *, fingerprint: str) -> None:
        """Write a snapshot atomically (:func:`index.durable.replacing`).

        Args:
            path: destination file (NumPy ``.npz`` content).
            fingerprint: the parameters fingerprint the signatures were built with.
        """
        self.saver(fingerprint)(path)

    def saver(self, fingerprint: str) -> Callable[[Path], None]:
        """What :meth:`save` would write now, as a function that writes it to a path.

        Only the buffered rows are sorted into a run now, and the live flags copied (hold
        the index's lock for that); the function keeps the runs and the keys, which the
        index never writes to again (merges and compaction make new arrays, inserts go
        past them), and compacts its copy into one run when it writes. So it may run
        later, on another thread, while the index goes on changing.

        Args:
            fingerprint: the parameters fingerprint the signatures were built with.
        """
        self._flush()
        used = self._slots_used
        runs = list(self._runs)
        keys = self._keys[:used]
        alive = self._alive[:used].copy()
        bands = self.bands
        meta = {
            "format": _SNAPSHOT_FORMAT,
            "fingerprint": fingerprint,
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "weights": list(self.weights),
            "bands": self.bands,
            "rows": self.rows,
        }
        live = self._live

        def write(path: Path) -> None:
            kept, merged = _compacted(runs, keys, alive)
            run = merged or _Run.build(
                np.empty((0, bands), dtype=np.uint32), np.empty(0, dtype=np.int64), 0
            )
            with replacing(Path(path)) as handle:
                np.savez(
                    handle,
                    meta=np.array(json.dumps(meta)),
                    keys=kept,
                    hashes=run.hashes,
                    slots=run.slots,
                    run_keys=run.keys,
                    key_slots=run.key_slots,
                )
            logger.info("saved LSH snapshot of %d signatures to %s", live, path)

        return write

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fingerprint: str,
        threshold: float | None = None,
        weights: tuple[float, float] = DEFAULT_WEIGHTS,
    ) -> LSHIndex:
        """Read a snapshot written by :meth:`save`.

        Args:
            path: the snapshot file.
            fingerprint: the current parameters fingerprint; must equal the stored one.
            threshold: when given, the banding this threshold and ``weights`` give must
                equal the snapshot's (the fingerprint does not cover the LSH threshold).
            weights: see ``threshold``.

        Raises:
            FileNotFoundError: there is no snapshot.
            IndexMismatchError: the snapshot is unreadable, or was built with another
                fingerprint or banding; rebuild the index from the store.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                arrays = {
                    name: archive[name]
                    for name in ("keys", "hashes", "slots", "run_keys", "key_slots")
                }
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as error:
            raise IndexMismatchError(
                f"LSH snapshot {path} is unreadable ({error}); rebuild it from the store"
            ) from error
        if meta.get("format") != _SNAPSHOT_FORMAT or meta.get("fingerprint") != fingerprint:
            raise IndexMismatchError(
                f"LSH snapshot {path} was built with parameters fingerprint "
                f"{meta.get('fingerprint')!r} (format {meta.get('format')}), not {fingerprint!r}; "
                "rebuild it from the store"
            )
        index = cls(
            threshold=meta["threshold"],
            num_perm=meta["num_perm"],
            weights=(meta["weights"][0], meta["weights"][1]),
        )
        if (index.bands, index.rows) != (meta["bands"], meta["rows"]):
            raise IndexMismatchError(
                f"LSH snapshot {path} has banding ({meta['bands']}, {meta['rows']}) but this "
                f"datasketch chooses ({index.bands}, {index.rows}); rebuild it from the store"
            )
        if threshold is not None:
            expected = _banding(float(threshold), index.num_perm, (weights[0], weights[1]))
            if expected != (index.bands, index.rows):
                raise IndexMismatchError(
                    f"LSH snapshot {path} has banding ({index.bands}, {index.rows}) for "
                    f"threshold {index.threshold}, but threshold {threshold} needs {expected}; "
                    "rebuild it from the store"
                )
        keys = arrays["keys"]
        size = keys.shape[0]
        shapes = {name: array.shape for name, array in arrays.items()}
        if (
            shapes["hashes"] != shapes["slots"]
            or shapes["hashes"] != (index.bands, size)
            or (shapes["run_keys"] != shapes["key_slots"] or shapes["run_keys"] != (size,))
        ):
            raise IndexMismatchError(
                f"LSH snapshot {path} has inconsistent array shapes {shapes}; "
                "rebuild it from the store"
            )
        index._keys = keys.astype(np.int64)
        index._alive = np.ones(keys.shape[0], dtype=np.bool_)
        index._slots_used = index._live = index._buffer_first = int(keys.shape[0])
        index._max_key = int(index._keys.max()) if keys.shape[0] else None
        if keys.shape[0]:
            index._runs = [
                _Run(
                    hashes=arrays["hashes"].astype(np.uint32),
                    slots=arrays["slots"].astype(np.uint32),
                    keys=arrays["run_keys"].astype(np.int64),
                    key_slots=arrays["key_slots"].astype(np.uint32),
                )
            ]
        return index

    def _check(self, signature: npt.NDArray[np.uint64]) -> U64:
        values = np.asarray(signature, dtype=np.uint64)
        if values.shape != (self.num_perm,):
            raise ParameterError(
                f"signature has shape {values.shape}, this index holds ({self.num_perm},)"
            )
        return values

    def _find(self, keys: I64) -> I64:
        """The live slot of each key, or -1."""
        slots = np.full(keys.shape[0], -1, dtype=np.int64)
        for run in self._runs:
            _find_in_run(run.keys, run.key_slots, self._alive, keys, slots)
        _find_in_buffer(
            self._keys[self._buffer_first : self._slots_used],
            self._buffer_first,
            self._alive,
            keys,
            slots,
        )
        return slots

    def _kill(self, slots: I64) -> None:
        slots = slots[slots >= 0]
        if not slots.size:
            return
        self._alive[slots] = False
        self._live -= int(slots.size)
        dead = self._slots_used - self._live
        if dead > max(self._live, _BUFFER_ROWS):
            self._compact()

    def _reserve(self, count: int) -> int:
        needed = self._slots_used + count
        if needed > self._keys.shape[0]:
            capacity = max(needed, self._keys.shape[0] * 3 // 2, _BUFFER_ROWS)
            keys = np.empty(capacity, dtype=np.int64)
            keys[: self._slots_used] = self._keys[: self._slots_used]
            alive = np.zeros(capacity, dtype=np.bool_)
            alive[: self._slots_used] = self._alive[: self._slots_used]
            self._keys, self._alive = keys, alive
        return self._slots_used

    def _flush(self) -> None:
        """Turn the buffered rows into a sorted run."""
        count = self._slots_used - self._buffer_first
        if count:
            self._push(
                _Run.build(
                    self._buffer[:count].copy(),
                    self._keys[self._buffer_first : self._slots_used].copy(),
                    self._buffer_first,
                )
            )
        self._buffer_first = self._slots_used

    def _push(self, run: _Run) -> None:
        # Binary-counter merging keeps O(log n) runs and merges each entry O(log n) times.
        self._runs.append(run)
        while len(self._runs) > 1 and self._runs[-2].size <= self._runs[-1].size:
            newer = self._runs.pop()
            self._runs[-1] = self._runs[-1].merge(newer)

    def _compact(self) -> None:
        """Drop tombstones, renumber slots and merge everything into one run."""
        self._flush()
        used = self._slots_used
        keys, merged = _compacted(self._runs, self._keys[:used], self._alive[:used])
        max_key = self._max_key
        self._clear()
        self._max_key = max_key
        self._keys = keys
        self._alive = np.ones(keys.shape[0], dtype=np.bool_)
        self._slots_used = self._live = self._buffer_first = int(keys.shape[0])
        if merged is not None and merged.size:
            self._runs = [merged]
