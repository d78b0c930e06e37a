"""The FastAPI app: wires settings → Supabase client → queue, fetcher, captioner → worker."""

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from app import __version__
from app.api import captions, descriptions, gallery, ops, ui, webhook
from app.api.auth import require_api_key
from app.api.deps import Runtime
from app.api.webhook_signature import SignatureVerifier
from app.captioning import open_captioner
from app.core.batching import MicroBatcher
from app.core.config import Settings, get_settings
from app.core.keys import refused_key
from app.core.logs import configure_logging
from app.pipeline.jobs import JobQueue
from app.pipeline.storage import ObjectFetcher
from app.pipeline.worker import Sweeper, Worker, backoff_delay

log = logging.getLogger(__name__)
# Webhooks arriving together share one enqueue round trip; each still waits for its commit.
ENQUEUE_BATCH = 200
ENQUEUE_WAIT_SECONDS = 0.001


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="Supabase image captioner",
        version=__version__,
        description="Captions every image uploaded to Supabase Storage with a Hugging Face model.",
        lifespan=lifespan,
        openapi_url=None,  # served below, behind the API key: only /healthz and /readyz are open
    )
    app.state.settings = settings = settings or get_settings()
    configure_logging(settings.log_level)
    app.state.ready = False
    app.include_router(ops.router)
    if settings.pipeline_connected:
        app.include_router(webhook.router)
    app.include_router(captions.router)
    if settings.pipeline_connected:
        app.include_router(descriptions.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_api_key)])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    if settings.ui_enabled:
        if settings.pipeline_connected:
            app.include_router(gallery.router)  # before the Gradio app mounted at /ui
        ui.mount(app)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))
    runtime = await build_runtime(settings, http)
    app.state.runtime = runtime
    if (start := getattr(runtime.captioner, "start", None)) is not None:
        start()  # a local model loads now, in the background; /readyz says "loading" meanwhile
    gc.freeze()  # start-up objects (imports, models) leave the collector's work: shorter pauses
    if runtime.queue is None:
        app.state.ready = True  # nothing to wait for: the captioner is checked by /readyz
        log.info("the bucket pipeline is not connected; web page, API and CLI only")
    starter = asyncio.create_task(start_background_work(app, runtime))
    try:
        yield
    finally:
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        if runtime.enqueue is not None:
            await runtime.enqueue.aclose(RuntimeError("shutting down"))
        if runtime.worker is not None:
            await runtime.worker.stop(settings.shutdown_grace_seconds)
        await runtime.captioner.aclose()
        if runtime.fetcher is not None:
            await runtime.fetcher.aclose()
        await http.aclose()


async def build_runtime(settings: Settings, http: httpx.AsyncClient) -> Runtime:
    captioner = await open_captioner(settings)
    if not settings.pipeline_connected:
        return Runtime(settings, captioner)
    supabase = await connect_supabase(settings, http)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    queue = JobQueue(supabase, worker_id)
    fetcher = ObjectFetcher.from_settings(supabase, settings)
    worker = Worker(queue, fetcher, captioner, settings) if settings.worker_enabled else None
    signing = settings.webhook_signing_secret
    return Runtime(
        settings,
        captioner,
        supabase=supabase,
        queue=queue,
        fetcher=fetcher,
        worker=worker,
        signatures=SignatureVerifier(signing) if signing else None,
        enqueue=MicroBatcher(queue.enqueue, max_size=ENQUEUE_BATCH, max_wait=ENQUEUE_WAIT_SECONDS),
    )


async def connect_supabase(settings: Settings, http: httpx.AsyncClient) -> AsyncClient:
    """supabase-py's client with the service's key. supabase-py 2.34 sends its key as
    `apikey` and as `Authorization: Bearer`; a secret key (not a JWT) must only be `apikey`,
    which Supabase's gateway turns into a service_role JWT (app/core/keys.py)."""
    url, key = settings.supabase_credentials()
    options = AsyncClientOptions(
        auto_refresh_token=False,
        persist_session=False,
        postgrest_client_retry=False,
        httpx_client=http,
    )
    client = await acreate_client(url, key.value, options)
    # PostgREST's and Storage's clients are made on first use from these headers
    client.options.headers.pop("Authorization", None)
    client.options.headers.pop("apiKey", None)
    client.options.headers.update(key.headers())
    return client


async def wake_ups_possible(queue: JobQueue) -> bool:
    """Whether the database has pg_net; True when it cannot say (`captioner doctor` will)."""
    try:
        return await queue.wake_up_available()
    except Exception:
        return True


def waiting_reason(exc: Exception, settings: Settings) -> str:
    """Why Supabase does not answer yet, naming the key's setting when it refused the key."""
    said = f"{type(exc).__name__}: {exc}"
    if refused_key(exc) and settings.service_key is not None:
        return f"Supabase refused the key in {settings.service_key[0]} ({said})"
    return said


async def start_background_work(app: FastAPI, runtime: Runtime) -> None:
    """Wait (with backoff) until Supabase answers, then run the worker and the sweep."""
    settings = runtime.settings
    if runtime.queue is None:
        return
    attempt = 0
    while True:
        try:
            await runtime.queue.configure(settings)
            break
        except Exception as exc:
            app.state.waiting_for = waiting_reason(exc, settings)  # what /readyz says
            attempt += 1
            delay = min(backoff_delay(attempt, settings), 30.0)
            log.warning(
                "Supabase not ready (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
    log.info(
        "connected to %s; watching buckets %s", settings.supabase_url, settings.caption_buckets
    )
    if settings.public_webhook_url and not await wake_ups_possible(runtime.queue):
        log.warning(
            "PUBLIC_WEBHOOK_URL is set but the database has no pg_net (net.http_post): no "
            "wake-ups are sent; the worker finds new jobs every %ss (WORKER_POLL_INTERVAL)",
            settings.worker_poll_interval,
        )
    app.state.ready = True
    if runtime.worker is None:
        return
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runtime.worker.run())
        if settings.sweep_interval > 0:
            tasks.create_task(Sweeper(runtime.queue, runtime.worker, settings).run())
