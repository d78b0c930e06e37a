"""The worker: lease jobs and run them with bounded concurrency, pausing while the captioner
is away or misconfigured (app/pipeline/health.py); each job's lease is kept while it runs
(app/pipeline/lease.py); each job's end is app/pipeline/settle.py."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from supabase import AsyncClient

from app.captioning import Captioner, open_captioner
from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.pipeline.backoff import backoff_delay
from app.pipeline.caption_job import JobCaptioner, SameBytes
from app.pipeline.health import CaptionerHealth
from app.pipeline.jobs import Job, JobQueue, SweepSlice
from app.pipeline.lease import LeaseKeeper
from app.pipeline.settle import Settler
from app.pipeline.storage import ObjectFetcher

__all__ = ["Sweeper", "Worker", "backoff_delay", "running_worker"]
log = logging.getLogger(__name__)


class Worker:
    """Claims due jobs while the captioner works, runs each to its end, and stops cleanly."""

    def __init__(
        self, queue: JobQueue, fetcher: ObjectFetcher, captioner: Captioner, settings: Settings
    ) -> None:
        self._queue = queue
        self._settings = settings
        self.model = captioner.model  # the model the worker's captions are recorded with
        self.health = CaptionerHealth(captioner, settings)
        self._settler = Settler(queue, self.health, settings, captioner.model)
        self._jobs = JobCaptioner(queue, fetcher, captioner, settings)
        self._same_bytes = SameBytes()
        self._leases = LeaseKeeper(queue, settings.lease_seconds)
        self._max_in_flight = 2 * settings.worker_concurrency
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Job] = {}
        self._claiming: asyncio.Future[int] | None = None

    def wake(self) -> None:
        """Look for work now (a webhook arrived) rather than at the next poll."""
        self._wake.set()

    @property
    def paused(self) -> ConfigurationError | None:
        """The configuration problem claiming is paused for, if any (shown by /readyz)."""
        return self.health.paused

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        """Claim and start jobs until stop() is called."""
        failures = 0
        while not self._stopping.is_set():
            if self.health.problem is not None:
                await self.health.recover(self._stopping)
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
            free, self._settings.lease_seconds, self._settings.max_attempts, self.model
        )
        jobs = []
        for job in claimed:
            if job.reused_from is None:
                jobs.append(job)
            else:  # the database finished it with the caption of the same bytes
                self._settler.reused(job, job.reused_from)
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

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def process(self, job: Job) -> None:
        """Run one leased job to its end: done, retry later, given back, or failed; or
        until its lease is lost (another holder has it)."""
        log.info(
            "captioning %s/%s (attempt %d)",
            job.bucket_id,
            job.name,
            job.attempts,
            extra={"object_id": job.object_id, "attempt": job.attempts},
        )
        try:
            await self._leases.hold(job, self._settle(job))
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
        async with self._same_bytes.turn(job) as after_same_bytes:
            await self._settler.settle(job, lambda: self._jobs.caption(job, after_same_bytes))

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
        await self._jobs.aclose()
        await self.health.aclose()

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
