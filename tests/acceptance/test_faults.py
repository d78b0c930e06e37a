"""Faults the service must survive: crashes, outages, lost/duplicated/reordered webhooks,
storage and database trouble, several replicas, graceful shutdown, and backfill.

Crash, replica and shutdown tests run the service as real subprocesses
(tests/service_process.py); the others use the in-thread service (faster)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.harness.hf_stub import COLOURS as HF_COLOURS
from tests.harness.hf_stub import Hang, HuggingFaceStandIn, Loading, RateLimited
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.service_process import service_processes
from tests.support import (
    TEST_SECRET,
    caption_of,
    job_of,
    make_image,
    query,
    storage_client,
    upload,
    wait_for_caption,
    wait_for_job_state,
)

# Colours the HF stand-in names reliably (its caption is "a WxH picture, mostly <colour>").
NAMED = "red green blue yellow orange purple black white cyan brown pink gray"
PALETTE = {name: HF_COLOURS[name] for name in NAMED.split()}
COLOURS = list(PALETTE)


class CountingHF(HuggingFaceStandIn):
    """The HF stand-in, also recording per request: start/end time, a digest of the image
    body (one digest per image, since the service's JPEG is deterministic) and how many
    requests were being served at once."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._count_lock = threading.Lock()

    async def _respond(self, request: Request, path: str, body: bytes) -> Response:
        entry: dict[str, Any] = {
            "start": time.time(),
            "digest": hashlib.sha1(body).hexdigest()[:16],
        }
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await super()._respond(request, path, body)
        finally:
            with self._count_lock:
                self.in_flight -= 1
        entry.update(end=time.time(), status=response.status_code)
        with self._count_lock:
            self.requests.append(entry)
        return response

    def by_image(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in sorted(self.requests, key=lambda e: e["start"]):
            grouped[entry["digest"]].append(entry)
        return grouped


@pytest.fixture
def hf():
    """Overrides the harness's `hf` (so service_factory uses it too)."""
    with CountingHF() as standin:
        yield standin


@pytest.fixture
def procs(supabase, hf, tmp_path):
    """`start(**env) -> ServiceProcess`: the service as a real subprocess."""
    create_bucket(supabase.db_url, "images")
    with service_processes(supabase, hf, tmp_path) as start:
        yield start


@pytest.fixture
def bucket(supabase):
    create_bucket(supabase.db_url, "images")


def jobs(db_url: str) -> list[dict[str, Any]]:
    return query(db_url, "select * from captioner.jobs order by created_at, object_id")


def states(db_url: str) -> Counter[str]:
    return Counter(str(job["state"]) for job in jobs(db_url))


def all_done(db_url: str, n: int) -> bool:
    return states(db_url) == Counter({"done": n})


def captions(db_url: str) -> dict[str, dict[str, Any]]:
    rows = query(db_url, "select * from public.image_caption")
    return {str(row["id"]): row for row in rows}


def current_version(db_url: str, object_id: str) -> str:
    return query(db_url, "select version from storage.objects where id=%s", object_id)[0]["version"]


def upload_colours(supabase, n: int, prefix: str = "img", first: int = 0) -> dict[str, str]:
    """n distinct images (colour and size differ; distinct from another call's when `first`
    follows on, or the same bytes would be captioned once); returns {object_id: colour}."""
    out = {}
    for i in range(first, first + n):
        colour = COLOURS[i % len(COLOURS)]
        data = make_image(PALETTE[colour], size=(64 + i, 48))
        out[upload(supabase, f"{prefix}/{i}-{colour}.png", data)] = colour
    return out


def assert_one_caption_each(db_url: str, expected: dict[str, str]) -> None:
    rows = captions(db_url)
    assert set(rows) == set(expected), "missing or extra caption rows"
    for object_id, colour in expected.items():
        assert f"mostly {colour}" in rows[object_id]["caption"], rows[object_id]
        assert rows[object_id]["object_version"] == current_version(db_url, object_id)
    counts = query(db_url, "select id, count(*) as n from public.image_caption group by id")
    assert all(row["n"] == 1 for row in counts)


# 1. Crash mid-job ----------------------------------------------------------------------
def test_sigkill_mid_job_then_restart_captions_everything_once(procs, supabase, hf):
    hf.latency = 3.0  # slow captioner: jobs stay in flight
    first = procs(worker_concurrency=4, lease_seconds=5)
    images = upload_colours(supabase, 6)
    wait_until(lambda: hf.in_flight == 4, timeout=10, message="jobs never in flight")

    first.kill()

    assert not first.alive
    # 4 at the captioner, and up to as many again leased and prepared ahead of them
    stuck = [j for j in jobs(supabase.db_url) if j["state"] == "running"]
    assert 4 <= len(stuck) <= 6 and all(j["lease_until"] is not None for j in stuck)
    hf.latency = 0.0
    procs(worker_concurrency=4, lease_seconds=5)
    # pending jobs go at once; the leased ones once their lease (5 s) expires
    wait_until(
        lambda: all_done(supabase.db_url, 6),
        timeout=20,
        message=f"jobs stuck after restart: {states(supabase.db_url)}",
    )
    assert_one_caption_each(supabase.db_url, images)
    by_id = {str(j["object_id"]): j for j in jobs(supabase.db_url)}
    assert {by_id[str(j["object_id"])]["attempts"] for j in stuck} == {2}
    assert all(j["lease_token"] is None for j in by_id.values())


# 2. Captioner outage ---------------------------------------------------------------------
def test_captioner_outage_backs_off_honours_hints_and_recovers(
    service_factory, bucket, supabase, hf
):
    service = service_factory(max_attempts=3, retry_base_seconds=0.1, retry_max_seconds=1.0)
    health = service.app.state.runtime.worker.health
    hf.refuse_connections(True)
    started = time.monotonic()
    images = upload_colours(supabase, 3)

    def deferrals() -> int:
        return sum(1 for route, _ in supabase.calls if route == "rpc:caption_jobs_retry")

    # Connection refused: the outage is not the images' fault, so no attempt is spent and no
    # job fails; the worker pauses, and one probe a round (backing off) looks for the
    # captioner: the jobs are not sent again meanwhile.
    wait_until(
        lambda: deferrals() >= 1 and health.probes >= 4,
        timeout=20,
        message="the captioner was not probed while it was down",
    )
    elapsed = time.monotonic() - started
    assert elapsed >= 0.05 + 0.1 + 0.2 + 0.4 - 0.05, f"4 probes in {elapsed:.2f}s: no backoff"

    def claims() -> int:
        return sum(1 for route, _ in supabase.calls if route == "rpc:caption_jobs_claim")

    sent, claimed = deferrals(), claims()
    wait_until(lambda: health.probes >= 6, timeout=20, message="probing stopped")
    assert deferrals() == sent <= 3, "jobs were sent again while the captioner was down"
    assert claims() == claimed, "the claim loop spun while paused"
    refused = jobs(supabase.db_url)
    assert {j["state"] for j in refused} == {"pending"}, refused
    assert all(j["attempts"] == 0 for j in refused), refused
    assert sum("unreachable" in (j["last_error"] or "") for j in refused) == sent, refused

    # Back, but loading: 503 with estimated_time to the next 6 probes, then answers.
    hf.script(*[Loading(estimated_time=0.4)] * 6)
    hf.refuse_connections(False)
    wait_until(
        lambda: all_done(supabase.db_url, 3),
        timeout=20,
        message=f"not all captioned after the outage: {states(supabase.db_url)}",
    )

    assert_one_caption_each(supabase.db_url, images)
    per_image = hf.by_image()
    assert len(per_image) == 4  # the three images and the probe's
    statuses = Counter(e["status"] for e in hf.requests)
    assert statuses == Counter({503: 6, 200: 4})
    for calls in per_image.values():
        assert calls[-1]["status"] == 200
        for before, after in zip(calls, calls[1:], strict=False):
            if before["status"] == 503:  # the next try waits at least estimated_time
                assert after["start"] - before["end"] >= 0.4 - 0.02, calls


def test_rate_limit_retry_after_is_respected(service_factory, bucket, supabase, hf):
    service_factory()
    hf.script(RateLimited(retry_after=1))
    object_id = upload(supabase, "limited.png", make_image(PALETTE["green"]))

    wait_for_caption(supabase.db_url, object_id)

    # the job's 429 pauses the worker; the probe waits Retry-After, then the job is sent
    limited, probe, again = sorted(hf.requests, key=lambda e: e["start"])
    assert (limited["status"], probe["status"], again["status"]) == (429, 200, 200)
    assert again["digest"] == limited["digest"] != probe["digest"]
    assert probe["start"] - limited["end"] >= 1.0 - 0.02


# 3. Dropped, duplicated and out-of-order webhooks -----------------------------------------
def test_lossy_webhooks_and_overwrites_end_with_latest_caption(service, supabase, hf, pgnet):
    pgnet.drop_rate, pgnet.duplicate_rate, pgnet.shuffle = 0.3, 0.5, True
    images = upload_colours(supabase, 8, prefix="lossy")
    names = {oid: f"lossy/{i}-{c}.png" for i, (oid, c) in enumerate(images.items())}
    # overwrite half of them (x-upsert) with a new colour while the first versions run
    latest = dict(images)
    for i, object_id in enumerate(list(images)[:4]):
        colour = COLOURS[(i + 6) % len(COLOURS)]
        upload(
            supabase, names[object_id], make_image(PALETTE[colour], size=(90 + i, 50)), upsert=True
        )
        latest[object_id] = colour

    wait_until(
        lambda: all_done(supabase.db_url, 8) and len(captions(supabase.db_url)) == 8,
        timeout=20,
        message=f"not all captioned: {states(supabase.db_url)}",
    )
    pgnet.wait_idle()
    assert pgnet.dropped >= 1 and pgnet.delivered > pgnet.dropped
    assert_one_caption_each(supabase.db_url, latest)
    assert all(status == 200 for status, _ in pgnet.responses), pgnet.responses
    assert len(hf.requests) <= 12  # at most one call per version


def test_update_for_v2_delivered_before_insert_of_v1(service, supabase, hf, pgnet):
    pgnet.drop_rate = 1.0  # only the hand-sent deliveries below reach the service
    object_id = upload(supabase, "order.png", make_image(PALETTE["red"]))
    v1 = query(
        supabase.db_url, "select to_jsonb(o) as r from storage.objects o where id=%s", object_id
    )[0]["r"]
    wait_for_caption(supabase.db_url, object_id)
    upload(supabase, "order.png", make_image(PALETTE["blue"], size=(70, 50)), upsert=True)
    v2 = query(
        supabase.db_url, "select to_jsonb(o) as r from storage.objects o where id=%s", object_id
    )[0]["r"]
    assert v1["version"] != v2["version"]
    auth = {"Authorization": f"Bearer {TEST_SECRET}"}
    update = {
        "type": "UPDATE",
        "table": "objects",
        "schema": "storage",
        "record": v2,
        "old_record": v1,
    }
    insert = {
        "type": "INSERT",
        "table": "objects",
        "schema": "storage",
        "record": v1,
        "old_record": None,
    }

    first = httpx.post(service.webhook_url, json=update, headers=auth)
    late = httpx.post(service.webhook_url, json=insert, headers=auth)

    assert first.status_code == late.status_code == 200
    assert first.json()["status"] == "duplicate"  # the trigger had already queued v2
    assert late.json()["status"] == "duplicate"  # a stale v1 event cannot reset the job
    wait_until(
        lambda: (
            (caption_of(supabase.db_url, object_id) or {}).get("object_version") == v2["version"]
        ),
        message="v2 never captioned",
    )
    row = caption_of(supabase.db_url, object_id)
    assert "mostly blue" in row["caption"] and row["caption"].startswith("a 70x50")
    again = httpx.post(service.webhook_url, json=insert, headers=auth)
    assert again.json()["status"] == "duplicate"
    assert job_of(supabase.db_url, object_id)["state"] == "done"
    assert "mostly blue" in caption_of(supabase.db_url, object_id)["caption"]


# 4. Storage and database trouble ---------------------------------------------------------
def test_signed_url_failures_are_retried(service_factory, bucket, supabase, hf):
    service_factory()
    supabase.faults.add("sign", 500, times=2)
    object_id = upload(supabase, "sign.png", make_image(PALETTE["yellow"]))

    row = wait_for_caption(supabase.db_url, object_id)

    assert "mostly yellow" in row["caption"]
    assert [s for r, s in supabase.calls if r == "sign"] == [500, 500, 200]
    assert job_of(supabase.db_url, object_id)["attempts"] == 3


def test_download_error_and_timeout_are_retried(service_factory, bucket, supabase, hf):
    service_factory(download_timeout=0.5)
    supabase.faults.add("download", 500)
    supabase.faults.add("download", None, delay=2.0)  # slower than DOWNLOAD_TIMEOUT
    object_id = upload(supabase, "download.png", make_image(PALETTE["purple"]))

    row = wait_for_caption(supabase.db_url, object_id, timeout=20)

    assert "mostly purple" in row["caption"]
    job = job_of(supabase.db_url, object_id)
    assert job["attempts"] == 3 and job["state"] == "done"
    assert len(hf.requests) == 1


def test_object_deleted_while_captioning_leaves_no_caption(service_factory, bucket, supabase, hf):
    service_factory()
    hf.latency = 1.0
    object_id = upload(supabase, "vanish.png", make_image(PALETTE["red"]))
    wait_until(lambda: hf.in_flight == 1, message="caption request never started")

    storage_client(supabase).storage.from_("images").remove(["vanish.png"])

    wait_until(
        lambda: any(r == "rpc:caption_jobs_complete" for r, _ in supabase.calls),
        message="worker never tried to complete",
    )
    assert caption_of(supabase.db_url, object_id) is None
    assert job_of(supabase.db_url, object_id) is None
    hf.latency = 0.0
    after = upload(supabase, "after.png", make_image(PALETTE["green"]))
    assert "green" in wait_for_caption(supabase.db_url, after)["caption"]


def test_object_bytes_gone_before_processing_fail_cleanly(service_factory, bucket, supabase, hf):
    object_id = upload(supabase, "lost.png", make_image(PALETTE["red"]))
    for blob in supabase.storage_dir.glob(f"{object_id}.*"):
        blob.unlink()  # the row is there, the bytes are not (service not running yet)
    service_factory()

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert "not found" in job["last_error"]
    assert job["attempts"] == 1
    assert caption_of(supabase.db_url, object_id) is None
    assert hf.requests == []


def test_object_deleted_before_processing_drops_its_job(service_factory, bucket, supabase, hf):
    object_id = upload(supabase, "early.png", make_image(PALETTE["red"]))
    assert job_of(supabase.db_url, object_id)["state"] == "pending"
    storage_client(supabase).storage.from_("images").remove(["early.png"])
    service_factory()
    other = upload(supabase, "other.png", make_image(PALETTE["blue"]))

    wait_for_caption(supabase.db_url, other)

    assert job_of(supabase.db_url, object_id) is None
    assert caption_of(supabase.db_url, object_id) is None
    assert len(hf.requests) == 1


def test_postgrest_errors_on_claim_and_complete_are_retried(service_factory, bucket, supabase, hf):
    supabase.faults.add("rpc:caption_jobs_claim", 503, times=3)
    supabase.faults.add("rpc:caption_jobs_complete", 500, times=2)
    service_factory()
    images = upload_colours(supabase, 2)

    wait_until(
        lambda: all_done(supabase.db_url, 2),
        timeout=20,
        message=f"not done: {states(supabase.db_url)}",
    )

    assert_one_caption_each(supabase.db_url, images)
    claims = [s for r, s in supabase.calls if r == "rpc:caption_jobs_claim"]
    completes = [s for r, s in supabase.calls if r == "rpc:caption_jobs_complete"]
    assert claims[:3] == [503, 503, 503] and 200 in claims
    assert completes.count(500) == 2 and completes.count(200) == 2
    # a failed complete means the caption is made again, never stored twice
    assert len(hf.requests) == 4


# 5. Several replicas ------------------------------------------------------------------------
def test_three_replicas_caption_a_burst_once_each(procs, supabase, hf):
    hf.latency = 0.15
    replicas = [procs(worker_concurrency=2) for _ in range(3)]
    n = 30
    images = upload_colours(supabase, n, prefix="burst")

    wait_until(
        lambda: all_done(supabase.db_url, n),
        timeout=30,
        message=f"burst not done: {states(supabase.db_url)}",
    )

    assert all(replica.alive for replica in replicas)
    assert_one_caption_each(supabase.db_url, images)
    per_image = hf.by_image()
    assert len(per_image) == n and all(len(calls) == 1 for calls in per_image.values())
    assert len(hf.requests) == n
    workers = {job["worker"] for job in jobs(supabase.db_url)}
    assert len(workers) >= 2, f"the burst was not shared: {workers}"
    assert hf.max_in_flight <= 3 * 2


def test_three_replicas_share_one_reconciliation_pass(procs, supabase, hf):
    """Images uploaded before install: the replicas' sweeps take turns on one pass (one
    sweeps at a time, the cursor in the database), so each object is examined once."""
    db = supabase.db_url
    query(db, "alter table storage.objects disable trigger caption_on_object_change")
    images = upload_colours(supabase, 24, prefix="before-install")
    query(db, "alter table storage.objects enable trigger caption_on_object_change")
    hf.latency = 0.05
    for _ in range(3):
        procs(worker_concurrency=2, sweep_interval=0.2, sweep_batch=4)

    wait_until(lambda: all_done(db, 24), timeout=60, message=f"backfill incomplete: {states(db)}")

    assert_one_caption_each(db, images)
    assert len(hf.requests) == 24 and all(len(c) == 1 for c in hf.by_image().values())
    passes = query(db, "select bucket_id, after_name, examined, queued from captioner.sweep_passes")
    assert passes == [{"bucket_id": "images", "after_name": None, "examined": 24, "queued": 24}]


# 6. Graceful shutdown -------------------------------------------------------------------------
def test_sigterm_finishes_or_releases_in_flight_jobs_and_exits_0(procs, supabase, hf):
    upload_colours(supabase, 6)  # queued before the start: the first claim takes 4 at once
    hf.latency = 1.0
    hf.script(Hang(2.5), Hang(2.5))  # two requests outlive the grace period
    proc = procs(worker_concurrency=4, shutdown_grace_seconds=1.5)
    wait_until(lambda: hf.in_flight == 4, timeout=10, message="4 jobs never in flight")

    began = time.monotonic()
    code = proc.terminate(timeout=10)
    took = time.monotonic() - began

    assert code == 0, proc.log
    assert "Application shutdown complete" in proc.log and "Finished server process" in proc.log
    assert took < 1.5 + 2.0, f"shutdown took {took:.1f}s"
    final = jobs(supabase.db_url)
    by_state = Counter(str(j["state"]) for j in final)
    assert set(by_state) <= {"done", "pending"}, proc.log  # nothing left leased ('running')
    assert by_state["done"] >= 2 and by_state["pending"] >= 2, by_state
    pending = [j for j in final if j["state"] == "pending"]
    assert all(j["attempts"] == 0 and j["lease_token"] is None for j in pending), pending
    released = [j for j in pending if j["worker"] is not None]
    assert len(released) >= 2  # the two hung ones, given back with their attempt refunded
    assert len(captions(supabase.db_url)) == by_state["done"]
    # normally (no CPU starvation) nothing is claimed after SIGTERM: exactly 2 done, 4 pending
    assert by_state["done"] <= 4


def test_shutdown_during_a_claim_releases_what_it_leased(service_factory, bucket, supabase, hf):
    """The claim's rpc is still on its way when the service stops: the jobs it leases must
    be given back, not left 'running' until their lease expires (5 min by default)."""
    upload_colours(supabase, 3)
    supabase.faults.add("rpc:caption_jobs_claim", None, delay=1.0)  # the first claim is slow
    running = service_factory(worker_concurrency=4)

    running.stop()

    wait_until(
        lambda: states(supabase.db_url) == Counter({"pending": 3}),
        timeout=5,
        message=f"leased jobs not released: {states(supabase.db_url)}",
    )
    assert all(j["attempts"] == 0 and j["lease_token"] is None for j in jobs(supabase.db_url))
    assert ("rpc:caption_jobs_claim", 200) in supabase.calls
    assert hf.requests == []


# 7. Backfill / reconcile ---------------------------------------------------------------------
def test_sweep_backfills_old_images_and_lost_jobs_in_batches(service_factory, bucket, supabase, hf):
    db = supabase.db_url
    query(db, "alter table storage.objects disable trigger caption_on_object_change")
    old = upload_colours(supabase, 9, prefix="before-install")
    query(db, "alter table storage.objects enable trigger caption_on_object_change")
    lost = upload_colours(supabase, 3, prefix="lost-jobs", first=9)
    query(db, "delete from captioner.jobs")
    assert jobs(db) == []
    hf.latency = 0.1

    service_factory(sweep_interval=0.3, sweep_batch=5, worker_concurrency=2)

    wait_until(
        lambda: len(captions(db)) == 12, timeout=30, message=f"backfill incomplete: {states(db)}"
    )
    assert all_done(db, 12)
    assert_one_caption_each(db, {**old, **lost})
    assert hf.max_in_flight <= 2, hf.max_in_flight
    batches = Counter(job["created_at"] for job in jobs(db))  # one sweep = one transaction
    assert len(batches) >= 3 and max(batches.values()) <= 5, batches
    assert len(hf.requests) == 12
