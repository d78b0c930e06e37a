"""The per-job bound across replicas (README "When captioning fails"): the pauses a job was
given back in are counted on its row (captioner.jobs.pauses, migration 20261126061643) by
the call that gives it back, so however many workers take turns with a job, it costs at
most MAX_ATTEMPTS model calls given back in pauses (and MAX_ATTEMPTS counted ones). Real
PostgreSQL, the Hugging Face stand-in answering 503 for one image while the probe captions."""

import asyncio

import httpx
import pytest

from app.captioning import open_captioner
from app.core.config import Settings
from app.main import connect_supabase
from app.pipeline.jobs import Job, JobQueue
from app.pipeline.storage import ObjectFetcher
from app.pipeline.worker import Worker
from tests.harness.hf_stub import Loading
from tests.harness.supabase_stub import create_bucket
from tests.integration.test_bad_captioners import calls_for, upload_sized
from tests.integration.test_queue_guarantees import service_role
from tests.integration.test_scale import add_objects
from tests.support import job_of, query, service_settings, wait_for_caption, wait_for_job_state

MAX_ATTEMPTS = 3
STUCK = (65, 48)  # the image the model is "loading" for, for ever
GIVE_UP = "gave up after {} pauses without progress: captioner loading or unavailable (HTTP 503"


@pytest.fixture
def bucket(supabase) -> None:
    create_bucket(supabase.db_url, "images")


async def lease(queue: JobQueue, settings: Settings, model: str) -> Job:
    """The next due job, once it is due (given back until the giver's next probe)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (jobs := await queue.claim(1, settings.lease_seconds, MAX_ATTEMPTS, model)):
        assert loop.time() < deadline, "the job never came due again"
        await asyncio.sleep(0.02)
    return jobs[0]


async def take_turns(settings: Settings, object_id: str, db_url: str) -> list[str]:
    """Two workers (two replicas: each its own health and settler) lease the job in turn
    and run it to its end, until it ends; returns who took each turn."""
    turns: list[str] = []
    async with httpx.AsyncClient() as http:
        client = await connect_supabase(settings, http)
        fetcher = ObjectFetcher.from_settings(client, settings)
        replicas = []
        for name in ("replica-a", "replica-b"):
            captioner = await open_captioner(settings)
            queue = JobQueue(client, name)
            replicas.append((Worker(queue, fetcher, captioner, settings), queue, captioner))
        await replicas[0][1].configure(settings)
        await replicas[0][1].sweep(10)
        never = asyncio.Event()
        try:
            while job_of(db_url, object_id)["state"] not in ("done", "failed"):  # type: ignore[index]
                assert len(turns) <= 4 * MAX_ATTEMPTS, f"the job never ended: {turns}"
                worker, queue, _ = replicas[len(turns) % 2]
                while worker.health.problem is not None:  # paused by its last turn
                    await worker.health.recover(never)
                await worker.process(await lease(queue, settings, worker.model))
                turns.append(queue.worker_id)
        finally:
            for worker, _, captioner in replicas:
                await worker.stop(1.0)
                await captioner.aclose()
            await fetcher.aclose()
    return turns


def test_two_workers_taking_turns_give_a_job_back_max_attempts_times_in_all(supabase, hf, bucket):
    hf.by_size[STUCK] = Loading(estimated_time=0.01)
    settings = service_settings(supabase, hf, max_attempts=MAX_ATTEMPTS)
    object_id = upload_sized(supabase, STUCK[0], "stuck")

    turns = asyncio.run(take_turns(settings, object_id, supabase.db_url))

    job = job_of(supabase.db_url, object_id)
    assert job is not None and job["state"] == "failed", job
    assert job["last_error"].startswith(GIVE_UP.format(MAX_ATTEMPTS))
    # counted per process (before 20261126061643), each replica gave it back MAX_ATTEMPTS
    # times: 2 x MAX_ATTEMPTS calls
    assert calls_for(hf, STUCK) == MAX_ATTEMPTS
    assert turns == ["replica-a", "replica-b"] * 2  # the fourth turn ended it, no call
    assert job["pauses"] == MAX_ATTEMPTS and job["attempts"] == 1


def test_two_service_replicas_keep_the_bound_for_every_job(service_factory, supabase, hf, pgnet):
    """Two running services (README: run as many replicas as you like) share the queue: each
    stuck image is called at most MAX_ATTEMPTS times in all and ends failed; the others are
    captioned."""
    create_bucket(supabase.db_url, "images")
    max_attempts = 2
    for _ in range(2):
        service_factory(max_attempts=max_attempts)
    stuck_sizes = [(65 + n, 48) for n in range(6)]
    for size in stuck_sizes:
        hf.by_size[size] = Loading(estimated_time=0.01)
    stuck = [upload_sized(supabase, width, "stuck") for width, _ in stuck_sizes]
    good = [upload_sized(supabase, width) for width in (61, 62)]

    jobs = [wait_for_job_state(supabase.db_url, oid, "failed", timeout=30) for oid in stuck]

    assert all(job["last_error"].startswith(GIVE_UP.format(max_attempts)) for job in jobs)
    assert [calls_for(hf, size) for size in stuck_sizes] == [max_attempts] * len(stuck)
    for object_id in good:
        wait_for_caption(supabase.db_url, object_id)


NEW_CLAIM = "select * from caption_jobs_claim(%s, 1, 60, %s, null, %s)"
GIVE_BACK = "select caption_jobs_retry(%s, %s, %s, 0, true, true)"
RELEASE = "select caption_jobs_retry(%s, %s, null, 0, true)"  # a release, an older give-back


def test_the_give_back_counts_a_pause_on_the_row_and_the_claim_says_when_there_were_enough(
    db_url,
):
    create_bucket(db_url, "images")
    (object_id,) = add_objects(db_url, "images", 1)
    seen = []
    with service_role(db_url) as conn:
        for n in range(MAX_ATTEMPTS):
            (job,) = conn.execute(NEW_CLAIM, ("a", MAX_ATTEMPTS, MAX_ATTEMPTS)).fetchall()
            seen.append(job["no_progress"])
            conn.execute(RELEASE, (object_id, job["lease_token"]))  # not counted
            (job,) = conn.execute(NEW_CLAIM, ("b", MAX_ATTEMPTS, MAX_ATTEMPTS)).fetchall()
            conn.execute(GIVE_BACK, (object_id, job["lease_token"], f"503, round {n}"))
        (job,) = conn.execute(NEW_CLAIM, ("a", MAX_ATTEMPTS, MAX_ATTEMPTS)).fetchall()
        conn.commit()

    assert seen == [None] * MAX_ATTEMPTS
    assert job["no_progress"] == (
        f"gave up after {MAX_ATTEMPTS} pauses without progress: 503, round {MAX_ATTEMPTS - 1}"
    )
    assert job["attempts"] == 1  # every give-back was refunded
    assert job_of(db_url, object_id)["pauses"] == MAX_ATTEMPTS  # type: ignore[index]


def test_an_older_service_claims_as_before(db_url):
    """Rolling deploys: the claim and the retry an older service calls (without p_max_pauses
    and p_pause) answer as they did and count no pause."""
    create_bucket(db_url, "images")
    (object_id,) = add_objects(db_url, "images", 1)
    query(db_url, "update captioner.jobs set pauses = 9")  # counted by newer replicas
    with service_role(db_url) as conn:
        (job,) = conn.execute(
            "select * from caption_jobs_claim(%s, 1, 60, 3, null)", ("old",)
        ).fetchall()
        retried = conn.execute(RELEASE, (object_id, job["lease_token"])).fetchone()
        conn.commit()

    assert set(job) == {
        "object_id",
        "version",
        "bucket_id",
        "name",
        "mimetype",
        "size",
        "attempts",
        "lease_token",
        "fingerprint",
        "reused_from",
    }
    assert retried == {"caption_jobs_retry": True}
    assert job_of(db_url, object_id)["pauses"] == 9  # type: ignore[index]


@pytest.mark.parametrize("how", ["new version", "requeued after it failed"])
def test_a_job_queued_again_starts_without_pauses(db_url, how):
    create_bucket(db_url, "images")
    (object_id,) = add_objects(db_url, "images", 1)
    with service_role(db_url) as conn:
        (job,) = conn.execute(NEW_CLAIM, ("a", MAX_ATTEMPTS, MAX_ATTEMPTS)).fetchall()
        conn.execute(GIVE_BACK, (object_id, job["lease_token"], "503"))
        (job,) = conn.execute(NEW_CLAIM, ("a", MAX_ATTEMPTS, MAX_ATTEMPTS)).fetchall()
        conn.commit()
    paused = job_of(db_url, object_id)["pauses"]  # type: ignore[index]
    if how == "new version":  # storage-api writes a new version: the trigger queues it
        query(db_url, "update storage.objects set version = 'v2' where id = %s", object_id)
    else:
        query(db_url, "select caption_jobs_fail(%s, %s, 'no')", object_id, job["lease_token"])
        query(db_url, "select caption_jobs_requeue(array[%s]::uuid[])", object_id)

    again = job_of(db_url, object_id)

    assert paused == 1
    assert again is not None and (again["state"], again["pauses"]) == ("pending", 0)
