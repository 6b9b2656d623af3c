"""Service settings (environment variables prefixed ``SAMESTORY_``) and engine opening.

Settings are built by ``create_app()`` and the CLI, never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.engine import SNAPSHOT_EVERY, Engine, Mode
from index.params import DEFAULT_MODEL, Parameters
from index.store import Synchronous


def default_model_cache() -> Path:
    """Where the offline default model is built: ``$XDG_CACHE_HOME/samestory/models``."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "samestory" / "models"


class Settings(BaseSettings):
    """Everything an operator can set; each field reads ``SAMESTORY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SAMESTORY_", extra="ignore")

    data_dir: Path = Field(Path("samestory-data"), description="SQLite record and snapshots")
    mode: Mode = Field(
        "stories", description="'stories' (duplicates and stories) or 'dedup' (no model)"
    )
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers name or directory")
    model_cache_dir: Path = Field(default_factory=default_model_cache)
    device: str = Field("cpu", description="torch device for the model, e.g. cpu or cuda")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="model weights' dtype; auto: bfloat16 on CPUs with native bfloat16, "
        "float16 on CUDA, else float32",
    )
    api_key: SecretStr | None = Field(None, description="when set, requests must carry it")
    max_body_bytes: int = Field(5_000_000, ge=1_000)
    max_batch: int = Field(256, ge=1, le=10_000)
    micro_batch_wait_ms: float = Field(5.0, ge=0.0, le=1_000.0)
    micro_batch_size: int = Field(64, ge=1, le=1_024)
    synchronous: Synchronous = "full"
    story_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    near_duplicate_threshold: float | None = Field(None, gt=0.0, le=1.0)
    containment_threshold: float | None = Field(None, gt=0.0, le=1.0)
    min_length_ratio: float | None = Field(None, gt=0.0, le=1.0)
    story_window_days: float | None = Field(None, gt=0.0)
    canonical_policy: Literal["central", "earliest"] | None = None
    embed_max_tokens: int | None = Field(None, ge=16, le=512)
    embed_prompt: str | None = Field(
        None,
        max_length=64,
        description="prefix of every embedded text; none by default (a store embedded "
        "with 'query: ', the default before 2026-11-23, opens only with that)",
    )
    embed_batch_size: int | None = Field(
        None, ge=1, le=8_192, description="texts per forward pass; default 32 on CPU, 512 on CUDA"
    )
    log_level: str = "INFO"

    def required_api_key(self) -> str | None:
        """The key requests must carry; ``None`` when none is set (unset or empty)."""
        if self.api_key is None:
            return None
        return self.api_key.get_secret_value() or None

    def parameters(self) -> Parameters:
        """Engine parameters: the defaults with every threshold the operator set."""
        changes: dict[str, object] = {"model": self.model, "device": self.device}
        for name in (
            "story_threshold",
            "near_duplicate_threshold",
            "containment_threshold",
            "min_length_ratio",
            "story_window_days",
            "canonical_policy",
            "embed_max_tokens",
            "embed_prompt",
            "embed_batch_size",
        ):
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        return Parameters().replace(**changes)


def open_engine(
    settings: Settings, *, mode: Mode | None = None, periodic_snapshots: bool = True
) -> Engine:
    """Open the engine the settings describe (loading the model only in ``stories`` mode).

    Args:
        settings: the service settings.
        mode: overrides ``settings.mode`` when given.
        periodic_snapshots: ``False``: index snapshots only when asked for, for a store
            that is deleted after use.
    """
    mode = mode or settings.mode
    params = settings.parameters()
    embedder = None
    if mode == "stories":
        from index.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder.configured(
            params, cache_dir=settings.model_cache_dir, precision=settings.precision
        )
    return Engine.open(
        settings.data_dir,
        params,
        embedder=embedder,
        mode=mode,
        synchronous=settings.synchronous,
        snapshot_every=SNAPSHOT_EVERY if periodic_snapshots else None,
    )
