"""`captioner doctor`: check every link a deployment depends on, each ✓ or ✗ with its fix."""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from postgrest.exceptions import APIError

from app.captioning import caption_image, open_captioner
from app.core.bounded import read_file
from app.core.config import PIPELINE_SETTINGS, Settings
from app.core.errors import CaptionError
from app.core.images import EXAMPLES
from app.main import connect_supabase

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
EXAMPLE_IMAGE = EXAMPLES / "house.jpg"
# Every function the service, the CLI and the gallery call, and the search users call.
FUNCTIONS = (
    "caption_configure",
    "caption_jobs_enqueue",
    "caption_jobs_claim",
    "caption_jobs_complete",
    "caption_jobs_retry",
    "caption_jobs_fail",
    "caption_jobs_sweep",
    "caption_jobs_requeue_failed",
    "caption_jobs_stats",
    "caption_jobs_failures",
    "caption_jobs_recent",
    "caption_jobs_bucket_states",
    "caption_jobs_reuse",
    "caption_jobs_bucket_size",
    "caption_jobs_sweep_start",
    "caption_jobs_sweep_passes",
    "caption_jobs_requeue",
    "caption_jobs_recaption",
    "caption_recaption_progress",
    "caption_gallery_captions",
    "caption_gallery_jobs",
    "search_image_captions",
    "caption_schema_version",
    "caption_doctor",
)
MIGRATE = "run `captioner migrate` (or apply migrations/*.sql in order)"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def expected_schema_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The version (the name's leading digits) of the highest migration file shipped."""
    numbers = [int(m.group()) for p in directory.glob("*.sql") if (m := re.match(r"\d+", p.name))]
    return max(numbers, default=0)


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a deployment depends on them."""
    checks = await supabase_checks(settings)
    checks.append(await token_check(settings))
    checks.extend(await captioner_checks(settings))
    return checks


# Supabase ---------------------------------------------------------------------------------
async def supabase_checks(settings: Settings) -> list[Check]:
    """URL and key, migrations, buckets, trigger, pg_net, webhook: one rpc answers them."""
    names = ("migrations", "buckets", "trigger", "pg_net", "wake-up webhook")
    if not settings.pipeline_connected:
        missing = Check(
            "Supabase URL and key",
            False,
            "the bucket pipeline is not connected",
            f"set {', '.join(PIPELINE_SETTINGS)}",
        )
        return [missing, *(_unknown(name) for name in names)]
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        try:
            client = await connect_supabase(settings, http)
            query = client.rpc(
                "caption_doctor",
                {"p_functions": list(FUNCTIONS), "p_buckets": settings.caption_buckets},
            )
            report: Any = (await query.execute()).data
        except Exception as exc:
            first = _supabase_failure(exc, settings)
            if first.ok:  # reached, but the schema is not there: the rest cannot be asked
                missing = Check("migrations", False, f"caption_doctor is missing ({exc})", MIGRATE)
                return [first, missing, *(_unknown(name) for name in names[1:])]
            return [first, *(_unknown(name) for name in names)]
    reached = Check("Supabase URL and key", True, f"{settings.supabase_url} answers")
    return [
        reached,
        _migrations(report),
        _buckets(report, settings),
        _trigger(report),
        _pg_net(report),
        _webhook(report, settings),
    ]


def _unknown(name: str) -> Check:
    return Check(name, False, "not checked: Supabase could not be asked", "fix the checks above")


def _supabase_failure(exc: Exception, settings: Settings) -> Check:
    name = "Supabase URL and key"
    if isinstance(exc, httpx.HTTPError):
        return Check(
            name,
            False,
            f"{settings.supabase_url} cannot be reached ({type(exc).__name__}: {exc})",
            "set SUPABASE_URL to your project's URL (https://<ref>.supabase.co)",
        )
    code = exc.code if isinstance(exc, APIError) else None
    if code == "PGRST202":  # the function is not in PostgREST's schema cache
        return Check(name, True, f"{settings.supabase_url} answers")
    if code in ("42501", "PGRST301", "PGRST302") or "JWT" in str(exc):
        return Check(
            name,
            False,
            f"the key was refused ({code}: {getattr(exc, 'message', exc)})",
            "set SUPABASE_SERVICE_ROLE_KEY to the service_role key (Settings → API)",
        )
    return Check(name, False, f"{type(exc).__name__}: {exc}", "check SUPABASE_URL and the key")


def _migrations(report: dict[str, Any]) -> Check:
    version, expected = report["schema_version"], expected_schema_version()
    missing = report["missing_functions"]
    if missing:
        return Check("migrations", False, f"functions missing: {', '.join(missing)}", MIGRATE)
    if version < expected:
        detail = f"schema version {version}, this captioner needs {expected}"
        return Check("migrations", False, detail, MIGRATE)
    return Check("migrations", True, f"schema version {version}, all functions present")


def _buckets(report: dict[str, Any], settings: Settings) -> Check:
    if missing := report["missing_buckets"]:
        return Check(
            "buckets",
            False,
            f"no bucket {', '.join(missing)}",
            "create it (Storage → New bucket) or change CAPTION_BUCKETS",
        )
    return Check("buckets", True, ", ".join(settings.caption_buckets))


def _trigger(report: dict[str, Any]) -> Check:
    if report["trigger"]:
        return Check("trigger", True, "caption_on_object_change on storage.objects")
    return Check("trigger", False, "caption_on_object_change is not on storage.objects", MIGRATE)


def _pg_net(report: dict[str, Any]) -> Check:
    if report["pg_net"]:
        return Check("pg_net", True, "net.http_post available")
    return Check(
        "pg_net",
        False,
        "net.http_post is missing: the trigger cannot send its wake-up webhook",
        "enable the pg_net extension (Database → Extensions), then " + MIGRATE,
    )


def _webhook(report: dict[str, Any], settings: Settings) -> Check:
    configured, wanted = report["webhook_url"], settings.public_webhook_url
    if not wanted:
        return Check(
            "wake-up webhook",
            False,
            "PUBLIC_WEBHOOK_URL is not set: jobs wait for the next poll",
            "set PUBLIC_WEBHOOK_URL=https://<this service>/webhooks/storage",
        )
    if configured != wanted:
        return Check(
            "wake-up webhook",
            False,
            f"the database sends it to {configured or 'nowhere'}, not {wanted}",
            "start the service once: it configures the trigger (caption_configure)",
        )
    return Check("wake-up webhook", True, wanted)


# Hugging Face -----------------------------------------------------------------------------
async def token_check(settings: Settings) -> Check:
    name = "Hugging Face token"
    if settings.resolved_backend == "local":
        return Check(name, True, "not needed (local model)")
    if settings.hf_token is None:
        return Check(name, False, "HF_TOKEN is not set", _TOKEN_FIX)
    api = HfApi(endpoint=settings.hf_endpoint)
    try:
        me = await asyncio.to_thread(api.whoami, settings.hf_token.get_secret_value())
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        return Check(name, False, f"refused by {settings.hf_endpoint} (HTTP {status})", _TOKEN_FIX)
    except httpx2.HTTPError as exc:
        return Check(name, False, f"{settings.hf_endpoint} unreachable: {exc}", "set HF_ENDPOINT")
    role = me.get("auth", {}).get("accessToken", {}).get("role", "?")
    return Check(name, True, f"belongs to {me.get('name')} ({role} token)")


_TOKEN_FIX = "set HF_TOKEN to a token from https://huggingface.co/settings/tokens"


async def captioner_checks(settings: Settings) -> list[Check]:
    """The model's route, then one real caption of a built-in example image."""
    try:
        captioner = await open_captioner(settings)
    except CaptionError as exc:
        return [_failed("model route", exc), _skipped("caption")]
    try:
        route = getattr(captioner, "route", None)
        check = getattr(captioner, "check", None)
        if route is None and check is not None:  # the local model: loadable is its route
            await check()
        shown = route.describe() if route is not None else captioner.model
        checks = [Check("model route", True, shown)]
        checks.append(await _timed_caption(lambda: _caption(settings, captioner)))
        return checks
    except CaptionError as exc:
        return [_failed("model route", exc), _skipped("caption")]
    finally:
        await captioner.aclose()


async def _caption(settings: Settings, captioner: Any) -> str:
    data = await asyncio.to_thread(read_file, EXAMPLE_IMAGE, settings.max_image_bytes)
    return await caption_image(data, captioner, settings)


async def _timed_caption(caption: Callable[[], Awaitable[str]]) -> Check:
    name = f"caption of {EXAMPLE_IMAGE.name}"
    started = time.perf_counter()
    try:
        text = await caption()
    except CaptionError as exc:
        return _failed(name, exc)
    return Check(name, True, f"{text!r} in {time.perf_counter() - started:.1f}s")


def _failed(name: str, exc: CaptionError) -> Check:
    setting = getattr(exc, "setting", None)
    return Check(name, False, exc.reason, f"change {setting}" if setting else "see the reason")


def _skipped(name: str) -> Check:
    return Check(f"{name} of {EXAMPLE_IMAGE.name}", False, "not tried: no route", "fix the route")


def render(checks: list[Check]) -> str:
    """The ✓/✗ table, with the fix under each ✗."""
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        lines.append(f"{'✓' if check.ok else '✗'} {check.name:<{width}}  {check.detail}")
        if not check.ok:
            lines.append(f"  {'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)
