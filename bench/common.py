"""What the benchmarks share: results, a throwaway Postgres, a stack of stand-ins, the
service as a subprocess, objects inserted straight into the database, synthetic photos."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from PIL import Image
from psycopg.types.json import Jsonb

from tests.harness.hf_stub import HuggingFaceStandIn
from tests.harness.pgnet import WebhookDelivery
from tests.harness.postgres import (
    PostgresServer,
    build_template,
    create_database,
    drop_database,
)
from tests.harness.supabase_stub import SupabaseStandIn, create_bucket
from tests.service_process import ServiceProcess, service_env
from tests.support import TEST_SECRET

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "images"
# on top of tests/service_process.FAST_ENV: quiet logs, and leases no burst can outlast
BENCH_SETTINGS = {"log_level": "WARNING", "lease_seconds": 60}


@dataclass
class Result:
    """One row of the results table."""

    name: str
    measured: float
    unit: str
    target: str
    passed: bool | None  # None: informational, no target
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "info"}[self.passed]

    @property
    def shown(self) -> str:
        value = f"{self.measured:,.3f}" if abs(self.measured) < 10 else f"{self.measured:,.0f}"
        return f"{value} {self.unit}".strip()


class Environment:
    """A throwaway Postgres with the migrations in a template database; a scratch dir."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.pg = PostgresServer()
        self.template = ""
        self.scratch = Path(tempfile.mkdtemp(prefix="captioner-bench-"))
        self.cache: dict[str, Any] = {}  # measurements one benchmark reuses from another

    def __enter__(self) -> Environment:
        self.pg.start()
        self.template = build_template(self.pg.admin_url, "captioner_bench_template")
        return self

    def __exit__(self, *exc: object) -> None:
        self.pg.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    @contextmanager
    def stack(self, hf_latency: float = 0.0) -> Iterator[Stack]:
        """A fresh database with an `images` bucket, a Supabase stand-in (stock, or with
        pooled connections) and an HF stand-in answering after `hf_latency` seconds."""
        db_url = create_database(self.pg.admin_url, self.template)
        create_bucket(db_url, BUCKET)
        storage = Path(tempfile.mkdtemp(dir=self.scratch, prefix="storage-"))
        supabase = SupabaseStandIn(db_url, storage).start()
        hf = HuggingFaceStandIn().start()
        hf.latency = hf_latency
        hf.decode = False  # a model's time is the fixed latency, not the stand-in's own decoding
        stack = Stack(self, db_url, storage, supabase, hf)
        try:
            yield stack
        finally:
            for delivery in stack.deliveries:
                delivery.stop()
            for proc in reversed(stack.processes):
                proc.stop()
            hf.stop()
            supabase.stop()
            drop_database(self.pg.admin_url, db_url)
            shutil.rmtree(storage, ignore_errors=True)


@dataclass
class Stack:
    env: Environment
    db_url: str
    storage_dir: Path
    supabase: SupabaseStandIn
    hf: HuggingFaceStandIn
    processes: list[ServiceProcess] = field(default_factory=list)
    deliveries: list[WebhookDelivery] = field(default_factory=list)

    def service(
        self, supabase_url: str | None = None, webhooks: bool = False, **overrides: Any
    ) -> ServiceProcess:
        """The real service (`captioner serve`, as the container runs it). With `webhooks`,
        the trigger's pg_net webhooks reach it, as in production."""
        return self.process(None, "/readyz", supabase_url, webhooks, **overrides)

    def process(
        self,
        factory: str | None,
        ready_path: str,
        supabase_url: str | None = None,
        webhooks: bool = False,
        **overrides: Any,
    ) -> ServiceProcess:
        """The service, or another ASGI `factory` under uvicorn, configured for the stand-ins."""
        settings = {**BENCH_SETTINGS, "supabase_url": supabase_url or self.supabase.url}
        env = service_env(self.supabase, self.hf, **(settings | overrides))
        log = self.env.scratch / f"service-{uuid.uuid4().hex[:6]}.log"
        proc = ServiceProcess(env, log, factory=factory, ready_path=ready_path)
        if webhooks:
            proc.env["PUBLIC_WEBHOOK_URL"] = proc.webhook_url
            self.deliveries.append(WebhookDelivery(self.db_url).start())
        self.processes.append(proc)
        return proc.start(timeout=30)

    def insert_objects(
        self, images: list[bytes], count: int, *, trigger: bool = True, prefix: str = "bench"
    ) -> tuple[list[str], float]:
        """`count` objects (cycling through `images`) as storage-api would leave them: the
        bytes on disk first, then all rows in one transaction. With `trigger` off the
        database trigger does not queue jobs (for webhook-only benchmarks).
        Returns the ids and the wall-clock time just before the commit."""
        sources = []
        for index, data in enumerate(images):
            path = self.storage_dir / f"source-{index}.jpg"
            path.write_bytes(data)
            sources.append(path)
        rows = []
        for index in range(count):
            object_id, version = str(uuid.uuid4()), str(uuid.uuid4())
            source = sources[index % len(sources)]
            os.link(source, self.storage_dir / f"{object_id}.{version}")
            size = source.stat().st_size
            metadata = {
                "eTag": f'"{uuid.uuid4().hex}"',
                "size": size,
                "mimetype": "image/jpeg",
                "cacheControl": "max-age=3600",
                "lastModified": formatdate(usegmt=True),
                "contentLength": size,
                "httpStatusCode": 200,
            }
            name = f"{prefix}/{index:06d}.jpg"
            rows.append((object_id, BUCKET, name, version, Jsonb(metadata)))
        with psycopg.connect(self.db_url) as conn:
            if not trigger:
                conn.execute("set session_replication_role = replica")
            with conn.cursor() as cursor:
                cursor.executemany(
                    "insert into storage.objects (id, bucket_id, name, version, metadata)"
                    " values (%s, %s, %s, %s, %s)",
                    rows,
                )
            started = time.time()
            conn.commit()
        return [row[0] for row in rows], started

    def webhook_payloads(self, ids: list[str]) -> list[str]:
        """The INSERT webhook body the database trigger sends, for each object."""
        with psycopg.connect(self.db_url) as conn:
            records = dict(
                conn.execute(
                    "select id::text, to_jsonb(o) from storage.objects o"
                    " where id = any(%s::uuid[])",
                    (ids,),
                ).fetchall()
            )
        return [
            json.dumps(
                {
                    "type": "INSERT",
                    "table": "objects",
                    "schema": "storage",
                    "record": records[i],
                    "old_record": None,
                }
            )
            for i in ids
        ]

    def wait_for_captions(self, count: int, timeout: float) -> float:
        """Wait until `count` caption rows exist; returns the newest row's commit epoch."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while True:
                done, last = conn.execute(
                    "select count(*), extract(epoch from max(created_at))::float8"
                    " from public.image_caption"
                ).fetchone()
                if done >= count:
                    return float(last)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {done}/{count} captions after {timeout}s")
                time.sleep(0.05)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def photo_like(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG that compresses like a photo: smooth gradients and shapes plus sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.3)
        base = 110 + 60 * np.sin(fx * 6.28 * x + phase) * np.cos(fy * 6.28 * y)
        base += 50 * (x if c == 0 else y if c == 1 else 1 - x)
        channels.append(base)
    pixels = np.stack(channels, axis=-1)
    for _ in range(12):  # a few soft-edged blobs (objects)
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        mask = ((x - cx) ** 2 + (y - cy) ** 2 < r * r)[..., None]
        pixels = np.where(mask, pixels * 0.5 + rng.uniform(0, 255, 3) * 0.5, pixels)
    pixels += rng.normal(0, 4, pixels.shape).astype(np.float32)  # sensor noise
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a process from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def run_load(
    url: str,
    payloads: list[str],
    connections: int,
    *,
    count: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    rate: float | None = None,
    scratch: Path,
) -> dict[str, Any]:
    """Run bench.loadgen in its own process against `url`; returns its JSON summary."""
    payloads_file = scratch / f"payloads-{uuid.uuid4().hex[:6]}.jsonl"
    payloads_file.write_text("\n".join(payloads) + "\n")
    job = {
        "url": url,
        "secret": TEST_SECRET,
        "payloads_file": str(payloads_file),
        "connections": connections,
        "count": count,
        "duration": duration,
        "warmup": warmup,
        "rate": rate,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(job),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    payloads_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
