"""The FAISS index over story embeddings: exact while small, HNSW past a size limit.

Vectors are stored as float16 (FAISS's ``QT_fp16`` scalar quantizer, 2 bytes per
dimension), which halves memory against float32 and changes inner products by about
1e-3, far below any story threshold. Similarity is the inner product, i.e. cosine for the
L2-normalized embeddings the engine gives.

Two modes, chosen automatically from the number of stored vectors:

- **flat** (``IndexScalarQuantizer``): exhaustive, exact search; deletions compact it.
- **HNSW** (``IndexHNSWSQ``): approximate graph search, used once the count exceeds
  ``exact_limit``; a single query takes under a millisecond (median 0.3-0.7 ms at
  30k-60k vectors of dimension 384, ``benchmarks/vectors_memory.py``). The conversion
  from flat, once, past ``exact_limit`` vectors, is a bulk HNSW build (1-3k vectors/s on
  2 cores); it runs in the background like the rebuilds below, while the flat index goes
  on serving (its removals leave tombstones meanwhile, so that positions stay put), except
  for an ``add(..., bulk=True)``: a caller loading vectors in bulk, with nobody searching
  yet, converts at once on every core. The graph cannot delete nodes, so deletions leave
  tombstones that searches skip inside the graph walk (a FAISS ``IDSelector``), which
  keeps ``k`` results coming without over-fetching; once tombstones exceed
  :data:`MAX_TOMBSTONE_FRACTION` of the graph it is rebuilt without them *in the
  background*: a thread copies the live vectors a chunk at a time (holding the lock only
  for each copy) into a new graph that it builds outside the lock (FAISS releases the
  GIL), on all cores but one; searches, adds and removals go on against the old graph
  meanwhile. The vectors added since are then copied as well, and
  the new graph replaces the old under the lock, with what was removed meanwhile marked
  as tombstones in it. At 100k vectors such a build takes ~30 s on 2 cores, minutes at a
  million: held under the lock it would stall every request that long.

FAISS runs on as many OpenMP threads as the process may use. GNU OpenMP spin-waits
between parallel regions by default; on a machine busy with other work that made a
single flat search at 30k vectors take 28 ms instead of 0.9 ms (and HNSW builds 3-5x
slower), so deployments should set ``OMP_WAIT_POLICY=PASSIVE`` before FAISS is imported.

FAISS keeps its vectors in insertion order ("positions"); this wrapper maps positions to
the caller's int64 ids, so no separate copy of the vectors is kept: rebuilds decode the
float16 codes FAISS already holds, which is lossless.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.durable import fsync_directory, replacing
from index.errors import IndexMismatchError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

MAX_TOMBSTONE_FRACTION = 0.2
"""Share of deleted HNSW nodes past which the graph is rebuilt without them."""

_FORMAT_VERSION = 1
_REBUILD_CHUNK = 8192
_CATCH_UP_UNDER_LOCK = 1024
"""A background rebuild adds at most about this many vectors while holding the lock."""
# The id map's int objects, key and value (28 bytes each below 2**30), which
# sys.getsizeof of the dict leaves out; with the dict itself this came to within 10 %
# of tracemalloc's count for 60k entries.
_ID_MAP_INT_BYTES_PER_ENTRY = 2 * 28


@functools.cache
def _configure_threads() -> int:
    """Let FAISS use every core this process may run on, unless OMP_NUM_THREADS says otherwise."""
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        faiss.omp_set_num_threads(cores or os.cpu_count() or 1)
    return int(faiss.omp_get_max_threads())


_FEW_QUERIES = 4
"""Searches of at most this many queries run on one OpenMP thread (see :func:`_threads_for`)."""


@contextlib.contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One OpenMP thread for a search of a few queries, the configured count otherwise.

    FAISS splits even a single query's scan of the flat index over its threads; the
    threads' start and barrier cost more than the scan below some 100k vectors, and far
    more on a loaded machine (measured on 2 busy cores: 2.8 ms instead of 0.12 ms at 1k
    vectors, 18 ms instead of 1.1 ms at 20k). The setting is per calling thread, so
    concurrent searches in other threads keep theirs.
    """
    if queries > _FEW_QUERIES:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class VectorIndex:
    """A thread-safe nearest-neighbour index from int64 ids to float16 vectors.

    Args:
        dimension: length of every vector (384 for multilingual-e5-small).
        exact_limit: up to this many stored vectors search is exact (flat); past it
            the index converts itself to HNSW.
        hnsw_m: HNSW neighbours per node (FAISS's ``M``); memory grows by 8 bytes per
            vector for each unit.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search-time beam width (raised to ``k`` when ``k`` is larger).

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        dimension: int,
        *,
        exact_limit: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {dimension}")
        if exact_limit < 0:
            raise ValueError(f"exact_limit must not be negative, got {exact_limit}")
        if hnsw_m < 2:
            raise ValueError(f"hnsw_m must be at least 2 (32 is usual), got {hnsw_m}")
        if ef_construction < 1 or ef_search < 1:
            raise ValueError(
                f"ef_construction and ef_search must be at least 1, "
                f"got {ef_construction} and {ef_search}"
            )
        _configure_threads()
        self.dimension = dimension
        self.exact_limit = exact_limit
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._lock = threading.RLock()
        self._index: Any = self._new_index(approximate=False)
        # Position in the FAISS index -> caller's id; -1 marks an HNSW tombstone.
        self._labels: IdArray = np.empty(0, dtype=np.int64)
        self._positions: dict[int, int] = {}
        self._tombstones = 0
        # Bitmap and IDSelector of live positions; FAISS holds raw pointers to both,
        # so they are kept here, and dropped whenever a mutation makes them stale.
        self._selector: tuple[npt.NDArray[np.uint8], Any] | None = None
        # The background rebuild of the HNSW graph without its tombstones, or the
        # conversion from flat, while one runs; the index it is to replace; the bytes of
        # the index it builds, as of its last chunk.
        self._rebuilding: threading.Thread | None = None
        self._replacing: Any = None
        self._replacement_bytes = 0
        self._stop_rebuilding = threading.Event()
        # How many times another index took this one's place (a rebuild or a conversion):
        # the same vectors, held otherwise than a snapshot taken before saw them.
        self.replacements = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._positions)

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, int | np.integer):
            return False
        with self._lock:
            return int(id) in self._positions

    @property
    def approximate(self) -> bool:
        """Whether the index is in HNSW (approximate) mode rather than flat (exact)."""
        with self._lock:
            return self._is_hnsw(self._index)

    @property
    def tombstones(self) -> int:
        """Deleted vectors still held by the index: by the HNSW graph, or by the flat
        index while it is being converted to HNSW (0 in flat mode otherwise)."""
        with self._lock:
            return self._tombstones

    @property
    def rebuilding(self) -> bool:
        """Whether a background rebuild of the graph is running."""
        thread = self._rebuilding
        return thread is not None and thread.is_alive()

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Wait until no background rebuild runs; False if ``timeout`` passed first."""
        thread = self._rebuilding
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        """Stop a background rebuild (the graph keeps its tombstones) and wait for it.

        A conversion from flat is waited for instead: it happens once, at
        ``exact_limit`` vectors (seconds), and a flat index past the limit would
        otherwise be what the next start loads."""
        with self._lock:
            converting = self._replacing is not None and not self._is_hnsw(self._replacing)
        if converting:
            self.wait_for_rebuild()
        self._stop_rebuilding.set()
        self.wait_for_rebuild()

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, bulk: bool = False) -> None:
        """Store vectors under the caller's ids; an id already stored is replaced.

        When an id repeats within one call, its last vector wins.

        Args:
            ids: int64 ids, shape (n,), each at least 0.
            vectors: float32 vectors, shape (n, dimension), L2-normalized by the caller.
            bulk: the caller is loading vectors in bulk with nobody searching meanwhile
                (a rebuild from the record): a conversion to HNSW that this add calls for
                is made at once, on every core, not in the background.

        Raises:
            ValueError: the shapes, dtypes or ids are invalid.
        """
        id_array = _as_ids(ids)
        matrix = self._as_vectors(vectors, "vectors")
        if len(id_array) != len(matrix):
            raise ValueError(
                f"got {len(id_array)} ids for {len(matrix)} vectors; pass one id per vector"
            )
        if len(id_array) == 0:
            return
        id_array, matrix = _keep_last_occurrences(id_array, matrix)
        with self._lock:
            self._discard(id_array)
            start = int(self._index.ntotal)
            self._index.add(matrix)
            self._labels = np.concatenate([self._labels, id_array])
            self._positions.update(
                zip(id_array.tolist(), range(start, start + len(id_array)), strict=True)
            )
            self._selector = None
            self._restructure(bulk=bulk)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Delete the vectors stored under these ids.

        Args:
            ids: int64 ids, shape (n,); ids not stored are ignored.

        Returns:
            How many vectors were removed.
        """
        id_array = _as_ids(ids)
        with self._lock:
            removed = self._discard(np.unique(id_array))
            if removed:
                self._restructure()
            return removed

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[FloatArray, IdArray]:
        """The ``k`` stored vectors with the highest inner product, for each query.

        Args:
            queries: float32 vectors, shape (n, dimension).
            k: neighbours per query (at least 1).

        Returns:
            ``(scores, ids)``, both shape (n, k), best first; rows with fewer than ``k``
            stored vectors are padded with ``-inf`` and ``-1``. Deleted ids never appear.

        Raises:
            ValueError: the queries or ``k`` are invalid.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        matrix = self._as_vectors(queries, "queries")
        scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        ids = np.full((len(matrix), k), -1, dtype=np.int64)
        with self._lock:
            fetch = min(k, len(self._positions))
            if fetch == 0 or len(matrix) == 0:
                return scores, ids
            with _threads_for(len(matrix)):
                if self._is_hnsw(self._index):
                    # faiss 1.15's bundled stubs omit SearchParametersHNSW.
                    parameters = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                    parameters.efSearch = max(self.ef_search, fetch)
                    if self._tombstones:
                        parameters.sel = self._live_selector()
                    found_scores, positions = self._index.search(matrix, fetch, params=parameters)
                elif self._tombstones:
                    # A flat index being converted: its removed vectors are still in it.
                    flat_parameters = faiss.SearchParameters()
                    flat_parameters.sel = self._live_selector()
                    found_scores, positions = self._index.search(
                        matrix, fetch, params=flat_parameters
                    )
                else:
                    found_scores, positions = self._index.search(matrix, fetch)
            found = positions >= 0
            ids[:, :fetch] = np.where(found, self._labels[np.where(found, positions, 0)], -1)
        scores[:, :fetch] = np.where(found, found_scores, -np.inf)
        return scores, ids

    def memory_bytes(self) -> int:
        """Estimated resident bytes: FAISS codes and graph, id maps and search bitmap,
        and the index a background rebuild or conversion is building (as of its last
        chunk)."""
        with self._lock:
            total = _index_bytes(self._index)
            if self._replacing is not None:
                total += self._replacement_bytes
            total += self._labels.nbytes + sys.getsizeof(self._positions)
            total += _ID_MAP_INT_BYTES_PER_ENTRY * len(self._positions)
            if self._selector is not None:
                total += self._selector[0].nbytes
            return total

    def save(self, path: Path, *, fingerprint: str) -> None:
        """Write the index and its build metadata to ``path`` atomically.

        Args:
            path: destination file; its directory must exist.
            fingerprint: the engine's ``Parameters.fingerprint()``, checked on load.
        """
        self.saver(fingerprint)(path)

    def saver(self, fingerprint: str) -> Callable[[Path], None]:
        """What :meth:`save` would write now (the index serialized: a copy), as a function
        that writes it to a path; the checksum, the write and the ``fsync`` happen there,
        so they may run later, on another thread, while the index changes."""
        with self._lock:
            index, labels = self._index, self._labels.copy()
            if not self._is_hnsw(index) and self._tombstones:
                # A flat index being converted: saved without its removed vectors.
                index, kept = self._compacted_flat()
                labels = self._labels[kept]
            blob = np.asarray(faiss.serialize_index(index), dtype=np.uint8)
            metadata = {
                "format": _FORMAT_VERSION,
                "fingerprint": fingerprint,
                "dimension": self.dimension,
                "mode": "hnsw" if self._is_hnsw(index) else "flat",
                "exact_limit": self.exact_limit,
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "count": len(self._positions),
                "tombstones": int((labels < 0).sum()),
                "faiss_version": faiss.__version__,
            }

        def write(path: Path) -> None:
            metadata["sha256"] = _checksum(blob, labels)
            meta = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
            with replacing(path) as file:
                np.savez(file, meta=meta, index=blob, labels=labels)
            fsync_directory(path.parent)
            logger.debug("saved %d vectors (%s) to %s", metadata["count"], metadata["mode"], path)

        return write

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fingerprint: str,
        dimension: int | None = None,
        exact_limit: int | None = None,
        hnsw_m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
    ) -> VectorIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the snapshot file.
            fingerprint: the engine's current ``Parameters.fingerprint()``.
            dimension: the expected dimension; ``None`` accepts the stored one.
            exact_limit: the expected exact limit; ``None`` accepts the stored one.
            hnsw_m: the expected HNSW ``M``; ``None`` accepts the stored one.
            ef_construction: the expected HNSW build width; ``None`` accepts the stored one.
            ef_search: a search width to use instead of the stored one (it changes no
                stored data, so it never causes a mismatch).

        Returns:
            The index as it was saved.

        Raises:
            FileNotFoundError: there is no file at ``path``.
            IndexMismatchError: the file was built with another fingerprint or other
                settings, or it is corrupted; the caller rebuilds it from the record.
        """
        metadata, blob, labels = _read_snapshot(path)
        expected = {
            "fingerprint": fingerprint,
            "dimension": dimension,
            "exact_limit": exact_limit,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
        }
        for name, value in expected.items():
            if value is not None and metadata[name] != value:
                raise IndexMismatchError(
                    f"vector index {path} was built with {name}={metadata[name]!r}, "
                    f"but {name}={value!r} is configured; the index will be rebuilt "
                    "from the record"
                )
        if metadata["faiss_version"] != faiss.__version__:
            logger.info(
                "vector index %s was written by FAISS %s, reading it with %s",
                path,
                metadata["faiss_version"],
                faiss.__version__,
            )
        try:
            vectors = cls(
                int(metadata["dimension"]),
                exact_limit=int(metadata["exact_limit"]),
                hnsw_m=int(metadata["hnsw_m"]),
                ef_construction=int(metadata["ef_construction"]),
                ef_search=ef_search if ef_search is not None else int(metadata["ef_search"]),
            )
            # Already downcast to its concrete class; it owns the C++ object, so no
            # second proxy (faiss.downcast_index) may outlive it.
            index: Any = faiss.deserialize_index(blob)
        except (ValueError, TypeError, RuntimeError) as error:
            raise _corrupted(path, str(error)) from error
        live = labels[labels >= 0]
        consistent = (
            int(index.d) == vectors.dimension
            and int(index.ntotal) == len(labels)
            and vectors._is_hnsw(index) == (metadata["mode"] == "hnsw")
            and len(np.unique(live)) == len(live) == metadata["count"]
            and len(labels) - len(live) == metadata["tombstones"]
            and (vectors._is_hnsw(index) or metadata["tombstones"] == 0)
        )
        if not consistent:
            raise _corrupted(path, "its contents disagree with its metadata")
        if vectors._is_hnsw(index):
            index.hnsw.efSearch = vectors.ef_search
        vectors._index = index
        vectors._labels = labels
        vectors._positions = dict(
            zip(live.tolist(), np.flatnonzero(labels >= 0).tolist(), strict=True)
        )
        vectors._tombstones = int(metadata["tombstones"])
        return vectors

    def _new_index(self, *, approximate: bool) -> Any:
        if not approximate:
            return faiss.IndexScalarQuantizer(
                self.dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        # faiss 1.15's stubs type the quantizer argument as an object; the C++ takes its type.
        index = faiss.IndexHNSWSQ(
            self.dimension,
            faiss.ScalarQuantizer.QT_fp16,  # type: ignore[arg-type]
            self.hnsw_m,
            faiss.METRIC_INNER_PRODUCT,
        )
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    @staticmethod
    def _is_hnsw(index: Any) -> bool:
        return isinstance(index, faiss.IndexHNSW)

    def _as_vectors(self, vectors: npt.ArrayLike, name: str) -> FloatArray:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimension:
            raise ValueError(
                f"{name} must have shape (n, {self.dimension}), got {matrix.shape}; "
                "pass a 2-D array even for one vector"
            )
        if not np.isfinite(matrix).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        return matrix

    def _discard(self, ids: IdArray) -> int:
        """Drop stored ids (unique); flat compacts at once, HNSW leaves tombstones (and
        so does a flat index being converted, whose positions the conversion reads)."""
        positions = [self._positions.pop(i) for i in ids.tolist() if i in self._positions]
        if not positions:
            return 0
        doomed = np.asarray(positions, dtype=np.int64)
        if self._is_hnsw(self._index) or self._replacing is self._index:
            self._labels[doomed] = -1
            self._tombstones += len(doomed)
            self._selector = None
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(doomed))
            self._labels = np.delete(self._labels, doomed)
            self._positions = dict(
                zip(self._labels.tolist(), range(len(self._labels)), strict=True)
            )
        return len(doomed)

    def _restructure(self, *, bulk: bool = False) -> None:
        """Convert flat to HNSW past the limit (at once for a ``bulk`` add, in the
        background otherwise); rebuild HNSW (in the background) when tombstones pile up."""
        if not self._is_hnsw(self._index):
            if len(self._positions) > self.exact_limit and self._replacing is None:
                if bulk:
                    self._rebuild(approximate=True)
                else:
                    self._start_rebuild()
        elif self._tombstones > MAX_TOMBSTONE_FRACTION * int(self._index.ntotal):
            self._start_rebuild()

    def _start_rebuild(self) -> None:
        """Start rebuilding the HNSW graph without its tombstones, or converting the flat
        index to HNSW, on a thread (hold the lock); nothing if one runs already or the
        index was closed."""
        if self.rebuilding or self._stop_rebuilding.is_set():
            return
        if self._is_hnsw(self._index):
            logger.info(
                "rebuilding the vector index without its %d tombstones in the background "
                "(%d live vectors)",
                self._tombstones,
                len(self._positions),
            )
        else:
            logger.info(
                "converting the vector index to HNSW in the background (%d vectors)",
                len(self._positions),
            )
        self._replacing = self._index
        self._replacement_bytes = 0
        self._rebuilding = threading.Thread(
            target=self._rebuild_in_background,
            args=(self._index,),
            name="samestory-vectors-rebuild",
            daemon=True,
        )
        self._rebuilding.start()

    def _rebuild_in_background(self, old: Any) -> None:
        try:
            self._build_replacement(old)
        except Exception:  # a thread's error would go unseen otherwise
            logger.exception("background rebuild of the vector index failed; tombstones kept")
        finally:
            with self._lock:
                if self._replacing is old:  # stopped or failed: nothing took over
                    self._replacing = None
                    if not self._is_hnsw(self._index) and self._tombstones:
                        self._take_over(*self._compacted_flat(), time.perf_counter())

    def _build_replacement(self, old: Any) -> None:
        """Build a graph of ``old``'s live vectors and put it in ``old``'s place.

        ``old`` is an HNSW index, or a flat one being converted: while this runs its
        positions never move (removals only mark them dead in ``_labels``; additions
        append), so each vector copied is known by its position, and whether it is still
        live when the new graph takes over is read there.
        """
        started = time.perf_counter()
        # All cores but one: requests go on meanwhile (a per-thread setting).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        faiss.omp_set_num_threads(max(1, min(faiss.omp_get_max_threads(), (cores or 2) - 1)))
        with self._lock:
            approximate = len(self._positions) > self.exact_limit
        index = self._new_index(approximate=approximate)
        storage = faiss.downcast_index(old.storage) if self._is_hnsw(old) else old
        copied: list[IdArray] = [np.empty(0, dtype=np.int64)]
        cursor = 0
        while True:
            if self._stop_rebuilding.is_set():
                logger.info("background rebuild of the vector index stopped")
                return
            with self._lock:
                if self._index is not old:
                    return
                end = int(old.ntotal)
                final = end - cursor <= _CATCH_UP_UNDER_LOCK
                if final:
                    # The rest is added and the new graph takes over without letting go.
                    cursor = self._copy_into(index, storage, cursor, end, copied)
                    self._take_over(index, np.concatenate(copied), started)
                    return
                end = min(end, cursor + _REBUILD_CHUNK)
                live, vectors = self._live_vectors(storage, cursor, end)
            _add_chunk(index, vectors)
            copied.append(live)
            cursor = end
            built = _index_bytes(index)
            with self._lock:
                self._replacement_bytes = built

    def _live_vectors(self, storage: Any, first: int, last: int) -> tuple[IdArray, FloatArray]:
        """The positions ``first:last`` still live, and their vectors decoded from
        ``storage``'s fp16 codes, which is lossless (hold the lock)."""
        positions = np.arange(first, last, dtype=np.int64)
        live = positions[self._labels[first:last] >= 0]
        vectors = storage.reconstruct_n(first, last - first)[live - first]
        return live, np.ascontiguousarray(vectors)

    def _copy_into(
        self, index: Any, storage: Any, start: int, end: int, copied: list[IdArray]
    ) -> int:
        """Add the live vectors at positions ``start:end`` to ``index`` (hold the lock)."""
        for first in range(start, end, _REBUILD_CHUNK):
            live, vectors = self._live_vectors(storage, first, min(end, first + _REBUILD_CHUNK))
            if len(live):
                _add_chunk(index, vectors)
            copied.append(live)
        return end

    def _take_over(self, index: Any, old_positions: IdArray, started: float) -> None:
        """Replace the index with ``index``, whose vector ``i`` is the one the old index
        holds at ``old_positions[i]`` (hold the lock)."""
        labels = self._labels[old_positions]
        if not self._is_hnsw(index) and (labels < 0).any():
            # A flat index has no tombstones: what was removed meanwhile goes now.
            index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(labels < 0)))
            labels = labels[labels >= 0]
        live = labels >= 0
        self._index = index
        self._replacing = None
        self.replacements += 1
        self._labels = labels.copy()
        self._positions = dict(
            zip(labels[live].tolist(), np.flatnonzero(live).tolist(), strict=True)
        )
        self._tombstones = int((~live).sum())
        self._selector = None
        logger.info(
            "rebuilt vector index as %s with %d vectors in %.2f s",
            "HNSW" if self._is_hnsw(index) else "flat",
            len(self._positions),
            time.perf_counter() - started,
        )

    def _rebuild(self, *, approximate: bool) -> None:
        """Re-add the live vectors to a new index at once (hold the lock): the conversion
        from flat; what :meth:`_build_replacement` does chunk by chunk."""
        started = time.perf_counter()
        old = self._index
        storage = faiss.downcast_index(old.storage) if self._is_hnsw(old) else old
        index = self._new_index(approximate=approximate)
        copied: list[IdArray] = [np.empty(0, dtype=np.int64)]
        self._copy_into(index, storage, 0, int(old.ntotal), copied)
        self._take_over(index, np.concatenate(copied), started)

    def _compacted_flat(self) -> tuple[Any, IdArray]:
        """A copy of the flat index without its tombstones, and the positions it kept
        (hold the lock); decoding and re-encoding the fp16 codes is lossless."""
        kept, vectors = self._live_vectors(self._index, 0, len(self._labels))
        index = self._new_index(approximate=False)
        if len(kept):
            index.add(vectors)
        return index, kept

    def _live_selector(self) -> Any:
        if self._selector is None:
            bitmap = np.packbits(self._labels >= 0, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(self._labels), faiss.swig_ptr(bitmap))
            self._selector = (bitmap, selector)
        return self._selector[1]


def _index_bytes(index: Any) -> int:
    """Bytes of a flat or HNSW index's codes and graph."""
    hnsw = isinstance(index, faiss.IndexHNSW)
    storage = faiss.downcast_index(index.storage) if hnsw else index
    total = int(storage.sa_code_size()) * int(storage.ntotal)
    if hnsw:
        graph = index.hnsw
        total += 4 * int(graph.neighbors.size()) + 4 * int(graph.levels.size())
        total += 8 * int(graph.offsets.size())
    return total


def _add_chunk(index: Any, vectors: FloatArray) -> None:
    """Add vectors to a FAISS index being built (a seam for tests to pause a rebuild)."""
    index.add(vectors)


def _as_ids(ids: npt.ArrayLike) -> IdArray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be a 1-D array, got shape {array.shape}")
    if len(array) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if len(array) and int(array.min()) < 0:
        raise ValueError("ids must not be negative: -1 pads search results")
    return array


def _keep_last_occurrences(ids: IdArray, vectors: FloatArray) -> tuple[IdArray, FloatArray]:
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


def _checksum(blob: npt.NDArray[np.uint8], labels: IdArray) -> str:
    digest = hashlib.sha256(blob.tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def _corrupted(path: Path, reason: str) -> IndexMismatchError:
    return IndexMismatchError(
        f"vector index {path} is unreadable ({reason}); the index will be rebuilt from the record"
    )


def _read_snapshot(path: Path) -> tuple[dict[str, Any], npt.NDArray[np.uint8], IdArray]:
    """Metadata, serialized index and labels of a snapshot, checked against its checksum."""
    if not path.exists():
        raise FileNotFoundError(f"no vector index at {path}")
    try:
        # np.load leaks its own file handle when the zip directory is damaged.
        with path.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            metadata = json.loads(archive["meta"].tobytes().decode())
            blob = archive["index"]
            labels = archive["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise _corrupted(path, str(error) or type(error).__name__) from error
    required = {
        "format",
        "fingerprint",
        "dimension",
        "mode",
        "exact_limit",
        "hnsw_m",
        "ef_construction",
        "ef_search",
        "count",
        "tombstones",
        "faiss_version",
        "sha256",
    }
    if not isinstance(metadata, dict) or not required <= metadata.keys():
        raise _corrupted(path, "its metadata is incomplete")
    if metadata["format"] != _FORMAT_VERSION:
        raise IndexMismatchError(
            f"vector index {path} has format {metadata['format']!r}, this version reads "
            f"{_FORMAT_VERSION}; the index will be rebuilt from the record"
        )
    if blob.dtype != np.uint8 or labels.dtype != np.int64 or labels.ndim != 1:
        raise _corrupted(path, "its arrays have unexpected types")
    if _checksum(blob, labels) != metadata["sha256"]:
        raise _corrupted(path, "checksum mismatch")
    return metadata, blob, labels


__all__ = ["MAX_TOMBSTONE_FRACTION", "VectorIndex"]
