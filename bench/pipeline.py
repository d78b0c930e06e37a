"""2. Pipeline efficiency: N images through the service and a captioner stand-in with a
fixed 200 ms latency at WORKER_CONCURRENCY=C. Efficiency = (N x 0.2 / C) / measured, where
measured runs from the commit of the uploads (bytes already on disk, all rows in one
transaction: upload time does not count) to the newest caption row's commit.

The service runs as a subprocess (its own interpreter and GIL, as deployed); the Supabase
and HF stand-ins share the bench process. The database trigger queues the jobs; no
webhook is configured, so the idle worker notices them at its next poll (<= 0.2 s)."""

from __future__ import annotations

from typing import Any

from bench.common import Environment, Result, photo_like

LATENCY = 0.2
CONCURRENCY = 8
TARGET = 0.95
IMAGE_SIZE = (1600, 1200)  # a 2-megapixel photo: the 500 are processed by the baseline too


def images() -> list[bytes]:
    return [photo_like(*IMAGE_SIZE, seed=seed) for seed in range(4)]


def measure(env: Environment, count: int) -> dict[str, Any]:
    """Process `count` images with the service; cached for the Edge Function comparison."""
    key = f"pipeline-{count}"
    if key in env.cache:
        return env.cache[key]
    sources = images()
    with env.stack(hf_latency=LATENCY) as stack:
        stack.service(webhooks=True, worker_concurrency=CONCURRENCY)
        ids, started = stack.insert_objects(sources, count)
        finished = stack.wait_for_captions(count, timeout=120)
        calls = [c for c in stack.hf.calls if c["status"] == 200]
        originals = sum(len(sources[i % len(sources)]) for i in range(count))
        env.cache[key] = {
            "count": count,
            "seconds": finished - started,
            "hf_bytes": sum(c["n_bytes"] for c in calls),
            "hf_calls": len(calls),
            # as the captioner stand-in saw it: its own time per call, over the run
            "captioner_busy_ms": 1000 * sum(c["time"] - c["started"] for c in calls) / len(calls),
            "first_call_after": min(c["started"] for c in calls) - started,
            "last_call_to_row": finished - max(c["time"] for c in calls),
            "original_bytes": originals,
            "failed": stack.query("select count(*) from captioner.jobs where state='failed'")[0][0],
        }
    return env.cache[key]


def run(env: Environment, quick: bool) -> list[Result]:
    count = 100 if quick else 500
    ideal = count * LATENCY / CONCURRENCY
    stats = measure(env, count)
    efficiency = ideal / stats["seconds"]
    return [
        Result(
            "2. pipeline efficiency",
            efficiency,
            "",
            f">= {TARGET}",
            efficiency >= TARGET,
            f"{count} images ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG), C={CONCURRENCY}, "
            f"{LATENCY * 1000:.0f} ms captioner: ideal {ideal:.2f} s, measured "
            f"{stats['seconds']:.2f} s ({count / stats['seconds']:.1f} images/s), "
            f"{stats['failed']} failed; the stand-in's own time per call "
            f"{stats['captioner_busy_ms']:.1f} ms, first call {stats['first_call_after']:.2f} s "
            f"after the uploads, last row {stats['last_call_to_row']:.2f} s after the last call",
            stats,
        )
    ]
