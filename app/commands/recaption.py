"""`captioner recaption`: caption a bucket's images again after a change of model or of
languages: those whose caption another model wrote, and those without a description by the
model in one of the bucket's languages (CAPTION_LANGUAGES, CAPTION_BUCKET_SETTINGS).

The work is queued in the database (caption_jobs_recaption, migrations 000009 and
20261126053804) a batch at a
time, in name order, and captioned by a worker in this process (the service's workers help,
and the jobs outlive this process). Each image keeps its old caption until the new one is
written. A run queues each image once; running the command again continues where the last
run stopped (what is done is by the new model, in every language, already) and tries its
failures again. A person's fields of a description stay (captioner.store_descriptions).
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
    languages: tuple[str, ...]

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
    """Re-caption everything under bucket/prefix not captioned by the settings' model or not
    described by it in each of the bucket's languages; calls `report` as the work goes on and
    returns where it ended. Raises ConfigurationError at once when the model has no route."""
    since = datetime.now().astimezone()
    plan = settings.bucket_plan(bucket)
    scope = Scope(bucket, prefix, plan.model or settings.model_name, plan.languages)
    async with running_worker(supabase, queue, settings) as worker:
        while True:
            queued = await queue.recaption(
                bucket, prefix, scope.model, batch, since, scope.languages
            )
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
        progress = await queue.recaption_progress(
            scope.bucket, scope.prefix, scope.model, scope.languages
        )
        report(scope, progress)
        if progress.queued == 0:
            return progress
        await asyncio.sleep(POLL_SECONDS)
