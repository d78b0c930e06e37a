"""The queue's promises under real concurrency, as the role that calls (service_role):
a job is leased by one claimer at a time and no claimer waits on another (`FOR UPDATE SKIP
LOCKED` in both of the claim's selects), a result counts only while its lease is held, and a
lease never runs a job more often than MAX_ATTEMPTS allows (migration 0003)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.harness.supabase_stub import create_bucket
from tests.integration.test_scale import add_objects
from tests.support import caption_of, job_of, query

CLAIM = "select * from caption_jobs_claim(%s, %s, %s, %s)"


@pytest.fixture
def db(db_url: str) -> str:
    create_bucket(db_url, "images")
    return db_url


@contextmanager
def service_role(db: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A connection as PostgREST makes it for the service key; a lock wait fails in 3 s."""
    with psycopg.connect(db, row_factory=dict_row) as conn:
        conn.execute("set role service_role")
        conn.execute("set lock_timeout = '3s'")
        conn.commit()
        yield conn


def claim(
    conn: psycopg.Connection[dict[str, Any]],
    worker: str,
    n: int,
    max_attempts: int = 3,
    lease: int = 60,
) -> list[dict[str, Any]]:
    return conn.execute(CLAIM, (worker, n, lease, max_attempts)).fetchall()


def expire_leases(db: str) -> None:
    query(
        db,
        "update captioner.jobs set lease_until = now() - interval '1 second'"
        " where state = 'running'",
    )


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {str(row["object_id"]) for row in rows}


@pytest.mark.parametrize("expired", [False, True], ids=["due", "expired-lease"])
def test_two_claimers_at_once_lease_disjoint_jobs_and_neither_waits(db, expired):
    """A holds its claim's transaction open (the barrier: its rows are locked) while B
    claims. B must neither wait for A (lock_timeout would fail it) nor lease A's jobs."""
    add_objects(db, "images", 4)
    if expired:  # every job leased by a worker that died: both selects of the claim are hit
        with service_role(db) as conn:
            claim(conn, "dead", 4)
            conn.commit()
        expire_leases(db)
    with service_role(db) as first, service_role(db) as second:
        taken_by_first = claim(first, "a", 2)  # transaction left open
        taken_by_second = claim(second, "b", 2)
        second.commit()
        first.commit()

    assert len(taken_by_first) == len(taken_by_second) == 2
    assert ids(taken_by_first).isdisjoint(ids(taken_by_second))
    leased = query(db, "select worker, attempts from captioner.jobs order by worker")
    assert [row["worker"] for row in leased] == ["a", "a", "b", "b"]
    assert {row["attempts"] for row in leased} == {2 if expired else 1}


def complete(conn: psycopg.Connection[dict[str, Any]], job: dict[str, Any], caption: str) -> bool:
    row = conn.execute(
        "select caption_jobs_complete(%s, %s, %s, 'model') ok",
        (job["object_id"], job["lease_token"], caption),
    ).fetchone()
    conn.commit()
    assert row is not None
    return bool(row["ok"])


def test_a_stale_holder_cannot_complete_after_another_worker_took_the_job(db):
    (object_id,) = add_objects(db, "images", 1)
    with service_role(db) as slow, service_role(db) as fresh:
        (stale,) = claim(slow, "slow", 1)
        slow.commit()
        expire_leases(db)  # the slow worker's lease ran out
        (current,) = claim(fresh, "fresh", 1)
        fresh.commit()

        assert current["lease_token"] != stale["lease_token"]
        assert complete(slow, stale, "the stale caption") is False
        assert job_of(db, object_id)["state"] == "running"  # still the fresh worker's
        assert complete(fresh, current, "the fresh caption") is True

    assert caption_of(db, object_id)["caption"] == "the fresh caption"
    assert job_of(db, object_id)["state"] == "done"


SETTLE = {
    "retry": "select caption_jobs_retry(%s, %s, 'stale error', 0) ok",
    "fail": "select caption_jobs_fail(%s, %s, 'stale error') ok",
}


@pytest.mark.parametrize("outcome", sorted(SETTLE))
def test_a_stale_holder_can_neither_retry_nor_fail_the_job_it_lost(db, outcome):
    (object_id,) = add_objects(db, "images", 1)
    with service_role(db) as slow, service_role(db) as fresh:
        (stale,) = claim(slow, "slow", 1)
        slow.commit()
        expire_leases(db)
        (current,) = claim(fresh, "fresh", 1)
        fresh.commit()

        refused = slow.execute(SETTLE[outcome], (object_id, stale["lease_token"])).fetchone()
        slow.commit()
        job = job_of(db, object_id)
        assert refused == {"ok": False}
        assert (job["state"], job["worker"], job["last_error"]) == ("running", "fresh", None)
        assert str(job["lease_token"]) == str(current["lease_token"])


@pytest.mark.parametrize("refund", [False, True])
def test_a_retry_waits_its_delay_and_a_refund_gives_the_attempt_back(db, refund):
    (object_id,) = add_objects(db, "images", 1)
    with service_role(db) as conn:
        (job,) = claim(conn, "w", 1)
        conn.execute(
            "select caption_jobs_retry(%s, %s, 'busy', 3600, %s)",
            (object_id, job["lease_token"], refund),
        )
        conn.commit()
        assert claim(conn, "w", 1) == []  # not due for an hour
        conn.commit()

    row = job_of(db, object_id)
    assert (row["state"], row["last_error"]) == ("pending", "busy")
    assert row["attempts"] == (0 if refund else 1)


def test_a_completed_job_cannot_be_completed_again_with_its_old_token(db):
    (object_id,) = add_objects(db, "images", 1)
    with service_role(db) as conn:
        (job,) = claim(conn, "w", 1)
        conn.commit()
        assert complete(conn, job, "first") is True
        assert complete(conn, job, "second") is False

    assert caption_of(db, object_id)["caption"] == "first"


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_expired_leases_run_a_job_at_most_max_attempts_times(db, max_attempts):
    (object_id,) = add_objects(db, "images", 1)
    runs = 0
    with service_role(db) as conn:
        for _ in range(max_attempts + 2):
            taken = claim(conn, "w", 1, max_attempts=max_attempts)
            conn.commit()
            runs += len(taken)
            expire_leases(db)  # each run's worker dies holding the lease

    assert runs == max_attempts
    job = job_of(db, object_id)
    assert job["state"] == "failed" and job["attempts"] == max_attempts
    assert f"lease expired after {max_attempts} attempts" in job["last_error"]
