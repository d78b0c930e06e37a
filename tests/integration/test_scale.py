"""What keeps costs independent of the bucket's size (migration 0003, 0008): kept counters
that always equal the jobs table, a claim that reads only what it leases, and a sweep that
touches the bucket only while a reconciliation pass runs, one replica at a time.
Figures for 10 k to 1 M objects: bench/scale.py."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from tests.harness.postgres import MIGRATIONS_DIR, apply_sql_file
from tests.harness.supabase_stub import create_bucket
from tests.support import query, query_one

STATES = ["pending", "running", "done", "failed", "skipped"]


def add_objects(
    db: str,
    bucket: str,
    n: int,
    *,
    trigger: bool = True,
    prefix: str = "p",
    mimetype: str = "image/png",
) -> list[str]:
    """n objects inserted as storage-api would; without `trigger`, as if before install."""
    with psycopg.connect(db, autocommit=True) as conn:
        if not trigger:
            conn.execute("set session_replication_role = replica")
        rows = conn.execute(
            "insert into storage.objects (bucket_id, name, version, metadata)"
            " select %s, %s || '/' || lpad(g::text, 6, '0'), gen_random_uuid()::text,"
            "        jsonb_build_object('mimetype', %s::text, 'size', 100)"
            "   from generate_series(1, %s) g returning id::text",
            (bucket, prefix, mimetype, n),
        ).fetchall()
    return [row[0] for row in rows]


def kept(db: str, bucket: str | None = None) -> dict[str, int]:
    rows = query(db, "select state, jobs from caption_jobs_stats(%s)", bucket)
    return {row["state"]: row["jobs"] for row in rows}


def counted(db: str, bucket: str | None = None) -> dict[str, int]:
    rows = query(
        db,
        "select state::text, count(*) as n from captioner.jobs"
        " where %s::text is null or bucket_id = %s group by state",
        bucket,
        bucket,
    )
    found = {row["state"]: row["n"] for row in rows}
    return {state: found.get(state, 0) for state in kept(db)}


def assert_counters_exact(db: str) -> None:
    assert kept(db) == counted(db)
    for bucket in ("images", "other"):
        assert kept(db, bucket) == counted(db, bucket), bucket


def claim(db: str, n: int, lease: int = 60, max_attempts: int = 3) -> list[dict[str, Any]]:
    return query(db, "select * from caption_jobs_claim('w', %s, %s, %s)", n, lease, max_attempts)


def sweep(
    db: str, limit: int, buckets: list[str] | None = None, full_every: float | None = None
) -> list[dict[str, Any]]:
    return query(db, "select * from caption_jobs_sweep(%s, %s, %s)", limit, buckets, full_every)


def sweep_until_done(db: str, limit: int, buckets: list[str] | None = None) -> list[dict]:
    slices: list[dict[str, Any]] = []
    while True:
        step = sweep(db, limit, buckets)
        slices += step
        if not any(piece["passing"] for piece in step):
            return slices
        query(db, "update captioner.jobs set state = 'done' where state = 'pending'")


@pytest.fixture
def db(db_url: str) -> str:
    create_bucket(db_url, "images")
    create_bucket(db_url, "other")
    query(db_url, "update captioner.config set buckets = '{images,other}'")
    return db_url


# Kept counters ------------------------------------------------------------------------------
def test_counters_follow_every_change_of_the_jobs_table(db):
    ids = add_objects(db, "images", 6) + add_objects(db, "other", 3)
    assert kept(db) == {"pending": 9, "running": 0, "done": 0, "failed": 0, "skipped": 0}
    assert_counters_exact(db)

    leased = claim(db, 4)
    query(
        db,
        "select caption_jobs_complete(%s, %s, 'a cat', 'm')",
        leased[0]["object_id"],
        leased[0]["lease_token"],
    )
    query(
        db,
        "select caption_jobs_fail(%s, %s, 'broken')",
        leased[1]["object_id"],
        leased[1]["lease_token"],
    )
    query(
        db,
        "select caption_jobs_retry(%s, %s, 'later', 0)",
        leased[2]["object_id"],
        leased[2]["lease_token"],
    )
    assert_counters_exact(db)

    query(db, "update storage.objects set version = 'v2' where id = %s", leased[0]["object_id"])
    query(db, "select caption_jobs_requeue_failed(10)")
    query(db, "select * from caption_jobs_enqueue(%s::uuid[])", ids[:3])  # duplicates
    assert_counters_exact(db)

    with psycopg.connect(db, autocommit=True) as conn:  # as storage-api deletes
        conn.execute("set storage.allow_delete_query = 'true'")
        conn.execute("delete from storage.objects where id = %s", (ids[5],))  # and its job
    query(db, "delete from captioner.jobs where object_id = %s", ids[6])
    query(db, "update captioner.jobs set bucket_id = 'other' where object_id = %s", ids[4])
    query(db, "delete from captioner.jobs where object_id = %s", ids[7])
    query(db, "insert into captioner.jobs (object_id, version) values (%s, 'v')", ids[7])
    assert (
        query_one(db, "select bucket_id from captioner.jobs where object_id = %s", ids[7])[
            "bucket_id"
        ]
        == "other"
    )  # a job inserted without its bucket
    assert_counters_exact(db)
    assert sum(kept(db).values()) == 7

    query(db, "truncate captioner.jobs")
    assert kept(db) == dict.fromkeys(STATES, 0)


def test_counters_stay_exact_with_concurrent_workers_and_uploads(db):
    add_objects(db, "images", 300)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                while rows := conn.execute(
                    "select object_id, lease_token from caption_jobs_claim('w', 5, 60, 3)"
                ).fetchall():
                    for n, (object_id, token) in enumerate(rows):
                        outcome = ("complete", "retry", "fail")[n % 3]
                        if outcome == "complete":
                            conn.execute(
                                "select caption_jobs_complete(%s, %s, 'c', 'm')", (object_id, token)
                            )
                        elif outcome == "retry":
                            conn.execute(
                                "select caption_jobs_retry(%s, %s, 'e', 0, true)",
                                (object_id, token),
                            )
                        else:
                            conn.execute(
                                "select caption_jobs_fail(%s, %s, 'e')", (object_id, token)
                            )
        except BaseException as exc:  # a deadlock or a lost update would land here
            errors.append(exc)

    def uploader() -> None:
        try:
            for n in range(4):
                add_objects(db, "other", 25, prefix=f"u{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    threads.append(threading.Thread(target=uploader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert_counters_exact(db)
    assert sum(kept(db).values()) == 400
    shards = query_one(db, "select count(distinct shard) n from captioner.job_counts")
    assert shards["n"] > 1  # concurrent backends wrote to separate counter rows


def test_migration_recounts_jobs_queued_before_it(db):
    add_objects(db, "images", 5)
    query(db, "update captioner.jobs set bucket_id = null")
    query(db, "delete from captioner.job_counts")
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        apply_sql_file(db, path)

    assert kept(db, "images") == {"pending": 5, "running": 0, "done": 0, "failed": 0, "skipped": 0}
    assert_counters_exact(db)


def test_stats_report_every_state_and_the_oldest_due_job(db):
    add_objects(db, "images", 2)
    query(db, "update captioner.jobs set run_after = now() - interval '90 seconds'")
    query(
        db,
        "insert into storage.objects (bucket_id, name, version, metadata) values"
        " ('other', 'x.png', 'v', '{\"mimetype\": \"image/png\"}')",
    )
    query(
        db,
        "update captioner.jobs set run_after = now() + interval '1 hour' where bucket_id = 'other'",
    )  # retrying later: not due, not waiting

    rows = query(db, "select * from caption_jobs_stats()")
    enum = query(db, "select unnest(enum_range(null::captioner.job_state))::text as s")

    assert [row["state"] for row in rows] == [row["s"] for row in enum]
    pending = rows[0]
    assert pending["jobs"] == 3 and 89 < pending["oldest_seconds"] < 120
    other = query(db, "select * from caption_jobs_stats('other')")[0]
    assert other["jobs"] == 1 and other["oldest_seconds"] == 0


def jobs_rows_read(db: str, sql: str, *params: Any) -> tuple[list[Any], int]:
    """What `sql` answers, and how many captioner.jobs rows (index entries and heap rows)
    its call read (pg_stat_xact_*: the transaction's own counts), on a connection that made
    the call ten times before (as PostgREST's pool does: plpgsql then plans generically)."""
    with psycopg.connect(db, autocommit=True) as conn:
        for _ in range(10):
            conn.execute(sql, params or None)  # type: ignore[arg-type]
        with conn.transaction():
            before = jobs_reads(conn)
            rows = conn.execute(sql, params or None).fetchall()  # type: ignore[arg-type]
            read = jobs_reads(conn) - before
    return rows, read


def jobs_reads(conn: psycopg.Connection[Any]) -> int:
    """captioner.jobs rows read so far (not yet flushed to the cumulative statistics)."""
    row = conn.execute(
        "select sum(pg_stat_get_xact_tuples_returned(r)) from (select indexrelid"
        "  from pg_index where indrelid = 'captioner.jobs'::regclass"
        "  union all select 'captioner.jobs'::regclass) as r(r)"
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_buckets_stats_read_none_of_another_buckets_backlog(db):
    """The gallery's and backfill's stats of a bucket with nothing pending, beside a bucket
    with a due backlog: one index look-up, not a walk through the other bucket's jobs."""
    add_objects(db, "other", 300)
    query(db, "update captioner.jobs set run_after = now() - interval '1 hour'")
    add_objects(db, "images", 1)
    query(db, "update captioner.jobs set state = 'done' where bucket_id = 'images'")
    query(db, "analyze captioner.jobs")

    rows, read = jobs_rows_read(db, "select * from caption_jobs_stats('images')")
    assert rows[0][:3] == ("pending", 0, 0)
    assert read <= 2
    rows, read = jobs_rows_read(db, "select * from caption_jobs_stats('other')")
    assert rows[0][1] == 300 and 3590 < rows[0][2] < 3700
    assert read <= 2


# Claim ---------------------------------------------------------------------------------------
def test_claim_takes_expired_leases_first_then_the_oldest_due_jobs(db):
    ids = add_objects(db, "images", 6)
    for n, object_id in enumerate(ids):  # ids[0] is the oldest
        query(
            db,
            "update captioner.jobs set run_after = now() - make_interval(secs => %s)"
            " where object_id = %s",
            100 - n,
            object_id,
        )
    query(
        db,
        "update captioner.jobs set run_after = now() + interval '1 hour' where object_id = %s",
        ids[1],
    )  # not due yet
    first = claim(db, 1, lease=60)
    query(
        db,
        "update captioner.jobs set lease_until = now() - interval '1 second' where object_id = %s",
        first[0]["object_id"],
    )  # its worker died

    second = claim(db, 3)

    assert str(first[0]["object_id"]) == ids[0]
    assert {str(row["object_id"]) for row in second} == {ids[0], ids[2], ids[3]}
    retaken = next(row for row in second if str(row["object_id"]) == ids[0])
    assert retaken["attempts"] == 2
    assert len(claim(db, 10)) == 2  # ids[4], ids[5]; ids[1] is not due


# Sweep ---------------------------------------------------------------------------------------
def test_first_sweep_passes_over_the_bucket_in_slices_then_costs_nothing(db):
    before_install = add_objects(db, "images", 25, trigger=False, prefix="old")
    add_objects(db, "images", 3, mimetype="text/plain", prefix="notes", trigger=False)
    add_objects(db, "images", 5, prefix="new")  # queued by the trigger

    slices = sweep_until_done(db, 10, ["images"])

    assert [piece["examined"] for piece in slices] == [10, 10, 10, 3]
    assert sum(piece["queued"] for piece in slices) == 25
    assert sum(piece["skipped"] for piece in slices) == 3
    jobs = {row["object_id"] for row in query(db, "select object_id::text from captioner.jobs")}
    assert set(before_install) <= jobs
    passes = query(db, "select * from caption_jobs_sweep_passes()")
    assert [(p["bucket_id"], p["running"], p["examined"], p["queued"]) for p in passes] == [
        ("images", False, 33, 25)
    ]

    lost = before_install[0]
    query(db, "delete from captioner.jobs where object_id = %s", lost)
    assert sweep_reads(db, 10, ["images"]) == ([], 0)  # no pass running: the bucket is not read
    query(db, "select * from caption_jobs_sweep_start('images')")
    rows, scans = sweep_reads(db, 100, ["images"])
    assert scans > 0 and [row[2] for row in rows] == [1]  # a pass reads it, finds the lost one


def sweep_reads(db: str, limit: int, buckets: list[str]) -> tuple[list[tuple[Any, ...]], int]:
    """A sweep's rows, and how many scans of storage.objects or its indexes it made."""
    with psycopg.connect(db) as conn:  # one transaction: its own statistics, not yet flushed
        rows = conn.execute("select * from caption_jobs_sweep(%s, %s)", (limit, buckets)).fetchall()
        scans = conn.execute(
            "select sum(pg_stat_get_xact_numscans(oid)) from pg_class"
            " where oid = 'storage.objects'::regclass or oid in ("
            "   select indexrelid from pg_index where indrelid = 'storage.objects'::regclass)"
        ).fetchone()
    assert scans is not None
    return rows, int(scans[0])


def test_a_newly_watched_bucket_gets_a_pass_and_a_full_pass_repeats_when_due(db):
    add_objects(db, "images", 4, trigger=False)
    query(db, "update captioner.config set buckets = '{images}'")
    sweep_until_done(db, 10)
    other = add_objects(db, "other", 3, trigger=False)  # not watched: the trigger is off anyway

    query(db, "update captioner.config set buckets = '{images,other}'")
    assert sum(p["queued"] for p in sweep_until_done(db, 10)) == 3
    assert {
        row["object_id"]
        for row in query(db, "select object_id::text from captioner.jobs where bucket_id = 'other'")
    } == set(other)

    query(db, "delete from captioner.jobs where bucket_id = 'images'")
    assert sweep(db, 10, full_every=3600) == []  # the last pass is recent
    query(db, "update captioner.sweep_passes set finished_at = now() - interval '2 hours'")
    rows = sweep(db, 10, full_every=3600)
    assert sorted((r["bucket_id"], r["queued"]) for r in rows) == [("images", 4), ("other", 0)]


def test_only_one_replica_sweeps_at_a_time(db):
    add_objects(db, "images", 5, trigger=False)
    with psycopg.connect(db, autocommit=True) as other_replica:
        other_replica.execute("begin")
        other_replica.execute("select * from caption_jobs_sweep(2)")  # holds the lock
        assert sweep(db, 2) == []
        other_replica.execute("commit")
    query(db, "update captioner.jobs set state = 'done'")  # the workers kept up
    assert sweep(db, 2)[0]["examined"] == 2  # the pass goes on where the other one left it
    passes = query(db, "select bucket_id, examined from captioner.sweep_passes")
    assert {row["bucket_id"]: row["examined"] for row in passes}["images"] == 4


def test_a_running_pass_waits_while_a_slice_of_jobs_is_pending(db):
    add_objects(db, "images", 12, trigger=False)
    assert sweep(db, 10)[0]["queued"] == 10

    waiting = {"examined": 0, "queued": 0, "skipped": 0, "passing": True}
    assert sweep(db, 10) == [{"bucket_id": "images", **waiting}, {"bucket_id": "other", **waiting}]
    claim(db, 5)
    assert sweep(db, 10)[0]["queued"] == 2


def test_backfill_passes_resume_where_they_stopped(db):
    add_objects(db, "images", 7, trigger=False)
    query(db, "update captioner.config set buckets = '{}'")  # a bucket the service does not watch
    query(db, "select * from caption_jobs_sweep_start('images')")
    sweep(db, 3, ["images"])

    again = query_one(db, "select * from caption_jobs_sweep_start('images')")  # resumed

    assert again["examined"] == 3
    assert Counter(r["queued"] for r in sweep_until_done(db, 3, ["images"]))[3] >= 1
    assert query_one(db, "select count(*) n from captioner.jobs")["n"] == 7


def test_a_pass_sees_every_name_once(db):
    names = ["B.png", "a.png", "Z/x.png", "_u.png", "a b.png", "a.png.png", "~t.png"]
    for name in names:
        query(
            db,
            "insert into storage.objects (bucket_id, name, version, metadata)"
            " values ('images', %s, %s, '{\"mimetype\": \"image/png\"}')",
            name,
            str(uuid.uuid4()),
        )
    query(db, "delete from captioner.jobs")

    sweep_until_done(db, 2, ["images"])

    assert query_one(db, "select count(*) n from captioner.jobs")["n"] == len(names)
