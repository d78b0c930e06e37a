"""3. Memory under burst: N webhooks sent as fast as the generator can (1,000 connections
open at once) to a service subprocess; peak RSS growth = VmHWM after the burst minus VmRSS
after a warm-up (VmHWM is reset to the current RSS after the warm-up where the kernel
allows). The worker stays on (WORKER_CONCURRENCY=4, 200 ms captioner), as deployed; the
Supabase stand-in pools its connections (the stock one takes ~3 minutes for 10,000)."""

from __future__ import annotations

import time

from bench.common import (
    Environment,
    Result,
    photo_like,
    read_status,
    reset_peak_rss,
    run_load,
)

TARGET_MB = 50
CONNECTIONS = 1000
WARMUP = 300


def run(env: Environment, quick: bool) -> list[Result]:
    count = 2000 if quick else 10_000
    with env.stack(hf_latency=0.2) as stack:
        ids, _ = stack.insert_objects([photo_like(640, 480)], WARMUP + count, trigger=False)
        payloads = stack.webhook_payloads(ids)
        service = stack.service(worker_concurrency=4)
        hook = service.url + "/webhooks/storage"
        run_load(hook, payloads[:WARMUP], 32, count=WARMUP, scratch=env.scratch)
        time.sleep(1.0)
        baseline = read_status(service.pid)["VmRSS"]
        reset = reset_peak_rss(service.pid)
        load = run_load(hook, payloads[WARMUP:], CONNECTIONS, count=count, scratch=env.scratch)
        after = read_status(service.pid)
    growth_mb = (after["VmHWM"] - baseline) / 1024
    return [
        Result(
            "3. memory under burst",
            growth_mb,
            "MB",
            f"<= {TARGET_MB} MB",
            growth_mb <= TARGET_MB,
            f"{count:,} webhooks over {CONNECTIONS} connections in {load['seconds']:.1f} s "
            f"({load['per_second']:.0f}/s, p99 {load['p99_ms']:.0f} ms, statuses "
            f"{load['statuses']}); RSS {baseline / 1024:.0f} MB after warm-up, peak "
            f"{after['VmHWM'] / 1024:.0f} MB, {after['VmRSS'] / 1024:.0f} MB after"
            + ("" if reset else " (peak not resettable: includes start-up)"),
            {"load": load, "rss_kb": baseline, "after": after},
        )
    ]
