"""The app's live state: settings, metrics and, once loaded, the engine and its writer.

Loading the model and the indexes takes seconds to minutes, so it runs on a worker thread
after startup: the process answers ``/healthz`` at once and ``/readyz`` turns ready only
when both are loaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from index.engine import Engine
from service.metrics import Metrics
from service.problems import NotReadyError
from service.settings import Settings, open_engine
from service.writer import Writer

logger = logging.getLogger(__name__)


class Runtime:
    """Owns the engine and the writer for the lifetime of one app."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        on_load_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Hold the settings; nothing is loaded before :meth:`start`.

        Args:
            settings: the service settings.
            metrics: the app's metrics.
            on_load_error: called (on the event loop) if the engine cannot be opened; the
                CLI uses it to stop the server instead of serving 503 forever.
        """
        self.settings = settings
        self.metrics = metrics
        self.engine: Engine | None = None
        self.writer: Writer | None = None
        self.load_error: BaseException | None = None
        self._on_load_error = on_load_error
        self._loading: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the engine is loaded and the writer runs."""
        return self.engine is not None and self.writer is not None

    async def start(self) -> None:
        """Begin loading the engine in the background (returns at once)."""
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="samestory-load")

    async def stop(self) -> None:
        """Drain the writer and close the engine (which writes index snapshots)."""
        if self._loading is not None:
            # A thread cannot be interrupted; let the load finish, then close what it opened.
            await self._loading
        if self.writer is not None:
            await self.writer.stop()
        engine, self.engine, self.writer = self.engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.close)
            logger.info("engine closed")
        self.metrics.ready.set(0)

    def require_engine(self) -> Engine:
        """The engine.

        Raises:
            NotReadyError: it is still loading or failed to load.
        """
        if self.engine is None:
            raise NotReadyError(self.not_ready_reason())
        return self.engine

    def require_writer(self) -> Writer:
        """The writer.

        Raises:
            NotReadyError: the engine is still loading or failed to load.
        """
        if self.writer is None:
            raise NotReadyError(self.not_ready_reason())
        return self.writer

    def not_ready_reason(self) -> str:
        """Why the service is not ready, for problem details."""
        if self.load_error is not None:
            return f"the engine failed to load: {self.load_error}"
        if self._loading is not None and self._loading.done():
            return "the service is shutting down"
        return "the model and indexes are still loading; retry shortly"

    async def _load(self) -> None:
        settings = self.settings
        logger.info("opening the engine in %s (%s mode)", settings.data_dir, settings.mode)
        try:
            engine = await asyncio.to_thread(open_engine, settings)
        except Exception as error:
            logger.exception("the engine failed to load")
            self.load_error = error
            if self._on_load_error is not None:
                self._on_load_error(error)
            return
        writer = Writer(
            engine,
            max_articles=settings.micro_batch_size,
            max_wait=settings.micro_batch_wait_ms / 1000.0,
            on_batch=self.metrics.writer_batches.observe,
        )
        writer.start()
        self.engine, self.writer = engine, writer
        self.metrics.ready.set(1)
        logger.info("ready")
