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
from app.commands.migrate import MIGRATIONS_DIR
from app.commands.status import plan_line
from app.core.bounded import read_file
from app.core.config import KEY_SETTINGS, PIPELINE_SETTINGS, Settings
from app.core.errors import CaptionError
from app.core.images import EXAMPLES
from app.core.keys import refused_key
from app.main import connect_supabase

EXAMPLE_IMAGE = EXAMPLES / "house.jpg"
# Every function the service, the CLI and the gallery call, and the search users call, by
# the argument names the code sends: PostgREST finds a function by its name and those names,
# so an older version of one (other arguments) fails the worker as surely as none at all.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "caption_configure": (
        "p_buckets",
        "p_webhook_url",
        "p_webhook_secret",
        "p_signing_secret",
        "p_mimetypes",
        "p_describe",
    ),
    "caption_jobs_enqueue": ("p_object_ids",),
    "caption_jobs_claim": (
        "p_worker",
        "p_limit",
        "p_lease_seconds",
        "p_max_attempts",
        "p_model",
        "p_max_pauses",
    ),
    "caption_jobs_reuse": ("p_object_id", "p_lease_token", "p_fingerprint", "p_model"),
    "caption_jobs_complete": (
        "p_object_id",
        "p_lease_token",
        "p_caption",
        "p_model",
        "p_fingerprint",
        "p_caption_ms",
        "p_descriptions",
        "p_kept",
    ),
    "caption_jobs_described": (
        "p_object_id",
        "p_lease_token",
        "p_model",
        "p_languages",
        "p_fields",
        "p_prompt",
    ),
    "caption_jobs_retry": (
        "p_object_id",
        "p_lease_token",
        "p_error",
        "p_delay_seconds",
        "p_refund",
        "p_pause",
    ),
    "caption_jobs_fail": ("p_object_id", "p_lease_token", "p_error"),
    "caption_jobs_extend": ("p_object_id", "p_lease_token", "p_lease_seconds"),
    "caption_jobs_sweep": ("p_limit", "p_buckets", "p_full_every_seconds"),
    "caption_jobs_requeue_failed": ("p_limit",),
    "caption_jobs_stats": ("p_bucket",),
    "caption_jobs_failures": ("p_limit",),
    "caption_jobs_recent": ("p_state", "p_limit"),
    "caption_jobs_bucket_states": (),
    "caption_jobs_bucket_size": ("p_bucket",),
    "caption_jobs_sweep_start": ("p_bucket",),
    "caption_jobs_sweep_passes": (),
    "caption_jobs_requeue": ("p_object_ids",),
    "caption_jobs_recaption": (
        "p_bucket",
        "p_prefix",
        "p_model",
        "p_limit",
        "p_since",
        "p_languages",
    ),
    "caption_recaption_progress": ("p_bucket", "p_prefix", "p_model", "p_languages"),
    "caption_gallery_captions": ("p_bucket", "p_limit", "p_ids"),
    "caption_gallery_jobs": ("p_bucket", "p_state", "p_limit"),
    "search_image_captions": ("query", "bucket", "max_results", "skip"),
    "caption_schema_version": (),
    "caption_doctor": ("p_signatures", "p_buckets"),
    "caption_doctor_wake_up": (),
    "caption_doctor_wake_up_answer": ("p_request_id",),
    "caption_descriptions": ("p_ids",),
    "caption_description_edit": ("p_id", "p_language", "p_fields", "p_editor"),
    "caption_description_history": ("p_id",),
    "edit_image_description": ("p_id", "p_language", "p_fields"),
}
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
    checks.append(descriptions_check(settings))
    checks.append(await token_check(settings))
    checks.extend(await captioner_checks(settings))
    return checks


# Supabase ---------------------------------------------------------------------------------
async def supabase_checks(settings: Settings) -> list[Check]:
    """The key's kind; then URL and key, migrations, buckets, trigger, pg_net: one rpc
    answers them; then a test wake-up sent by the database through pg_net, read back."""
    names = ("migrations", "buckets", "trigger", "pg_net", "wake-up webhook")
    if not settings.pipeline_connected or settings.service_key is None:
        missing = Check(
            "Supabase URL and key",
            False,
            "the bucket pipeline is not connected",
            f"set {', '.join(PIPELINE_SETTINGS)} (or SUPABASE_SERVICE_ROLE_KEY for a legacy key)",
        )
        return [_unknown("Supabase key"), missing, *(_unknown(name) for name in names)]
    return [key_check(settings), *await _project_checks(settings, names)]


def key_check(settings: Settings) -> Check:
    """Which kind of key is configured, and whether it has the rights the service needs."""
    assert settings.service_key is not None
    setting, key = settings.service_key
    shown = f"{setting}: {key.description}"
    if settings.supabase_secret_key and settings.supabase_service_role_key:
        shown += f" ({KEY_SETTINGS[1]} is set too and not used)"
    if key.has_service_rights:
        return Check("Supabase key", True, f"{shown}, with service_role's rights")
    rights = f"the {key.role} role's rights" if key.role else "no role"
    return Check(
        "Supabase key",
        False,
        f"{shown}: it has {rights}, the service needs service_role's",
        KEY_FIX,
    )


KEY_FIX = (
    "set SUPABASE_SECRET_KEY to the project's secret key (sb_secret_…: Project Settings → API "
    "Keys; `supabase status -o env` prints it as SECRET_KEY), or SUPABASE_SERVICE_ROLE_KEY to "
    "its legacy service_role key"
)


async def _project_checks(settings: Settings, names: tuple[str, ...]) -> list[Check]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        try:
            client = await connect_supabase(settings, http)
            arguments = {name: list(args) for name, args in FUNCTIONS.items()}
            query = client.rpc(
                "caption_doctor",
                {"p_signatures": arguments, "p_buckets": settings.caption_buckets},
            )
            report: Any = (await query.execute()).data
        except Exception as exc:
            first = _supabase_failure(exc, settings)
            if first.ok:  # reached, but the schema is not there: the rest cannot be asked
                detail = f"caption_doctor(p_signatures, p_buckets) is missing ({_said(exc)})"
                missing = Check("migrations", False, detail, MIGRATE)
                return [first, missing, *(_unknown(name) for name in names[1:])]
            return [first, *(_unknown(name) for name in names)]
        reached = Check("Supabase URL and key", True, f"{settings.supabase_url} answers")
        return [
            reached,
            _migrations(report),
            _buckets(report, settings),
            _trigger(report),
            _pg_net(report),
            await _webhook(client, report, settings),
        ]


def _unknown(name: str) -> Check:
    return Check(name, False, "not checked: Supabase could not be asked", "fix the checks above")


def _said(exc: Exception) -> str:
    """An error as one readable line: PostgREST's code and message, not its raw dict."""
    if isinstance(exc, APIError):
        return f"{exc.code}: {exc.message}" if exc.code else str(exc.message)
    return f"{type(exc).__name__}: {exc}"


def _supabase_failure(exc: Exception, settings: Settings) -> Check:
    name = "Supabase URL and key"
    if isinstance(exc, httpx.HTTPError):
        return Check(
            name,
            False,
            f"{settings.supabase_url} cannot be reached ({_said(exc)})",
            "set SUPABASE_URL to your project's URL (https://<ref>.supabase.co)",
        )
    code = exc.code if isinstance(exc, APIError) else None
    if code == "PGRST202":  # the function is not in PostgREST's schema cache
        return Check(name, True, f"{settings.supabase_url} answers")
    if refused_key(exc) or "JWT" in str(exc):
        return Check(name, False, f"the key was refused ({_said(exc)})", KEY_FIX)
    return Check(name, False, _said(exc), "check SUPABASE_URL and the key")


def _migrations(report: dict[str, Any]) -> Check:
    version, expected = report["schema_version"], expected_schema_version()
    if mismatched := report["mismatched_functions"]:
        return Check("migrations", False, "; ".join(map(_mismatch, mismatched)), MIGRATE)
    if expected == 0:  # an install without its migrations: nothing to compare with
        return Check("migrations", False, f"no migrations in {MIGRATIONS_DIR}", "reinstall")
    if version < expected:
        detail = f"schema version {version}, this captioner needs {expected}"
        return Check("migrations", False, detail, MIGRATE)
    return Check("migrations", True, f"schema version {version}, every function as called")


def _mismatch(entry: dict[str, Any]) -> str:
    called = f"{entry['name']}({', '.join(FUNCTIONS.get(entry['name'], entry['expected']))})"
    if not entry["found"]:
        return f"{called} is missing"
    found = " or ".join(f"({args})" for args in entry["found"])
    return f"{called} is called, the database has {entry['name']}{found}"


def _buckets(report: dict[str, Any], settings: Settings) -> Check:
    if missing := report["missing_buckets"]:
        return Check(
            "buckets",
            False,
            f"no bucket {', '.join(missing)}",
            "create it (Storage → New bucket) or change CAPTION_BUCKETS",
        )
    return Check("buckets", True, ", ".join(settings.caption_buckets))


TRIGGER = "caption_on_object_change"


def _trigger(report: dict[str, Any]) -> Check:
    state = report["trigger"]
    if state == "enabled":
        return Check("trigger", True, f"{TRIGGER} on storage.objects, enabled")
    if state == "missing":
        return Check("trigger", False, f"{TRIGGER} is not on storage.objects", MIGRATE)
    detail = (
        f"{TRIGGER} on storage.objects is disabled: uploads are not queued"
        if state == "disabled"
        else f"{TRIGGER} on storage.objects fires only for replication: uploads are not queued"
    )
    return Check("trigger", False, detail, f"alter table storage.objects enable trigger {TRIGGER}")


def _pg_net(report: dict[str, Any]) -> Check:
    if report["pg_net"]:
        return Check("pg_net", True, "net.http_post available")
    return Check(
        "pg_net",
        False,
        "net.http_post is missing: the trigger cannot send its wake-up webhook",
        "enable the pg_net extension (Database → Extensions), then " + MIGRATE,
    )


WAKE_UP = "wake-up webhook"
REACHABLE = (
    "make PUBLIC_WEBHOOK_URL reachable from the database (for `supabase start` on Linux: "
    "http://host.docker.internal:8000/webhooks/storage with HOST=0.0.0.0), then restart the "
    "service"
)


async def _webhook(client: Any, report: dict[str, Any], settings: Settings) -> Check:
    """The setting, the database's copy of it, then a real test wake-up through pg_net."""
    configured, wanted = report["webhook_url"], settings.public_webhook_url
    if not wanted:
        return Check(
            WAKE_UP,
            False,
            "PUBLIC_WEBHOOK_URL is not set: jobs wait for the next poll",
            "set PUBLIC_WEBHOOK_URL=https://<this service>/webhooks/storage",
        )
    if configured != wanted:
        return Check(
            WAKE_UP,
            False,
            f"the database sends it to {configured or 'nowhere'}, not {wanted}",
            "start the service once: it configures the trigger (caption_configure)",
        )
    if not report["pg_net"]:
        return Check(WAKE_UP, False, "not sent: the database has no pg_net", "fix pg_net above")
    started = time.perf_counter()
    request_id = (await client.rpc("caption_doctor_wake_up", {}).execute()).data
    deadline = report["webhook_timeout_ms"] / 1000 + WAKE_UP_GRACE_SECONDS
    answer = await _read_back(client, request_id, deadline)
    return _wake_up_check(wanted, answer, time.perf_counter() - started, deadline)


WAKE_UP_GRACE_SECONDS = 10.0  # pg_net's worker sends queued requests within a second or so


async def _read_back(client: Any, request_id: int, deadline: float) -> dict[str, Any] | None:
    """pg_net's record of the test wake-up, once its worker has sent it."""
    args = {"p_request_id": request_id}
    give_up = time.monotonic() + deadline
    while True:
        rows = (await client.rpc("caption_doctor_wake_up_answer", args).execute()).data
        if rows:
            return dict(rows[0])
        if time.monotonic() >= give_up:
            return None
        await asyncio.sleep(0.2)


def _wake_up_check(url: str, answer: dict[str, Any] | None, took: float, deadline: float) -> Check:
    if answer is None:
        detail = f"a test wake-up to {url} was queued; pg_net sent nothing in {deadline:.0f}s"
        fix = "check that pg_net's worker runs (pg_net.database_name)"
        return Check(WAKE_UP, False, detail, fix)
    status, text = answer["status_code"], (answer["content"] or "").strip()
    if status is None:
        reason = "timed out" if answer["timed_out"] else (answer["error_msg"] or "no answer")
        detail = f"the database could not reach {url}: {reason}"
        return Check(WAKE_UP, False, detail, REACHABLE)
    if status == 401:
        detail = f"{url} refused the database's test wake-up (HTTP 401: {text[:120]})"
        fix = "restart the service: it gives the database its WEBHOOK_SECRET and signing secret"
        return Check(WAKE_UP, False, detail, fix)
    if status != 200 or '"ignored"' not in text:
        detail = f"{url} answered HTTP {status}, not as this service ({text[:120]})"
        return Check(WAKE_UP, False, detail, REACHABLE)
    return Check(WAKE_UP, True, f"{url} answered the database's test wake-up in {took:.1f}s")


def descriptions_check(settings: Settings) -> Check:
    """What each watched bucket's images are described with (checked when settings load)."""
    plans = settings.bucket_plans(shown=True)
    return Check("descriptions", True, " | ".join(plan_line(b, p) for b, p in plans.items()))


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
