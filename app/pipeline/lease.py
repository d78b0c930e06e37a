"""A job's lease, kept while its work runs: extended every LEASE_SECONDS / 3 (migration
20261126063639, caption_jobs_extend), so only a crashed or stuck worker's job is claimed
again; once the lease is lost, the job's work stops."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from app.core import metrics
from app.pipeline.jobs import Job, JobQueue

log = logging.getLogger(__name__)
SETTLING_SECONDS = 5.0  # at most (and at most a sixth of the lease): a refusal's grace, for
# the job's own settling that may have ended its lease while the extension was in flight


class LeaseKeeper:
    """Extends each job's lease while its work runs; cancels the work once it is lost."""

    def __init__(self, queue: JobQueue, lease_seconds: int) -> None:
        self._queue = queue
        self._lease_seconds = lease_seconds

    async def hold(self, job: Job, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` with the job's lease extended meanwhile. False: the lease was lost
        (another holder has the job, or it ended) and the work was cancelled."""
        running = asyncio.ensure_future(work)
        lost = asyncio.Event()
        beat = asyncio.create_task(self._beat(job, running, lost))
        try:
            await running
        except asyncio.CancelledError:
            if not lost.is_set():  # cancelled from outside (shutdown): not ours to swallow
                raise
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        return not lost.is_set()

    async def _beat(self, job: Job, work: asyncio.Future[None], lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                held = await self._queue.extend(job, self._lease_seconds)
            except Exception as exc:  # the lease still runs: try again at the next beat
                log.warning(
                    "could not extend the lease of %s/%s (%s: %s)",
                    job.bucket_id,
                    job.name,
                    type(exc).__name__,
                    exc,
                    extra={"object_id": job.object_id, "attempt": job.attempts},
                )
                continue
            if held:
                continue
            grace = min(SETTLING_SECONDS, self._lease_seconds / 6)
            done, _ = await asyncio.wait({work}, timeout=grace)
            if not done:  # not ended by its own settling meanwhile
                lost.set()
                work.cancel()
                metrics.JOB_OUTCOMES.labels("discarded").inc()
                log.warning(
                    "lost the lease of %s/%s (its lease ran out and it was claimed again, or "
                    "it was requeued): its work stops",
                    job.bucket_id,
                    job.name,
                    extra={"object_id": job.object_id, "attempt": job.attempts},
                )
            return
