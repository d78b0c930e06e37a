"""The lease heartbeat (app/pipeline/lease.py, migration 20261126063639): a job's lease is
extended every LEASE_SECONDS / 3 while its work runs, so a job slower than LEASE_SECONDS is
captioned once, by its one holder; once the lease is lost, the work stops. Real PostgreSQL,
the Hugging Face stand-in slower than the lease."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from app.core.config import Settings
from app.main import connect_supabase
from app.pipeline.jobs import JobQueue
from app.pipeline.worker import Worker, running_worker
from tests.harness.hf_stub import Hang
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import eventually
from tests.integration.test_bad_captioners import calls_for, upload_sized
from tests.integration.test_queue_guarantees import service_role
from tests.integration.test_scale import add_objects
from tests.support import caption_of, job_of, query, service_settings

LEASE = 5  # LEASE_SECONDS' least value: a beat every 5/3 s
SLOW = (66, 48)  # the image the model is slow for
LANGUAGES = ["en", "de"]  # one description per language: 2 model calls for the job


@pytest.fixture
def bucket(supabase) -> None:
    create_bucket(supabase.db_url, "images")


def lease_settings(supabase, hf) -> Settings:
    return service_settings(
        supabase, hf, lease_seconds=LEASE, caption_languages=LANGUAGES, worker_poll_interval=0.1
    )


@asynccontextmanager
async def worker_on(settings: Settings) -> AsyncIterator[Worker]:
    """A worker claiming and running jobs (the pending ones queued by a sweep first)."""
    async with httpx.AsyncClient() as http:
        client = await connect_supabase(settings, http)
        queue = JobQueue(client, "worker-a")
        await queue.configure(settings)
        await queue.sweep(10)
        async with running_worker(client, queue, settings) as worker:
            yield worker


def job_row(db_url: str, object_id: str) -> dict[str, Any]:
    job = job_of(db_url, object_id)
    assert job is not None
    return job


def test_a_job_slower_than_its_lease_is_captioned_once_by_its_one_holder(
    supabase, hf, bucket, caplog
):
    hf.by_size[SLOW] = Hang(seconds=0.65 * LEASE)  # 2 languages: 1.3 x LEASE_SECONDS in all
    # the first extension fails (PostgREST answers 503): the next beat extends it in time
    supabase.faults.add("rpc:caption_jobs_extend", status=503, times=1)
    object_id = upload_sized(supabase, SLOW[0], "slow")
    db = supabase.db_url
    leases: list[datetime] = []

    async def run() -> None:
        async with worker_on(lease_settings(supabase, hf)):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4 * LEASE
            while (job := await asyncio.to_thread(job_row, db, object_id))["state"] in (
                "pending",
                "running",
            ):
                assert loop.time() < deadline, f"the job never ended: {job}"
                if job["lease_until"] is not None and job["lease_until"] not in leases:
                    leases.append(job["lease_until"])
                await asyncio.sleep(0.05)

    asyncio.run(run())

    job = job_of(db, object_id)
    assert job is not None and (job["state"], job["attempts"]) == ("done", 1), job
    assert calls_for(hf, SLOW) == len(LANGUAGES)  # one call per language, none again
    caption = caption_of(db, object_id)
    assert caption is not None and caption["caption"].startswith("a 66x48 picture")
    assert len(leases) >= 2 and (leases[-1] - leases[0]).total_seconds() >= LEASE / 3, leases
    assert caplog.text.count("could not extend the lease of images/slow-66.png") == 1


def test_a_lost_lease_stops_the_jobs_work(supabase, hf, bucket, caplog):
    hf.by_size[SLOW] = Hang(seconds=4 * LEASE)
    object_id = upload_sized(supabase, SLOW[0], "slow")
    db = supabase.db_url
    caplog.set_level(logging.INFO, logger="app")

    async def run() -> float:
        async with worker_on(lease_settings(supabase, hf)) as worker:
            await eventually(lambda: worker.in_flight == 1, 5, message="the job was never run")
            # another holder takes the job (its lease ran out and it was claimed again)
            await asyncio.to_thread(query, db, TAKE_AWAY, object_id)
            taken = asyncio.get_running_loop().time()
            await eventually(lambda: worker.in_flight == 0, LEASE, message="the work went on")
            return asyncio.get_running_loop().time() - taken

    stopped_after = asyncio.run(run())

    assert stopped_after <= LEASE / 3 + 1.0  # at the next beat, not when the model answers
    job = job_of(db, object_id)
    assert job is not None and (job["state"], job["attempts"]) == ("running", 1), job
    assert job["lease_token"] == OTHER  # the first holder wrote nothing after losing it
    assert caplog.text.count("lost the lease of images/slow-66.png") == 1
    assert caption_of(db, object_id) is None


OTHER = uuid.UUID("00000000-0000-4000-8000-000000000001")
TAKE_AWAY = (
    f"update captioner.jobs set lease_token = '{OTHER}', lease_until = now() + interval '1 hour'"
    " where object_id = %s"
)


NEW_CLAIM = "select * from caption_jobs_claim('a', 1, 60, 3, null, 3)"
EXTEND = "select caption_jobs_extend(%s, %s, %s) as held"
LEASE_LEFT = (
    "select extract(epoch from lease_until - now()) as s from captioner.jobs where object_id = %s"
)


def test_the_extension_holds_only_while_the_token_holds_the_running_job(db_url):
    create_bucket(db_url, "images")
    (object_id,) = add_objects(db_url, "images", 1)
    with service_role(db_url) as conn:
        (job,) = conn.execute(NEW_CLAIM).fetchall()
        token = job["lease_token"]
        held = conn.execute(EXTEND, (object_id, token, 600)).fetchone()
        conn.commit()
        (lease_left,) = query(db_url, LEASE_LEFT, object_id)
        stranger = conn.execute(EXTEND, (object_id, uuid.uuid4(), 600)).fetchone()
        conn.execute("select caption_jobs_retry(%s, %s, null, 0)", (object_id, token))
        ended = conn.execute(EXTEND, (object_id, token, 600)).fetchone()
        conn.commit()

    assert held == {"held": True} and 590 < lease_left["s"] <= 600  # type: ignore[index]
    assert stranger == {"held": False} and ended == {"held": False}
    for role in ("anon", "authenticated"):
        with psycopg.connect(db_url) as conn:
            conn.execute(f"set role {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(EXTEND, (object_id, token, 600))
