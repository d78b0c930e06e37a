"""`captioner recaption`: caption a bucket's images again after a change of model.

The work is queued in the database (caption_jobs_recaption, migration 000009) a batch at a
time, in name order, and captioned by a worker in this process (the service's workers help,
and the jobs outlive this process). Each image keeps its old caption until the new one is
written. A run queues each image once; running the command again continues where the last
run stopped (what is done is by the new model already) and tries its failures again.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from supabase import AsyncClient

from app.core.config import Settings
from app.pipeline.jobs import JobQueue, RecaptionProgress
from app.pipeline.worker import Worker, running_worker

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Scope:
    bucket: str
    prefix: str
    model: str

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def with_model(settings: Settings, model: str | None) -> Settings:
    """The settings, captioning with `model` instead of the configured one (a bucket's own
    model in CAPTION_BUCKET_SETTINGS included)."""
    if not model:
        return settings
    update: dict[str, object] = {"caption_model": model}
    if settings.resolved_backend == "local":
        update["local_model"] = model
    update["caption_bucket_settings"] = {
        bucket: own.model_copy(update={"model": None})
        for bucket, own in settings.caption_bucket_settings.items()
    }
    return settings.model_copy(update=update)


async def recaption_bucket(
    supabase: AsyncClient,
    queue: JobQueue,
    settings: Settings,
    bucket: str,
    prefix: str,
    batch: int,
    report: Callable[[Scope, RecaptionProgress], None],
) -> RecaptionProgress:
    """Re-caption everything under bucket/prefix not captioned by the settings' model; calls
    `report` as the work goes on and returns where it ended. Raises ConfigurationError at
    once when the model has no route."""
    since = datetime.now().astimezone()
    model = settings.bucket_plan(bucket).model or settings.model_name
    async with running_worker(supabase, queue, settings) as worker:
        scope = Scope(bucket, prefix, model)
        while True:
            queued = await queue.recaption(bucket, prefix, model, batch, since)
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
