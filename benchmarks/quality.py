"""Accuracy of samestory on real, human-labelled dev data (``../shared/data``).

Run from the repository root (about 20 minutes on the 2-core CPU machine)::

    .venv/bin/python benchmarks/quality.py --out benchmarks/results/quality.json

Tasks (``--tasks``, comma-separated; all by default), metrics as defined in
``../shared/data/README.md``:

- ``clustering``: ECB+ dev documents fed one at a time through :meth:`Engine.ingest` (the
  online path the service uses) in three shuffled orders; B-cubed P/R/F1, pairwise F1,
  ARI and the number of stories.
- ``similarity``: SemEval-2022 Task 8 dev pairs through :meth:`Engine.similarity` (what
  ``POST /v1/similarity`` returns); Pearson with ``overall`` (sign flipped) per language
  pair, ROC AUC of same story (``overall`` <= 1.5) against different (>= 3).
- ``neardup``: SaudiNewsNet through a dedup-mode engine against the exhaustive truth (every
  pair with exact Jaccard >= 0.8 of word 5-gram shingles of normalized text).
- ``neardup_ant``: the same for ANT, the data README's second near-duplicate corpus
  (outlets that rewrite rather than copy; reported beside SaudiNewsNet's targets).
- ``edits``: real ANT articles copied with realistic edits among unrelated ANT articles.
- ``seeds``: the five seed articles, five distinct stories.

The near-duplicate truth is computed here, independently of the engine (its own
normalization and shingling, written from DESIGN.md's rules), and cached under
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import logging
import math
import random
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks.quality")

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_MODEL_CACHE = REPO / ".cache" / "models"
RESULTS = REPO / "benchmarks" / "results"
TASKS = ("clustering", "similarity", "neardup", "neardup_ant", "edits", "seeds")
ORDER_SEEDS = (1, 2, 3)
TRUTH_THRESHOLD = 0.8
# Pairs down to this Jaccard are kept in the cached truth so that what the containment
# rule adds below 0.8 can be measured: containment >= 0.9 at length ratio >= 0.6 implies
# Jaccard >= 0.9 * 0.6 / (1 + 0.6 - 0.9 * 0.6) > 0.5.
TRUTH_FLOOR = 0.5
SHINGLE_SIZE = 5

Ids = list[str]

# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcbDocument:
    """One ECB+ document; ``story`` is the gold cluster."""

    id: str
    topic: int
    story: str
    text: str


@dataclass(frozen=True)
class SemevalPair:
    """One SemEval-2022 Task 8 pair; ``overall`` is 1 (same story) … 4 (unrelated)."""

    id: str
    lang1: str
    lang2: str
    text1: str
    text2: str
    overall: float

    @property
    def languages(self) -> str:
        """The language pair as the task names it, e.g. ``de-en``."""
        return f"{self.lang1}-{self.lang2}"


@dataclass(frozen=True)
class NewsArticle:
    """A news article of SaudiNewsNet or ANT, as the engine receives it."""

    id: str
    text: str
    title: str | None
    source: str | None
    published_at: datetime | None
    byline: str | None = None
    category: str | None = None


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def load_ecb(data_dir: Path) -> list[EcbDocument]:
    """ECB+ dev documents (topics 1–35), in file order."""
    return [
        EcbDocument(
            id=record["doc_id"],
            topic=int(record["topic"]),
            story=record["cluster"],
            text=record["text_tokenized"],
        )
        for record in _jsonl(data_dir / "ecbplus" / "docs_dev.jsonl.gz")
    ]


def load_semeval(data_dir: Path) -> list[SemevalPair]:
    """SemEval-2022 Task 8 dev pairs (original, not machine-translated)."""
    return [
        SemevalPair(
            id=record["pair_id"],
            lang1=record["lang1"],
            lang2=record["lang2"],
            text1=record["text1"],
            text2=record["text2"],
            overall=float(record["overall"]),
        )
        for record in _jsonl(data_dir / "semeval2022_task8" / "pairs_dev.jsonl.gz")
    ]


def load_saudinewsnet(data_dir: Path) -> list[NewsArticle]:
    """SaudiNewsNet articles; ``date_extracted`` (local crawl time) is taken as UTC."""
    articles: list[NewsArticle] = []
    for record in _jsonl(data_dir / "saudinewsnet" / "articles.jsonl.gz"):
        stamp = record.get("date_extracted")
        published = datetime.fromisoformat(stamp).replace(tzinfo=UTC) if stamp else None
        articles.append(
            NewsArticle(
                id=record["id"],
                text=record.get("content") or "",
                title=record.get("title") or None,
                source=record.get("source") or None,
                published_at=published,
                byline=record.get("author") or None,
            )
        )
    return articles


def _rfc2822(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_ant(data_dir: Path) -> list[NewsArticle]:
    """ANT multi-source articles."""
    return [
        NewsArticle(
            id=record["docno"],
            text=record.get("text") or "",
            title=record.get("title") or None,
            source=record.get("src") or None,
            published_at=_rfc2822(record.get("time")),
            byline=record.get("author") or None,
            category=record.get("cat") or None,
        )
        for record in _jsonl(data_dir / "ant_multisource" / "articles.jsonl.gz")
    ]


def load_seeds(data_dir: Path) -> list[tuple[str, str]]:
    """(file stem, text) of the seed articles."""
    return [
        (path.stem, path.read_text(encoding="utf-8"))
        for path in sorted((data_dir / "seeds").glob("*.txt"))
    ]


# -- metrics ---------------------------------------------------------------------------------


def bcubed(predicted: Sequence[str], gold: Sequence[str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 (Bagga and Baldwin 1998) of two labelings."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError("bcubed needs two labelings of the same, non-empty item list")
    joint = Counter(zip(predicted, gold, strict=True))
    sizes_predicted = Counter(predicted)
    sizes_gold = Counter(gold)
    precision = sum(n * n / sizes_predicted[p] for (p, _g), n in joint.items()) / len(gold)
    recall = sum(n * n / sizes_gold[g] for (_p, g), n in joint.items()) / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def pairwise_scores(predicted: Sequence[str], gold: Sequence[str]) -> tuple[float, float, float]:
    """Precision, recall and F1 over all item pairs placed in one cluster."""
    joint = Counter(zip(predicted, gold, strict=True))
    together = sum(n * (n - 1) / 2 for n in joint.values())
    predicted_pairs = sum(n * (n - 1) / 2 for n in Counter(predicted).values())
    gold_pairs = sum(n * (n - 1) / 2 for n in Counter(gold).values())
    precision = together / predicted_pairs if predicted_pairs else 1.0
    recall = together / gold_pairs if gold_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def adjusted_rand(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Adjusted Rand index (scikit-learn's)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(gold, predicted))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r (nan when either side is constant)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """ROC AUC (scikit-learn's); nan without both classes."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(positive, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def similarity_scores(pairs: Sequence[SemevalPair], scores: Sequence[float]) -> dict[str, Any]:
    """The SemEval metrics of ``scores`` (one per pair), overall and per language pair.

    Pearson is taken against ``-overall`` (1 = same story … 4 = unrelated); AUC separates
    same story (``overall`` <= 1.5) from different (``overall`` >= 3), ignoring the middle.
    """

    def block(indices: Sequence[int]) -> dict[str, float | int]:
        chosen = [pairs[i] for i in indices]
        values = [scores[i] for i in indices]
        decided = [i for i, pair in zip(indices, chosen, strict=True) if not 1.5 < pair.overall < 3]
        return {
            "pairs": len(indices),
            "pearson": pearson(values, [-pair.overall for pair in chosen]),
            "auc": roc_auc(
                [scores[i] for i in decided], [pairs[i].overall <= 1.5 for i in decided]
            ),
        }

    by_language: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_language[pair.languages].append(index)
    result: dict[str, Any] = {"all": block(range(len(pairs)))}
    for languages in sorted(by_language, key=lambda name: -len(by_language[name])):
        result[languages] = block(by_language[languages])
    return result


# -- near-duplicate truth --------------------------------------------------------------------

_TASHKEEL = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ARABIC_FOLDS = str.maketrans(
    {
        "أ": "ا",
        "إ": "ا",
        "آ": "ا",
        "ٱ": "ا",
        "ى": "ي",
        "ة": "ه",
        "ؤ": "و",
        "ئ": "ي",
        "ک": "ك",
        "ی": "ي",
        **{chr(0x0660 + digit): str(digit) for digit in range(10)},
        **{chr(0x06F0 + digit): str(digit) for digit in range(10)},
    }
)
_NON_WORD = re.compile(r"[\W_]+")


def truth_normalize(text: str) -> str:
    """Normalized text for the truth, written from DESIGN.md's rules, not the engine's code.

    NFKC, case fold, tashkeel and tatweel removed, Arabic letter variants folded,
    Arabic-Indic and Persian digits to ASCII, every run of non-word characters to a space.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _TASHKEEL.sub("", folded).translate(_ARABIC_FOLDS)
    return _NON_WORD.sub(" ", folded).strip()


def truth_shingles(normalized: str, size: int = SHINGLE_SIZE) -> npt.NDArray[np.int64]:
    """Sorted unique 64-bit hashes of the word ``size``-grams (none below ``size`` words).

    The hashes are BLAKE2b, so the truth does not depend on the process (unlike ``hash``).
    """
    words = normalized.split()
    if len(words) < size:
        return np.zeros(0, dtype=np.int64)
    grams = {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
    values = [
        int.from_bytes(
            hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little", signed=True
        )
        for gram in grams
    ]
    return np.unique(np.array(values, dtype=np.int64))


def exact_jaccard(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Jaccard similarity of two sorted unique arrays."""
    if a.size == 0 and b.size == 0:
        return 0.0
    shared = np.intersect1d(a, b, assume_unique=True).size
    return shared / (a.size + b.size - shared)


def similar_pairs(
    sets: Sequence[npt.NDArray[np.int64]], threshold: float
) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, jaccard)``, ``i < j``, with exact Jaccard >= ``threshold``.

    Exhaustive and exact: the prefix filter of AllPairs (Bayardo, Ma and Srikant, WWW
    2007). With tokens ordered rarest first, a pair with Jaccard >= t shares at least
    ``ceil(t * |x|)`` tokens with each side ``x``, so the first ``|x| - ceil(t * |x|) + 1``
    tokens of both sides intersect; only pairs sharing such a prefix token (and passing
    the length filter) are verified, by exact intersection.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    sizes = np.array([s.size for s in sets], dtype=np.int64)
    if sizes.sum() == 0:
        return []
    everything = np.concatenate([s for s in sets if s.size])
    unique, inverse, counts = np.unique(everything, return_inverse=True, return_counts=True)
    order = np.lexsort((unique, counts))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    token_rank = rank[inverse]
    ranked: list[npt.NDArray[np.int64]] = []
    prefix_tokens: list[npt.NDArray[np.int64]] = []
    prefix_docs: list[npt.NDArray[np.int64]] = []
    offset = 0
    for doc, size in enumerate(sizes.tolist()):
        if size == 0:
            ranked.append(np.zeros(0, dtype=np.int64))
            continue
        tokens = np.sort(token_rank[offset : offset + size])
        offset += size
        ranked.append(tokens)
        prefix = size - math.ceil(threshold * size - 1e-9) + 1
        prefix_tokens.append(tokens[:prefix])
        prefix_docs.append(np.full(prefix, doc, dtype=np.int64))
    tokens = np.concatenate(prefix_tokens)
    docs = np.concatenate(prefix_docs)
    by_token = np.argsort(tokens, kind="stable")
    tokens, docs = tokens[by_token], docs[by_token]
    starts = np.flatnonzero(np.r_[True, tokens[1:] != tokens[:-1]])
    ends = np.r_[starts[1:], tokens.size]
    shared = (ends - starts) >= 2
    count = len(sets)
    keys: list[npt.NDArray[np.int64]] = []
    for start, end in zip(starts[shared].tolist(), ends[shared].tolist(), strict=True):
        group = np.sort(docs[start:end])
        first, second = np.triu_indices(group.size, k=1)
        keys.append(group[first] * count + group[second])
    if not keys:
        return []
    candidates = np.unique(np.concatenate(keys))
    left, right = candidates // count, candidates % count
    small = np.minimum(sizes[left], sizes[right])
    large = np.maximum(sizes[left], sizes[right])
    keep = small >= threshold * large - 1e-9
    found: list[tuple[int, int, float]] = []
    for i, j in zip(left[keep].tolist(), right[keep].tolist(), strict=True):
        similarity = exact_jaccard(ranked[i], ranked[j])
        if similarity >= threshold:
            found.append((i, j, similarity))
    return found


@dataclass
class DuplicateTruth:
    """Exhaustive near-duplicate truth over a list of texts.

    Attributes:
        pairs: ``(i, j) -> jaccard`` for every pair with Jaccard >= the floor it was built with.
        exact_groups: groups of indices whose normalized texts are identical (non-empty).
        shingle_counts: shingles per text.
    """

    pairs: dict[tuple[int, int], float]
    exact_groups: list[list[int]]
    shingle_counts: list[int]

    def near(self, threshold: float = TRUTH_THRESHOLD) -> set[tuple[int, int]]:
        """Pairs at or above ``threshold`` Jaccard, plus pairs with identical texts."""
        found = {pair for pair, value in self.pairs.items() if value >= threshold}
        return found | self.exact_pairs()

    def exact_pairs(self) -> set[tuple[int, int]]:
        """Pairs with identical normalized texts."""
        return {(a, b) for group in self.exact_groups for a, b in itertools.combinations(group, 2)}


def build_truth(texts: Sequence[str], floor: float = TRUTH_FLOOR) -> DuplicateTruth:
    """Compute :class:`DuplicateTruth` for ``texts`` (raw; normalized here)."""
    normalized = [truth_normalize(text) for text in texts]
    sets = [truth_shingles(text) for text in normalized]
    pairs = {(i, j): value for i, j, value in similar_pairs(sets, floor)}
    identical: dict[str, list[int]] = defaultdict(list)
    for index, text in enumerate(normalized):
        if text:
            identical[text].append(index)
    exact = [group for group in identical.values() if len(group) > 1]
    return DuplicateTruth(pairs=pairs, exact_groups=exact, shingle_counts=[s.size for s in sets])


def cached_truth(name: str, ids: Sequence[str], texts: Sequence[str]) -> DuplicateTruth:
    """:func:`build_truth`, cached in ``benchmarks/results/`` by a hash of ids and texts."""
    digest = hashlib.sha256()
    for article_id, text in zip(ids, texts, strict=True):
        digest.update(article_id.encode() + b"\0" + text.encode() + b"\0")
    digest.update(f"{SHINGLE_SIZE}:{TRUTH_FLOOR}".encode())
    path = RESULTS / f"truth-{name}-{digest.hexdigest()[:16]}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return DuplicateTruth(
            pairs={(i, j): value for i, j, value in stored["pairs"]},
            exact_groups=stored["exact_groups"],
            shingle_counts=stored["shingle_counts"],
        )
    started = time.perf_counter()
    truth = build_truth(texts)
    logger.info(
        "%s truth: %d pairs in %.0f s", name, len(truth.pairs), time.perf_counter() - started
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pairs": [[i, j, value] for (i, j), value in sorted(truth.pairs.items())],
                "exact_groups": truth.exact_groups,
                "shingle_counts": truth.shingle_counts,
            }
        )
    )
    return truth


def cleaned_truth(articles: Sequence[NewsArticle], corpus: str = "saudinewsnet") -> DuplicateTruth:
    """The same truth on the texts after the engine's static boilerplate removal
    (``index.text.clean``; no per-source learned lines): copies that differ only in a
    link line, a dateline or a wire end mark count as copies here."""
    from index.text import clean

    bodies = [clean(article.text).body for article in articles]
    return cached_truth(f"{corpus}-cleaned", [a.id for a in articles], bodies)


def group_pairs(groups: Iterable[Sequence[int]]) -> set[tuple[int, int]]:
    """Every ``(i, j)``, ``i < j``, of items that share a group."""
    return {(a, b) for group in groups for a, b in itertools.combinations(sorted(group), 2)}


def pair_scores(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict[str, float]:
    """Precision and recall of predicted pairs against true pairs."""
    hits = len(predicted & truth)
    return {
        "predicted": len(predicted),
        "true": len(truth),
        "hits": hits,
        "precision": hits / len(predicted) if predicted else 1.0,
        "recall": hits / len(truth) if truth else 1.0,
    }


# -- edited copies ---------------------------------------------------------------------------

EDIT_KINDS = (
    "boilerplate_added",
    "boilerplate_removed",
    "paragraph_dropped",
    "truncated",
    "orthographic",
    "dateline",
    "combined",
)
# Reported beside the targets, not part of them: README.md's wider truncation range.
EXTRA_KINDS = ("truncated_deep",)

# Site furniture as Arabic news pages show it (see the seeds): navigation, share and
# follow prompts, comment forms, copyright and disclaimer lines, tag lists.
_TOP_LINES = (
    "Skip to content",
    "الرئيسية / أخبار",
    "آخر تحديث: {date}",
    "حجم الخط",
    "طباعة",
    "أخبار عاجلة",
)
_BOTTOM_LINES = (
    "شارك هذا الخبر",
    "تابعونا على فيسبوك وتويتر وإنستغرام",
    "جميع الحقوق محفوظة © 2018",
    "اترك تعليقاً",
    "لن يتم نشر عنوان بريدك الإلكتروني.",
    "النص الذي يتضمن اسم الكاتب أو الجهة أو الوكالة، لا يعبّر بالضرورة عن وجهة نظر الموقع",
    "اشترك في النشرة البريدية",
    "Scroll to Top",
)
_WIRE_DATELINES = (
    "الرياض - واس",
    "دبي - سكاي نيوز عربية",
    "القاهرة - أ ش أ",
    "بيروت - فرانس برس",
    "عمان - بترا",
    "لندن - رويترز",
    "أبوظبي - وام",
    "الكويت - كونا",
)
_BYLINES = ("المصدر: وكالات", "المصدر: رويترز", "(وكالات)", "المصدر: فرانس برس")
_HARAKAT = ("\u064e", "\u064f", "\u0650", "\u0651", "\u0652", "\u064b")


@dataclass(frozen=True)
class EditedCopy:
    """A copy of ``original_id`` made by an edit of ``kind``; ``text`` is what is ingested."""

    id: str
    original_id: str
    kind: str
    text: str


@dataclass
class EditCorpus:
    """Originals, their edited copies and unrelated distractors, ready to ingest.

    Attributes:
        articles: every article to ingest (originals possibly with added boilerplate).
        copies: one edited copy per original.
        distractors: ids of the unrelated articles.
    """

    articles: list[NewsArticle]
    copies: list[EditedCopy]
    distractors: list[str] = field(default_factory=list)


def _paragraphs(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _boilerplate(
    rng: random.Random, titles: Sequence[str], words: Sequence[str]
) -> tuple[list[str], list[str]]:
    top = rng.sample(_TOP_LINES, rng.randint(1, 3))
    top = [
        line.replace("{date}", f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/2018") for line in top
    ]
    bottom = rng.sample(_BOTTOM_LINES, rng.randint(2, 4))
    tags = rng.sample(list(words), min(4, len(words)))
    bottom.append("كلمات دلالية: " + "، ".join(tags))
    bottom.append("اقرأ أيضاً:")
    bottom.extend(rng.sample(list(titles), 3))
    return top, bottom


def _with_boilerplate(text: str, rng: random.Random, titles: Sequence[str]) -> str:
    paragraphs = _paragraphs(text)
    words = [word for word in " ".join(paragraphs).split() if len(word) > 3]
    top, bottom = _boilerplate(rng, titles, words)
    return "\n".join([*top, *paragraphs, *bottom])


def _orthographic(text: str, rng: random.Random) -> str:
    """Spelling variants writers and keyboards actually produce: hamza on alef dropped or
    added, final ي/ى and ة/ه swapped, occasional tashkeel, tatweel and Persian kaf."""

    def vary(word: str) -> str:
        if len(word) < 2:
            return word
        if word[0] in "أإآ" and rng.random() < 0.5:
            word = "ا" + word[1:]
        elif word[0] == "ا" and not word.startswith("ال") and rng.random() < 0.3:
            word = rng.choice("أإ") + word[1:]
        if len(word) > 2 and word[-1] in "يى" and rng.random() < 0.3:
            word = word[:-1] + ("ى" if word[-1] == "ي" else "ي")
        if len(word) > 2 and word[-1] in "ةه" and rng.random() < 0.3:
            word = word[:-1] + ("ه" if word[-1] == "ة" else "ة")
        if rng.random() < 0.05:
            at = rng.randrange(1, len(word) + 1)
            word = word[:at] + rng.choice(_HARAKAT) + word[at:]
        if len(word) > 3 and rng.random() < 0.01:
            at = rng.randrange(1, len(word) - 1)
            word = word[:at] + "\u0640" + word[at:]
        return word.replace("ك", "ک") if rng.random() < 0.01 else word

    return "\n".join(" ".join(vary(word) for word in line.split(" ")) for line in text.split("\n"))


def _dateline(text: str, rng: random.Random, byline: str | None) -> str:
    paragraphs = _paragraphs(text)
    lead = paragraphs[0]
    if byline and lead.startswith(byline):
        lead = lead[len(byline) :].lstrip(" -–:")
    paragraphs[0] = f"{rng.choice(_WIRE_DATELINES)} - {lead}"
    if rng.random() < 0.5:
        paragraphs.append(rng.choice(_BYLINES))
    return "\n".join(paragraphs)


def _truncate(text: str, share: float) -> str:
    paragraphs = _paragraphs(text)
    total = sum(len(p.split()) for p in paragraphs)
    budget = max(1, round(total * share))
    kept: list[str] = []
    for paragraph in paragraphs:
        words = paragraph.split()
        if budget <= 0:
            break
        kept.append(" ".join(words[:budget]))
        budget -= len(words)
    return "\n".join(kept) + " ..."


def _drop_paragraph(text: str, rng: random.Random) -> str:
    """Drop one paragraph after the lead; one holding at most a quarter of the words (a
    paragraph that is half the article leaves a different article), else the smallest."""
    paragraphs = _paragraphs(text)
    total = sum(len(p.split()) for p in paragraphs)
    later = range(1, len(paragraphs))
    small = [i for i in later if len(paragraphs[i].split()) <= total / 4]
    dropped = rng.choice(small) if small else min(later, key=lambda i: len(paragraphs[i]))
    del paragraphs[dropped]
    return "\n".join(paragraphs)


def make_edit(
    kind: str, text: str, rng: random.Random, *, titles: Sequence[str], byline: str | None
) -> tuple[str, str]:
    """(original as ingested, copy) for one edit ``kind`` of ``text``.

    Only ``boilerplate_removed`` changes the original: the site version carries the
    furniture and the copy is the clean text.
    """
    if kind == "boilerplate_added":
        return text, _with_boilerplate(text, rng, titles)
    if kind == "boilerplate_removed":
        return _with_boilerplate(text, rng, titles), "\n".join(_paragraphs(text))
    if kind == "paragraph_dropped":
        return text, _drop_paragraph(text, rng)
    if kind == "truncated":
        return text, _truncate(text, rng.uniform(0.75, 0.90))
    if kind == "truncated_deep":
        return text, _truncate(text, rng.uniform(0.60, 0.75))
    if kind == "orthographic":
        return text, _orthographic(text, rng)
    if kind == "dateline":
        return text, _dateline(text, rng, byline)
    if kind == "combined":
        copy = _dateline(_orthographic(text, rng), rng, byline)
        return text, _with_boilerplate(copy, rng, titles)
    raise ValueError(f"unknown edit kind {kind!r}; choose from {EDIT_KINDS + EXTRA_KINDS}")


def build_edit_corpus(
    articles: Sequence[NewsArticle],
    *,
    seed: int,
    per_kind: int = 150,
    distractors: int = 1200,
    kinds: Sequence[str] = EDIT_KINDS + EXTRA_KINDS,
) -> EditCorpus:
    """Originals (>= 100 words in >= 4 paragraphs), one edited copy each, and distractors.

    Originals and distractors are disjoint random samples of ``articles``; titles of
    articles outside both serve as the "read also" lists of added boilerplate.
    """
    rng = random.Random(seed)
    usable = [a for a in articles if len(a.text.split()) >= 30]
    eligible = [a for a in usable if len(a.text.split()) >= 100 and len(_paragraphs(a.text)) >= 4]
    originals = rng.sample(eligible, per_kind * len(kinds))
    chosen = {a.id for a in originals}
    others = [a for a in usable if a.id not in chosen]
    rng.shuffle(others)
    unrelated = others[:distractors]
    titles = [a.title for a in others[distractors : distractors + 2000] if a.title]
    ingested: list[NewsArticle] = list(unrelated)
    copies: list[EditedCopy] = []
    for index, original in enumerate(originals):
        kind = kinds[index % len(kinds)]
        site, copy = make_edit(kind, original.text, rng, titles=titles, byline=original.byline)
        ingested.append(
            NewsArticle(
                id=original.id,
                text=site,
                title=original.title,
                source=original.source,
                published_at=original.published_at,
            )
        )
        copies.append(
            EditedCopy(id=f"{original.id}~{kind}", original_id=original.id, kind=kind, text=copy)
        )
    return EditCorpus(articles=ingested, copies=copies, distractors=[a.id for a in unrelated])


# -- running the engine ----------------------------------------------------------------------


class DiskCachedEmbedder:
    """The configured model, with every embedding kept in an ``.npz`` file between runs.

    The key covers the model, prompt, token limit, device and the model's resolved
    precision, so another configuration never reads these vectors.
    """

    SAVE_EVERY = 64

    def __init__(self, inner: Any, params: Any, directory: Path) -> None:
        self._inner = inner
        self.dimension: int = inner.dimension
        self.name: str = inner.name
        tag = f"{params.model}|{params.embed_prompt}|{params.embed_max_tokens}"
        if params.device != "cpu":
            # Another device computes slightly different vectors: keep them apart.
            tag += f"|{params.device}"
        precision = getattr(inner, "precision", "float32")
        if precision != "float32":
            # So does another dtype (float32 keeps the key caches written before it).
            tag += f"|{precision}"
        digest = hashlib.sha256(tag.encode()).hexdigest()[:12]
        self._path = directory / f"embeddings-{digest}.npz"
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._unsaved = 0
        if self._path.exists():
            with np.load(self._path) as stored:
                self._vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``, calling the model only for texts never embedded before."""
        keys = [self._key(text) for text in texts]
        missing = {key: text for key, text in zip(keys, texts, strict=True)}
        missing = {key: text for key, text in missing.items() if key not in self._vectors}
        if missing:
            vectors = self._inner.embed(list(missing.values()))
            self._vectors.update(zip(missing, vectors, strict=True))
            self._unsaved += len(missing)
            # The whole file is rewritten on save: not after every single-text call.
            if self._unsaved >= self.SAVE_EVERY:
                self.save()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys]).astype(np.float32)

    def save(self) -> None:
        """Write the cache (atomically); call it once more when done embedding."""
        if not self._unsaved:
            return
        self._unsaved = 0
        self._path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._vectors)
        tmp = self._path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        tmp.replace(self._path)


class MemoizingEmbedder:
    """The same model, each distinct text embedded once per run (the three ECB+ orders and
    the SemEval texts that recur across pairs then cost one model call each)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dimension: int = inner.dimension
        self.name: str = inner.name
        self._memo: dict[str, npt.NDArray[np.float32]] = {}
        self.model_seconds = 0.0
        self.model_texts = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``, calling the model only for texts not seen before."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._memo))
        if missing:
            started = time.perf_counter()
            vectors = self._inner.embed(missing)
            self.model_seconds += time.perf_counter() - started
            self.model_texts += len(missing)
            self._memo.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._memo[text] for text in texts]).astype(np.float32)

    def flush(self) -> None:
        """Write what a disk cache underneath still holds in memory only."""
        save = getattr(self._inner, "save", None)
        if save is not None:
            save()


def make_embedder(
    params: Any, cache_dir: Path, embedding_cache: Path | None = None
) -> MemoizingEmbedder:
    """The configured model, memoized; with ``embedding_cache``, also kept on disk there
    between runs (:class:`DiskCachedEmbedder`)."""
    from index.embed import SentenceTransformerEmbedder

    model: Any = SentenceTransformerEmbedder.configured(params, cache_dir=cache_dir)
    if embedding_cache is not None:
        model = DiskCachedEmbedder(model, params, embedding_cache)
    return MemoizingEmbedder(model)


def _article(item: NewsArticle) -> Any:
    from index.article import Article

    return Article(
        id=item.id,
        text=item.text,
        title=item.title,
        source=item.source,
        published_at=item.published_at,
    )


def run_clustering(
    documents: Sequence[EcbDocument],
    params: Any,
    embedder: MemoizingEmbedder,
    work_dir: Path,
    seeds: Sequence[int] = ORDER_SEEDS,
) -> dict[str, Any]:
    """ECB+ fed one document at a time in shuffled orders; metrics per order."""
    from index.article import Article
    from index.engine import Engine

    gold = [doc.story for doc in documents]
    orders: dict[str, Any] = {}
    for seed in seeds:
        order = list(range(len(documents)))
        random.Random(seed).shuffle(order)
        started = time.perf_counter()
        with Engine.open(
            work_dir / f"ecb-{seed}", params, embedder=embedder, synchronous="off"
        ) as engine:
            for index in order:
                engine.ingest(Article(id=documents[index].id, text=documents[index].text))
            predicted = [engine.get(doc.id).verdict.cluster.id for doc in documents]
        elapsed = time.perf_counter() - started
        precision, recall, f1 = bcubed(predicted, gold)
        _pp, _pr, pair_f1 = pairwise_scores(predicted, gold)
        orders[str(seed)] = {
            "bcubed_precision": precision,
            "bcubed_recall": recall,
            "bcubed_f1": f1,
            "pairwise_f1": pair_f1,
            "ari": adjusted_rand(predicted, gold),
            "stories": len(set(predicted)),
            "gold_stories": len(set(gold)),
            "seconds": elapsed,
            "assignment": dict(zip((doc.id for doc in documents), predicted, strict=True)),
        }
        logger.info("ECB+ order %d: B-cubed F1 %.3f in %.0f s", seed, f1, elapsed)
    return {"documents": len(documents), "orders": orders}


def score_refused(scored: Sequence[float | None]) -> tuple[list[float], float]:
    """The scores with each refused pair's ``None`` replaced, and the value used.

    A pair the engine refuses (a side is only boilerplate: the crawl got no article)
    carries no evidence either way, so it gets the mean score of the scored pairs. 0.0,
    the convention before the thirteenth session, would say "certainly a different
    story"; :func:`run_similarity` keeps that convention's metrics beside.
    """
    values = [score for score in scored if score is not None]
    neutral = sum(values) / len(values) if values else 0.0
    return [neutral if score is None else score for score in scored], neutral


def run_similarity(
    pairs: Sequence[SemevalPair], params: Any, embedder: MemoizingEmbedder, work_dir: Path
) -> dict[str, Any]:
    """``Engine.similarity`` on every SemEval pair, scored per language pair."""
    from index.article import Article
    from index.engine import Engine
    from index.errors import InvalidArticleError

    scored: list[float | None] = []
    same: list[bool] = []
    rejected: list[str] = []
    started = time.perf_counter()
    with Engine.open(work_dir / "semeval", params, embedder=embedder, synchronous="off") as engine:
        for pair in pairs:
            try:
                result = engine.similarity(
                    Article(id=f"{pair.id}:1", text=pair.text1),
                    Article(id=f"{pair.id}:2", text=pair.text2),
                )
            except InvalidArticleError:
                # The API answers 422: a side is only boilerplate (the crawl got no article).
                rejected.append(pair.id)
                scored.append(None)
                same.append(False)
                continue
            scored.append(result.story_similarity)
            same.append(result.same_story)
    scores, neutral = score_refused(scored)
    metrics = similarity_scores(pairs, scores)
    decided = [i for i, pair in enumerate(pairs) if not 1.5 < pair.overall < 3]
    truth = [pairs[i].overall <= 1.5 for i in decided]
    verdicts = [same[i] for i in decided]
    hits = sum(t and v for t, v in zip(truth, verdicts, strict=True))
    metrics["same_story_verdict"] = {
        "precision": hits / max(1, sum(verdicts)),
        "recall": hits / max(1, sum(truth)),
        "accuracy": sum(t == v for t, v in zip(truth, verdicts, strict=True)) / len(decided),
    }
    metrics["seconds"] = time.perf_counter() - started
    metrics["rejected_pairs"] = rejected
    metrics["refused_score"] = neutral
    metrics["refused_at_zero"] = similarity_scores(
        pairs, [0.0 if score is None else score for score in scored]
    )
    metrics["scores"] = dict(zip((pair.id for pair in pairs), scores, strict=True))
    return metrics


def _groups(verdicts: Iterable[Any], position: dict[str, int]) -> list[list[int]]:
    members: dict[str, list[int]] = defaultdict(list)
    for verdict in verdicts:
        root = verdict.duplicate_of or verdict.id
        members[root].append(position[verdict.id])
    return [group for group in members.values() if len(group) > 1]


def ingest_all(
    engine: Any, articles: Sequence[NewsArticle], batch: int
) -> tuple[list[Any], list[str]]:
    """Ingest in batches; the articles the engine refuses (empty or boilerplate-only text,
    422 in the API) are skipped and returned by id."""
    from index.errors import InvalidArticleError

    verdicts: list[Any] = []
    rejected: list[str] = []
    for start in range(0, len(articles), batch):
        chunk = articles[start : start + batch]
        try:
            verdicts.extend(engine.ingest_many([_article(a) for a in chunk]))
        except InvalidArticleError:
            for article in chunk:
                try:
                    verdicts.append(engine.ingest(_article(article)))
                except InvalidArticleError:
                    rejected.append(article.id)
    return verdicts, rejected


def run_neardup(
    articles: Sequence[NewsArticle],
    params: Any,
    work_dir: Path,
    batch: int = 256,
    corpus: str = "saudinewsnet",
) -> dict[str, Any]:
    """A corpus (SaudiNewsNet, ANT) through a dedup-mode engine, scored against the
    exhaustive truth.

    Pairs the system calls near-duplicates are all pairs inside one predicted group (an
    original and every article whose ``duplicate_of`` names it): that is what a caller
    who drops or merges by ``duplicate_of`` acts on. Pairs ``(article, duplicate_of)``
    alone are reported as ``direct``. Articles are fed in publication order
    (SaudiNewsNet's ``date_extracted``). ``corpus`` names the truth's cache files and the
    store's directory.
    """
    from index.engine import Engine

    truth = cached_truth(corpus, [a.id for a in articles], [a.text for a in articles])
    position = {a.id: i for i, a in enumerate(articles)}
    order = sorted(range(len(articles)), key=lambda i: (articles[i].published_at or _EPOCH, i))
    started = time.perf_counter()
    with Engine.open(work_dir / corpus, params, mode="dedup", synchronous="off") as engine:
        verdicts, rejected = ingest_all(engine, [articles[i] for i in order], batch)
        elapsed = time.perf_counter() - started
        groups = _groups(verdicts, position)
        predicted = group_pairs(groups)
        near_truth = truth.near()
        compared = _compare(engine, articles, predicted | near_truth)
        threshold = engine.params.near_duplicate_threshold
    false_causes = {pair: _cause(compared[pair], threshold) for pair in predicted - near_truth}
    miss_causes = {pair: _cause(compared[pair], threshold) for pair in near_truth - predicted}
    # The pairwise verdict (what POST /v1/similarity answers) on the pairs a group joins:
    # a group's members that are not copies of each other drop out.
    verified = {
        pair for pair in predicted if compared[pair] is not None and compared[pair].near_duplicate
    }
    verified_jaccard = {pair for pair in verified if compared[pair].jaccard >= threshold}

    def pair(a: str, b: str) -> tuple[int, int]:
        i, j = position[a], position[b]
        return (min(i, j), max(i, j))

    direct: set[tuple[int, int]] = set()
    # The verdicts' own pairwise answer: each article with every copy it lists.
    listed: set[tuple[int, int]] = set()
    listed_jaccard: set[tuple[int, int]] = set()
    for verdict in verdicts:
        if verdict.duplicate_of is not None:
            direct.add(pair(verdict.id, verdict.duplicate_of))
        for copy in verdict.copies:
            listed.add(pair(verdict.id, copy.id))
            if copy.jaccard >= threshold:
                listed_jaccard.add(pair(verdict.id, copy.id))
    exact_truth = truth.exact_pairs()
    below = sorted(truth.pairs.get(pair, 0.0) for pair in predicted - near_truth)
    result: dict[str, Any] = {
        "corpus": corpus,
        "articles": len(articles),
        "seconds": elapsed,
        "statuses": dict(Counter(v.status for v in verdicts)),
        "rejected": len(rejected),
        "rejected_examples": rejected[:10],
        "flagged_articles": sum(
            v.status in ("near_duplicate", "exact_duplicate") for v in verdicts
        ),
        "truth_flagged_articles": _truth_flagged(order, near_truth),
        "near_pairs": pair_scores(predicted, near_truth),
        "near_pairs_direct": pair_scores(direct, near_truth),
        "near_pairs_verified": pair_scores(verified, near_truth),
        "near_pairs_verified_jaccard": pair_scores(verified_jaccard, near_truth),
        "near_pairs_copies": pair_scores(listed, near_truth),
        "near_pairs_copies_jaccard": pair_scores(listed_jaccard, near_truth),
        "group_ceiling": group_ceiling(near_truth, order),
        "exact": _exact_articles(verdicts, order, position, exact_truth),
        "false_pairs_by_jaccard": _histogram(below),
        "false_pairs_by_cause": dict(Counter(false_causes.values())),
        "missed_pairs_by_cause": dict(Counter(miss_causes.values())),
    }
    cleaned = cleaned_truth(articles, corpus)
    result["cleaned_truth"] = {
        "near_pairs": pair_scores(predicted, cleaned.near()),
        "exact": _exact_articles(verdicts, order, position, cleaned.exact_pairs()),
    }
    result["missed_examples"] = [
        (articles[i].id, articles[j].id, round(truth.pairs.get((i, j), 1.0), 3), cause)
        for (i, j), cause in sorted(miss_causes.items())[:30]
    ]
    result["false_examples"] = [
        (articles[i].id, articles[j].id, round(truth.pairs.get((i, j), 0.0), 3), cause)
        for (i, j), cause in sorted(false_causes.items())[:30]
    ]
    return result


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _compare(
    engine: Any, articles: Sequence[NewsArticle], pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], Any]:
    """``Engine.similarity`` of each pair (``None`` where the engine refuses a side)."""
    from index.errors import InvalidArticleError

    compared: dict[tuple[int, int], Any] = {}
    for i, j in pairs:
        try:
            compared[(i, j)] = engine.similarity(_article(articles[i]), _article(articles[j]))
        except InvalidArticleError:
            compared[(i, j)] = None
    return compared


def _cause(result: Any, threshold: float) -> str:
    """Why the engine's view of a pair differs from the truth's.

    ``Engine.similarity`` compares the *cleaned* texts (with the boilerplate the engine
    has learned per source): ``jaccard`` means its Jaccard passes the near-duplicate
    threshold, ``containment`` that only the containment rule does, ``transitive`` that
    neither does (the pair shares a group through other members), ``rejected`` that a
    side was refused.
    """
    if result is None:
        return "rejected"
    if result.jaccard >= threshold:
        return "jaccard"
    if result.near_duplicate:
        return "containment"
    return "transitive" if result.jaccard >= 0.5 else "dissimilar"


def group_ceiling(truth: set[tuple[int, int]], order: Sequence[int]) -> dict[str, Any]:
    """What any grouping can reach against a pair truth that is not transitive.

    ``components``: the truth's own connected components taken as groups (recall 1, the
    precision left by copies of copies). ``cliques``: an oracle that knows the truth and
    groups online in feed ``order``, each article joining the largest earlier group it is
    a true copy of *every* member of (precision 1, the recall that costs).
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in truth:
        neighbours[a].add(b)
        neighbours[b].add(a)
    parent = {node: node for node in neighbours}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in truth:
        parent[root(a)] = root(b)
    components: dict[int, list[int]] = defaultdict(list)
    for node in neighbours:
        components[root(node)].append(node)
    cliques: list[list[int]] = []
    clique_of: dict[int, int] = {}
    for node in order:
        if node not in neighbours:
            continue
        joinable = [
            group
            for group in sorted({clique_of[n] for n in neighbours[node] if n in clique_of})
            if all(member in neighbours[node] for member in cliques[group])
        ]
        if joinable:
            group = max(joinable, key=lambda g: len(cliques[g]))
            cliques[group].append(node)
            clique_of[node] = group
        else:
            clique_of[node] = len(cliques)
            cliques.append([node])
    return {
        "components": pair_scores(group_pairs(components.values()), truth),
        "cliques": pair_scores(group_pairs(cliques), truth),
    }


def _truth_flagged(order: Sequence[int], truth: set[tuple[int, int]]) -> int:
    """Articles with a true near-duplicate earlier in the feed order."""
    rank = {index: r for r, index in enumerate(order)}
    return len({max(i, j, key=rank.__getitem__) for i, j in truth})


def _exact_articles(
    verdicts: Sequence[Any],
    order: Sequence[int],
    position: dict[str, int],
    exact_truth: set[tuple[int, int]],
) -> dict[str, float]:
    """Per article: flagged ``exact_duplicate`` vs. an identical normalized text earlier.

    Per article because a verdict names its group's original, not the identical twin.
    """
    rank = {index: r for r, index in enumerate(order)}
    truly = {max(i, j, key=rank.__getitem__) for i, j in exact_truth}
    flagged = {position[v.id] for v in verdicts if v.status == "exact_duplicate"}
    hits = len(truly & flagged)
    return {
        "flagged": len(flagged),
        "true": len(truly),
        "hits": hits,
        "precision": hits / len(flagged) if flagged else 1.0,
        "recall": hits / len(truly) if truly else 1.0,
    }


def _histogram(values: Sequence[float]) -> dict[str, int]:
    edges = (0.0, 0.5, 0.6, 0.7, 0.8)
    counts: dict[str, int] = {}
    for low, high in itertools.pairwise(edges):
        label = "<0.5" if low == 0.0 else f"{low:.1f}-{high:.1f}"
        counts[label] = sum(low <= v < high for v in values)
    return counts


def run_edits(
    articles: Sequence[NewsArticle], params: Any, work_dir: Path, seed: int = 7
) -> dict[str, Any]:
    """Edited copies among unrelated ANT articles through a dedup-mode engine.

    Everything (originals, copies, distractors) is ingested in one shuffled order. A copy
    is found when it lands in the same predicted group as its original. A false flag is a
    verdict ``near_duplicate``/``exact_duplicate`` whose ``duplicate_of`` is in another
    *family*: an original with its copy, joined with any pair of ingested texts whose
    exact Jaccard is >= 0.8 (natural copies the data already holds are no false flag).
    """
    from index.engine import Engine

    corpus = build_edit_corpus(articles, seed=seed)
    feed: list[tuple[str, NewsArticle, str]] = [(a.id, a, a.text) for a in corpus.articles]
    base = {a.id: a for a in corpus.articles}
    copy_rng = random.Random(seed + 1)
    for copy in corpus.copies:
        original = base[copy.original_id]
        moved = original.published_at
        if moved is not None:
            moved = datetime.fromtimestamp(
                moved.timestamp() + copy_rng.uniform(0, 48 * 3600), tz=UTC
            )
        republished = NewsArticle(
            id=copy.id,
            text=copy.text,
            title=original.title,
            source=f"republisher-{copy_rng.randrange(5)}",
            published_at=moved,
        )
        feed.append((copy.id, republished, copy.text))
    random.Random(seed + 2).shuffle(feed)
    ids = [article_id for article_id, _a, _t in feed]
    texts = [text for _i, _a, text in feed]
    position = {article_id: i for i, article_id in enumerate(ids)}
    truth = cached_truth("ant-edits", ids, texts)
    family = list(range(len(ids)))

    def root(i: int) -> int:
        while family[i] != i:
            family[i] = family[family[i]]
            i = family[i]
        return i

    def join(i: int, j: int) -> None:
        family[root(i)] = root(j)

    for copy in corpus.copies:
        join(position[copy.id], position[copy.original_id])
    for i, j in truth.near():
        join(i, j)
    started = time.perf_counter()
    with Engine.open(work_dir / "ant-edits", params, mode="dedup", synchronous="off") as engine:
        verdicts, rejected = ingest_all(
            engine, [replace(article, text=text) for _i, article, text in feed], 1
        )
    elapsed = time.perf_counter() - started
    group_of = {v.id: v.duplicate_of or v.id for v in verdicts}
    group_of.update({article_id: article_id for article_id in rejected})
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in EDIT_KINDS + EXTRA_KINDS:
        chosen = [c for c in corpus.copies if c.kind == kind]
        found = [c for c in chosen if group_of[c.id] == group_of[c.original_id]]
        missed = [c.id for c in chosen if group_of[c.id] != group_of[c.original_id]]
        per_kind[kind] = {
            "copies": len(chosen),
            "found": len(found),
            "recall": len(found) / len(chosen) if chosen else float("nan"),
            "target": kind in EDIT_KINDS,
            "missed_examples": missed[:10],
        }
    false_flags = [
        (v.id, v.duplicate_of)
        for v in verdicts
        if v.duplicate_of is not None and root(position[v.id]) != root(position[v.duplicate_of])
    ]
    return {
        "articles": len(feed),
        "originals": len(corpus.copies),
        "distractors": len(corpus.distractors),
        "natural_pairs": len(truth.near()),
        "seconds": elapsed,
        "kinds": per_kind,
        "rejected": rejected,
        "false_flags": len(false_flags),
        "false_flag_examples": false_flags[:20],
        "statuses": dict(Counter(v.status for v in verdicts)),
    }


def run_seeds(
    seeds: Sequence[tuple[str, str]], params: Any, embedder: MemoizingEmbedder, work_dir: Path
) -> dict[str, Any]:
    """The seed articles one at a time; each should open its own story."""
    from index.article import Article
    from index.engine import Engine

    with Engine.open(work_dir / "seeds", params, embedder=embedder, synchronous="off") as engine:
        verdicts = [engine.ingest(Article(id=name, text=text)) for name, text in seeds]
        closest = 0.0
        same_story_pairs = []
        for (name_a, text_a), (name_b, text_b) in itertools.combinations(seeds, 2):
            found = engine.similarity(
                Article(id=f"{name_a}?", text=text_a), Article(id=f"{name_b}?", text=text_b)
            )
            closest = max(closest, found.story_similarity)
            if found.same_story:
                same_story_pairs.append([name_a, name_b])
    return {
        "articles": len(seeds),
        "stories": len({v.cluster.id for v in verdicts}),
        "expected_stories": len(seeds),
        "statuses": [v.status for v in verdicts],
        "max_pair_story_similarity": closest,
        "same_story_pairs": same_story_pairs,
    }


# -- reporting -------------------------------------------------------------------------------


def _row(cells: Sequence[Any], widths: Sequence[int]) -> str:
    parts = []
    for cell, width in zip(cells, widths, strict=True):
        text = f"{cell:.3f}" if isinstance(cell, float) else str(cell)
        parts.append(text.ljust(-width) if width < 0 else text.rjust(width))
    return "  ".join(parts).rstrip()


def _print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [-max(len(header[0]), *(len(str(r[0])) for r in rows))]
    for column in range(1, len(header)):
        cells = [
            f"{r[column]:.3f}" if isinstance(r[column], float) else str(r[column]) for r in rows
        ]
        widths.append(max(len(header[column]), *(len(c) for c in cells)))
    print(f"\n## {title}\n")
    print(_row(header, widths))
    print(_row(["-" * abs(w) for w in widths], widths))
    for row in rows:
        print(_row(row, widths))


def report(results: dict[str, Any]) -> None:
    """Print one table per task."""
    if "clustering" in results:
        orders = results["clustering"]["orders"]
        rows = [
            [
                f"order seed {seed}",
                o["bcubed_precision"],
                o["bcubed_recall"],
                o["bcubed_f1"],
                o["pairwise_f1"],
                o["ari"],
                f"{o['stories']}/{o['gold_stories']}",
            ]
            for seed, o in orders.items()
        ]
        rows.append(["reference: TF-IDF + avg-link, offline, tuned", "", "", 0.885, 0.83, 0.83, ""])
        _print_table(
            "Story clustering: ECB+ dev, online, one document at a time (target B3 F1 >= 0.92)",
            ["run", "B3 P", "B3 R", "B3 F1", "pair F1", "ARI", "stories"],
            rows,
        )
    if "similarity" in results:
        sim = results["similarity"]
        rows = [
            [name, values["pairs"], values["pearson"], values["auc"]]
            for name, values in sim.items()
            if isinstance(values, dict) and "pearson" in values
        ]
        _print_table(
            "Story similarity: SemEval-2022 Task 8 dev pairs "
            "(targets: all r >= 0.75, ar-ar >= 0.50, de-en >= 0.70, AUC >= 0.93)",
            ["languages", "pairs", "Pearson", "AUC"],
            rows,
        )
        verdict = sim["same_story_verdict"]
        print(
            f"same_story verdict on decided pairs: precision {verdict['precision']:.3f}, "
            f"recall {verdict['recall']:.3f}, accuracy {verdict['accuracy']:.3f}"
        )
        refused = sim.get("rejected_pairs", [])
        if refused and "refused_at_zero" in sim:
            at_zero = sim["refused_at_zero"]
            changed = [
                name
                for name, values in at_zero.items()
                if name == "all" or values["pearson"] != sim[name]["pearson"]
            ]
            print(
                f"pairs refused (a side only boilerplate, 422): {len(refused)}, scored at the "
                f"mean score {sim['refused_score']:.3f}; at 0.0 instead: "
                + ", ".join(
                    f"{name} {at_zero[name]['pearson']:.3f} / {at_zero[name]['auc']:.3f}"
                    for name in changed
                )
            )
    for task, corpus in (("neardup", "SaudiNewsNet"), ("neardup_ant", "ANT")):
        if task not in results:
            continue
        nd = results[task]
        rows = []
        for label, key in (
            ("near-dup pairs, same predicted group", "near_pairs"),
            ("near-dup pairs, (article, duplicate_of)", "near_pairs_direct"),
            ("near-dup pairs, same group, verified pairwise", "near_pairs_verified"),
            ("  of which Jaccard >= 0.8 (no containment)", "near_pairs_verified_jaccard"),
            ("near-dup pairs, (article, each of its copies)", "near_pairs_copies"),
            ("  of which Jaccard >= 0.8 (no containment)", "near_pairs_copies_jaccard"),
            ("ceiling: truth's components as groups", ("group_ceiling", "components")),
            ("ceiling: oracle online cliques", ("group_ceiling", "cliques")),
        ):
            if isinstance(key, tuple):
                if key[0] not in nd:
                    continue
                s = nd[key[0]][key[1]]
            elif key not in nd:
                continue
            else:
                s = nd[key]
            rows.append([label, s["true"], s["predicted"], s["hits"], s["recall"], s["precision"]])
        e = nd["exact"]
        rows.append(
            [
                "exact duplicates, articles",
                e["true"],
                e["flagged"],
                e["hits"],
                e["recall"],
                e["precision"],
            ]
        )
        targets = (
            "targets recall >= 0.98, precision >= 0.99"
            if task == "neardup"
            else "the issue's targets are SaudiNewsNet's; reported beside them"
        )
        _print_table(
            f"Near-duplicates: {corpus} ({nd['articles']:,} articles; truth = exact Jaccard "
            f">= 0.8, word 5-grams; {targets})",
            ["what", "true", "predicted", "hits", "recall", "precision"],
            rows,
        )
        c = nd["cleaned_truth"]
        _print_table(
            "Near-duplicates, truth on cleaned text (index.text.clean, then the same "
            "normalization and exact Jaccard)",
            ["what", "true", "predicted", "hits", "recall", "precision"],
            [
                [
                    "near-dup pairs, same predicted group",
                    c["near_pairs"]["true"],
                    c["near_pairs"]["predicted"],
                    c["near_pairs"]["hits"],
                    c["near_pairs"]["recall"],
                    c["near_pairs"]["precision"],
                ],
                [
                    "exact duplicates, articles",
                    c["exact"]["true"],
                    c["exact"]["flagged"],
                    c["exact"]["hits"],
                    c["exact"]["recall"],
                    c["exact"]["precision"],
                ],
            ],
        )
        print(
            f"articles refused (boilerplate only): {nd['rejected']:,}; "
            f"articles flagged near/exact: {nd['flagged_articles']:,} "
            f"(truth: {nd['truth_flagged_articles']:,} have a true copy earlier); "
            f"predicted pairs below 0.8 by truth Jaccard: {nd['false_pairs_by_jaccard']}; "
            f"their cause in the engine's cleaned view: {nd['false_pairs_by_cause']}; "
            f"missed pairs by cause: {nd['missed_pairs_by_cause']}"
        )
    if "edits" in results:
        ed = results["edits"]
        rows = [
            [kind + ("" if v["target"] else " (no target)"), v["copies"], v["found"], v["recall"]]
            for kind, v in ed["kinds"].items()
        ]
        _print_table(
            f"Edited copies: ANT, {ed['originals']} originals + {ed['distractors']} distractors "
            "(target recall >= 0.97 per kind, 0 false flags)",
            ["edit kind", "copies", "found", "recall"],
            rows,
        )
        print(f"false flags: {ed['false_flags']}")
    if "seeds" in results:
        sd = results["seeds"]
        _print_table(
            "Seeds: five distinct Russia–Iran stories (target 5)",
            ["articles", "stories", "max pair story_similarity", "pairs judged same_story"],
            [
                [
                    sd["articles"],
                    sd["stories"],
                    sd["max_pair_story_similarity"],
                    len(sd.get("same_story_pairs", [])),
                ]
            ],
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _override(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as a parameter override, VALUE read as JSON (else as a string)."""
    name, _sep, text = item.partition("=")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return name.strip(), tuple(value) if isinstance(value, list) else value


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected tasks, print their tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated: {','.join(TASKS)}"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-cache", type=Path, default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep embeddings on disk in DIR between runs (e.g. benchmarks/results, shared "
        "with calibrate.py); off by default, so a full run measures the model",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an engine parameter (repeatable), e.g. --set story_threshold=0.6",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {','.join(TASKS)}")

    from index.params import Parameters

    params = Parameters().replace(**dict(_override(item) for item in args.set))
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            ["benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "parameters": {
            name: getattr(params, name) for name in params.__dataclass_fields__ if name != "extra"
        },
        "seconds": {},
    }
    embedder: MemoizingEmbedder | None = None

    def model() -> MemoizingEmbedder:
        nonlocal embedder
        if embedder is None:
            embedder = make_embedder(params, args.model_cache, args.embedding_cache)
        return embedder

    data = args.data_dir
    runners: dict[str, Callable[[Path], dict[str, Any]]] = {
        "clustering": lambda work: run_clustering(load_ecb(data), params, model(), work),
        "similarity": lambda work: run_similarity(load_semeval(data), params, model(), work),
        "neardup": lambda work: run_neardup(load_saudinewsnet(data), params, work),
        "neardup_ant": lambda work: run_neardup(load_ant(data), params, work, corpus="ant"),
        "edits": lambda work: run_edits(load_ant(data), params, work),
        "seeds": lambda work: run_seeds(load_seeds(data), params, model(), work),
    }
    with tempfile.TemporaryDirectory(prefix="samestory-quality-") as scratch:
        try:
            for task in tasks:
                task_started = time.perf_counter()
                results[task] = runners[task](Path(scratch))
                results["seconds"][task] = time.perf_counter() - task_started
                logger.info("%s done in %.0f s", task, results["seconds"][task])
        finally:
            if embedder is not None:
                embedder.flush()
    if embedder is not None:
        results["embedding"] = {
            "model_texts": embedder.model_texts,
            "model_seconds": embedder.model_seconds,
        }
    results["seconds"]["total"] = time.perf_counter() - started
    report(results)
    print(f"\ntotal {results['seconds']['total']:.0f} s; JSON in {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_jsonable(results), ensure_ascii=False, indent=1))
    return results


if __name__ == "__main__":
    main()
