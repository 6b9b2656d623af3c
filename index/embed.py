"""Dense text embeddings: the :class:`Embedder` interface and its sentence-transformers backend.

The engine hands :meth:`Embedder.embed` texts that are already cleaned and cut to length;
the embedder adds its model's prompt. Rows come back float32 and L2-normalized, so a dot
product is a cosine similarity.

Importing this module does not import torch or sentence-transformers: the backend loads
them when an embedder is constructed, so dedup-only work never pays for them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from index.errors import ModelError, ParameterError
from index.modelcache import resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from index.params import Parameters

__all__ = [
    "Embedder",
    "Precision",
    "SentenceTransformerEmbedder",
    "default_batch_size",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16", "float16"]
"""Weights' dtype; ``"auto"`` picks one from the device (see :func:`resolve_precision`)."""

_PRECISIONS = ("auto", "float32", "bfloat16", "float16")

_T = TypeVar("_T")

_PREFETCH_DEPTH = 4
"""Batches tokenized and padded ahead of the forward pass on CUDA."""


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (x86 AVX512-BF16 or AMX-BF16).

    Without it torch still runs bfloat16, emulated and slower than float32, so ``"auto"``
    only picks bfloat16 where this is true. Reads ``/proc/cpuinfo``; elsewhere False.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def resolve_precision(precision: Precision, device: str) -> Precision:
    """The concrete dtype for ``precision`` on ``device``.

    ``"auto"`` is float16 on CUDA; bfloat16 on a CPU with native bfloat16 (measured on
    this project's 2-core AVX512-BF16 machine: 3.2x the float32 throughput, cosine to the
    float32 vectors >= 0.9999, see ``benchmarks/embed_speed.py``); float32 otherwise.
    Explicit values are returned as given.
    """
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "float16"
    if device == "cpu" and cpu_has_native_bfloat16():
        return "bfloat16"
    return "float32"


def default_batch_size(device: str) -> int:
    """Texts per forward pass when none is configured: 32 on a CPU, 512 on CUDA.

    On an H100 (``benchmarks/gpu_embed.py``, E5-small, float16, 30,000 SaudiNewsNet texts)
    batches of 128, 256 and 512 gave 6,128, 8,061 and 9,725 docs/s; on a CPU larger
    batches only pad more.
    """
    return 512 if device.startswith("cuda") else 32


class Embedder(Protocol):
    """Turns texts into unit-length vectors.

    Attributes:
        dimension: length of every vector.
        name: the configured model (name or directory), as stored in the parameters.
    """

    dimension: int
    name: str

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: cleaned texts, without any model prompt.

        Returns:
            A ``(len(texts), dimension)`` float32 array of L2-normalized rows, in input order.
        """
        ...


class SentenceTransformerEmbedder:
    """An :class:`Embedder` backed by a sentence-transformers model.

    Texts are batched by token length (longest first) so that a batch pads little, and
    returned in input order.
    """

    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path,
        device: str = "cpu",
        max_seq_length: int = 256,
        batch_size: int | None = None,
        prompt: str = "query: ",
        precision: Precision = "auto",
        chunk_size: int = 4096,
    ) -> None:
        """Load the model.

        Args:
            model: a model name or local directory, resolved by
                :func:`index.modelcache.resolve_model` (the default model is built offline).
            cache_dir: where converted models are cached.
            device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
            max_seq_length: tokens per text (prompt and special tokens included); longer
                texts are truncated.
            batch_size: texts per forward pass; None: :func:`default_batch_size`.
            prompt: prefix added to every text (E5 expects ``"query: "`` for symmetric
                tasks such as clustering); ``""`` for none.
            precision: weights' dtype; ``"auto"`` (the default) resolves with
                :func:`resolve_precision`: bfloat16 on CPUs that support it natively,
                float16 on CUDA, float32 otherwise. The resolved value is kept in
                :attr:`precision`.
            chunk_size: texts tokenized at once and sorted by length together (at least
                ``batch_size``); larger chunks pad less, smaller ones start sooner.

        Raises:
            ModelError: the model cannot be found or loaded.
            ParameterError: an argument is out of range.
        """
        if max_seq_length < 8:
            raise ParameterError(f"max_seq_length must be at least 8, got {max_seq_length}")
        if batch_size is None:
            batch_size = default_batch_size(device)
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        if precision not in _PRECISIONS:
            raise ParameterError(
                f"precision must be 'auto', 'float32', 'bfloat16' or 'float16', got {precision!r}"
            )
        precision = resolve_precision(precision, device)
        self.precision: Precision = precision
        self.name = model
        self._prompt = prompt
        self._batch_size = batch_size
        location = resolve_model(model, cache_dir)
        started = time.monotonic()
        self._model = _load(location, model, device, precision)
        self._model.max_seq_length = max_seq_length
        self._tokenizer: Any = self._model.tokenizer
        self._direct = _direct_forward_supported(self._model)
        self._backend = _fast_backend(self._tokenizer)
        self._backend_lock = threading.Lock()
        self._token_types = "token_type_ids" in getattr(self._tokenizer, "model_input_names", ())
        self.chunk_size = max(chunk_size, batch_size)
        self.dimension = _dimension(self._model)
        logger.info(
            "loaded embedding model %s from %s on %s (%s, %d dimensions) in %.1f s",
            model,
            location,
            device,
            precision,
            self.dimension,
            time.monotonic() - started,
        )

    @classmethod
    def configured(
        cls, params: Parameters, *, cache_dir: Path, precision: Precision = "auto"
    ) -> SentenceTransformerEmbedder:
        """The model as ``params`` configure it (model, device, tokens, batch size and
        prompt): what an engine opened with ``params`` embeds with."""
        return cls(
            params.model,
            cache_dir=cache_dir,
            device=params.device,
            max_seq_length=params.embed_max_tokens,
            batch_size=params.embed_batch_size,
            prompt=params.embed_prompt,
            precision=precision,
        )

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts; see :meth:`Embedder.embed`.

        Texts are tokenized once, in chunks of :attr:`chunk_size` on a background thread
        (the Rust tokenizer runs a chunk on every core), sorted by token length within a
        chunk and cut into batches that pad little; on CUDA each batch is padded into
        pinned memory and copied without blocking, while the previous batch runs. Vectors
        stay on the device until the last batch is done.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not self._direct:
            return self._embed_with_encode(texts)
        import torch

        device = self._model.device
        pin = device.type == "cuda"
        result = torch.empty((len(texts), self.dimension), dtype=torch.float32, device=device)
        with torch.inference_mode(), ThreadPoolExecutor(1, "samestory-tokenize") as pool:
            batches = self._batches(texts, pin=pin)
            if pin:
                # Only worth a thread where the forward pass leaves the CPU free: on a CPU
                # device the tokenizer would compete with torch's own threads.
                batches = _prefetch(pool, batches, depth=_PREFETCH_DEPTH)
            for rows, features in batches:
                on_device = {
                    name: tensor.to(device, non_blocking=pin) for name, tensor in features.items()
                }
                output = self._model(on_device)["sentence_embedding"].float()
                result.index_copy_(0, rows.to(device, non_blocking=pin), output)
            # Normalize in float32 here: pooled bfloat16/float16 vectors are only
            # unit-length to a few digits.
            result = torch.nn.functional.normalize(result, dim=1, eps=1e-12)
            vectors: npt.NDArray[np.float32] = result.cpu().numpy()
        return vectors

    def _batches(self, texts: Sequence[str], *, pin: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
        """``(rows, features)`` per batch: the texts' positions and their padded tensors."""
        import torch

        pad_id = self._tokenizer.pad_token_id or 0
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            ids, types = self._tokenize([self._prompt + text for text in chunk])
            lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
            order = np.argsort(-lengths, kind="stable")
            for first in range(0, len(order), self._batch_size):
                members = order[first : first + self._batch_size]
                width = int(lengths[members[0]])
                input_ids = np.full((len(members), width), pad_id, dtype=np.int64)
                mask = np.zeros((len(members), width), dtype=np.int64)
                token_types = None if types is None else np.zeros_like(mask)
                for row, member in enumerate(members.tolist()):
                    length = int(lengths[member])
                    input_ids[row, :length] = ids[member]
                    mask[row, :length] = 1
                    if token_types is not None and types is not None:
                        token_types[row, :length] = types[member]
                arrays = {"input_ids": input_ids, "attention_mask": mask}
                if token_types is not None:
                    arrays["token_type_ids"] = token_types
                features = {name: torch.from_numpy(array) for name, array in arrays.items()}
                rows = torch.from_numpy(members + start)
                if pin:
                    features = {name: tensor.pin_memory() for name, tensor in features.items()}
                    rows = rows.pin_memory()
                yield rows, features

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids (and token types, for models that use them) of prompted texts.

        Through the Rust tokenizer itself when it can be had (``encode_batch_fast``: no
        offsets, and none of the wrapper's per-text Python work, which bounds a GPU run),
        else through the transformers wrapper; both truncate the same way.
        """
        if self._backend is not None:
            with self._backend_lock:
                # The wrapper may have left padding (SentenceTransformer.encode pads) or
                # another truncation set on the shared backend.
                self._backend.no_padding()
                self._backend.enable_truncation(self._model.max_seq_length)
                encodings = self._backend.encode_batch_fast(texts, add_special_tokens=True)
            ids = [encoding.ids for encoding in encodings]
            if not self._token_types:
                return ids, None
            return ids, [encoding.type_ids for encoding in encodings]
        encoded = self._tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self._model.max_seq_length,
            return_attention_mask=False,
        )
        return encoded["input_ids"], encoded.get("token_type_ids")

    def _embed_with_encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The general way, through ``SentenceTransformer.encode`` (see :attr:`_direct`)."""
        order = self._longest_first(texts)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            vectors = self._model.encode(
                [texts[i] for i in batch],
                prompt=self._prompt,
                batch_size=len(batch),
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            result[batch] = vectors.astype(np.float32, copy=False)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        result /= np.maximum(norms, np.float32(1e-12))
        return result

    def _longest_first(self, texts: Sequence[str]) -> npt.NDArray[np.intp]:
        # Sorting by tokens rather than characters (sentence-transformers' own proxy) keeps
        # mixed scripts apart: 1,000 Arabic characters make far more tokens than 1,000 Latin.
        ids, _types = self._tokenize([self._prompt + text for text in texts])
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        return np.argsort(-lengths, kind="stable")


def _prefetch(pool: ThreadPoolExecutor, items: Iterator[_T], *, depth: int) -> Iterator[_T]:
    """``items``, produced on ``pool``'s thread up to ``depth`` ahead of the consumer."""
    sentinel = object()

    def step() -> Any:
        return next(items, sentinel)

    pending: deque[Future[Any]] = deque(pool.submit(step) for _ in range(depth))
    while True:
        item = pending.popleft().result()
        if item is sentinel:
            return
        while len(pending) < depth:
            pending.append(pool.submit(step))
        yield item


def _fast_backend(tokenizer: Any) -> Any:
    """A fast tokenizer's own Rust tokenizer, or None when it has none or it lacks
    ``encode_batch_fast`` (tokenizers < 0.21).

    It is shared with the transformers wrapper (no copy: parsing the tokenizer's JSON again
    costs ~0.65 s of start-up for E5's 250k-piece vocabulary), which sets padding and
    truncation on it per call and leaves them set, so :meth:`SentenceTransformerEmbedder._tokenize`
    sets its own before every use.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    return backend


def _direct_forward_supported(model: SentenceTransformer) -> bool:
    """Whether :meth:`SentenceTransformerEmbedder.embed` may feed the model its own tensors.

    True for the usual text pipeline: a first module with a fast tokenizer, then modules
    that read only token ids, mask and token types (pooling that counts the prompt's
    tokens, as E5 does, normalization, dense layers). Pooling that excludes the prompt
    needs ``prompt_length``, which only ``encode`` supplies; such models take that way.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return False
    return all(getattr(module, "include_prompt", True) is not False for module in model)


def _load(location: str, model: str, device: str, precision: Precision) -> SentenceTransformer:
    import torch
    from sentence_transformers import SentenceTransformer

    _limit_torch_threads(torch)
    try:
        with _quiet_weight_loading():
            loaded = SentenceTransformer(location, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"cannot load embedding model {model!r} from {location!r}: {str(exc).rstrip('.')}. "
            "Without hub access, configure a local sentence-transformers directory as the "
            "model, or use the default intfloat/multilingual-e5-small, which is built offline"
        ) from exc
    if precision != "float32":
        loaded.to(getattr(torch, precision))
    loaded.eval()
    return loaded


def _dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 5.x and later name it get_embedding_dimension; 3.x and 4.x
    # only have get_sentence_embedding_dimension (deprecated with a warning since).
    getter = getattr(model, "get_embedding_dimension", None)
    dimension = getter() if getter is not None else model.get_sentence_embedding_dimension()
    if not isinstance(dimension, int) or dimension < 1:
        raise ModelError(f"the embedding model reports no output dimension ({dimension!r})")
    return dimension


def _limit_torch_threads(torch: Any) -> None:
    # torch sizes its pool from the host's cores; in a container pinned to fewer CPUs
    # that oversubscribes them and every matmul slows down.
    available = len(os.sched_getaffinity(0))
    if torch.get_num_threads() > available:
        torch.set_num_threads(available)


class _NoDefaultPromptWarning(logging.Filter):
    """Drops sentence-transformers' warning that a model's default prompt applies: the
    embedder prefixes its own prompt (``embed_prompt``, empty by default) to every text and
    never lets the model's default apply, so at every start the warning only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Default prompt name is set to")


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    # transformers draws a "Loading weights" progress bar on stderr, noise in service logs.
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # A filter acts only on its own logger's records: every sentence-transformers logger.
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name == "sentence_transformers" or name.startswith("sentence_transformers.")
    ]
    quiet = _NoDefaultPromptWarning()
    for each in loggers:
        each.addFilter(quiet)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(quiet)
        if enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
