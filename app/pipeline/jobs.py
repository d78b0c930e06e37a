"""The durable job queue: thin async wrappers over the rpc functions in migrations/."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postgrest.exceptions import APIError
from supabase import AsyncClient

from app.core.config import BucketPlan, Settings
from app.core.images import MIMETYPES


def content_fingerprint(data: bytes) -> str:
    """The fingerprint of downloaded bytes, in the form the database derives from storage's
    eTag (an MD5) and size (captioner.fingerprint in migration 000006): they match."""
    return f"md5:{hashlib.md5(data, usedforsecurity=False).hexdigest()}:{len(data)}"


@dataclass(frozen=True)
class Job:
    """A leased job: caption `bucket_id/name` at `version`, holding `lease_token`."""

    object_id: str
    version: str | None
    bucket_id: str
    name: str
    mimetype: str | None
    size: int | None
    attempts: int
    lease_token: str
    fingerprint: str | None = None  # the content's, when storage's metadata tells it
    reused_from: str | None = None  # set: finished at claim with this object's caption
    no_progress: str | None = None  # set: given back in MAX_ATTEMPTS pauses; why it fails


@dataclass(frozen=True)
class QueueStats:
    """Jobs in one state (kept counters); oldest_seconds: pending only, the oldest due wait."""

    state: str
    jobs: int
    oldest_seconds: float


@dataclass(frozen=True)
class RecaptionProgress:
    """Captions under a bucket/prefix: all, those done (by the target model, described in
    every language asked for), the others queued or failed."""

    captions: int
    done: int
    queued: int
    failed: int


@dataclass(frozen=True)
class SweepSlice:
    """One sweep call's work on one bucket's reconciliation pass (`passing`: it goes on), or
    with no bucket, on the uploads the trigger noted as missed."""

    bucket_id: str | None
    examined: int
    queued: int
    skipped: int
    passing: bool


@dataclass(frozen=True)
class SweepPass:
    """A bucket's reconciliation pass: running (resuming after `after_name`) or finished."""

    bucket_id: str
    running: bool
    after_name: str | None
    started_at: str
    finished_at: str | None
    examined: int
    queued: int


class JobQueue:
    """All job state lives in Postgres; this object holds no jobs, only a client."""

    def __init__(self, client: AsyncClient, worker_id: str) -> None:
        self._client = client
        self.worker_id = worker_id

    async def _rpc(self, fn: str, **params: Any) -> Any:
        response = await self._client.rpc(fn, params).execute()
        return response.data

    async def _leased(self, fn: str, job: Job, **params: Any) -> Any:
        """A queue function on a leased job (it acts only while the job's lease holds)."""
        return await self._rpc(
            fn, p_object_id=job.object_id, p_lease_token=job.lease_token, **params
        )

    async def configure(self, settings: Settings) -> None:
        """Tell the database trigger which buckets to watch, which formats the worker decodes
        and where to send its webhook (and with which secrets): the service is the one
        place to set them."""
        webhook_on = settings.public_webhook_url is not None
        signing = settings.webhook_signing_secret
        await self._rpc(
            "caption_configure",
            p_buckets=settings.caption_buckets,
            p_webhook_url=settings.public_webhook_url,
            p_webhook_secret=settings.webhook_secret[0] if webhook_on else None,
            p_signing_secret=signing[0] if webhook_on and signing else None,
            p_mimetypes=list(MIMETYPES),
            p_describe={
                bucket: plan.model_dump(mode="json")
                for bucket, plan in settings.bucket_plans().items()
            },
        )

    async def wake_up_available(self) -> bool:
        """Whether the database can send the trigger's wake-up (pg_net is installed)."""
        report = await self._rpc("caption_doctor", p_signatures={}, p_buckets=[])
        return bool(report["pg_net"])

    async def enqueue(self, object_ids: list[str]) -> list[str]:
        """For each object: 'queued', 'duplicate' or 'ignored: <reason>' (the database decides)."""
        rows = await self._rpc("caption_jobs_enqueue", p_object_ids=object_ids)
        return [row["outcome"] for row in rows]

    async def claim(
        self, limit: int, lease_seconds: int, max_attempts: int, model: str | None = None
    ) -> list[Job]:
        """Lease due jobs. With `model`, those whose bytes that model already captioned come
        back finished (`reused_from` set): the same bytes are captioned once. A job given
        back in `max_attempts` pauses (counted on its row, by every replica) comes with
        `no_progress` set."""
        rows = await self._rpc(
            "caption_jobs_claim",
            p_worker=self.worker_id,
            p_limit=limit,
            p_lease_seconds=lease_seconds,
            p_max_attempts=max_attempts,
            p_model=model,
            p_max_pauses=max_attempts,
        )
        return [Job(**row) for row in rows or []]

    async def reuse(self, job: Job, fingerprint: str, model: str) -> str | None:
        """Finish the job with the caption `model` already made for these bytes, if any;
        returns the object that caption was first made for."""
        return await self._leased(
            "caption_jobs_reuse", job, p_fingerprint=fingerprint, p_model=model
        )

    async def complete(
        self,
        job: Job,
        caption: str,
        model: str,
        fingerprint: str | None = None,
        caption_ms: int | None = None,
        descriptions: list[dict[str, Any]] | None = None,
        kept: tuple[str, ...] = (),
    ) -> bool:
        """Store the caption, its descriptions (one per language, the first language's
        first) and their provenance, and finish the job; False if the lease was lost
        meanwhile. A field a person wrote stays while it describes the same bytes. `kept`:
        languages not described again (`described`), their rows and image_caption as they
        are where it carries one of them."""
        extra = {"p_kept": list(kept)} if kept else {}  # an older schema takes no p_kept
        return bool(
            await self._leased(
                "caption_jobs_complete",
                job,
                p_caption=caption,
                p_model=model,
                p_fingerprint=fingerprint,
                p_caption_ms=caption_ms,
                p_descriptions=descriptions,
                **extra,
            )
        )

    async def described(self, job: Job, model: str, plan: BucketPlan) -> tuple[str, ...]:
        """The plan's languages a job queued by `recaption` may keep: the model already
        described this version in them (none for any other job, or an older schema)."""
        try:
            languages = await self._leased(
                "caption_jobs_described",
                job,
                p_model=model,
                p_languages=list(plan.languages),
                p_fields=list(plan.fields),
                p_prompt=plan.prompt,
            )
        except APIError as exc:
            if exc.code == "PGRST202":  # the function is not in this schema yet
                return ()
            raise
        return tuple(languages or ())

    async def extend(self, job: Job, lease_seconds: int) -> bool:
        """Hold the job for `lease_seconds` more from now; False if the lease was lost (the
        job ended, or another claim took it after the lease ran out)."""
        return bool(await self._leased("caption_jobs_extend", job, p_lease_seconds=lease_seconds))

    async def retry(
        self,
        job: Job,
        error: str | None,
        delay: float,
        refund: bool = False,
        pause: bool = False,
    ) -> bool:
        """Back to pending after `delay`; `refund`: the attempt not counted; `pause`: one
        more pause counted on the job's row (MAX_ATTEMPTS of them: no progress)."""
        return bool(
            await self._leased(
                "caption_jobs_retry",
                job,
                p_error=error,
                p_delay_seconds=delay,
                p_refund=refund,
                p_pause=pause,
            )
        )

    async def give_back(self, job: Job, error: str, delay: float) -> bool:
        """Back to pending after `delay` while the captioner is at fault: refunded, and one
        more pause counted."""
        return await self.retry(job, error, delay, refund=True, pause=True)

    async def fail(self, job: Job, error: str) -> bool:
        return bool(await self._leased("caption_jobs_fail", job, p_error=error))

    async def sweep(
        self, limit: int, buckets: list[str] | None = None, full_every: float | None = None
    ) -> list[SweepSlice]:
        """One slice (up to `limit` objects) of each running reconciliation pass of `buckets`
        (default: the watched ones), queueing images without a caption for their current
        version; starts a pass where none ran for `full_every` seconds. No rows: no pass is
        running, or another replica is sweeping."""
        rows = await self._rpc(
            "caption_jobs_sweep", p_limit=limit, p_buckets=buckets, p_full_every_seconds=full_every
        )
        return [SweepSlice(**row) for row in rows or []]

    async def sweep_start(self, bucket: str) -> None:
        """Start a reconciliation pass over `bucket` (or keep the running one going)."""
        await self._rpc("caption_jobs_sweep_start", p_bucket=bucket)

    async def bucket_size(self, bucket: str) -> int:
        """Objects in `bucket`: a count that grows with the bucket (once per backfill)."""
        return int(await self._rpc("caption_jobs_bucket_size", p_bucket=bucket) or 0)

    async def sweep_passes(self) -> list[SweepPass]:
        return [SweepPass(**row) for row in await self._rpc("caption_jobs_sweep_passes") or []]

    async def requeue_failed(self, limit: int) -> int:
        return int(await self._rpc("caption_jobs_requeue_failed", p_limit=limit) or 0)

    async def stats(self, bucket: str | None = None) -> list[QueueStats]:
        """Jobs per state (every state, in the enum's order), of all buckets or one."""
        rows = await self._rpc("caption_jobs_stats", p_bucket=bucket)
        return [QueueStats(**row) for row in rows or []]

    async def failures(self, limit: int = 10) -> list[dict[str, Any]]:
        return list(await self._rpc("caption_jobs_failures", p_limit=limit) or [])

    async def requeue(self, object_ids: list[str]) -> int:
        """Queue these objects again (failed or captioned alike); their captions stay
        until new ones are written. Returns how many were queued."""
        return int(await self._rpc("caption_jobs_requeue", p_object_ids=object_ids) or 0)

    async def recaption(
        self,
        bucket: str,
        prefix: str,
        model: str,
        limit: int,
        since: datetime | None = None,
        languages: Sequence[str] | None = None,
    ) -> int:
        """Queue up to `limit` objects under bucket/prefix whose caption is not by `model` or
        that lack a description by it in one of `languages`, leaving out those whose job
        ended since `since` (this run's start)."""
        return int(
            await self._rpc(
                "caption_jobs_recaption",
                p_bucket=bucket,
                p_prefix=prefix,
                p_model=model,
                p_limit=limit,
                p_since=since.isoformat() if since else None,
                p_languages=list(languages) if languages is not None else None,
            )
            or 0
        )

    async def recaption_progress(
        self, bucket: str, prefix: str, model: str, languages: Sequence[str] | None = None
    ) -> RecaptionProgress:
        rows = await self._rpc(
            "caption_recaption_progress",
            p_bucket=bucket,
            p_prefix=prefix,
            p_model=model,
            p_languages=list(languages) if languages is not None else None,
        )
        return RecaptionProgress(**{key: int(value) for key, value in rows[0].items()})

    async def descriptions(self, object_ids: list[str]) -> list[dict[str, Any]]:
        """The descriptions of these objects (every language), as stored."""
        return list(await self._rpc("caption_descriptions", p_ids=object_ids) or [])

    async def description_history(self, object_id: str) -> list[dict[str, Any]]:
        """A person's text that new bytes replaced, newest first."""
        return list(await self._rpc("caption_description_history", p_id=object_id) or [])

    async def edit_description(
        self, object_id: str, language: str, fields: dict[str, Any], editor: str
    ) -> dict[str, Any]:
        """Write these fields as `editor`'s (a person's): re-captions keep them."""
        rows = await self._rpc(
            "caption_description_edit",
            p_id=object_id,
            p_language=language,
            p_fields=fields,
            p_editor=editor,
        )
        return dict(rows[0])

    async def recent(self, state: str, limit: int = 10) -> list[dict[str, Any]]:
        """The newest jobs in `state` with their reason (skipped: why it is not captioned)."""
        return list(await self._rpc("caption_jobs_recent", p_state=state, p_limit=limit) or [])

    async def bucket_states(self) -> dict[str, dict[str, int]]:
        """{bucket: {state: jobs}}, every state included."""
        counts: dict[str, dict[str, int]] = {}
        for row in await self._rpc("caption_jobs_bucket_states") or []:
            counts.setdefault(row["bucket_id"], {})[row["state"]] = int(row["jobs"])
        return counts
