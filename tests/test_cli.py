"""The ``samestory`` command line: every command has help; errors are clean messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_python

from service.cli import build_parser, main

COMMANDS = ["serve", "dedup", "build-model", "compile-kernels"]


def test_every_command_is_listed() -> None:
    parser = build_parser()
    listed = {
        name
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name in action.choices
    }

    assert listed == set(COMMANDS)


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: samestory {' '.join(command)}".rstrip())
    assert len(out.splitlines()) > 3


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])

    out = capsys.readouterr().out
    assert "--host" in out and "127.0.0.1" in out
    assert "--port" in out and "8000" in out
    assert "--data-dir" in out and "./samestory-data" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])

    assert exited.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_invalid_settings_are_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAMESTORY_MAX_BATCH", "0")

    with pytest.raises(SystemExit) as exited:
        main(["serve"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("samestory: error: invalid settings")
    assert "max_batch" in err


def test_build_model_prints_the_model_directory(
    default_model: Path, model_cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build-model", "--cache-dir", str(model_cache_dir)]) == 0

    assert capsys.readouterr().out.strip() == str(default_model)


def test_build_model_reads_the_cache_dir_setting(
    default_model: Path,
    model_cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SAMESTORY_MODEL_CACHE_DIR", str(model_cache_dir))

    assert main(["build-model"]) == 0

    assert capsys.readouterr().out.strip() == str(default_model)


def test_build_model_failure_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(SystemExit) as exited:
        main(["build-model", "--cache-dir", str(blocker / "models")])

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("samestory: error: ")
    assert "Traceback" not in err


def test_console_script_is_installed() -> None:
    script = shutil.which("samestory", path=str(Path(sys.executable).parent))
    assert script, "samestory is not installed: pip install -e '.[dev]'"

    done = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: samestory")


def test_help_does_not_import_the_web_stack() -> None:
    code = (
        "import sys\n"
        "from service.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'fastapi', 'uvicorn', 'torch', 'sentence_transformers'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    assert run_python(code, timeout=120).strip().splitlines()[-1] == "[]"


def test_threshold_settings_reach_the_engine_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from index.params import Parameters
    from service.settings import Settings

    monkeypatch.setenv("SAMESTORY_MIN_LENGTH_RATIO", "0.75")
    monkeypatch.setenv("SAMESTORY_CONTAINMENT_THRESHOLD", "0.95")
    params = Settings().parameters()
    assert (params.min_length_ratio, params.containment_threshold) == (0.75, 0.95)
    # Thresholds decide, they do not define what is stored: the same store opens.
    assert params.fingerprint() == Parameters().replace(model=params.model).fingerprint()
    monkeypatch.setenv("SAMESTORY_MIN_LENGTH_RATIO", "1.5")
    with pytest.raises(ValueError, match="min_length_ratio"):
        Settings()


def test_embed_prompt_setting_reopens_a_store_embedded_with_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from index.params import Parameters
    from service.settings import Settings

    assert Settings().parameters().embed_prompt == Parameters().embed_prompt == ""
    monkeypatch.setenv("SAMESTORY_EMBED_PROMPT", "query: ")
    params = Settings().parameters()
    assert params.embed_prompt == "query: "
    # What is embedded defines what is stored: a store keeps the prompt it was built with.
    assert params.fingerprint() != Parameters().replace(model=params.model).fingerprint()


def test_compile_kernels_fills_numba_cache_for_a_fresh_process(tmp_path: Path) -> None:
    import os

    cache = tmp_path / "numba-cache"
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "service.cli", "compile-kernels"]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kernels compiled and cached" in done.stdout
    cached = {path.name.split("-")[0] for path in cache.rglob("*.nbi")}
    for kernel in (
        "text._fold_many_kernel",
        "text._literal_masks_kernel",
        "shingles._shingles_and_terms_many",
        "minhash._signature_kernel",
        "minhash._band_kernel",
        "minhash._probe_run_many",
        "minhash._intersection_size",
    ):
        assert kernel in cached, sorted(cached)


def test_the_entry_point_loads_the_commands_uncollected_and_freezes_them() -> None:
    # A fresh interpreter: command() freezes every object alive, the test process's too.
    code = (
        "import gc, sys\n"
        "from service import cli\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
        "sys.argv = ['samestory', '--help']\n"
        "try:\n"
        "    cli.command()\n"
        "except SystemExit as exited:\n"
        "    status = exited.code\n"
        "loaded = 'service.dedup' in sys.modules and 'numba' in sys.modules\n"
        "frozen = gc.get_freeze_count() > 100_000\n"
        "print(status, loaded, seen.count('start'), gc.isenabled(), frozen)\n"
    )
    printed = run_python(code, timeout=120)

    assert printed.strip().splitlines()[-1] == "0 True 0 True True"
    assert "usage: samestory" in printed


def test_the_installed_script_runs_the_entry_point() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"samestory": "service.cli:command"}
