"""The embedding stage of a batch run on a GPU: samestory's embedder against plain ``encode``.

Run on a CUDA machine::

    .venv/bin/python benchmarks/gpu_embed.py --device cuda --out benchmarks/results/gpu.json

Texts are what the engine embeds for SaudiNewsNet (cleaned title + body, first
``embed_max_chars`` characters; the same preparation as ``Engine._prepare_many`` without
the learned boilerplate, which needs a store). ``--export-texts FILE`` writes them as
JSON lines (``.gz`` or plain) and ``--texts FILE`` reads such a file instead of the data
set, so a machine without the data, or without the engine's dependencies, can run the
measurement. All rows are measured in the same run, in interleaved rounds, best round kept:

- ``encode``: ``SentenceTransformer.encode`` of the same model, same precision, same
  256-token limit and prompt, all texts in one call (it sorts by length itself); the
  issue's reference point (~2,500 docs/s on an H100).
- ``forward only``: the model's forward pass and pooling over batches already tokenized,
  padded and on the device: what the GPU alone allows, the upper bound.
- ``samestory``: :class:`index.embed.SentenceTransformerEmbedder.embed` on all texts in one
  call (tokenized once in chunks on a background thread, sorted by length per chunk,
  pinned memory and copies that do not block, vectors kept on the device until the end),
  for each ``--batch-sizes``; and the same in calls of 512 texts, as ``samestory dedup``
  hands the engine chunks of 512 records.
- ``tokenize only``: the tokenizing step of ``samestory`` alone (Rust ``encode_batch_fast``
  in chunks), for scale; and ``samestory`` with the transformers tokenizer wrapper instead.

Agreement: cosine of every variant's vectors with float32 ``encode`` on the first 2,000
texts (how much float16 or bfloat16 moves the vectors).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.embed import Precision, SentenceTransformerEmbedder, resolve_precision
from index.modelcache import build_default_model
from index.params import DEFAULT_MODEL, Parameters

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "saudinewsnet" / "articles.jsonl.gz"
CACHE = REPO / ".cache" / "models"

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def engine_texts(path: Path, limit: int | None) -> list[str]:
    """What the engine embeds for the articles of a JSON-lines file (title + cleaned body)."""
    from index import text as textlib

    max_chars = Parameters().embed_max_chars
    texts: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            raw = record.get("content") or record.get("text") or ""
            title = (record.get("title") or "").strip()
            if textlib.looks_like_html(raw):
                raw, extracted = textlib.extract_html(raw)
                title = title or extracted or ""
            body = textlib.clean(raw).body
            if not body.strip():
                continue
            head = body if not title else f"{title}\n{body}"
            texts.append(head[:max_chars])
            if limit is not None and len(texts) >= limit:
                break
    return texts


def read_texts(path: Path) -> list[str]:
    """Texts written by ``--export-texts``."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def write_texts(path: Path, texts: Sequence[str]) -> None:
    """One JSON string per line, gzip-compressed when ``path`` ends in ``.gz``."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as out:
        for text in texts:
            out.write(json.dumps(text, ensure_ascii=False) + "\n")


def measure(
    texts: Sequence[str],
    *,
    device: str,
    precision: Precision,
    batch_sizes: Sequence[int],
    cache_dir: Path,
    repeat: int,
    max_seq_length: int = 256,
) -> dict[str, Any]:
    """Docs per second of every variant on ``texts``, and cosine agreement with float32."""
    import torch

    started = time.perf_counter()
    build_default_model(cache_dir)
    build_s = time.perf_counter() - started
    resolved = resolve_precision(precision, device)
    prompt = Parameters().embed_prompt

    embedders = {
        size: SentenceTransformerEmbedder(
            DEFAULT_MODEL,
            cache_dir=cache_dir,
            device=device,
            max_seq_length=max_seq_length,
            batch_size=size,
            prompt=prompt,
            precision=resolved,
        )
        for size in batch_sizes
    }
    main = embedders[max(batch_sizes)]
    model: Any = main._model
    tokenizer: Any = main._tokenizer

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def encode(batch: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = model.encode(
            list(batch),
            prompt=prompt,
            batch_size=max(batch_sizes),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    # Forward only: every batch tokenized, padded (sorted by length, as ours) and on the
    # device before the clock starts.
    prepared: list[dict[str, Any]] = []
    for rows, features in main._batches(texts, pin=False):
        del rows
        prepared.append({name: tensor.to(device) for name, tensor in features.items()})

    def forward_only(_texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            for features in prepared:
                model(dict(features))["sentence_embedding"]
        synchronize()
        return np.zeros((0, main.dimension), dtype=np.float32)

    def tokenize_only(batch: Sequence[str]) -> npt.NDArray[np.float32]:
        for start in range(0, len(batch), main.chunk_size):
            main._tokenize([prompt + text for text in batch[start : start + main.chunk_size]])
        return np.zeros((0, main.dimension), dtype=np.float32)

    def in_calls_of(size: int, embedder: SentenceTransformerEmbedder) -> Embed:
        def embed(batch: Sequence[str]) -> npt.NDArray[np.float32]:
            starts = range(0, len(batch), size)
            return np.concatenate([embedder.embed(batch[start : start + size]) for start in starts])

        return embed

    variants: dict[str, Embed] = {
        "encode (sentence-transformers)": encode,
        "forward only (upper bound)": forward_only,
        "tokenize only": tokenize_only,
    }
    for size, embedder in embedders.items():
        variants[f"samestory, batch {size}"] = embedder.embed
    variants[f"samestory, batch {max(batch_sizes)}, calls of 512"] = in_calls_of(512, main)
    variants[f"samestory, batch {max(batch_sizes)}, calls of 4096"] = in_calls_of(4096, main)
    wrapper = SentenceTransformerEmbedder(
        DEFAULT_MODEL,
        cache_dir=cache_dir,
        device=device,
        max_seq_length=max_seq_length,
        batch_size=max(batch_sizes),
        prompt=prompt,
        precision=resolved,
    )
    wrapper._backend = None
    variants[f"samestory, batch {max(batch_sizes)}, transformers tokenizer"] = wrapper.embed

    for embed in variants.values():  # warm-up: kernels, allocator, oneDNN/cuBLAS choices
        embed(texts[:1024])
    synchronize()
    best = dict.fromkeys(variants, float("inf"))
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for _ in range(repeat):
        for name, embed in variants.items():
            synchronize()
            wall = time.perf_counter()
            result = embed(texts)
            synchronize()
            best[name] = min(best[name], time.perf_counter() - wall)
            if len(result):
                vectors[name] = result

    # Agreement with float32 encode on a sample.
    sample = list(texts[:2000])
    reference_model = SentenceTransformerEmbedder(
        DEFAULT_MODEL,
        cache_dir=cache_dir,
        device=device,
        max_seq_length=max_seq_length,
        batch_size=64,
        prompt=prompt,
        precision="float32",
    )._model
    reference = np.asarray(
        reference_model.encode(
            sample,
            prompt=prompt,
            batch_size=64,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )
    rows = []
    for name in variants:
        row: dict[str, Any] = {"variant": name, "docs_per_s": len(texts) / best[name]}
        if name in vectors:
            cosines = np.sum(vectors[name][: len(sample)] * reference, axis=1)
            row["cos_mean"] = float(cosines.mean())
            row["cos_min"] = float(cosines.min())
        rows.append(row)
    lengths = np.array(
        [
            len(ids)
            for ids in tokenizer(
                [prompt + text for text in texts], truncation=True, max_length=max_seq_length
            )["input_ids"]
        ]
    )
    return {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "precision": resolved,
        "texts": len(texts),
        "cpu_count": os.cpu_count(),
        "build_s": build_s,
        "tokens_p50_p90_mean": [
            float(np.percentile(lengths, 50)),
            float(np.percentile(lengths, 90)),
            float(lengths.mean()),
        ],
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the embedding-stage table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DATA, help="SaudiNewsNet articles.jsonl.gz")
    parser.add_argument("--texts", type=Path, help="texts written by --export-texts")
    parser.add_argument("--export-texts", type=Path, help="write the texts here and stop")
    parser.add_argument("--limit", type=int, help="articles to use (default: all)")
    parser.add_argument(
        "--tile", type=int, default=1, help="repeat the texts this many times (small samples)"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-sizes", default="128,256,512")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    texts = read_texts(args.texts) if args.texts else engine_texts(args.data, args.limit)
    if args.texts and args.limit:
        texts = texts[: args.limit]
    texts = texts * args.tile
    if args.export_texts:
        write_texts(args.export_texts, texts)
        print(f"wrote {len(texts)} texts to {args.export_texts}")
        return
    result = measure(
        texts,
        device=args.device,
        precision=args.precision,
        batch_sizes=[int(size) for size in args.batch_sizes.split(",")],
        cache_dir=args.cache_dir,
        repeat=args.repeat,
    )
    p50, p90, mean = result["tokens_p50_p90_mean"]
    print(
        f"{result['texts']} texts on {result['device']} ({result['precision']}, torch "
        f"{result['torch']}, {result['cpu_count']} CPUs); tokens p50 {p50:.0f}, p90 {p90:.0f}, "
        f"mean {mean:.0f} (256 max); model build/cache check {result['build_s']:.1f} s"
    )
    print(f"{'variant':<44}{'docs/s':>10}{'cos mean':>10}{'cos min':>9}")
    for row in result["rows"]:
        cos_mean = f"{row['cos_mean']:.5f}" if "cos_mean" in row else "-"
        cos_min = f"{row['cos_min']:.5f}" if "cos_min" in row else "-"
        print(f"{row['variant']:<44}{row['docs_per_s']:>10,.0f}{cos_mean:>10}{cos_min:>9}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
