#!/usr/bin/env bash
# The steps of the service image (see ../Dockerfile), as a plain script.
#
#   docker/build.sh PREFIX
#
# installs samestory from this source tree into PREFIX/venv (CPU torch first), builds the
# offline default model into $SAMESTORY_MODEL_CACHE_DIR (default PREFIX/models), compiles
# the native kernels into $NUMBA_CACHE_DIR (default PREFIX/numba-cache) and, with
# CREATE_USER=1 (the image), creates the non-root user that owns $SAMESTORY_DATA_DIR.
# The Dockerfile runs exactly this; .ci/run runs it on the host into a temporary PREFIX so
# the recipe cannot rot unnoticed where no Docker engine is available.
set -euo pipefail

prefix=${1:?usage: docker/build.sh PREFIX}
source_dir=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
model_cache=${SAMESTORY_MODEL_CACHE_DIR:-$prefix/models}
# numba's cache of the compiled kernels: filled below, so that the service's first request
# does not compile them (~1.5 s). The service must find it at the same path (the image sets
# NUMBA_CACHE_DIR) and may write there: numba checks that it can.
numba_cache=${NUMBA_CACHE_DIR:-$prefix/numba-cache}
data_dir=${SAMESTORY_DATA_DIR:-$prefix/data}
user=${SAMESTORY_USER:-samestory}

step() { printf '==> %s\n' "$*"; }

step "virtual environment in $prefix/venv"
"$python" -m venv "$prefix/venv"
pip=("$prefix/venv/bin/python" -m pip install --quiet --no-warn-script-location)

step "CPU torch, pinned before anything can pull the CUDA build"
torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_index=(--index-url "$TORCH_INDEX_URL")
fi
"${pip[@]}" "${torch_index[@]}" torch==2.13.0

step "samestory from $source_dir"
"${pip[@]}" "$source_dir"

step "offline default model into $model_cache"
"$prefix/venv/bin/samestory" build-model --cache-dir "$model_cache"

step "smoke test of the installed command and app"
"$prefix/venv/bin/samestory" --help >/dev/null
"$prefix/venv/bin/python" -c 'from service.app import create_app; create_app()'

step "compiled kernels into $numba_cache"
NUMBA_CACHE_DIR="$numba_cache" "$prefix/venv/bin/samestory" compile-kernels

if [ "${CREATE_USER:-0}" = 1 ]; then
    step "non-root user $user owning $data_dir"
    useradd --system --no-create-home --home-dir "$data_dir" --shell /usr/sbin/nologin "$user"
    mkdir -p "$data_dir"
    chown "$user:$user" "$data_dir"
    # The model is read-only to the service; the kernel cache is the service's.
    chmod -R a+rX "$model_cache"
    chown -R "$user:$user" "$numba_cache"
else
    step "data directory $data_dir (user creation skipped: CREATE_USER is not 1)"
    mkdir -p "$data_dir"
fi
step "done"
