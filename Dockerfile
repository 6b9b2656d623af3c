# samestory's REST service: CPU-only, non-root, with the default model built in.
#
#   docker build -t samestory .
#   docker run -p 8000:8000 -v samestory-data:/data samestory
#
# Every build step is docker/build.sh, which .ci/run also runs on the host.
FROM python:3.11-slim

# Where pip finds CPU-only torch wheels (the default index would pull CUDA builds).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    SAMESTORY_DATA_DIR=/data \
    SAMESTORY_MODEL_CACHE_DIR=/opt/samestory/models \
    NUMBA_CACHE_DIR=/opt/samestory/numba-cache \
    PATH=/opt/samestory/venv/bin:$PATH

COPY pyproject.toml README.md /tmp/samestory/
COPY index /tmp/samestory/index
COPY service /tmp/samestory/service
COPY docker/build.sh /tmp/samestory/docker/build.sh
RUN CREATE_USER=1 TORCH_INDEX_URL="$TORCH_INDEX_URL" \
        bash /tmp/samestory/docker/build.sh /opt/samestory \
    && rm -rf /tmp/samestory

USER samestory
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# Healthy means ready: the model and indexes are loaded (a large record takes a while).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["samestory", "serve", "--host", "0.0.0.0"]
