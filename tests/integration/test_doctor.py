"""`captioner doctor` against the harness: all ✓ on a healthy setup, and one test per ✗."""

import ast
import asyncio
from pathlib import Path
from typing import Any

import jwt
import pytest

from app.commands import doctor
from app.commands.doctor import (
    FUNCTIONS,
    Check,
    expected_schema_version,
    render,
    run_checks,
)
from app.core.config import DiagnosisSettings
from tests.harness.supabase_stub import create_bucket
from tests.service_process import free_port
from tests.support import query, query_one, service_settings

BLIP = "Salesforce/blip-image-captioning-base"
APP_DIR = Path(__file__).resolve().parents[2] / "app"


def checks_for(supabase, hf, configure: bool = True, **overrides: Any) -> dict[str, Check]:
    """Run the doctor with the service's settings: no wake-up URL unless one is given, which
    is then configured in the database as the service does at start (unless `configure`
    is False)."""
    settings = service_settings(
        supabase, hf, DiagnosisSettings, **({"public_webhook_url": None} | overrides)
    )
    if configure and settings.public_webhook_url:
        query(
            supabase.db_url,
            "update captioner.config set webhook_url = %s",
            settings.public_webhook_url,
        )
    return {check.name: check for check in asyncio.run(run_checks(settings))}


@pytest.fixture
def healthy(supabase, hf):
    create_bucket(supabase.db_url, "images")
    return supabase


def test_a_healthy_setup_passes_every_check(service, supabase, hf):
    """The service runs and configured the database; pg_net delivers its test wake-up."""
    checks = checks_for(supabase, hf, public_webhook_url=service.webhook_url)

    assert all(check.ok for check in checks.values()), render(list(checks.values()))
    assert list(checks) == [
        "Supabase key",
        "Supabase URL and key",
        "migrations",
        "buckets",
        "trigger",
        "pg_net",
        "wake-up webhook",
        "descriptions",
        "Hugging Face token",
        "model route",
        "caption of house.jpg",
    ]
    assert checks["migrations"].detail.startswith(f"schema version {expected_schema_version()}")
    assert "answered the database's test wake-up" in checks["wake-up webhook"].detail
    assert "standin-user" in checks["Hugging Face token"].detail
    assert "picture" in checks["caption of house.jpg"].detail
    # the test wake-up was a real request through pg_net, and queued nothing
    assert query_one(supabase.db_url, "select count(*) n from captioner.jobs") == {"n": 0}


def test_each_buckets_descriptions_are_shown(healthy, hf):
    checks = checks_for(
        healthy,
        hf,
        caption_buckets=["images", "avatars"],
        caption_languages=["en", "de"],
        caption_bucket_settings={"avatars": {"fields": ["alt_text"], "prompt": "Short."}},
    )

    detail = checks["descriptions"].detail
    assert (
        "images: languages en, de; fields caption, alt_text, description, tags, "
        "text_in_image; model "
    ) in detail
    assert "avatars: languages en, de; fields alt_text; model " in detail
    assert detail.endswith("prompt 'Short.'")


def broken(name: str, checks: dict[str, Check]) -> Check:
    failed = [check.name for check in checks.values() if not check.ok]
    assert name in failed, render(list(checks.values()))
    return checks[name]


def test_supabase_unreachable(healthy, hf):
    check = broken(
        "Supabase URL and key",
        checks_for(healthy, hf, supabase_url=f"http://127.0.0.1:{free_port()}"),
    )
    assert "SUPABASE_URL" in check.fix


@pytest.mark.parametrize("kind", ["secret", "service_role"])
def test_the_key_in_use_is_named_with_its_kind(healthy, hf, kind):
    keys = (
        {"supabase_secret_key": healthy.secret_key}
        if kind == "secret"
        else {"supabase_secret_key": None, "supabase_service_role_key": healthy.service_key}
    )
    check = checks_for(healthy, hf, **keys)["Supabase key"]

    assert check.ok
    shown = {
        "secret": "SUPABASE_SECRET_KEY: a secret key (sb_secret_…)",
        "service_role": "SUPABASE_SERVICE_ROLE_KEY: a legacy service_role key (JWT)",
    }
    assert check.detail.startswith(shown[kind]) and "service_role's rights" in check.detail


def test_with_both_keys_it_says_which_one_is_used(healthy, hf):
    check = checks_for(healthy, hf, supabase_service_role_key=healthy.service_key)["Supabase key"]
    assert check.ok and check.detail.startswith("SUPABASE_SECRET_KEY")
    assert "SUPABASE_SERVICE_ROLE_KEY is set too and not used" in check.detail


# each wrong key: (the key, the check that fails, what its detail says)
WRONG_KEYS = {
    "publishable": (lambda s: s.publishable_key, "Supabase key", "publishable key"),
    "legacy-anon": (lambda s: s.anon_key, "Supabase key", "legacy anon key"),
    "user-token": (lambda s: s.user_key("u1"), "Supabase key", "role authenticated"),
    "not-a-key": (lambda s: "hunter2", "Supabase key", "not a Supabase API key"),
    "revoked-secret": (lambda s: "sb_secret_revoked", "Supabase URL and key", "Invalid API key"),
    "foreign-service-role": (
        lambda s: jwt.encode({"role": "service_role"}, "x" * 32),
        "Supabase URL and key",
        "PGRST301",
    ),
}


@pytest.mark.parametrize("setting", ["supabase_secret_key", "supabase_service_role_key"])
@pytest.mark.parametrize("case", list(WRONG_KEYS))
def test_a_wrong_key(healthy, hf, case, setting):
    key, name, said = WRONG_KEYS[case]
    keys = {"supabase_secret_key": None, setting: key(healthy)}
    checks = checks_for(healthy, hf, **keys)

    check = broken(name, checks)
    assert said in check.detail
    assert "SUPABASE_SECRET_KEY" in check.fix and "sb_secret_" in check.fix
    if name == "Supabase key":
        assert setting.upper() in check.detail  # which setting holds the wrong key
        assert not checks["Supabase URL and key"].ok  # and the server refuses it too


BREAKAGES: dict[str, tuple[str, str, str]] = {
    # id: (SQL that breaks it, the check that fails, what its fix says)
    "function-missing": (
        "drop function public.caption_jobs_stats",
        "migrations",
        "captioner migrate",
    ),
    "schema-older": (
        "create or replace function public.caption_schema_version() returns bigint "
        "language sql as 'select 20261121000009'",
        "migrations",
        "captioner migrate",
    ),
    "doctor-missing": (
        "drop function public.caption_doctor(jsonb, text[])",
        "migrations",
        "captioner migrate",
    ),
    "trigger-missing": (
        "drop trigger caption_on_object_change on storage.objects",
        "trigger",
        "captioner migrate",
    ),
    "pg-net-missing": ("drop function net.http_post cascade", "pg_net", "pg_net extension"),
    "trigger-disabled": (
        "alter table storage.objects disable trigger caption_on_object_change",
        "trigger",
        "enable trigger caption_on_object_change",
    ),
    "trigger-replica-only": (
        "alter table storage.objects enable replica trigger caption_on_object_change",
        "trigger",
        "enable trigger",
    ),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_a_broken_database(healthy, hf, case):
    sql, name, fix = BREAKAGES[case]
    query(healthy.db_url, sql)

    assert fix in broken(name, checks_for(healthy, hf)).fix


def test_a_watched_bucket_that_does_not_exist(healthy, hf):
    check = broken("buckets", checks_for(healthy, hf, caption_buckets=["images", "avatars"]))
    assert "avatars" in check.detail and "CAPTION_BUCKETS" in check.fix


def test_a_disabled_trigger_is_named_disabled(healthy, hf):
    query(healthy.db_url, "alter table storage.objects disable trigger caption_on_object_change")
    check = broken("trigger", checks_for(healthy, hf))
    assert "is disabled" in check.detail


# the database before p_max_pauses (migration 20261126061643): PostgREST answers the
# worker's call, which sends p_max_pauses, with 404 PGRST202
OLDER_CLAIM = "drop function public.caption_jobs_claim(text, int, int, int, text, int)"


def test_a_function_with_an_older_signature(healthy, hf):
    query(healthy.db_url, OLDER_CLAIM)
    check = broken("migrations", checks_for(healthy, hf))
    assert check.detail == (
        "caption_jobs_claim(p_worker, p_limit, p_lease_seconds, p_max_attempts, p_model, "
        "p_max_pauses) is called, the database has caption_jobs_claim(p_worker, p_limit, "
        "p_lease_seconds, p_max_attempts, p_model)"
    )
    assert "captioner migrate" in check.fix


def test_a_missing_doctor_function_reads_as_one_line(healthy, hf):
    query(healthy.db_url, "drop function public.caption_doctor(jsonb, text[])")
    check = broken("migrations", checks_for(healthy, hf))
    assert check.detail.startswith("caption_doctor(p_signatures, p_buckets) is missing (PGRST202: ")
    assert "{" not in check.detail and "\n" not in check.detail


def test_a_wake_up_url_nothing_listens_on(healthy, hf, pgnet):
    url = f"http://127.0.0.1:{free_port()}/webhooks/storage"
    check = broken("wake-up webhook", checks_for(healthy, hf, public_webhook_url=url))
    assert check.detail.startswith(f"the database could not reach {url}: ")
    assert "reachable from the database" in check.fix


def test_a_wake_up_the_service_refuses(service, supabase, hf):
    """The database holds another secret than the service's (e.g. rotated, not restarted)."""
    url = service.webhook_url
    query(supabase.db_url, "update captioner.config set webhook_secret = 'not-the-secret'")
    check = broken("wake-up webhook", checks_for(supabase, hf, public_webhook_url=url))
    assert "refused the database's test wake-up (HTTP 401" in check.detail
    assert "restart the service" in check.fix


def test_a_wake_up_url_where_something_else_answers(healthy, hf, pgnet):
    url = f"{hf.url}/webhooks/storage"  # a server, not this service
    check = broken("wake-up webhook", checks_for(healthy, hf, public_webhook_url=url))
    assert "not as this service" in check.detail


def test_a_wake_up_pg_net_never_sends(healthy, hf, monkeypatch):
    """No pg_net worker runs (the test wake-up stays queued): said, after a deadline."""
    monkeypatch.setattr(doctor, "WAKE_UP_GRACE_SECONDS", 0.5)
    query(healthy.db_url, "update captioner.config set webhook_timeout_ms = 100")
    url = "http://127.0.0.1:9/webhooks/storage"
    check = broken("wake-up webhook", checks_for(healthy, hf, public_webhook_url=url))
    assert "pg_net sent nothing" in check.detail and "pg_net" in check.fix


def test_no_wake_up_webhook_url(healthy, hf):
    check = broken("wake-up webhook", checks_for(healthy, hf, public_webhook_url=None))
    assert "PUBLIC_WEBHOOK_URL" in check.fix


def test_a_wake_up_webhook_the_database_was_never_told(healthy, hf):
    url = "https://captioner.example.com/webhooks/storage"
    check = broken(
        "wake-up webhook", checks_for(healthy, hf, configure=False, public_webhook_url=url)
    )
    assert "caption_configure" in check.fix


def test_a_refused_token(healthy, hf):
    hf.require_token = "hf_the_right_one"
    check = broken("Hugging Face token", checks_for(healthy, hf, hf_token="hf_wrong"))
    assert "HF_TOKEN" in check.fix


def test_a_model_without_a_route(healthy, hf):
    hf.add_model(BLIP, {})
    checks = checks_for(healthy, hf, caption_model=BLIP, caption_backend="auto")

    check = broken("model route", checks)
    assert "CAPTION_BACKEND=local" in check.detail and "CAPTION_MODEL" in check.fix
    assert not checks["caption of house.jpg"].ok


def test_a_caption_that_fails(healthy, hf):
    hf.credits = False
    check = broken("caption of house.jpg", checks_for(healthy, hf))
    assert "402" in check.detail and "HF_TOKEN" in check.fix


def test_render_shows_the_fix_under_each_cross():
    text = render([Check("a", True, "fine"), Check("bb", False, "broken", "do this")])
    assert text.splitlines() == ["✓ a   fine", "✗ bb  broken", "      fix: do this"]


def rpc_calls() -> list[tuple[str, set[str]]]:
    """Every rpc call in app/: the function's name and the argument names sent (keyword
    arguments of JobQueue._rpc, or of JobQueue._leased with the job's two, or the keys of
    the dict literal given to client.rpc, also through a variable assigned one earlier in
    the same function)."""
    calls = []
    for path in APP_DIR.rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            assigned = sorted(
                (node.lineno, target.id, node.value)
                for node in ast.walk(function)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                for target in node.targets
                if isinstance(target, ast.Name)
            )
            for node in ast.walk(function):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("rpc", "_rpc", "_leased")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    continue
                sent = {kw.arg for kw in node.keywords if kw.arg}
                if node.func.attr == "_leased":  # (function, job, ...): the job's lease
                    sent |= {"p_object_id", "p_lease_token"}
                elif len(node.args) > 1:
                    given = node.args[1]
                    if isinstance(given, ast.Name):  # the latest assignment before the call
                        given = [
                            v
                            for line, name, v in assigned
                            if name == given.id and line < node.lineno
                        ][-1]
                    assert isinstance(given, ast.Dict), f"{path}: rpc arguments not a literal"
                    sent |= {key.value for key in given.keys if isinstance(key, ast.Constant)}
                calls.append((node.args[0].value, sent))
    return calls


def test_the_doctor_knows_every_function_the_app_calls_and_its_arguments():
    """FUNCTIONS follows the code: each rpc the app calls is checked, with every argument
    name the code sends (the healthy setup shows the migrations define them so)."""
    calls = rpc_calls()

    assert {name for name, _ in calls} >= {"caption_jobs_claim", "search_image_captions"}
    for name, sent in calls:
        assert name in FUNCTIONS, name
        assert sent <= set(FUNCTIONS[name]), (name, sent - set(FUNCTIONS[name]))
