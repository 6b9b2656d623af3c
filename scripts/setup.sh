#!/usr/bin/env bash
# Create .venv in the project root and install samestory into it with its dev tools.
#
# Both README commands and .ci/run start here, so they cannot drift apart. Safe to re-run.
# torch is pinned and installed first: left to resolve it through sentence-transformers, pip
# picks the CUDA build (gigabytes). Where pip is not already set up to find the CPU wheel,
# set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu.
set -euo pipefail

cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "setup: samestory needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    "$python" -m venv .venv
fi

torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_index=(--index-url "$TORCH_INDEX_URL")
fi
.venv/bin/python -m pip install --quiet "${torch_index[@]}" torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
# An editable install leaves the modules to be compiled on first import, and on every
# import where PYTHONDONTWRITEBYTECODE is set: compiled now, start-up does not pay for it.
.venv/bin/python -m compileall -q index service
