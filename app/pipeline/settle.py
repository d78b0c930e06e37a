"""A job's end, by the class of what happened: written done, retried (counting the attempt),
given back while the captioner is away or misconfigured (refunded), or failed."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.core import metrics
from app.core.config import Settings
from app.core.errors import CaptionError, Failure, UnusableAnswer
from app.core.text import clipped, quoted
from app.pipeline.backoff import backoff_delay
from app.pipeline.health import CaptionerHealth
from app.pipeline.jobs import Job, JobQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Captioned:
    """A job's result: a new caption and its descriptions, one per language (with the model
    and the captioner's time), or one reused."""

    caption: str | None
    fingerprint: str
    caption_ms: int | None = None
    reused_from: str | None = None
    descriptions: list[dict[str, Any]] | None = None
    model: str | None = None
    kept: tuple[str, ...] = ()  # languages whose descriptions stay (not described again)


class CaptionerFailed(Exception):
    """The captioner's call failed (not storage, not decoding); it started at loop time
    `started`."""

    def __init__(self, error: Exception, started: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.started = started


class Settler:
    """Records each job's outcome in the queue, counted in the metrics and logged once."""

    def __init__(
        self, queue: JobQueue, health: CaptionerHealth, settings: Settings, model: str
    ) -> None:
        self._queue = queue
        self._health = health
        self._settings = settings
        self.model = model  # the model the captions are recorded with

    async def settle(self, job: Job, work: Callable[[], Awaitable[Captioned]]) -> None:
        """Run `work` for the job and record how it ended."""
        if job.no_progress is not None:
            await self._no_progress(job, job.no_progress)
            return
        try:
            await self._done(job, await work())
        except CaptionerFailed as failed:
            problem = await self._health.judge(failed.error, failed.started)
            if problem is None:
                await self._the_images(job, failed.error)
            else:
                await self._give_back(job, problem)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # storage, decoding, writing the caption, or a bug
            await self._the_images(job, exc)

    async def _done(self, job: Job, result: Captioned) -> None:
        if result.caption is None:
            self.reused(job, result.reused_from)
            return
        stored = await self._queue.complete(
            job,
            result.caption,
            result.model or self.model,
            result.fingerprint,
            result.caption_ms,
            result.descriptions,
            result.kept,
        )
        metrics.JOB_OUTCOMES.labels("done" if stored else "discarded").inc()
        log.info(
            "captioned %s/%s: %s%s",
            job.bucket_id,
            job.name,
            quoted(result.caption),
            "" if stored else " (discarded: lease lost or newer version)",
            extra={"object_id": job.object_id},
        )

    def reused(self, job: Job, source: str | None) -> None:
        metrics.JOB_OUTCOMES.labels("reused").inc()
        log.info(
            "reused the caption of %s for %s/%s: same bytes, same model",
            source,
            job.bucket_id,
            job.name,
            extra={"object_id": job.object_id},
        )

    async def _the_images(self, job: Job, error: Exception) -> None:
        """The image's problem (or a bug): failed now, retried once, or retried counted."""
        if not isinstance(error, CaptionError):  # Failure.UNEXPECTED
            text = f"unexpected {type(error).__name__}: {error}"
            log.error("%s on %s", clipped(text), job.object_id, exc_info=len(text) < 500)
            await self._retry(job, text, None)
        elif error.failure == Failure.IMAGE:
            await self.fail(job, error.reason)
        elif isinstance(error, UnusableAnswer) and job.attempts >= 2:
            await self.fail(job, error.image_reason)
        elif isinstance(error, UnusableAnswer):
            await self._retry(job, error.image_reason, None)
        else:
            await self._retry(job, error.reason, getattr(error, "retry_after", None))

    async def fail(self, job: Job, reason: str) -> None:
        """End the job as failed, counted and logged only if it was still ours to end."""
        held = await self._queue.fail(job, clipped(reason))
        metrics.JOB_OUTCOMES.labels("failed" if held else "discarded").inc()
        log.warning(
            "failed %s/%s: %s%s",
            job.bucket_id,
            job.name,
            clipped(reason),
            "" if held else " (discarded: lease lost or newer version)",
            extra={"object_id": job.object_id},
        )

    async def _retry(self, job: Job, reason: str, hint: float | None) -> None:
        if job.attempts >= self._settings.max_attempts:
            await self.fail(job, f"gave up after {job.attempts} attempts: {reason}")
            return
        delay = backoff_delay(job.attempts, self._settings, hint)
        metrics.JOB_OUTCOMES.labels("retried").inc()
        log.info(
            "retrying %s/%s in %.1fs: %s",
            job.bucket_id,
            job.name,
            delay,
            clipped(reason),
            extra={"object_id": job.object_id},
        )
        await self._queue.retry(job, clipped(reason), delay)

    async def _give_back(self, job: Job, problem: CaptionError) -> None:
        """The captioner's problem: back to pending until the probe captions, refunded, one
        more pause counted on the job's row (MAX_ATTEMPTS of them: no progress)."""
        delay = self._health.resume_delay()
        metrics.JOB_OUTCOMES.labels("deferred").inc()
        log.info(
            "gave back %s/%s until the captioner works (%s)",
            job.bucket_id,
            job.name,
            clipped(problem.reason),
            extra={"object_id": job.object_id, "attempt": job.attempts},
        )
        await self._queue.give_back(job, clipped(problem.reason), delay)

    async def _no_progress(self, job: Job, reason: str) -> None:
        """A job given back in MAX_ATTEMPTS pauses (by any replica) ends failed, without
        another model call, once a probe captions (it keeps coming back from pauses without
        progress); until then it is given back again, not counted."""
        problem = self._health.problem or await self._health.confirm()
        if problem is not None:
            await self._queue.retry(job, None, self._health.resume_delay(), refund=True)
            return
        await self.fail(job, reason)
