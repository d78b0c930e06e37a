"""The databases bench/scale.py measures: one per size, built once in SQL (generate_series)
and kept between runs in a Postgres cluster of their own (BENCH_SCALE_DIR), since a million
objects take minutes to load on shared CPUs. Each run re-applies the migrations (every file
is re-runnable), puts the fixture back as it was built (what an earlier run added is
removed, the other bucket's backlog is due again) and configures it as the service does.

A database of size N holds, like a project the service has kept up with:
- bucket `images` (watched, readable by `anon`): N objects, each with a done job and a
  caption drawn from a small vocabulary with skewed frequencies (`photo` in half of them,
  `horse` in about 5 %), a word of a long tail (30,000 words: it keeps the planner's
  statistics realistic), and `xylophone` in exactly 5; owned by N / 1,000 users, 1,000 images
  each, interleaved (a user's images are spread over the table, as uploads over time are);
- bucket `archive` (watched, private): N / 10 objects whose jobs are pending and due, another
  bucket's backlog;
- storage policies: `anon` reads bucket `images`; a signed-in user reads what they own
  (`owner_id = auth.uid()`), with `owner_id` indexed as the README asks.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.harness.postgres import (
    MIGRATIONS_DIR,
    apply_sql_file,
    build_template,
    find_bin_dir,
    initdb,
)

TEMPLATE = "captioner_bench_scale_template"
OWNER_SUB = "md5('user1')::uuid"  # the signed-in owner the searches are made as
WEBHOOK = "http://127.0.0.1:9/webhooks/storage"  # configured as the service does; never sent
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

BUILD = """
set session_replication_role = replica;  -- bulk load: no triggers (counters recounted below)
insert into storage.buckets (id, name, public) values ('images', 'images', true),
  ('archive', 'archive', false) on conflict do nothing;
select setseed(0.42);
with o as (
  insert into storage.objects (bucket_id, name, owner_id, version, metadata)
  select 'images', 'photos/' || lpad(g::text, 7, '0') || '.jpg',
         md5('user' || (g % greatest(:n / 1000, 1)))::uuid::text, md5(g::text),
         jsonb_build_object('eTag', '"' || md5(g::text) || '"', 'size', 150000 + mod(g, 1000),
           'mimetype', 'image/jpeg', 'cacheControl', 'no-cache', 'lastModified', now()::text,
           'contentLength', 150000 + mod(g, 1000), 'httpStatusCode', 200)
    from generate_series(1, :n) g
  returning id, version, name
), j as (
  insert into captioner.jobs (object_id, version, bucket_id, state, attempts)
  select id, version, 'images', 'done', 1 from o
), w (adj, noun, pose, place) as (values (
  array['red','blue','green','small','large','old','young','happy','wooden'],
  array['dog','cat','car','house','tree','boat','person','bird','horse','bicycle'],
  array['standing','sitting','parked','lying'],
  array['street','beach','park','kitchen','field','table','river','forest','road']))
insert into public.image_caption (id, caption, model, object_version, updated_at)
select o.id,
       case when random() < 0.5 then 'a photo of ' else '' end
       || format('a %s %s %s on a %s', w.adj[1 + floor(power(random(), 2) * 9)::int],
                 w.noun[1 + floor(power(random(), 2) * 10)::int],
                 w.pose[1 + floor(random() * 4)::int],
                 w.place[1 + floor(power(random(), 2) * 9)::int])
       || format(' near %s', md5(floor(random() * 30000)::text))
       || case when substr(o.name, 8, 7)::int % (:n / 5) = 0
               then ' next to a xylophone' else '' end,
       'bench', o.version, now() - make_interval(secs => random() * 86400 * 30)
  from o, w;
with o as (
  insert into storage.objects (bucket_id, name, version, metadata)
  select 'archive', 'old/' || lpad(g::text, 7, '0') || '.jpg', md5('a' || g),
         '{"mimetype": "image/jpeg", "size": 1000}'::jsonb
    from generate_series(1, :n / 10) g
  returning id, version
)
insert into captioner.jobs (object_id, version, bucket_id, state, attempts)
select id, version, 'archive', 'pending', 0 from o;
set session_replication_role = origin;
create index if not exists bench_objects_owner_idx on storage.objects (owner_id);
"""
POLICIES = """
drop policy if exists bench_anon_reads_images on storage.objects;
create policy bench_anon_reads_images on storage.objects for select to anon
  using (bucket_id = 'images');
drop policy if exists bench_owner_reads_own on storage.objects;
create policy bench_owner_reads_own on storage.objects for select to authenticated
  using (owner_id = (select auth.uid())::text);
"""
# what a run adds, removed before the next (and after it): uploads, the un-queued objects
# and the backlog; the other bucket's jobs pending and due again, its captions gone
RESET = """
select set_config('storage.allow_delete_query', 'true', false);  -- storage-api's own switch
delete from storage.objects
 where bucket_id = 'images' and name !~ '^photos/';
delete from public.image_caption ic using storage.objects o
 where o.id = ic.id and o.bucket_id = 'archive';
update captioner.jobs set state = 'pending', attempts = 0, run_after = now() - interval '1 hour',
       lease_token = null, lease_until = null, worker = null, last_error = null
 where bucket_id = 'archive' and state <> 'pending';
update captioner.jobs set state = 'done' where bucket_id = 'images' and state <> 'done';
delete from captioner.sweep_passes;
delete from captioner.sweep_missed;
truncate net.http_request_queue;
delete from captioner.job_counts;
insert into captioner.job_counts (bucket_id, state, shard, jobs)
select coalesce(bucket_id, ''), state, 0, count(*) from captioner.jobs group by 1, 2;
"""


class KeptCluster:
    """A Postgres cluster in `directory` that outlives the run: created the first time,
    started when stopped (and stopped again by stop() if this run started it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.started_here = False

    @property
    def port(self) -> int:
        return int((self.directory / "port").read_text())

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> KeptCluster:
        bin_dir = find_bin_dir()
        if not self.data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._chown()
            self._run(initdb(bin_dir, str(self.data)))
            (self.directory / "port").write_text(str(55000 + os.getpid() % 1000))
        if not (self.data / "postmaster.pid").exists():
            opts = (
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c shared_buffers=1GB -c maintenance_work_mem=512MB -c max_wal_size=4GB"
            )
            self._run(
                [
                    f"{bin_dir}/pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.directory / "log"),
                    "-o",
                    opts,
                    "-w",
                    "start",
                ]
            )
            self.started_here = True
        return self

    def stop(self) -> None:
        if self.started_here:
            self._run([f"{find_bin_dir()}/pg_ctl", "-D", str(self.data), "-w", "stop"])

    def _chown(self) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.directory)], check=True)

    def _run(self, cmd: list[str]) -> None:
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")


def database(admin_url: str, size: int) -> tuple[str, float | None]:
    """The database of this size, built if missing, migrated and reset for a run; and the
    seconds its build took when this run built it."""
    name = f"bench_scale_{size}"
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    built = None
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    if exists and not _is_built(url):
        _drop(admin_url, name)
        exists = None
    if not exists:
        built = _build(admin_url, name, url, size)
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        apply_sql_file(url, path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POLICIES)
        conn.execute(RESET)
        conn.execute(
            "select caption_configure(p_buckets => '{images,archive}', p_webhook_url => %s,"
            " p_webhook_secret => 'bench-secret', p_signing_secret => %s)",
            (WEBHOOK, SIGNING),
        )
        conn.execute("vacuum analyze captioner.jobs, storage.objects, public.image_caption")
    return url, built


def _is_built(url: str) -> bool:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute("select count(*) from bench_built").fetchone() == (1,)
    except psycopg.Error:
        return False


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def _build(admin_url: str, name: str, url: str, size: int) -> float:
    started = time.monotonic()
    build_template(admin_url, TEMPLATE)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
        conn.execute(
            sql.SQL('alter database {} set search_path to "$user", public, extensions').format(
                sql.Identifier(name)
            )
        )
    with psycopg.connect(url) as conn:
        conn.execute(BUILD.replace(":n", str(size)).encode())
        seconds = time.monotonic() - started
        conn.execute("create table bench_built (size bigint, seconds real)")
        conn.execute("insert into bench_built values (%s, %s)", (size, seconds))
    return seconds


def build_seconds(url: str) -> float:
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("select seconds from bench_built").fetchone()
    return float(row[0])
