"""The worker: lease jobs, caption them with bounded concurrency, retry with backoff."""

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from supabase import AsyncClient

from app.captioning import Captioner, caption_image_timed, open_captioner
from app.core import metrics
from app.core.bounded import too_large
from app.core.config import Settings
from app.core.errors import CaptionError, ConfigurationError, Failure, RetryableError
from app.pipeline.jobs import Job, JobQueue, SweepSlice, content_fingerprint
from app.pipeline.storage import ObjectFetcher

log = logging.getLogger(__name__)
RECHECK_MAX_SECONDS = 60.0  # while paused for configuration, re-check at least this often


def backoff_delay(attempts: int, settings: Settings, hint: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than the server's own hint."""
    ceiling = min(
        settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(attempts - 1, 0)
    )
    delay = random.uniform(ceiling / 2, ceiling)
    if hint is not None:
        delay = max(delay, min(hint, settings.retry_max_seconds))
    return delay


@dataclass(frozen=True)
class Captioned:
    """A job's result: a new caption (with the captioner's time), or one reused."""

    caption: str | None
    fingerprint: str
    caption_ms: int | None = None
    reused_from: str | None = None


class Worker:
    def __init__(
        self, queue: JobQueue, fetcher: ObjectFetcher, captioner: Captioner, settings: Settings
    ) -> None:
        self._queue = queue
        self._fetcher = fetcher
        self._captioner = captioner
        self._settings = settings
        # The captioner sees at most WORKER_CONCURRENCY images at once; as many more jobs are
        # fetched and prepared meanwhile, so a free captioner slot never waits on storage.
        self._caption_slots = asyncio.Semaphore(settings.worker_concurrency)
        self._max_in_flight = 2 * settings.worker_concurrency
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Job] = {}
        self._claiming: asyncio.Future[int] | None = None
        self._outages = 0  # consecutive pauses for a captioner outage
        self._paused_until = 0.0  # event-loop time
        # A configuration failure pauses claiming until the captioner's re-check passes.
        self.paused: ConfigurationError | None = None
        self._rechecks = 0
        # content fingerprints this process is captioning: a job with the same bytes waits
        # for the first, then reuses its caption (the claim could not: it had none yet)
        self._captioning: dict[str, asyncio.Event] = {}

    def wake(self) -> None:
        """Look for work now (a webhook arrived) rather than at the next poll."""
        self._wake.set()

    @property
    def model(self) -> str:
        """The model the worker's captions are recorded with."""
        return self._captioner.model

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        """Claim and start jobs until stop() is called."""
        failures = 0
        while not self._stopping.is_set():
            if (pause := self._paused_until - asyncio.get_running_loop().time()) > 0:
                await self._sleep(pause)
                continue
            if self.paused is not None:
                await self._recheck()
                continue
            self._wake.clear()  # before claiming, so a wake-up during the claim is not lost
            try:
                # shielded: cancelling run() (shutdown) must not cut a claim short after the
                # database leased the jobs, or they would stay 'running' until the lease ends
                self._claiming = asyncio.ensure_future(self._claim_and_start())
                started = await asyncio.shield(self._claiming)
                failures = 0
            except Exception as exc:  # database or network trouble: back off, keep going
                failures += 1
                log.warning("claiming jobs failed (%s: %s)", type(exc).__name__, exc)
                await self._wait(backoff_delay(failures, self._settings))
                continue
            if not started:
                await self._wait(self._settings.worker_poll_interval)

    async def _claim_and_start(self) -> int:
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await self._queue.claim(
            free, self._settings.lease_seconds, self._settings.max_attempts, self._captioner.model
        )
        jobs = []
        for job in claimed:
            if job.reused_from is None:
                jobs.append(job)
            else:  # the database finished it with the caption of the same bytes
                self._log_reused(job, job.reused_from)
        if self._stopping.is_set():  # leased while shutting down: give them straight back
            await self._release(jobs)
            return 0
        for job in jobs:
            task = asyncio.create_task(self.process(job))
            self._in_flight[task] = job
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but not past stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def process(self, job: Job) -> None:
        """Run one leased job to its end: done, retry later, or failed."""
        log.info(
            "captioning %s/%s (attempt %d)",
            job.bucket_id,
            job.name,
            job.attempts,
            extra={"object_id": job.object_id, "attempt": job.attempts},
        )
        try:
            await self._settle(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the outcome could not be recorded: the lease will expire
            log.warning(
                "could not record the outcome of %s/%s (%s); it runs again after its lease",
                job.bucket_id,
                job.name,
                exc,
                extra={"object_id": job.object_id, "attempt": job.attempts},
            )

    async def _settle(self, job: Job) -> None:
        fingerprint = job.fingerprint
        first = self._captioning.get(fingerprint) if fingerprint else None
        if fingerprint and first is None:
            self._captioning[fingerprint] = asyncio.Event()
        try:
            if first is not None:
                await first.wait()
            result = await self.caption(job, after_same_bytes=first is not None)
            self._outages = 0
            if result.caption is None:
                self._log_reused(job, result.reused_from)
                return
            stored = await self._queue.complete(
                job, result.caption, self._captioner.model, result.fingerprint, result.caption_ms
            )
            metrics.JOB_OUTCOMES.labels("done" if stored else "discarded").inc()
            log.info(
                "captioned %s/%s: %r%s",
                job.bucket_id,
                job.name,
                result.caption,
                "" if stored else " (discarded: lease lost or newer version)",
                extra={"object_id": job.object_id},
            )
        except ConfigurationError as exc:
            await self._pause(job, exc)
        except CaptionError as exc:
            if exc.failure == Failure.IMAGE:
                await self._fail(job, exc.reason)
            elif exc.failure == Failure.AWAY and isinstance(exc, RetryableError):
                await self._defer(job, exc)
            else:
                await self._retry(job, exc.reason, getattr(exc, "retry_after", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Failure.UNEXPECTED: counts, fails after MAX_ATTEMPTS
            log.exception("unexpected error on %s", job.object_id)
            await self._retry(job, f"unexpected {type(exc).__name__}: {exc}", None)
        finally:
            if fingerprint and first is None:
                self._captioning.pop(fingerprint).set()

    async def caption(self, job: Job, after_same_bytes: bool = False) -> Captioned:
        """Download and caption the job's image, unless its bytes (hashed here when storage's
        metadata did not tell them) already have a caption by this model."""
        limit = self._settings.max_image_bytes
        if job.size is not None and job.size > limit:
            raise too_large(f"{job.size} bytes", limit)
        # a job with these bytes just settled here: its caption may serve this one too
        if (
            after_same_bytes
            and job.fingerprint
            and (reused := await self._reuse(job, job.fingerprint))
        ):
            return reused
        data = await self._fetcher.fetch(job.bucket_id, job.name)
        metrics.BYTES_DOWNLOADED.inc(len(data))
        fingerprint = job.fingerprint or content_fingerprint(data)
        if job.fingerprint is None and (reused := await self._reuse(job, fingerprint)):
            return reused
        caption, elapsed_ms = await caption_image_timed(
            data, self._captioner, self._settings, self._caption_slots
        )
        return Captioned(caption, fingerprint, elapsed_ms)

    async def _reuse(self, job: Job, fingerprint: str) -> Captioned | None:
        """Finish the job with a caption this model made of the same bytes, if there is one."""
        source = await self._queue.reuse(job, fingerprint, self._captioner.model)
        return None if source is None else Captioned(None, fingerprint, reused_from=source)

    def _log_reused(self, job: Job, source: str | None) -> None:
        metrics.JOB_OUTCOMES.labels("reused").inc()
        log.info(
            "reused the caption of %s for %s/%s: same bytes, same model",
            source,
            job.bucket_id,
            job.name,
            extra={"object_id": job.object_id},
        )

    async def _fail(self, job: Job, reason: str) -> None:
        """End the job as failed, counted and logged only if it was still ours to end."""
        held = await self._queue.fail(job, reason)
        metrics.JOB_OUTCOMES.labels("failed" if held else "discarded").inc()
        log.warning(
            "failed %s/%s: %s%s",
            job.bucket_id,
            job.name,
            reason,
            "" if held else " (discarded: lease lost or newer version)",
            extra={"object_id": job.object_id},
        )

    async def _pause(self, job: Job, problem: ConfigurationError) -> None:
        """Stop claiming until a re-check passes; give the job back, its attempt refunded.
        One log line and one count per pause, however many jobs run into it."""
        now = asyncio.get_running_loop().time()
        if self.paused is None:
            self.paused = problem
            self._rechecks = 0
            self._paused_until = max(self._paused_until, now + self._recheck_delay())
            metrics.PAUSED.labels(Failure.CONFIGURATION).set(1)
            metrics.PAUSES.labels(Failure.CONFIGURATION).inc()
            log.error(
                "paused: %s; re-checking until it works",
                problem.reason,
                extra={"setting": problem.setting},
            )
        metrics.JOB_OUTCOMES.labels("deferred").inc()
        await self._queue.retry(job, problem.reason, self._recheck_delay(), refund=True)

    def _recheck_delay(self) -> float:
        delay = backoff_delay(self._rechecks + 1, self._settings)
        return min(delay, RECHECK_MAX_SECONDS)

    async def _recheck(self) -> None:
        """Ask the captioner whether the configuration works now; resume if it does."""
        try:
            await self._captioner.check()
        except ConfigurationError as exc:
            self.paused = exc
            self._rechecks += 1
            self._paused_until = asyncio.get_running_loop().time() + self._recheck_delay()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # away or transient now: the jobs' own handling takes over
            log.info("configuration re-check passed, captioner still failing: %s", exc)
        log.warning("resumed: the configuration re-check passed")
        self.paused = None
        metrics.PAUSED.labels(Failure.CONFIGURATION).set(0)

    async def _defer(self, job: Job, outage: RetryableError) -> None:
        """Pause claiming (backing off while the outage lasts) and give the job back with
        its attempt refunded."""
        now = asyncio.get_running_loop().time()
        if now >= self._paused_until:
            self._outages += 1
            metrics.PAUSES.labels(Failure.AWAY).inc()
        delay = backoff_delay(self._outages, self._settings, outage.retry_after)
        self._paused_until = max(self._paused_until, now + delay)
        metrics.JOB_OUTCOMES.labels("deferred").inc()
        log.warning(
            "captioner unavailable (%s); pausing for %.1fs",
            outage.reason,
            delay,
            extra={"object_id": job.object_id, "attempt": job.attempts},
        )
        await self._queue.retry(job, outage.reason, delay, refund=True)

    async def _retry(self, job: Job, reason: str, hint: float | None) -> None:
        if job.attempts >= self._settings.max_attempts:
            await self._fail(job, f"gave up after {job.attempts} attempts: {reason}")
            return
        delay = backoff_delay(job.attempts, self._settings, hint)
        metrics.JOB_OUTCOMES.labels("retried").inc()
        log.info(
            "retrying %s/%s in %.1fs: %s",
            job.bucket_id,
            job.name,
            delay,
            reason,
            extra={"object_id": job.object_id},
        )
        await self._queue.retry(job, reason, delay)

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming; let in-flight jobs finish within the grace period, release the rest."""
        self._stopping.set()
        self._wake.set()
        if self._claiming is not None and not self._claiming.done():
            await asyncio.wait([self._claiming], timeout=grace_seconds)  # its jobs get released
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=grace_seconds)
        leftovers = dict(self._in_flight)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await self._release(list(leftovers.values()))

    async def _release(self, jobs: list[Job]) -> None:
        """Give leased jobs back at once, their attempt refunded (not their fault)."""
        for job in jobs:
            try:
                await self._queue.retry(job, None, 0, refund=True)
            except Exception as exc:  # its lease will expire and another worker takes it
                log.warning("could not release %s: %s", job.object_id, exc)


class Sweeper:
    """Runs the reconciliation sweep (migration 000003, caption_jobs_sweep): cheap when no
    pass is running, one slice every WORKER_POLL_INTERVAL while one is."""

    def __init__(self, queue: JobQueue, worker: Worker, settings: Settings) -> None:
        self._queue = queue
        self._worker = worker
        self._settings = settings

    async def sweep_once(self) -> list[SweepSlice]:
        """One sweep call: a slice of each running pass; starts the periodic full pass."""
        full_every = self._settings.sweep_full_interval or None
        slices = await self._queue.sweep(self._settings.sweep_batch, full_every=full_every)
        queued = sum(piece.queued for piece in slices)
        if queued:
            log.info("sweep queued %d images without a caption", queued)
            self._worker.wake()
        return slices

    async def run(self) -> None:
        """Sweep now and every SWEEP_INTERVAL; while a pass is running, go on sooner."""
        while True:
            try:
                slices = await self.sweep_once()
            except Exception as exc:
                log.warning("sweep failed (%s: %s)", type(exc).__name__, exc)
                slices = []
            passing = any(piece.passing for piece in slices)
            await asyncio.sleep(
                self._settings.worker_poll_interval if passing else self._settings.sweep_interval
            )


@asynccontextmanager
async def running_worker(
    supabase: AsyncClient, queue: JobQueue, settings: Settings
) -> AsyncIterator[Worker]:
    """A worker captioning in this process until the block ends (the CLI's backfill and
    recaption). Raises ConfigurationError at once when the model has no route."""
    captioner = await open_captioner(settings)
    fetcher = ObjectFetcher.from_settings(supabase, settings)
    worker = Worker(queue, fetcher, captioner, settings)
    running = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await captioner.aclose()
        await fetcher.aclose()
