"""Operations endpoints: liveness, readiness with reasons, and Prometheus metrics."""

from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.auth import require_api_key
from app.api.deps import Runtime, RuntimeDep, SettingsDep
from app.core import metrics
from app.core.config import NOT_CONNECTED
from app.core.errors import CaptionError

router = APIRouter(tags=["operations"])


@router.get("/", include_in_schema=False, response_model=None)
async def landing(settings: SettingsDep) -> RedirectResponse | dict[str, str]:
    """The web page when it is served; otherwise where the service's surfaces are."""
    if settings.ui_enabled:
        return RedirectResponse("ui/")
    return {"service": "Supabase image captioner", "api": "POST /v1/captions", "ready": "/readyz"}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, response: Response, runtime: RuntimeDep) -> dict[str, Any]:
    """Supabase answers, the migrations are applied, and the captioner can be used. Without
    the bucket pipeline, only the captioner counts (and `supabase` says what connects it)."""
    checks = {
        "supabase": await _check_supabase(request, runtime),
        "captioner": await _check_captioner(runtime),
    }
    ready = all(result in ("ok", NOT_CONNECTED) for result in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if (route := getattr(runtime.captioner, "route", None)) is not None:
        body["route"] = route.describe()
    if (placement := getattr(runtime.captioner, "placement", None)) is not None:
        body["placement"] = placement.describe()  # a local model's device and dtype, and why
    return body


async def _check_supabase(request: Request, runtime: RuntimeDep) -> str:
    if runtime.queue is None:
        return NOT_CONNECTED
    if not request.app.state.ready:
        reason = getattr(request.app.state, "waiting_for", None)
        return f"waiting: {reason}" if reason else "waiting"
    try:
        await runtime.queue.stats()
    except Exception as exc:
        return f"queue functions not callable (migrations applied?): {type(exc).__name__}: {exc}"
    return "ok"


async def captioner_status(runtime: Runtime) -> str:
    """`ok`, or why captioning cannot work now: what /readyz says of the captioner."""
    return await _check_captioner(runtime)


async def _check_captioner(runtime: RuntimeDep) -> str:
    if runtime.worker is not None and runtime.worker.paused is not None:
        return f"paused: {runtime.worker.paused.reason}"
    captioner = runtime.captioner
    state = getattr(captioner, "state", None)
    if state is not None:  # a local model, loading since the start: loaded means ready
        if state == "loading":
            return state
        if state != "ready":  # not loaded, or failed: try again (the model may be there now)
            try:
                await captioner.load()  # type: ignore[attr-defined]
            except Exception as exc:
                return str(exc)
        return "ok"
    if not captioner.model.startswith(("http://", "https://")):
        # a Hub model id: its route (resolved once, from the Hub), never an inference call
        if getattr(captioner, "route", "") is None:
            try:
                await captioner.resolve()  # type: ignore[attr-defined]
            except CaptionError as exc:
                return f"caption route not resolved: {exc.reason}"
        return "ok"
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            await client.get(captioner.model)
    except httpx.HTTPError as exc:
        return f"captioner endpoint unreachable: {type(exc).__name__}"
    return "ok"


@router.get("/metrics", dependencies=[Depends(require_api_key)], response_class=Response)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text format; the queue gauges are read from the database at scrape time."""
    try:
        stats = await runtime.queue.stats() if runtime.queue is not None else []
    except Exception:
        stats = []  # the process's own metrics still matter when the database is away
    for row in stats:
        metrics.JOBS.labels(row.state).set(row.jobs)
        if row.state == "pending":
            metrics.QUEUE_DEPTH.set(row.jobs)
            metrics.OLDEST_PENDING.set(row.oldest_seconds if row.jobs else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
