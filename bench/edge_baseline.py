"""6. The seed's design (Supabase's Edge Function, bench/edge_function.py) against this
service: the same images, the same 200 ms captioner stand-in, the same concurrency.

The Edge Function is reached the way Supabase reaches it: the database trigger's pg_net
request after the upload commits (tests/harness pg_net stand-in, here with as many
parallel requests as the service has workers, so that only the designs differ). Time runs
from the upload commit to the newest caption row. The stand-in answers in 200 ms whatever
the image size, unlike a real model (whose cost and upload time grow with the pixels and
bytes it is sent), so the time ratio understates the difference."""

from __future__ import annotations

from bench import pipeline
from bench.common import Environment, Result
from tests.harness.pgnet import WebhookDelivery


def measure_edge_function(env: Environment, count: int) -> dict[str, float]:
    sources = pipeline.images()
    with env.stack(hf_latency=pipeline.LATENCY) as stack:
        function = stack.process("bench.edge_function:create_app", "/health")
        stack.query(
            "select public.caption_configure(array['images'], %s, 'edge-secret', null)",
            function.url + "/",
        )
        with WebhookDelivery(stack.db_url, concurrency=pipeline.CONCURRENCY):
            _, started = stack.insert_objects(sources, count)
            finished = stack.wait_for_captions(count, timeout=300)
        calls = [c for c in stack.hf.calls if c["status"] == 200]
        return {
            "seconds": finished - started,
            "hf_bytes": sum(c["n_bytes"] for c in calls),
            "original_bytes": sum(len(sources[i % len(sources)]) for i in range(count)),
        }


def run(env: Environment, quick: bool) -> list[Result]:
    count = 100 if quick else 500
    edge = measure_edge_function(env, count)
    ours = pipeline.measure(env, count)
    time_ratio = edge["seconds"] / ours["seconds"]
    edge_share = edge["hf_bytes"] / edge["original_bytes"]
    our_share = ours["hf_bytes"] / ours["original_bytes"]
    return [
        Result(
            "6. seed Edge Function vs service: time",
            time_ratio,
            "x",
            "info",
            None,
            f"{count} images, C={pipeline.CONCURRENCY}: Edge Function "
            f"{edge['seconds']:.2f} s, service {ours['seconds']:.2f} s (ratio > 1: service "
            "faster); the stand-in's 200 ms does not grow with image size, so this "
            "understates the difference",
            {"edge": edge, "service": ours},
        ),
        Result(
            "6. seed Edge Function vs service: bytes",
            edge["hf_bytes"] / ours["hf_bytes"],
            "x",
            "info",
            None,
            f"to the captioner: Edge Function {edge['hf_bytes'] / 1e6:.1f} MB "
            f"({edge_share:.0%} of originals), service {ours['hf_bytes'] / 1e6:.1f} MB "
            f"({our_share:.1%})",
        ),
    ]
