# syntax=docker/dockerfile:1
#
# Image of the captioning service.
#
#   docker build -t supabase-captioner .                                # hosted models (HF_TOKEN), web page
#   docker build --build-arg WITH_LOCAL_MODEL=true -t captioner-local . # + torch (CPU) and transformers
#   docker build --build-arg WITH_UI=false -t captioner-slim .           # no Gradio page (set UI_ENABLED=false)
#
# The builder stage has the compilers and builds one virtual environment in /opt/venv; the
# runtime stage gets only that venv (the `app` package is installed in it, package data
# included) and migrations/, runs as an unprivileged user, and has no compilers.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# true: install torch (CPU wheel, from TORCH_INDEX_URL; its dependencies from PyPI) +
# transformers for CAPTION_BACKEND=local (about +1 GB)
ARG WITH_LOCAL_MODEL=false
# true: install Gradio for the upload-and-caption page at /ui (UI_ENABLED defaults to true)
ARG WITH_UI=true
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip setuptools wheel
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when pyproject.toml, constraints.txt
# or a build arg changes. constraints.txt pins every version to the one the tests passed
# with, so an image built later gets the same. A stub package stands in for app/ so that the
# project's metadata resolves.
COPY pyproject.toml constraints.txt ./
RUN set -eu; \
    if [ "$WITH_LOCAL_MODEL" = "true" ]; then \
      pip install --constraint constraints.txt --extra-index-url "$TORCH_INDEX_URL" \
        "torch==$TORCH_VERSION"; \
    fi; \
    extras=""; \
    if [ "$WITH_UI" = "true" ]; then extras="ui"; fi; \
    if [ "$WITH_LOCAL_MODEL" = "true" ]; then extras="${extras:+$extras,}local"; fi; \
    mkdir -p app && touch app/__init__.py; \
    pip install --constraint constraints.txt ".${extras:+[$extras]}"; \
    pip uninstall -y supabase-captioner; \
    rm -rf app build *.egg-info

# Then the package itself (not editable: the runtime stage has no source tree).
COPY app ./app
RUN pip install --no-deps . \
 && cd / && python -c "import app.main; assert callable(app.main.create_app)"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/app/.cache/huggingface

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
 && mkdir -p /home/app/.cache/huggingface \
 && chown -R app:app /home/app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /srv/captioner
COPY migrations ./migrations

USER app:app

EXPOSE 8000

# slim has no curl: ask Python. /healthz is liveness only (see /readyz for readiness).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["captioner", "serve", "--host", "0.0.0.0", "--port", "8000", "--forwarded-allow-ips", "*"]
