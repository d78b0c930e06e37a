"""FastAPI dependencies: the shared runtime objects, as Annotated aliases."""

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from supabase import AsyncClient

from app.batching import MicroBatcher
from app.captioning import Captioner
from app.config import Settings
from app.jobs import JobQueue
from app.storage import ObjectFetcher
from app.webhook_signature import SignatureVerifier
from app.worker import Worker


@dataclass
class Runtime:
    """Everything the app builds at start-up and closes at shutdown."""

    settings: Settings
    supabase: AsyncClient
    queue: JobQueue
    fetcher: ObjectFetcher
    captioner: Captioner
    worker: Worker | None
    signatures: SignatureVerifier | None
    enqueue: MicroBatcher[str, str]  # webhooks' object ids, enqueued a batch per round trip


def secret_matches(presented: str, secrets: Iterable[str]) -> bool:
    """Whether `presented` equals one of `secrets`, compared in constant time against each."""
    matches = [hmac.compare_digest(presented.encode(), secret.encode()) for secret in secrets]
    return any(matches)


def bearer_matches(request: Request, secrets: Iterable[str]) -> bool:
    """Whether the request's one `Authorization: Bearer <token>` header carries one of
    `secrets`. Several Authorization headers never match: which one counts is ambiguous
    (proxies differ)."""
    headers = request.headers.getlist("authorization")
    if len(headers) != 1:
        return False
    scheme, _, token = headers[0].partition(" ")
    return scheme.lower() == "bearer" and secret_matches(token.strip(), secrets)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_queue(runtime: RuntimeDep) -> JobQueue:
    return runtime.queue


async def get_captioner(runtime: RuntimeDep) -> Captioner:
    return runtime.captioner


QueueDep = Annotated[JobQueue, Depends(get_queue)]
CaptionerDep = Annotated[Captioner, Depends(get_captioner)]
