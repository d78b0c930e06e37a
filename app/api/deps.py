"""FastAPI dependencies: the shared runtime objects, as Annotated aliases."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from supabase import AsyncClient

from app.api.webhook_signature import SignatureVerifier
from app.captioning import Captioner
from app.core.batching import MicroBatcher
from app.core.config import NOT_CONNECTED, Settings
from app.pipeline.jobs import JobQueue
from app.pipeline.storage import ObjectFetcher
from app.pipeline.worker import Worker


@dataclass
class Runtime:
    """Everything the app builds at start-up and closes at shutdown."""

    settings: Settings
    captioner: Captioner
    # the bucket pipeline; all None while it is not connected (no Supabase settings)
    supabase: AsyncClient | None = None
    queue: JobQueue | None = None
    fetcher: ObjectFetcher | None = None
    worker: Worker | None = None
    signatures: SignatureVerifier | None = None
    enqueue: MicroBatcher[str, str] | None = None  # webhooks' ids, a batch per round trip


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_queue(runtime: RuntimeDep) -> JobQueue:
    if runtime.queue is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONNECTED)
    return runtime.queue


async def get_supabase(runtime: RuntimeDep) -> AsyncClient:
    if runtime.supabase is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONNECTED)
    return runtime.supabase


async def get_captioner(runtime: RuntimeDep) -> Captioner:
    return runtime.captioner


QueueDep = Annotated[JobQueue, Depends(get_queue)]  # 503 without the pipeline
SupabaseDep = Annotated[AsyncClient, Depends(get_supabase)]  # 503 without the pipeline
CaptionerDep = Annotated[Captioner, Depends(get_captioner)]
