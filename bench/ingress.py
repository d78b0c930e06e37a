"""1. Ingress: webhooks accepted per second, and latency, against ONE uvicorn process.

Each webhook is a real INSERT payload for an object that exists in storage.objects (rows
inserted with the trigger off, so the webhook's enqueue really inserts the job). The
worker is off (WORKER_ENABLED=false) and no PUBLIC_WEBHOOK_URL is set: only ingress runs.

The service's rpc goes to one of three PostgREST back ends, to say what limits it:
  stand-in  tests/harness SupabaseStandIn (pooled connections, like PostgREST);
  no-db     a minimal PostgREST answering "queued" without a database: the service's own
            cost per webhook (HTTP in, validation, rpc client round trip).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.common import Environment, Result, run_load
from tests.harness.servers import ThreadedServer

CONNECTIONS = 32
PACED_CONNECTIONS = 64
TARGET_RPS = 1000
TARGET_P99_MS = 50


class MinimalPostgrest:
    """Answers the rpc calls of the ingress path at once, without a database."""

    def __init__(self) -> None:
        self.app = Starlette(routes=[Route("/rest/v1/rpc/{fn}", self.rpc, methods=["POST"])])

    async def rpc(self, request: Request) -> Response:
        fn = request.path_params["fn"]
        body = await request.json() if fn == "caption_jobs_enqueue" else {}
        canned = {
            "caption_jobs_enqueue": [
                {"object_id": oid, "outcome": "queued"} for oid in body.get("p_object_ids", [])
            ],
            "caption_jobs_stats": [],
        }
        return JSONResponse(canned[fn]) if fn in canned else Response(status_code=204)


def measure(env: Environment, mode: str, quick: bool, rate: float | None) -> dict[str, Any]:
    """Closed loop (`rate` None: as fast as CONNECTIONS allow) or paced at `rate` per second."""
    duration = 3.0 if quick else 8.0
    count = 8000 if quick else 20000  # distinct objects: a repeat would be a 'duplicate'
    with env.stack() as stack:
        ids, _ = stack.insert_objects([b"\xff\xd8 not read"], count, trigger=False)
        payloads = stack.webhook_payloads(ids)
        server = ThreadedServer(MinimalPostgrest().app).start() if mode == "no-db" else None
        try:
            service = stack.service(server.url if server else None, worker_enabled="false")
            stats = run_load(
                service.url + "/webhooks/storage",
                payloads,
                PACED_CONNECTIONS if rate else CONNECTIONS,
                duration=duration,
                warmup=200,
                rate=rate,
                scratch=env.scratch,
            )
        finally:
            if server is not None:
                server.stop()
        stats["jobs_queued"] = stack.query("select count(*) from captioner.jobs")[0][0]
    return stats


def run(env: Environment, quick: bool) -> list[Result]:
    results = []
    for mode in ("stand-in", "no-db"):
        capacity = measure(env, mode, quick, rate=None)
        paced = measure(env, mode, quick, rate=TARGET_RPS)
        most = capacity["statuses"].get("200", 0) / capacity["seconds"]
        achieved = paced["statuses"].get("200", 0) / paced["seconds"]
        p99 = paced["p99_ms"] or 1e9
        passed = most >= TARGET_RPS and achieved >= 0.95 * TARGET_RPS and p99 <= TARGET_P99_MS
        results.append(
            Result(
                f"1. ingress, rpc via {mode}",
                most,
                "webhooks/s",
                f">= {TARGET_RPS}/s and p99 <= {TARGET_P99_MS} ms",
                passed if mode == "stand-in" else None,
                f"at most {most:.0f}/s ({CONNECTIONS} connections, p50 "
                f"{capacity['p50_ms']:.1f} ms, p99 {capacity['p99_ms']:.1f} ms); offered "
                f"{TARGET_RPS}/s: {achieved:.0f}/s accepted, p50 {paced['p50_ms']:.1f} ms, "
                f"p99 {p99:.1f} ms; statuses {capacity['statuses']} / {paced['statuses']}",
                {"capacity": capacity, "paced": paced},
            )
        )
    return results
