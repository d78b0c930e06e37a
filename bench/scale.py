"""7. Scale: what each database operation costs with 10 k, 100 k and 1 M objects in the
watched bucket (every one captioned, as in a bucket the service has kept up with).

The rows are generated in SQL (generate_series: objects, their done jobs and captions) in
one throwaway database that grows from one size to the next; then, at each size, each
operation is called as the service calls it (the rpc functions, over one connection) and
timed from the client; the figure is the lowest median of five rounds of calls, in ms
(the CPUs are shared: a burst of load elsewhere must not pass for growth). The upload trigger's
cost is the difference between single-row INSERTs into storage.objects with the trigger on
and off. The backlog is 10 k objects uploaded without the trigger (as before an install),
queued by the first slices of a reconciliation pass. For contrast, the seed's sweep query
and a full aggregate of the jobs table (the costs issue 11 measured) are timed once per size.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench.common import Environment, Result
from tests.harness.postgres import create_database, drop_database
from tests.harness.supabase_stub import create_bucket

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
BACKLOG = 10_000
SLICE = 1_000  # SWEEP_BATCH's default
FLAT = 2.0  # the target: at most 2x from the smallest size to the largest
METADATA = (
    "jsonb_build_object('eTag', '\"' || md5(g::text) || '\"', 'size', 150000 + mod(g, 1000),"
    " 'mimetype', 'image/jpeg', 'cacheControl', 'no-cache', 'lastModified', now()::text,"
    " 'contentLength', 150000 + mod(g, 1000), 'httpStatusCode', 200)"
)
GROW = f"""
with o as (
  insert into storage.objects (bucket_id, name, version, metadata)
  select 'images', 'photos/' || lpad(g::text, 7, '0') || '.jpg', md5(g::text), {METADATA}
    from generate_series(%(first)s::integer, %(last)s::integer) g
  returning id, version
), j as (
  insert into captioner.jobs (object_id, version, bucket_id, state, attempts)
  select id, version, 'images', 'done', 1 from o
)
insert into public.image_caption (id, caption, model, object_version)
select id, 'a photo of a dog on a beach', 'bench', version from o
"""


def insert_objects(names: str, count: int) -> str:
    """An INSERT of `count` objects named by the SQL expression `names` (of g)."""
    return (
        "insert into storage.objects (bucket_id, name, version, metadata)"
        f" select 'images', {names}, md5(random()::text), {METADATA}"
        f" from generate_series(1, {count}) g"
    )


RECOUNT = """
delete from captioner.job_counts;
insert into captioner.job_counts (bucket_id, state, shard, jobs)
select coalesce(bucket_id, ''), state, 0, count(*) from captioner.jobs group by 1, 2
"""
SEED_SWEEP = """
select o.id from storage.objects o
 where o.bucket_id = 'images'
   and captioner.skip_reason(o.bucket_id, o.name, o.metadata, '{images}') is null
   and not exists (select 1 from public.image_caption ic where ic.id = o.id
                    and (ic.object_version is null or ic.object_version = o.version))
   and not exists (select 1 from captioner.jobs q where q.object_id = o.id
                    and q.version is not distinct from o.version)
 order by o.created_at limit 100
"""
SEED_STATS = "select state, count(*), min(updated_at) from captioner.jobs group by state"

Conn = psycopg.Connection[Any]


def median_ms(call: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """The call's cost: the lowest of the medians of five rounds of `repeat / 5` calls, so a
    burst of load from other processes on the shared CPUs does not pass for growth."""
    for _ in range(warmup):
        call()
    rounds = []
    for _ in range(5 if repeat >= 10 else 1):
        times = []
        for _ in range(max(repeat // 5, 1) if repeat >= 10 else repeat):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        rounds.append(statistics.median(times))
    return min(rounds)


def fetch(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params or None).fetchall()  # type: ignore[arg-type]


@contextmanager
def trigger_off(conn: Conn) -> Iterator[None]:
    conn.execute("alter table storage.objects disable trigger caption_on_object_change")
    try:
        yield
    finally:
        conn.execute("alter table storage.objects enable trigger caption_on_object_change")


def grow(conn: Conn, first: int, last: int) -> float:
    """Objects first..last, each captioned (a done job and a caption); seconds taken."""
    started = time.monotonic()
    conn.execute("set session_replication_role = replica")  # no triggers: bulk load
    conn.execute(GROW, {"first": first, "last": last})
    conn.execute("set session_replication_role = origin")
    conn.execute(RECOUNT)
    conn.execute("vacuum analyze storage.objects, captioner.jobs, public.image_caption")
    return time.monotonic() - started


def measure(conn: Conn, size: int, quick: bool) -> dict[str, float]:
    """Every operation at this size, in ms (per call unless said otherwise)."""
    repeat = 30 if quick else 100
    m: dict[str, float] = {}
    n = iter(range(10**9))

    def upload() -> None:  # one object per statement and transaction, as storage-api does
        conn.execute(insert_objects(f"'uploads/{size}/{next(n)}.jpg'", 1))

    differences = []
    for _ in range(5):  # alternating, so that load from elsewhere falls on both sides
        with trigger_off(conn):
            bare = median_ms(upload, repeat // 2)
        differences.append(median_ms(upload, repeat // 2) - bare)
    m["upload trigger (per upload)"] = statistics.median(differences)
    conn.execute("vacuum analyze captioner.jobs")  # as autovacuum does after a burst

    with trigger_off(conn):
        ids = [
            row[0]
            for row in fetch(
                conn, insert_objects(f"'untracked/{size}/' || g || '.jpg'", 500) + " returning id"
            )
        ]
    batches = iter([ids[i : i + 50] for i in range(0, len(ids), 50)])
    m["enqueue (per object, batches of 50)"] = (
        median_ms(
            lambda: fetch(conn, "select * from caption_jobs_enqueue(%s)", next(batches)),
            repeat=8,
            warmup=2,
        )
        / 50
    )

    finish_pass(conn)  # the bucket's first pass (at the first size), as the service would
    conn.execute("vacuum analyze captioner.jobs")
    m["sweep, nothing to do"] = median_ms(
        lambda: fetch(conn, "select * from caption_jobs_sweep(%s)", SLICE), repeat
    )
    m["stats (/metrics, /readyz, status)"] = median_ms(
        lambda: fetch(conn, "select * from caption_jobs_stats()"), repeat
    )
    m["bucket stats"] = median_ms(
        lambda: fetch(conn, "select * from caption_jobs_stats('images')"), repeat
    )
    m["failures (status)"] = median_ms(
        lambda: fetch(conn, "select * from caption_jobs_failures(10)"), repeat
    )

    m.update(sweep_a_backlog(conn, size))
    m.update(claim_and_complete(conn, repeat))
    conn.execute("update captioner.jobs set state = 'done' where state = 'pending'")
    m["before: seed sweep query"] = median_ms(lambda: fetch(conn, SEED_SWEEP), 1, warmup=0)
    m["before: seed stats query"] = median_ms(lambda: fetch(conn, SEED_STATS), 3, warmup=1)
    return m


def finish_pass(conn: Conn) -> None:
    """Sweep until no pass is running, the jobs it queues taken at once (as by workers)."""
    while True:
        rows = fetch(conn, "select passing from caption_jobs_sweep(%s)", SLICE)
        conn.execute("update captioner.jobs set state = 'done' where state = 'pending'")
        if not any(row[0] for row in rows):
            return


def sweep_a_backlog(conn: Conn, size: int) -> dict[str, float]:
    """10 k objects uploaded without the trigger, then a pass: its first slices queue them
    ('backlog/' sorts before 'photos/'); the rest of the pass finds nothing to queue."""
    with trigger_off(conn):
        conn.execute(insert_objects(f"'backlog/{size}/' || lpad(g::text, 6, '0')", BACKLOG))
    conn.execute("analyze storage.objects")
    conn.execute("update captioner.jobs set state = 'done' where state = 'pending'")
    fetch(conn, "select * from caption_jobs_sweep_start('images')")
    queuing, examining = [], []
    while True:
        t0 = time.perf_counter()
        rows = fetch(conn, "select examined, queued, passing from caption_jobs_sweep(%s)", SLICE)
        took = (time.perf_counter() - t0) * 1000
        examined, queued, passing = rows[0]
        (queuing if queued else examining).append(took)
        # the workers take what was queued ('running' keeps it out of the pass's way)
        conn.execute("update captioner.jobs set state = 'running' where state = 'pending'")
        if not passing:
            break
    conn.execute("update captioner.jobs set state = 'pending' where state = 'running'")
    return {
        f"sweep slice queueing {SLICE:,} (backlog {BACKLOG // 1000} k)": statistics.median(queuing),
        f"sweep slice examining {SLICE:,}, nothing to queue": statistics.median(examining),
        "full reconciliation pass (s, whole bucket)": (sum(queuing) + sum(examining)) / 1000,
    }


def claim_and_complete(conn: Conn, repeat: int) -> dict[str, float]:
    """Claims of 8 from the backlog's pending jobs, then completing what they leased."""
    leased: list[tuple[Any, ...]] = []
    claim_ms = median_ms(
        lambda: leased.extend(
            fetch(conn, "select object_id, lease_token from caption_jobs_claim('b', 8, 300, 6)")
        ),
        repeat,
    )
    jobs = iter(leased)
    complete_ms = median_ms(
        lambda: fetch(conn, "select caption_jobs_complete(%s, %s, 'a dog', 'bench')", *next(jobs)),
        min(repeat * 4, len(leased) - 2),
    )
    return {"claim 8": claim_ms, "complete": complete_ms}


def run(env: Environment, quick: bool) -> list[Result]:
    sizes = QUICK_SIZES if quick else SIZES
    db_url = create_database(env.pg.admin_url, env.template)
    create_bucket(db_url, "images")
    table: dict[str, list[float]] = {}
    loads: list[str] = []
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            have = 0
            for size in sizes:
                seconds = grow(conn, have + 1, size)
                have = size
                loads.append(f"{size:,} in {seconds:.0f} s")
                for op, value in measure(conn, size, quick).items():
                    table.setdefault(op, []).append(value)
    finally:
        drop_database(env.pg.admin_url, db_url)
    env.cache["scale"] = {"sizes": sizes, "table": table, "loads": loads}
    return results(sizes, table)


def results(sizes: tuple[int, ...], table: dict[str, list[float]]) -> list[Result]:
    out = []
    for op, values in table.items():
        ratio = values[-1] / values[0] if values[0] > 0 else float("nan")
        unit = "s" if "(s," in op else "ms"
        per_size = "; ".join(
            f"{label(s)} {v:.3f} {unit}" for s, v in zip(sizes, values, strict=True)
        )
        # a pass (rare by design) does a lookup per object in B-trees that deepen and
        # outgrow the CPU caches as the tables grow: O(log N) per object, not O(1)
        flat = not op.startswith(("before", "full reconciliation", "sweep slice"))
        out.append(
            Result(
                f"7. scale: {op}",
                ratio,
                "x",
                f"<= {FLAT:g}x" if flat else "info",
                (ratio <= FLAT) if flat else None,
                per_size,
            )
        )
    return out


def label(size: int) -> str:
    return f"{size // 1_000_000} M" if size >= 1_000_000 else f"{size // 1000} k"


def section(env: Environment) -> str | None:
    """The growth table, for bench/RESULTS.md."""
    data = env.cache.get("scale")
    if not data:
        return None
    sizes, table = data["sizes"], data["table"]
    head = " | ".join(label(s) for s in sizes)
    lines = [
        f"| operation | {head} | {label(sizes[-1])} / {label(sizes[0])} |",
        "|---|" + "---|" * len(sizes) + "---|",
    ]
    for op, values in table.items():
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {op} | {cells} | {values[-1] / values[0]:.2f}x |")
    return (
        "## Scale: 10 k → 1 M objects (bench/scale.py)\n\n"
        "Milliseconds per call (the lowest median of five rounds), unless the operation says "
        "seconds; every object of the bucket captioned. Loading the rows took "
        + ", ".join(data["loads"])
        + ". "
        "The 'before' rows are the seed's sweep query and jobs aggregate, which this design "
        "replaced. A reconciliation pass grows with the bucket by design and runs only on a "
        "new bucket, on `captioner backfill`, or every SWEEP_FULL_INTERVAL; each of its "
        "slices looks every object up in the jobs and captions indexes, whose B-trees deepen "
        "and outgrow the caches as they grow (O(log N) per object).\n\n" + "\n".join(lines)
    )
