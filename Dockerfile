# syntax=docker/dockerfile:1
#
# Image of the captioning service.
#
#   docker build -t supabase-captioner .                                # hosted models (HF_TOKEN), web page
#   docker build --build-arg WITH_LOCAL_MODEL=true -t captioner-local . # + torch (CPU) and transformers
#   docker build --build-arg WITH_UI=false -t captioner-slim .           # no Gradio page (UI_ENABLED=false)
#
# The builder stage has the compilers and builds one virtual environment in /opt/venv; the
# runtime stage gets only that venv (the `app` package is installed in it, package data and
# migrations included; no pip, setuptools or wheel, there or in the base Python), runs as an
# unprivileged user, and has no compilers. `captioner serve` reads HOST, PORT and FORWARDED_ALLOW_IPS (defaults below).
# Without API_KEYS (or the pipeline's WEBHOOK_SECRET) and UI_USERNAME/UI_PASSWORD the API and
# the page answer 403 on 0.0.0.0: set them, or API_PUBLIC/UI_PUBLIC=true on purpose.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./

# Build arguments below the stable layers: changing one rebuilds only what follows.
# true: install torch (the CPU build, from TORCH_INDEX_URL) + transformers for
# CAPTION_BACKEND=local (about +1 GB)
ARG WITH_LOCAL_MODEL=false
# true: install Gradio for the upload-and-caption page at /ui (UI_ENABLED follows it)
ARG WITH_UI=true
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# Dependencies first, in their own layer: rebuilt only when pyproject.toml, constraints.txt
# or a build arg changes. constraints.txt pins every version to the one the tests passed
# with, so an image built later gets the same. torch is asked for as `+cpu`, a version only
# PyTorch's CPU index has: where that index cannot be reached the build fails instead of
# taking PyPI's CUDA build (gigabytes more), and a check after the install makes sure.
# A stub package stands in for app/ so that the project's metadata resolves.
RUN set -eu; \
    if [ "$WITH_LOCAL_MODEL" = "true" ]; then \
      pip install --constraint constraints.txt --extra-index-url "$TORCH_INDEX_URL" \
        "torch==${TORCH_VERSION}+cpu"; \
      python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" \
        || { echo "torch is not the CPU build" >&2; exit 1; }; \
    fi; \
    extras=""; \
    if [ "$WITH_UI" = "true" ]; then extras="ui"; fi; \
    if [ "$WITH_LOCAL_MODEL" = "true" ]; then extras="${extras:+$extras,}local"; fi; \
    mkdir -p app && touch app/__init__.py; \
    pip install --constraint constraints.txt ".${extras:+[$extras]}"; \
    pip uninstall -y supabase-captioner; \
    rm -rf app build *.egg-info

# Then the package itself (not editable: the runtime stage has no source tree), with the
# migrations as package data (app/migrations links to migrations/), so that `captioner
# migrate` and `doctor` find them from any working directory. Last, pip, setuptools and
# wheel leave the venv: nothing installs packages at run time.
COPY migrations ./migrations
COPY app ./app
RUN pip install --no-deps . \
 && cd / && python -c "import app.main; assert callable(app.main.create_app)" \
 && python -c "from app.commands.migrate import MIGRATIONS_DIR as d; assert any(d.glob('*.sql'))" \
 && pip uninstall -y pip setuptools wheel

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
 && mkdir -p /home/app/.cache/huggingface \
 && chown -R app:app /home/app

# the base image's own pip, setuptools and wheel go too (where it has them): nothing here
# installs packages
RUN if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall -y pip setuptools wheel; fi

COPY --from=builder /opt/venv /opt/venv

WORKDIR /srv/captioner

ARG WITH_UI=true
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/app/.cache/huggingface \
    UI_ENABLED=${WITH_UI} \
    HOST=0.0.0.0 \
    PORT=8000 \
    FORWARDED_ALLOW_IPS=*

USER app:app

EXPOSE 8000

# slim has no curl: ask Python, on the port the service listens on. /healthz is liveness only
# (see /readyz for readiness).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4).status == 200 else 1)"]

CMD ["captioner", "serve"]
