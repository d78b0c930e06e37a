"""9. Backfill of a big bucket: 100 k images that were in the bucket before the install (no
jobs), every object's bytes a hard link to one small JPEG, rows generated in SQL.

First the real `captioner backfill` (a subprocess, as a user runs it) against the captioner
stand-in answering after a fixed latency (its own decoding off) at WORKER_CONCURRENCY=C,
for a fixed window, then interrupted (Ctrl-C): the rate it printed, the captioner's mean
concurrency over the window (from the stand-in's own call times) against C, and the
database's cost per image. A 100 k backfill at a real captioner's pace takes an hour or
more, so the rest of the bucket is then captioned by a replay of the CLI's database calls
(the same rpc functions, in the same pattern: a slice of the pass when the queue runs low,
claims of up to 2C, a completion per image, stats each round) without HTTP or a captioner;
its time per image in each tenth of the 100 k shows whether the database's cost per image
grows as the pass moves through the bucket and the captions accumulate. Database time is
what pg_stat_user_functions reports for the project's SQL functions (track_functions = all).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg

from bench.common import REPO_ROOT, Environment, Result, photo_like
from tests.service_process import service_env

IMAGES = 100_000
QUICK_IMAGES = 10_000
LATENCY = 0.5  # a small model on a GPU endpoint
CONCURRENCY = 16
WINDOW = 120.0  # seconds of the real CLI
QUICK_WINDOW = 30.0
BATCH = 1000
LINKS = 50_000  # hard links per source file (ext4 allows 65,000)
FLAT = 1.5  # database cost per image, last tenth / first tenth
GENERATE = """
insert into storage.objects (bucket_id, name, version, metadata)
select 'images', 'archive/' || lpad(g::text, 7, '0') || '.jpg', md5(g::text),
       jsonb_build_object('size', %(size)s::int, 'mimetype', 'image/jpeg',
                          'eTag', '"' || md5(g::text) || '"')
  from generate_series(1, %(count)s::int) g
returning id::text, version
"""
DB_TIME = """
select coalesce(sum(self_time), 0), coalesce(sum(calls), 0) from pg_stat_user_functions
 where schemaname = 'captioner' or (schemaname = 'public' and funcname like 'caption%')
"""
DONE = "select jobs from caption_jobs_stats('images') where state = 'done'"


def pre_existing(db_url: str, storage_dir: Any, count: int) -> None:
    """`count` objects uploaded before the install: rows without jobs, bytes on disk."""
    data = photo_like(96, 72, seed=1, quality=80)
    sources = []
    for n in range(count // LINKS + 1):  # a file system allows only so many links to a file
        sources.append(storage_dir / f"source-{n}.jpg")
        sources[-1].write_bytes(data)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        rows = conn.execute(GENERATE, {"size": len(data), "count": count}).fetchall()
        conn.execute("set session_replication_role = origin")
        conn.execute("vacuum analyze storage.objects")
    for n, (object_id, version) in enumerate(rows):
        os.link(sources[n // LINKS], storage_dir / f"{object_id}.{version}")


class Sampler(threading.Thread):
    """Every second: images done, the database's time in our functions, and the captioner
    stand-in's finished calls (their bodies dropped, to keep memory flat)."""

    def __init__(self, db_url: str, hf: Any) -> None:
        super().__init__(daemon=True)
        self.db_url, self.hf = db_url, hf
        self.samples: list[tuple[float, int, float, int]] = []  # t, done, db ms, db calls
        self.spans: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute("set stats_fetch_consistency = none")
            while not self.stop.wait(1.0):
                self.sample(conn)
            self.sample(conn)

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        done = conn.execute(DONE).fetchone()
        ms, calls = conn.execute(DB_TIME).fetchone() or (0, 0)
        self.samples.append((time.time(), int(done[0] if done else 0), float(ms), int(calls)))
        with self.hf._lock:
            calls_now, self.hf.calls = self.hf.calls, []
        self.spans += [(c["started"], c["time"]) for c in calls_now if c["status"] == 200]


def db_ms_per_image(samples: list[tuple[float, int, float, int]]) -> float:
    """Database ms per image captioned between the first and the last sample."""
    first, last = samples[0], samples[-1]
    return (last[2] - first[2]) / max(last[1] - first[1], 1)


def mean_concurrency(spans: list[tuple[float, float]], start: float, end: float) -> float:
    busy = sum(min(b, end) - max(a, start) for a, b in spans if b > start and a < end)
    return busy / (end - start)


def real_cli(stack: Any, window: float) -> dict[str, Any]:
    """`captioner backfill` for `window` seconds, then Ctrl-C."""
    settings = {
        "worker_concurrency": CONCURRENCY,
        "log_level": "WARNING",
        "lease_seconds": 60,
        "caption_buckets": "images",
    }
    cli_env = service_env(stack.supabase, stack.hf, **settings)
    cli_env["PYTHONPATH"] = str(REPO_ROOT)
    sampler = Sampler(stack.db_url, stack.hf)
    sampler.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.commands.cli", "backfill"]
        + ["--bucket", "images", "--batch", str(BATCH)],
        env=cli_env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.wait(timeout=window)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    stopped = time.monotonic() - interrupted
    sampler.stop.set()
    sampler.join()
    lines = [line for line in stderr.splitlines() if "images/s" in line]
    if not lines:
        raise RuntimeError(f"no progress from captioner backfill:\n{stderr[-3000:]}")
    steady = [s for s in sampler.samples if s[1] > 0]  # from the first caption on
    return {
        "lines": lines,
        "rate": (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]),
        "concurrency": mean_concurrency(sampler.spans, steady[0][0], steady[-1][0]),
        "db_ms": db_ms_per_image(steady),
        "captioned": steady[-1][1],
        "stopped": stopped,
        "code": proc.returncode,
    }


def replay(db_url: str, count: int) -> list[float]:
    """The CLI's database calls until all `count` are done: database ms per image in each
    tenth of the bucket."""
    tenths: list[float] = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set stats_fetch_consistency = none")
        conn.execute(
            "update captioner.jobs set state = 'pending', lease_token = null"
            " where state = 'running'"
        )  # what the interrupted CLI held

        def db_ms() -> float:
            conn.execute("select pg_stat_force_next_flush()")
            return float((conn.execute(DB_TIME).fetchone() or (0, 0))[0])

        done = int((conn.execute(DONE).fetchone() or (0,))[0])
        mark, mark_ms = done, db_ms()
        while done < count:
            rows = conn.execute(
                "select * from caption_jobs_sweep(%s, '{images}')", (BATCH,)
            ).fetchall()
            leased = conn.execute(
                "select object_id, lease_token"
                " from caption_jobs_claim('replay', %s, 60, 6, null, 6)",
                (2 * CONCURRENCY,),
            ).fetchall()
            for object_id, token in leased:
                conn.execute(
                    "select caption_jobs_complete(%s, %s, 'an image', 'replay')", (object_id, token)
                )
            done = int((conn.execute(DONE).fetchone() or (0,))[0])
            if not leased and not any(row[4] for row in rows):
                break
            if done - mark >= count // 10:
                now_ms = db_ms()
                tenths.append((now_ms - mark_ms) / (done - mark))
                mark, mark_ms = done, now_ms
    return tenths


def run(env: Environment, quick: bool) -> list[Result]:
    count = QUICK_IMAGES if quick else IMAGES
    with env.stack(hf_latency=LATENCY) as stack:
        dbname = psycopg.conninfo.conninfo_to_dict(stack.db_url)["dbname"]
        with psycopg.connect(env.pg.admin_url, autocommit=True) as conn:
            conn.execute(f"alter database \"{dbname}\" set track_functions = 'all'")
        pre_existing(stack.db_url, stack.storage_dir, count)
        cli = real_cli(stack, QUICK_WINDOW if quick else WINDOW)
        tenths = replay(stack.db_url, count)
    ideal = CONCURRENCY / LATENCY
    growth = tenths[-1] / tenths[0] if tenths and tenths[0] > 0 else float("nan")
    per_tenth = ", ".join(f"{ms:.3f}" for ms in tenths)
    return [
        Result(
            "9. backfill (CLI): images/s",
            cli["rate"],
            "images/s",
            "info",
            None,
            f"{count:,} pre-existing images, {LATENCY * 1000:.0f} ms captioner, "
            f"C={CONCURRENCY} (ideal {ideal:.0f}/s); {cli['captioned']:,} captioned in the "
            f"window; the CLI printed: {cli['lines'][-1]!r}",
        ),
        Result(
            "9. backfill (CLI): captioner concurrency held",
            cli["concurrency"],
            f"of C={CONCURRENCY}",
            "info",
            None,
            "mean calls in flight at the stand-in from the first caption to the end of the "
            f"window; database {cli['db_ms']:.3f} ms per image in the window; after Ctrl-C "
            f"it exited in {cli['stopped']:.1f} s (code {cli['code']})",
        ),
        Result(
            "9. backfill (replay to 100 %): database ms per image, growth",
            growth,
            "x",
            f"<= {FLAT:g}x",
            bool(tenths) and growth <= FLAT,
            f"ms per image in each tenth of the {count:,}: {per_tenth}",
        ),
    ]
