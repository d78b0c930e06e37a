"""8. Scale: what each database operation costs with 10 k, 100 k and 1 M objects in the
watched bucket (every one captioned, as in a bucket the service has kept up with).

The rows are generated in SQL (generate_series: objects, their done jobs and captions) in
one throwaway database per size; then each operation is called as the service calls it
(the rpc functions, one connection per database) and timed from the client, in five rounds
that alternate between the sizes, so that load from elsewhere on the shared CPUs falls on
every size alike; the figure is the lowest of the rounds' medians, in ms. The upload trigger's
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


def timed_ms(call: Callable[[], object], calls: int) -> float:
    """The median time of `calls` calls, in ms."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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


# A stage: its tasks, each (operation, probe, how the probe's values combine). A probe
# times one round of calls; rounds alternate between the databases of every size, so that
# load from elsewhere on the shared CPUs falls on every size alike.
Task = tuple[str, Callable[[], float], Callable[[list[float]], float]]
ROUNDS = 5


def constant(op: str, value: float) -> Task:
    return op, lambda: value, min


def stages(conn: Conn, size: int, quick: bool) -> Iterator[list[Task]]:
    """The operations at one size, stage by stage (the same stages at every size)."""
    calls = 6 if quick else 20  # per round
    n = iter(range(10**9))

    def upload() -> None:  # one object per statement and transaction, as storage-api does
        conn.execute(insert_objects(f"'uploads/{size}/{next(n)}.jpg'", 1))

    def trigger_cost() -> float:
        with trigger_off(conn):
            bare = timed_ms(upload, calls)
        return timed_ms(upload, calls) - bare

    yield [("upload trigger (per upload)", trigger_cost, statistics.median)]

    conn.execute("vacuum analyze captioner.jobs")  # as autovacuum would after a burst
    with trigger_off(conn):
        sql = insert_objects(f"'untracked/{size}/' || g || '.jpg'", 100 * ROUNDS)
        ids = [row[0] for row in fetch(conn, sql + " returning id")]
    batches = iter([ids[i : i + 50] for i in range(0, len(ids), 50)])
    yield [
        (
            "enqueue (per object, batches of 50)",
            lambda: (
                timed_ms(
                    lambda: fetch(conn, "select * from caption_jobs_enqueue(%s)", next(batches)), 2
                )
                / 50
            ),
            min,
        )
    ]

    finish_pass(conn)  # the bucket's first pass (at the first size), as the service would
    conn.execute("vacuum analyze captioner.jobs")
    yield [
        (
            "sweep, nothing to do",
            lambda: timed_ms(
                lambda: fetch(conn, "select * from caption_jobs_sweep(%s)", SLICE), calls
            ),
            min,
        ),
        (
            "stats (/metrics, /readyz, status)",
            lambda: timed_ms(lambda: fetch(conn, "select * from caption_jobs_stats()"), calls),
            min,
        ),
        (
            "bucket stats",
            lambda: timed_ms(
                lambda: fetch(conn, "select * from caption_jobs_stats('images')"), calls
            ),
            min,
        ),
        (
            "failures (status)",
            lambda: timed_ms(lambda: fetch(conn, "select * from caption_jobs_failures(10)"), calls),
            min,
        ),
    ]

    yield [constant(op, value) for op, value in sweep_a_backlog(conn, size).items()]

    conn.execute("vacuum analyze captioner.jobs")  # the backlog's churn, as autovacuum would
    leased: list[tuple[Any, ...]] = []
    claim = "select object_id, lease_token from caption_jobs_claim('b', 8, 300, 6, 'bench')"
    yield [("claim 8", lambda: timed_ms(lambda: leased.extend(fetch(conn, claim)), calls), min)]

    jobs = iter(leased)
    complete = "select caption_jobs_complete(%s, %s, 'a dog', 'bench')"
    yield [("complete", lambda: timed_ms(lambda: fetch(conn, complete, *next(jobs)), calls), min)]

    conn.execute("update captioner.jobs set state = 'done' where state = 'pending'")
    seed_sweep = timed_ms(lambda: fetch(conn, SEED_SWEEP), 1)
    seed_stats = timed_ms(lambda: fetch(conn, SEED_STATS), 3)
    yield [
        constant("before: seed sweep query", seed_sweep),
        constant("before: seed stats query", seed_stats),
    ]


def interleaved(conns: list[Conn], sizes: tuple[int, ...], quick: bool) -> dict[str, list[float]]:
    """Every stage at every size; each task's rounds alternate between the sizes."""
    table: dict[str, list[float]] = {}
    runs = [stages(conn, size, quick) for conn, size in zip(conns, sizes, strict=True)]
    for staged in zip(*runs, strict=True):
        for position, (op, _, combine) in enumerate(staged[0]):
            values: list[list[float]] = [[] for _ in sizes]
            for _ in range(ROUNDS):
                for at, tasks in enumerate(staged):
                    values[at].append(tasks[position][1]())
            table[op] = [combine(v) for v in values]
    return table


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


def run(env: Environment, quick: bool) -> list[Result]:
    sizes = QUICK_SIZES if quick else SIZES
    urls = [create_database(env.pg.admin_url, env.template) for _ in sizes]
    loads: list[str] = []
    try:
        conns = [psycopg.connect(url, autocommit=True) for url in urls]
        for conn, url, size in zip(conns, urls, sizes, strict=True):
            create_bucket(url, "images")
            loads.append(f"{size:,} in {grow(conn, 1, size):.0f} s")
        table = interleaved(conns, sizes, quick)
        for conn in conns:
            conn.close()
    finally:
        for url in urls:
            drop_database(env.pg.admin_url, url)
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
                f"8. scale: {op}",
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
