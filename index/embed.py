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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from index.errors import ModelError, ParameterError
from index.modelcache import resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Embedder", "Precision", "SentenceTransformerEmbedder", "resolve_precision"]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16", "float16"]
"""Weights' dtype; ``"auto"`` picks one from the device (see :func:`resolve_precision`)."""

_PRECISIONS = ("auto", "float32", "bfloat16", "float16")


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
        batch_size: int = 32,
        prompt: str = "query: ",
        precision: Precision = "auto",
    ) -> None:
        """Load the model.

        Args:
            model: a model name or local directory, resolved by
                :func:`index.modelcache.resolve_model` (the default model is built offline).
            cache_dir: where converted models are cached.
            device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
            max_seq_length: tokens per text (prompt and special tokens included); longer
                texts are truncated.
            batch_size: texts per forward pass.
            prompt: prefix added to every text (E5 expects ``"query: "`` for symmetric
                tasks such as clustering); ``""`` for none.
            precision: weights' dtype; ``"auto"`` (the default) resolves with
                :func:`resolve_precision`: bfloat16 on CPUs that support it natively,
                float16 on CUDA, float32 otherwise. The resolved value is kept in
                :attr:`precision`.

        Raises:
            ModelError: the model cannot be found or loaded.
            ParameterError: an argument is out of range.
        """
        if max_seq_length < 8:
            raise ParameterError(f"max_seq_length must be at least 8, got {max_seq_length}")
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

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts; see :meth:`Embedder.embed`."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
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
        # Normalize again in float32: pooled bfloat16/float16 vectors are only unit-length
        # to a few digits.
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        result /= np.maximum(norms, np.float32(1e-12))
        return result

    def _longest_first(self, texts: Sequence[str]) -> npt.NDArray[np.intp]:
        # Sorting by tokens rather than characters (sentence-transformers' own proxy) keeps
        # mixed scripts apart: 1,000 Arabic characters make far more tokens than 1,000 Latin.
        encoded = self._tokenizer(
            [self._prompt + text for text in texts],
            add_special_tokens=True,
            truncation=True,
            max_length=self._model.max_seq_length,
            return_attention_mask=False,
        )
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64)
        return np.argsort(-lengths, kind="stable")


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


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    # transformers draws a "Loading weights" progress bar on stderr, noise in service logs.
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
