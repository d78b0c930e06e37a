"""`captioner recaption`: caption a bucket's images again after a change of model.

The work is queued in the database (caption_jobs_recaption, migrations/0009) a batch at a
time, in name order, and captioned by a worker in this process (the service's workers help,
and the jobs outlive this process). Each image keeps its old caption until the new one is
written. A run queues each image once; running the command again continues where the last
run stopped (what is done is by the new model already) and tries its failures again.
"""

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx

from app.captioning import open_captioner
from app.config import Settings
from app.jobs import JobQueue, RecaptionProgress
from app.main import connect_supabase
from app.storage import ObjectFetcher
from app.worker import Worker

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Scope:
    bucket: str
    prefix: str
    model: str

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def with_model(settings: Settings, model: str | None) -> Settings:
    """The settings, captioning with `model` instead of the configured one."""
    if not model:
        return settings
    update = {"caption_model": model}
    if settings.resolved_backend == "local":
        update["local_model"] = model
    return settings.model_copy(update=update)


async def recaption_bucket(
    settings: Settings,
    bucket: str,
    prefix: str,
    batch: int,
    report: Callable[[Scope, RecaptionProgress], None],
) -> RecaptionProgress:
    """Re-caption everything under bucket/prefix not captioned by the settings' model; calls
    `report` as the work goes on and returns where it ended."""
    since = datetime.now().astimezone()
    async with working(settings) as (queue, worker):
        scope = Scope(bucket, prefix, worker.model)
        while True:
            queued = await queue.recaption(bucket, prefix, worker.model, batch, since)
            progress = await wait_for_batch(queue, worker, scope, report)
            if queued < batch:
                return progress


async def wait_for_batch(
    queue: JobQueue,
    worker: Worker,
    scope: Scope,
    report: Callable[[Scope, RecaptionProgress], None],
) -> RecaptionProgress:
    while True:
        if worker.paused is not None:  # nothing gets done until a setting changes
            raise worker.paused
        progress = await queue.recaption_progress(scope.bucket, scope.prefix, scope.model)
        report(scope, progress)
        if progress.queued == 0:
            return progress
        await asyncio.sleep(POLL_SECONDS)


@asynccontextmanager
async def working(settings: Settings) -> AsyncIterator[tuple[JobQueue, Worker]]:
    """A queue, and a worker captioning with the settings' model until the block ends.
    Raises ConfigurationError at once when the model has no route."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        supabase = await connect_supabase(settings, http)
        queue = JobQueue(supabase, f"recaption:{socket.gethostname()}:{os.getpid()}")
        fetcher = ObjectFetcher.from_settings(supabase, settings)
        captioner = await open_captioner(settings)
        worker = Worker(queue, fetcher, captioner, settings)
        running = asyncio.create_task(worker.run())
        try:
            yield queue, worker
        finally:
            await worker.stop(settings.shutdown_grace_seconds)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await captioner.aclose()
            await fetcher.aclose()
