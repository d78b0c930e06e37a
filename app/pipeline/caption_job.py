"""One leased job's work: its bytes (or a caption this model made of the same bytes), then
the captioner's descriptions, one per language of the job's bucket (a job `recaption`
queued: only the languages the model has not described these bytes in)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.captioning import Captioner, open_captioner, prepare
from app.core import metrics
from app.core.bounded import too_large
from app.core.config import BucketPlan, Settings
from app.pipeline.describing import describe_all, stored_form
from app.pipeline.jobs import Job, JobQueue, content_fingerprint
from app.pipeline.settle import Captioned, CaptionerFailed
from app.pipeline.storage import ObjectFetcher


class JobCaptioner:
    """Downloads a job's image and captions it, at most WORKER_CONCURRENCY calls at once."""

    def __init__(
        self, queue: JobQueue, fetcher: ObjectFetcher, captioner: Captioner, settings: Settings
    ) -> None:
        self._queue = queue
        self._fetcher = fetcher
        self._captioner = captioner
        self._settings = settings
        # The captioner sees at most WORKER_CONCURRENCY images at once; as many more jobs are
        # fetched and prepared meanwhile, so a free captioner slot never waits on storage.
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        # captioners of the models CAPTION_BUCKET_SETTINGS names, opened on first use
        self._bucket_captioners: dict[str, Captioner] = {}
        self._opening = asyncio.Lock()

    async def caption(self, job: Job, after_same_bytes: bool = False) -> Captioned:
        """Download and caption the job's image, unless its bytes (hashed here when storage's
        metadata did not tell them) already have a caption by this model. A failure of the
        captioner's call is raised as CaptionerFailed."""
        limit = self._settings.max_image_bytes
        if job.size is not None and job.size > limit:
            raise too_large(f"{job.size} bytes", limit)
        # a job with these bytes just settled here: its caption may serve this one too
        known = job.fingerprint
        if after_same_bytes and known and (reused := await self._reuse(job, known)):
            return reused
        data = await self._fetcher.fetch(job.bucket_id, job.name)
        metrics.BYTES_DOWNLOADED.inc(len(data))
        fingerprint = job.fingerprint or content_fingerprint(data)
        if job.fingerprint is None and (reused := await self._reuse(job, fingerprint)):
            return reused
        plan = self._settings.bucket_plan(job.bucket_id)
        captioner = await self._captioner_for(plan.model) if plan.model else self._captioner
        kept = await self._kept(job, plan)
        asked = plan.model_copy(
            update={"languages": tuple(lang for lang in plan.languages if lang not in kept)}
        )
        image = await prepare(data, self._settings, captioner)
        started = asyncio.get_running_loop().time()
        try:
            descriptions, elapsed_ms = await describe_all(
                image, captioner, self._settings, asked, self._slots
            )
        except Exception as exc:
            raise CaptionerFailed(exc, started) from exc
        caption = descriptions[0].caption or descriptions[0].alt_text
        stored = [stored_form(description, plan) for description in descriptions]
        return Captioned(
            caption, fingerprint, elapsed_ms, descriptions=stored, model=plan.model, kept=kept
        )

    async def _kept(self, job: Job, plan: BucketPlan) -> tuple[str, ...]:
        """The plan's languages a job `recaption` queued keeps, its model having described
        these bytes in them (asked only where the plan has several); none kept where none is
        missing (described meanwhile, or a Re-caption): all again."""
        if len(plan.languages) < 2:
            return ()
        kept = await self._queue.described(job, plan.model or self._captioner.model, plan)
        return () if set(kept) >= set(plan.languages) else kept

    async def _captioner_for(self, model: str) -> Captioner:
        """The service's captioner, or the one of a bucket's own model (opened once)."""
        if model == self._captioner.model:
            return self._captioner
        async with self._opening:
            if model not in self._bucket_captioners:
                settings = self._settings.model_copy(
                    update={"caption_model": model, "local_model": None}
                )
                self._bucket_captioners[model] = await open_captioner(settings)
        return self._bucket_captioners[model]

    async def aclose(self) -> None:
        """Close the captioners of buckets' own models (the service's is the caller's)."""
        for captioner in self._bucket_captioners.values():
            await captioner.aclose()
        self._bucket_captioners.clear()

    async def _reuse(self, job: Job, fingerprint: str) -> Captioned | None:
        """Finish the job with a caption this model made of the same bytes, if there is one."""
        source = await self._queue.reuse(job, fingerprint, self._captioner.model)
        return None if source is None else Captioned(None, fingerprint, reused_from=source)


class SameBytes:
    """Content fingerprints this process is captioning: a job with the same bytes waits for
    the first to settle, then reuses its caption (the claim could not: it had none yet)."""

    def __init__(self) -> None:
        self._first: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def turn(self, job: Job) -> AsyncIterator[bool]:
        """Wait for the first job with these bytes, if any; yields whether there was one."""
        fingerprint = job.fingerprint
        first = self._first.get(fingerprint) if fingerprint else None
        if first is not None:
            await first.wait()
            yield True
            return
        if fingerprint:
            self._first[fingerprint] = asyncio.Event()
        try:
            yield False
        finally:
            if fingerprint:
                self._first.pop(fingerprint).set()
