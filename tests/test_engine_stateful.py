"""The engine under random sequences of ingests, batches, deletes, matches and restarts.

A hypothesis state machine drives a real dedup-mode engine (real SQLite, MinHash/LSH, the
snapshots on disk) with copies, edited copies and unrelated articles, deletes and restarts
(from the snapshots, or rebuilding the indexes from the record), and after every step
checks what must always hold: the record holds exactly the acknowledged articles, every
story is a partition of them with a member as its canonical, a stored text is an exact
duplicate of itself, an article sent again gets its stored verdict, and a restart answers
every read and every match exactly as before it.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ECONOMY, FLOOD, engine_embedder, index_state, model_cache_path
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from index.article import Article, StoredArticle, Verdict
from index.embed import SentenceTransformerEmbedder
from index.engine import Engine
from index.errors import ArticleNotFoundError, ConflictError, StoryNotFoundError
from index.modelcache import build_default_model

# Four unrelated stories of our own making, four paragraphs each (Arabic and English).
STORIES = [
    ECONOMY,
    FLOOD,
    [
        "The city council approved a plan on Monday to extend the tram line to the airport, "
        "a project expected to cost four hundred million euros over six years.",
        "Supporters said the line would cut travel times in half and take thousands of cars "
        "off the motorway, while opponents questioned the passenger forecasts.",
        "Construction is due to start next spring after a final environmental review of the "
        "route through the protected wetlands south of the old harbour.",
        "The mayor said the first trams could run by the end of the decade if the national "
        "government confirms its share of the funding in the autumn budget.",
    ],
    [
        "افتتح المتحف الوطني مساء الخميس معرضا جديدا للمخطوطات النادرة يضم أكثر من ثلاثمئة "
        "قطعة تعود إلى القرون الوسطى جمعت من مكتبات خاصة.",
        "وقالت مديرة المتحف إن المعرض يستمر ثلاثة أشهر وإن الدخول مجاني للطلاب والباحثين "
        "طوال أيام الأسبوع باستثناء يوم الجمعة.",
        "ويتضمن المعرض قاعة مخصصة لأدوات الخط والتجليد القديمة إلى جانب ورش عمل أسبوعية "
        "يقدمها خطاطون من عدة بلدان عربية.",
        "وأكد القائمون على المعرض أن المخطوطات خضعت لعمليات ترميم دقيقة استمرت عامين "
        "بالتعاون مع مختبرات متخصصة في حفظ الورق.",
    ],
]

# How a text is made from a story: as written, with one word changed, cut to its first
# three paragraphs (a copy by containment), or with a line of boilerplate added.
EDITS = ("same", "word", "truncated", "boilerplate")


def _text(story: int, edit: str) -> str:
    paragraphs = list(STORIES[story])
    if edit == "word":
        words = paragraphs[-1].split()
        words[len(words) // 2] = "تغيير" if story in (0, 3) else "changed"
        paragraphs[-1] = " ".join(words)
    elif edit == "truncated":
        paragraphs = paragraphs[:3]
    elif edit == "boilerplate":
        paragraphs.append("Share on Facebook")
    return "\n\n".join(paragraphs)


PROBE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
TEXTS = st.builds(_text, st.integers(0, len(STORIES) - 1), st.sampled_from(EDITS))


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="samestory-stateful-"))
        self._open()
        self.stored: dict[str, str] = {}  # id -> text, what was acknowledged
        self.serial = 0

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _new_id(self) -> str:
        self.serial += 1
        return f"a{self.serial}"

    def _check_new_verdict(self, verdict: Verdict, text: str, before: dict[str, str]) -> None:
        identical = [key for key, stored in before.items() if stored == text]
        if identical:
            assert verdict.status == "exact_duplicate", (verdict, identical)
            assert verdict.duplicate_of in before
        assert verdict.cluster.size >= 1

    @initialize(text=TEXTS)
    def first(self, text: str) -> None:
        self.ingest(text)

    @rule(text=TEXTS)
    def ingest(self, text: str) -> None:
        article_id = self._new_id()
        before = dict(self.stored)
        verdict = self.engine.ingest(Article(id=article_id, text=text))
        self.stored[article_id] = text
        assert verdict.id == article_id
        self._check_new_verdict(verdict, text, before)

    @rule(texts=st.lists(TEXTS, min_size=1, max_size=4))
    def ingest_batch(self, texts: list[str]) -> None:
        ids = [self._new_id() for _ in texts]
        verdicts = self.engine.ingest_many(
            [Article(id=key, text=text) for key, text in zip(ids, texts, strict=True)]
        )
        assert [verdict.id for verdict in verdicts] == ids
        for key, text, verdict in zip(ids, texts, verdicts, strict=True):
            before = dict(self.stored)
            self.stored[key] = text
            self._check_new_verdict(verdict, text, before)

    @precondition(lambda self: self.stored)
    @rule(data=st.data())
    def send_again(self, data: st.DataObject) -> None:
        article_id = data.draw(st.sampled_from(sorted(self.stored)))
        stored = self.engine.get(article_id).verdict
        again = self.engine.ingest(Article(id=article_id, text=self.stored[article_id]))
        assert again == stored

    @precondition(lambda self: self.stored)
    @rule(data=st.data(), text=TEXTS)
    def same_id_other_text(self, data: st.DataObject, text: str) -> None:
        article_id = data.draw(st.sampled_from(sorted(self.stored)))
        if text == self.stored[article_id]:
            return
        with pytest.raises(ConflictError):
            self.engine.ingest(Article(id=article_id, text=text))

    @precondition(lambda self: self.stored)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        article_id = data.draw(st.sampled_from(sorted(self.stored)))
        self.engine.delete(article_id)
        del self.stored[article_id]
        with pytest.raises(ArticleNotFoundError):
            self.engine.get(article_id)
        with pytest.raises(ArticleNotFoundError):
            self.engine.delete(article_id)

    def _answers(self) -> tuple[dict[str, StoredArticle], list[Verdict]]:
        """Every stored article as read back, and the verdict of a match of every text."""
        # Dated: an undated probe is dated at its receipt, which moves between the calls.
        probes = [
            Article(id="probe", text=_text(story, edit), published_at=PROBE_TIME)
            for story in range(len(STORIES))
            for edit in EDITS
        ]
        reads = {key: self.engine.get(key) for key in self.stored}
        return reads, [self.engine.match(probe) for probe in probes]

    def _open(self) -> None:
        self.engine = Engine.open(self.directory, mode="dedup", synchronous="off")

    @rule()
    def snapshot(self) -> None:
        self.engine.snapshot()

    @rule(from_snapshot=st.booleans())
    def restart(self, from_snapshot: bool) -> None:
        before = self._answers()
        self.engine.close()
        if not from_snapshot:
            shutil.rmtree(self.directory / "snapshots", ignore_errors=True)
        self._open()
        assert self._answers() == before

    @rule()
    def crash_and_restart(self) -> None:
        # The data directory as a killed process leaves it: the record as committed, the
        # snapshots as last written (older than the record after later ingests or deletes).
        before = self._answers()
        indexes = index_state(self.engine)
        crashed = Path(tempfile.mkdtemp(prefix="samestory-stateful-crashed-"))
        shutil.copytree(
            self.directory,
            crashed,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".samestory.lock"),
        )
        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = crashed
        self._open()
        assert self._answers() == before
        # A snapshot brought up to date must hold what the live engine did.
        assert index_state(self.engine) == indexes

    @invariant()
    def the_record_is_what_was_acknowledged(self) -> None:
        assert self.engine.counts()["articles"] == len(self.stored)
        for key, text in self.stored.items():
            assert self.engine.get(key).article.text == text

    @invariant()
    def stories_partition_the_stored_articles(self) -> None:
        member_of: dict[str, str] = {}
        for key in self.stored:
            cluster = self.engine.get(key).verdict.cluster
            story = self.engine.story(cluster.id, limit=1000)
            members = {member.id for member in story.members}
            assert key in members
            assert story.total_members == len(members) == story.cluster.size
            assert story.cluster.canonical.id in members
            assert members <= set(self.stored)
            for member in members:
                assert member_of.setdefault(member, cluster.id) == cluster.id

    @invariant()
    def a_stored_text_matches_itself_exactly(self) -> None:
        for key, text in list(self.stored.items())[:3]:
            verdict = self.engine.match(Article(id="probe", text=text))
            assert verdict.stored is False
            assert verdict.status == "exact_duplicate"
            assert verdict.cluster.id == self.engine.get(key).verdict.cluster.id

    @invariant()
    def deleted_stories_are_gone(self) -> None:
        if not self.stored:
            assert self.engine.stories(limit=1000) == []
            with pytest.raises(StoryNotFoundError):
                self.engine.story("s1")


@functools.cache
def _embedder() -> SentenceTransformerEmbedder:
    """The offline default model, loaded once for every stories-mode example."""
    cache = model_cache_path()
    build_default_model(cache)
    embedder: SentenceTransformerEmbedder = engine_embedder(cache)
    return embedder


class StoriesMachine(EngineMachine):
    """The same in stories mode, with the real model: story scoring and centroids, the
    FAISS index, the canonical elected as the most central member."""

    def _open(self) -> None:
        self.engine = Engine.open(self.directory, embedder=_embedder(), synchronous="off")


_EXAMPLES = int(os.environ.get("SAMESTORY_STATEFUL_EXAMPLES", "60"))
EngineMachine.TestCase.settings = settings(
    max_examples=_EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
StoriesMachine.TestCase.settings = settings(
    max_examples=max(1, _EXAMPLES // 4),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_dedup_engine_state_machine = EngineMachine.TestCase
test_stories_engine_state_machine = pytest.mark.model(StoriesMachine.TestCase)
