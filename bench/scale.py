"""8. Scale: what each database operation costs with 10 k, 100 k and 1 M objects in the
watched bucket (every one captioned, as in a bucket the service has kept up with), measured
as the service and its users call them.

The databases (bench/scale_data.py: one per size, built once in SQL and kept between runs
in BENCH_SCALE_DIR, default /var/tmp/captioner-bench-scale) hold beside the bucket another
watched bucket with a backlog of pending, due jobs (a tenth of the size), storage policies
(anon reads the `images` bucket, a signed-in user what they own), and the trigger configured
as the service configures it (wake-up URL, bearer secret and Standard Webhooks signing).
Each operation is called through the RPC functions as PostgREST calls them: one transaction,
`set_config('role', ...)` and the JWT's claims, as `service_role`, as `anon` or as the
owner of 1,000 of the images; timed from the client, in five rounds that alternate between
the sizes, so that load from elsewhere on the shared CPUs falls on every size alike; the
figure is the lowest of the rounds' medians, in ms. The upload trigger's cost is the
difference between single-row INSERTs into storage.objects with the trigger on and off.
The backlog is 10 k objects uploaded without the trigger (as before an install), queued by
the first slices of a reconciliation pass. The 'before' rows are timed once per size: the
seed's sweep query and jobs aggregate (issue 11), and the bucket stats and caption search of
migrations 0003 and 0009 as they were before issue 18 (with Supabase's statement timeouts:
3 s for anon, 8 s for authenticated).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Environment, Result
from bench.scale_data import KeptCluster, build_seconds, database

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
BACKLOG = 10_000
SLICE = 1_000  # SWEEP_BATCH's default
FLAT = 2.0  # the target: at most 2x from the smallest size to the largest
KEPT_DIR = Path(os.environ.get("BENCH_SCALE_DIR", "/var/tmp/captioner-bench-scale"))
METADATA = (
    "jsonb_build_object('eTag', '\"' || md5(g::text) || '\"', 'size', 150000 + mod(g, 1000),"
    " 'mimetype', 'image/jpeg', 'cacheControl', 'no-cache', 'lastModified', now()::text,"
    " 'contentLength', 150000 + mod(g, 1000), 'httpStatusCode', 200)"
)
OWNER = str(uuid.UUID(hashlib.md5(b"user1").hexdigest()))
CALLERS = {  # who: (role, JWT claims) as PostgREST sets them
    "service role": ("service_role", {"role": "service_role"}),
    "anon": ("anon", {"role": "anon"}),
    "owner": ("authenticated", {"role": "authenticated", "sub": OWNER}),
}
TIMEOUTS = {"anon": "3s", "authenticated": "8s"}  # Supabase's statement_timeout per role
SEARCHES = {  # what: (query, a target: flat from 10 k to 1 M)
    "rare word (5 captions)": ("xylophone", True),
    "first page of a word in half the captions": ("photo", True),
    "no match": ("submarine", True),
    "word in 5 % of the captions": ("horse", False),
}
SEARCH = "select * from public.search_image_captions(%s, 'images', 20)"


def insert_objects(names: str, count: int) -> str:
    """An INSERT of `count` objects named by the SQL expression `names` (of g)."""
    return (
        "insert into storage.objects (bucket_id, name, version, metadata)"
        f" select 'images', {names}, md5(random()::text), {METADATA}"
        f" from generate_series(1, {count}) g"
    )


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
# caption_jobs_stats (0003) and search_image_captions (0009) as they were before issue 18
BEFORE = """
create schema if not exists bench_before;
grant usage on schema bench_before to anon, authenticated, service_role;
create or replace function bench_before.caption_jobs_stats(p_bucket text default null)
returns table (state text, jobs bigint, oldest_seconds double precision)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
  select s.state::text,
         coalesce((select sum(c.jobs) from captioner.job_counts c
                    where c.state = s.state and (p_bucket is null or c.bucket_id = p_bucket)),
                  0)::bigint,
         case when s.state = 'pending' then coalesce((
           select greatest(extract(epoch from now() - j.run_after), 0)
             from captioner.jobs j
            where j.state = 'pending' and (p_bucket is null or j.bucket_id = p_bucket)
            order by j.run_after limit 1), 0)::double precision
         else 0::double precision end
    from unnest(enum_range(null::captioner.job_state)) as s(state)
   order by s.state;
end $$;
create or replace function bench_before.search_image_captions(
  query text, bucket text default null, max_results integer default 20, skip integer default 0)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql stable security invoker set search_path = '' as $fn$
declare
  tsq tsquery := websearch_to_tsquery(public.image_caption_search_language(), left(query, 1000));
begin
  if numnode(tsq) = 0 then
    return;
  end if;
  return query execute $q$
    with hits as (
      select ic.id, ts_rank(ic.search_vector, $1) as rank, ic.updated_at
        from public.image_caption ic
        join storage.objects o on o.id = ic.id
       where ic.search_vector @@ $1 and ($2::text is null or o.bucket_id = $2)
       order by 2 desc, 3 desc, 1
       limit $3 offset $4
    )
    select h.id, o.bucket_id, o.name, ic.caption, ic.model, ic.updated_at, h.rank
      from hits h
      join public.image_caption ic on ic.id = h.id
      join storage.objects o on o.id = h.id
     order by h.rank desc, h.updated_at desc, h.id
  $q$ using tsq, bucket, max_results, skip;
end $fn$;
grant execute on all functions in schema bench_before to anon, authenticated, service_role;
"""

Conn = psycopg.Connection[Any]
TIMED_OUT = -1.0  # a 'before' call the role's statement timeout cancelled


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


def as_caller(conn: Conn, who: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """One call as PostgREST makes it for this caller (role and claims, one transaction),
    under the role's statement timeout."""
    role, claims = CALLERS[who]
    with conn.transaction():
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
            " set_config('statement_timeout', %s, true)",
            (role, json.dumps(claims), TIMEOUTS.get(role, "0")),
        )
        return fetch(conn, sql, *params)


def service(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return as_caller(conn, "service role", sql, *params)


def once_ms(conn: Conn, who: str, sql: str, *params: Any, without: str = "") -> float:
    """One call's time in ms, or TIMED_OUT; `without`: an index dropped for the call (and
    put back: the transaction is rolled back)."""
    role, claims = CALLERS[who]
    try:
        with conn.transaction(force_rollback=True):
            if without:
                conn.execute(f"drop index if exists {without}")
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
                " set_config('statement_timeout', %s, true)",
                (role, json.dumps(claims), TIMEOUTS.get(role, "0")),
            )
            started = time.perf_counter()
            fetch(conn, sql, *params)
            return (time.perf_counter() - started) * 1000
    except psycopg.errors.QueryCanceled:
        return TIMED_OUT


@contextmanager
def trigger_off(conn: Conn) -> Iterator[None]:
    conn.execute("alter table storage.objects disable trigger caption_on_object_change")
    try:
        yield
    finally:
        conn.execute("alter table storage.objects enable trigger caption_on_object_change")


# A stage: its tasks, each (operation, probe, how the probe's values combine). A probe
# times one round of calls; rounds alternate between the databases of every size, so that
# load from elsewhere on the shared CPUs falls on every size alike.
Task = tuple[str, Callable[[], float], Callable[[list[float]], float]]
ROUNDS = 5


def constant(op: str, value: float) -> Task:
    return op, lambda: value, min


def repeated(op: str, conn: Conn, who: str, sql: str, calls: int, *params: Any) -> Task:
    return op, lambda: timed_ms(lambda: as_caller(conn, who, sql, *params), calls), min


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

    yield [
        ("upload trigger (per upload; wake-up queued and signed)", trigger_cost, statistics.median)
    ]

    conn.execute("vacuum analyze captioner.jobs")  # as autovacuum would after a burst
    with trigger_off(conn):
        sql = insert_objects(f"'untracked/{size}/' || g || '.jpg'", 100 * ROUNDS)
        ids = [row[0] for row in fetch(conn, sql + " returning id")]
    batches = iter([ids[i : i + 50] for i in range(0, len(ids), 50)])
    enqueue = "select * from caption_jobs_enqueue(%s)"
    yield [
        (
            "enqueue (per object, batches of 50)",
            lambda: timed_ms(lambda: service(conn, enqueue, next(batches)), 2) / 50,
            min,
        )
    ]

    with backlog_aside(conn):
        finish_pass(conn)  # the buckets' first passes, as the service would
    sweep = "select * from caption_jobs_sweep(p_limit => %s, p_buckets => '{images,archive}')"
    yield [
        repeated("sweep, nothing to do", conn, "service role", sweep, calls, SLICE),
        repeated(
            "stats (/metrics, /readyz, status)",
            conn,
            "service role",
            "select * from caption_jobs_stats()",
            calls,
        ),
        repeated(
            "bucket stats (gallery, backfill; another bucket's backlog due)",
            conn,
            "service role",
            "select * from caption_jobs_stats('images')",
            calls,
        ),
        repeated(
            "failures (status)",
            conn,
            "service role",
            "select * from caption_jobs_failures(10)",
            calls,
        ),
    ]
    yield [
        repeated(f"search: {what}, {who}", conn, who, SEARCH, calls, text)
        for what, (text, _) in SEARCHES.items()
        for who in CALLERS
    ]

    with backlog_aside(conn):  # and the backlog's churn vacuumed, as autovacuum would
        swept = sweep_a_backlog(conn, size)
    yield [constant(op, value) for op, value in swept.items()]

    leased: list[tuple[Any, ...]] = []
    claim = "select object_id, lease_token from caption_jobs_claim('b', 8, 300, 6, 'bench', 6)"
    yield [("claim 8", lambda: timed_ms(lambda: leased.extend(service(conn, claim)), calls), min)]

    jobs = iter(leased)
    complete = "select caption_jobs_complete(%s, %s, 'a dog', 'bench')"
    yield [("complete", lambda: timed_ms(lambda: service(conn, complete, *next(jobs)), calls), min)]

    yield [constant(op, value) for op, value in before(conn).items()]


def before(conn: Conn) -> dict[str, float]:
    """The replaced queries and functions, once each (TIMED_OUT where cancelled)."""
    conn.execute(
        "update captioner.jobs set state = 'done' where state = 'pending' and bucket_id = 'images'"
    )
    conn.execute(BEFORE)
    out = {
        "before: seed sweep query": timed_ms(lambda: fetch(conn, SEED_SWEEP), 1),
        "before: seed stats query": timed_ms(lambda: fetch(conn, SEED_STATS), 3),
        "before: bucket stats (0003)": once_ms(
            conn,
            "service role",
            "select * from bench_before.caption_jobs_stats('images')",
            without="captioner.jobs_pending_of_bucket_idx",  # as it was: no such index
        ),
    }
    old_search = "select * from bench_before.search_image_captions(%s, 'images', 20)"
    for what, (text, target) in SEARCHES.items():
        if target and what != "no match":
            for who in CALLERS:
                out[f"before: search (0009): {what}, {who}"] = once_ms(conn, who, old_search, text)
    return out


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


@contextmanager
def backlog_aside(conn: Conn) -> Iterator[None]:
    """The other bucket's backlog leased meanwhile: a pass waits while as many jobs as a
    slice are pending (caption_jobs_sweep), as it would until the workers caught up."""
    conn.execute(
        "update captioner.jobs set state = 'running', lease_until = 'infinity'"
        " where state = 'pending' and bucket_id = 'archive'"
    )
    try:
        yield
    finally:
        conn.execute(
            "update captioner.jobs set state = 'pending', lease_until = null"
            " where state = 'running' and bucket_id = 'archive'"
        )
        conn.execute("vacuum analyze captioner.jobs")


def finish_pass(conn: Conn) -> None:
    """Sweep until no pass is running, the jobs it queues taken at once (as by workers)."""
    sweep = "select passing from caption_jobs_sweep(p_limit => %s, p_buckets => '{images,archive}')"
    while True:
        rows = service(conn, sweep, SLICE)
        conn.execute(
            "update captioner.jobs set state = 'done'"
            " where state = 'pending' and bucket_id = 'images'"
        )
        if not any(row[0] for row in rows):
            return


def sweep_a_backlog(conn: Conn, size: int) -> dict[str, float]:
    """10 k objects uploaded without the trigger, then a pass: its first slices queue them
    ('backlog/' sorts before 'photos/'); the rest of the pass finds nothing to queue."""
    with trigger_off(conn):
        conn.execute(insert_objects(f"'backlog/{size}/' || lpad(g::text, 6, '0')", BACKLOG))
    conn.execute("analyze storage.objects")
    conn.execute(
        "update captioner.jobs set state = 'done' where state = 'pending' and bucket_id = 'images'"
    )
    service(conn, "select * from caption_jobs_sweep_start('images')")
    queuing, examining = [], []
    sweep = "select examined, queued, passing from caption_jobs_sweep(%s, '{images}')"
    while True:
        t0 = time.perf_counter()
        rows = service(conn, sweep, SLICE)
        took = (time.perf_counter() - t0) * 1000
        examined, queued, passing = rows[0]
        (queuing if queued else examining).append(took)
        # the workers take what was queued ('running' keeps it out of the pass's way)
        conn.execute(
            "update captioner.jobs set state = 'running'"
            " where state = 'pending' and bucket_id = 'images'"
        )
        if not passing:
            break
    conn.execute(
        "update captioner.jobs set state = 'pending'"
        " where state = 'running' and bucket_id = 'images'"
    )
    return {
        f"sweep slice queueing {SLICE:,} (backlog {BACKLOG // 1000} k)": statistics.median(queuing),
        f"sweep slice examining {SLICE:,}, nothing to queue": statistics.median(examining),
        "full reconciliation pass (s, whole bucket)": (sum(queuing) + sum(examining)) / 1000,
    }


def run(env: Environment, quick: bool) -> list[Result]:
    sizes = QUICK_SIZES if quick else SIZES
    cluster = KeptCluster(KEPT_DIR).start()
    loads: list[str] = []
    try:
        urls = []
        for size in sizes:
            url, built = database(cluster.admin_url, size)
            urls.append(url)
            took = built if built is not None else build_seconds(url)
            loads.append(f"{size:,} in {took:.0f} s" + ("" if built is not None else " (kept)"))
        conns = [psycopg.connect(url, autocommit=True) for url in urls]
        try:
            table = interleaved(conns, sizes, quick)
        finally:
            for conn in conns:
                conn.close()  # what the run added is removed by the next run's reset
    finally:
        cluster.stop()
    env.cache["scale"] = {"sizes": sizes, "table": table, "loads": loads}
    return results(sizes, table)


def flat(op: str) -> bool:
    """Whether the operation is held to FLAT: the repeated ones (a pass grows with the bucket
    by design; a word in a few percent of the captions reads up to sqrt(250 x captions))."""
    informative = ("before", "full reconciliation", "sweep slice")
    excluded = [what for what, (_, target) in SEARCHES.items() if not target]
    return not op.startswith(informative) and not any(what in op for what in excluded)


def results(sizes: tuple[int, ...], table: dict[str, list[float]]) -> list[Result]:
    out = []
    for op, values in table.items():
        ratio = values[-1] / values[0] if min(values) > 0 else float("inf")
        unit = "s" if "(s," in op else "ms"
        per_size = "; ".join(
            f"{label(s)} {shown(v)} {unit}" for s, v in zip(sizes, values, strict=True)
        )
        held = flat(op)
        out.append(
            Result(
                f"8. scale: {op}",
                ratio,
                "x",
                f"<= {FLAT:g}x" if held else "info",
                (ratio <= FLAT) if held else None,
                per_size,
            )
        )
    return out


def shown(value: float) -> str:
    return "timeout" if value == TIMED_OUT else f"{value:.3f}"


def label(size: int) -> str:
    return f"{size // 1_000_000} M" if size >= 1_000_000 else f"{size // 1000} k"


# The 1 M figures of the previous run (2026-11-23: as superuser, no wake-up configured, no
# other bucket), for the column "before" beside this run's
PREVIOUS_1M = {
    "upload trigger": "1.044 (no wake-up)",
    "enqueue": "0.351",
    "sweep, nothing to do": "0.107",
    "stats (": "0.169",
    "bucket stats": "0.195 (no other backlog)",
    "failures": "0.167",
    "sweep slice queueing": "65.218",
    "sweep slice examining": "24.213",
    "full reconciliation": "25.061",
    "claim 8": "1.647",
    "complete": "0.639",
}


def before_of(op: str, table: dict[str, list[float]]) -> str:
    """The figure this operation replaced at the largest size: the 'before' row measured in
    this run (the function as it was), else the previous run's."""
    if op.startswith("search: "):
        old = table.get("before: search (0009): " + op.removeprefix("search: "))
        return shown(old[-1]) + " (0009)" if old else ""
    if op.startswith("bucket stats"):
        return shown(table["before: bucket stats (0003)"][-1]) + " (0003)"
    return next((v for k, v in PREVIOUS_1M.items() if op.startswith(k)), "")


def section(env: Environment) -> str | None:
    """The growth table, for bench/RESULTS.md."""
    data = env.cache.get("scale")
    if not data:
        return None
    sizes, table = data["sizes"], data["table"]
    head = " | ".join(label(s) for s in sizes)
    lines = [
        f"| operation | {head} | {label(sizes[-1])} / {label(sizes[0])} "
        f"| before, {label(sizes[-1])} |",
        "|---|" + "---|" * len(sizes) + "---|---|",
    ]
    for op, values in table.items():
        cells = " | ".join(shown(v) for v in values)
        ratio = f"{values[-1] / values[0]:.2f}x" if min(values) > 0 else "—"
        old = "" if op.startswith("before") else before_of(op, table)
        lines.append(f"| {op} | {cells} | {ratio} | {old} |")
    return (
        "## Scale: 10 k → 1 M objects (bench/scale.py)\n\n"
        "Milliseconds per call (the lowest median of five rounds), unless the operation says "
        "seconds, as the service (`service_role`), `anon` and the owner of 1,000 images call "
        "them through PostgREST; every object of the bucket captioned, another watched bucket "
        "with a tenth as many pending, due jobs, the trigger's wake-up configured and signed. "
        "Databases: " + ", ".join(data["loads"]) + ". "
        "'timeout': cancelled by the role's statement timeout (anon 3 s, authenticated 8 s). "
        "The 'before' rows are timed once: the seed's sweep query and jobs aggregate, and the "
        "bucket stats (0003, without the index added since) and search (0009) that issue 18 "
        "replaced; the column 'before' repeats them beside what replaced them, and for the "
        "other operations gives the previous run's figure (2026-11-23, as superuser, no "
        "wake-up configured, no other bucket). A word in 5 % of the captions is not held to "
        "the target: its newest 250 matches are found by reading up to about "
        "sqrt(250 x captions) rows (walking newest first or through the index, whichever "
        "reads fewer). A reconciliation pass grows with "
        "the bucket by design and runs only on a new bucket, on `captioner backfill`, or every "
        "SWEEP_FULL_INTERVAL; each of its slices looks every object up in the jobs and "
        "captions indexes, whose B-trees deepen and outgrow the caches as they grow "
        "(O(log N) per object).\n\n" + "\n".join(lines)
    )
