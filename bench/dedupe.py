"""7. Content dedupe: model calls saved on a workload with renames, copies and re-uploads.

Through the storage API (supabase-py against the stand-in), with the service running as
deployed and the trigger's webhooks waking it: N distinct photos are uploaded and
captioned; then some are moved (same id, new version), copied (new id, same bytes),
uploaded again under new names (same bytes) and overwritten with new bytes. Without
dedupe every one of those jobs is a model call; with it only the originals and the
overwrites are. Counted from the captioner stand-in's calls and storage's downloads."""

from __future__ import annotations

import time
from typing import Any

from supabase import create_client

from bench.common import BUCKET, Environment, Result, Stack, photo_like

LATENCY = 0.05


def workload(quick: bool) -> dict[str, int]:
    if quick:
        return {"originals": 20, "moves": 10, "copies": 10, "reuploads": 5, "overwrites": 4}
    return {"originals": 100, "moves": 50, "copies": 50, "reuploads": 25, "overwrites": 10}


def settled(stack: Stack) -> int:
    """Objects whose current version has a finished job."""
    return stack.query(
        "select count(*) from storage.objects o join captioner.jobs j on j.object_id = o.id"
        " where j.state in ('done', 'failed') and j.version is not distinct from o.version"
    )[0][0]


def wait_settled(stack: Stack, timeout: float) -> float:
    total = stack.query("select count(*) from storage.objects")[0][0]
    deadline = time.monotonic() + timeout
    while settled(stack) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{settled(stack)}/{total} objects settled after {timeout}s")
        time.sleep(0.05)
    return time.monotonic()


def model_calls(stack: Stack) -> int:
    return sum(1 for call in stack.hf.calls if call["status"] == 200)


def downloads(stack: Stack) -> int:
    return sum(1 for route, status in stack.supabase.calls if route == "download" and status == 200)


def measure(env: Environment, quick: bool) -> dict[str, Any]:
    counts = workload(quick)
    photos = [photo_like(320, 240, seed=seed) for seed in range(counts["originals"])]
    with env.stack(hf_latency=LATENCY) as stack:
        stack.service(webhooks=True, worker_concurrency=4)
        bucket = create_client(stack.supabase.url, stack.supabase.service_key).storage.from_(BUCKET)
        jpeg = {"content-type": "image/jpeg"}
        for index, data in enumerate(photos):
            bucket.upload(f"inbox/{index:04d}.jpg", data, jpeg)
        wait_settled(stack, timeout=120)
        first_calls, first_downloads = model_calls(stack), downloads(stack)

        started = time.monotonic()
        for index in range(counts["moves"]):
            bucket.move(f"inbox/{index:04d}.jpg", f"sorted/{index:04d}?.jpg")
        for index in range(counts["copies"]):
            bucket.copy(f"inbox/{counts['originals'] - 1 - index:04d}.jpg", f"copies/{index}.jpg")
        for index in range(counts["reuploads"]):
            bucket.upload(f"again/{index}.jpg", photos[index], jpeg)
        fresh = [photo_like(320, 240, seed=1000 + i) for i in range(counts["overwrites"])]
        for index, data in enumerate(fresh):
            name = f"inbox/{counts['originals'] - 1 - index:04d}.jpg"
            bucket.upload(name, data, {**jpeg, "upsert": "true"})
        finished = wait_settled(stack, timeout=120)
        reused = stack.query(
            "select count(*) from public.image_caption ic where ic.reused_from is not null"
            " or exists (select 1 from captioner.caption_reuses r where r.object_id = ic.id)"
        )[0][0]
        return {
            **counts,
            "first_calls": first_calls,
            "second_calls": model_calls(stack) - first_calls,
            "second_downloads": downloads(stack) - first_downloads,
            "second_seconds": finished - started,
            "reused": reused,
            "failed": stack.query("select count(*) from captioner.jobs where state = 'failed'")[0][
                0
            ],
        }


def run(env: Environment, quick: bool) -> list[Result]:
    m = measure(env, quick)
    second_jobs = m["moves"] + m["copies"] + m["reuploads"] + m["overwrites"]
    without = m["originals"] + second_jobs  # every job a model call
    with_dedupe = m["first_calls"] + m["second_calls"]
    saved = without - with_dedupe
    expected = m["originals"] + m["overwrites"]
    notes = (
        f"{m['originals']} uploads, then {m['moves']} moves, {m['copies']} copies, "
        f"{m['reuploads']} re-uploads of the same bytes, {m['overwrites']} overwrites with "
        f"new bytes: {with_dedupe} model calls instead of {without} ({saved} saved); "
        f"second phase: {m['second_calls']} model calls and {m['second_downloads']} downloads "
        f"for {second_jobs} jobs, {m['reused']} captions reused, settled in "
        f"{m['second_seconds']:.1f} s; {m['failed']} failed"
    )
    return [
        Result(
            "7. content dedupe: model calls saved",
            100 * saved / without,
            "%",
            "model calls = originals + overwrites",
            with_dedupe == expected and m["failed"] == 0,
            notes,
            m,
        )
    ]
