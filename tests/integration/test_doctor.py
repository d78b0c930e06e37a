"""`captioner doctor` against the harness: all ✓ on a healthy setup, and one test per ✗."""

import asyncio
from typing import Any

import pytest

from app.commands.doctor import Check, expected_schema_version, render, run_checks
from tests.harness.supabase_stub import create_bucket
from tests.service_process import free_port
from tests.support import query, service_settings

BLIP = "Salesforce/blip-image-captioning-base"


def checks_for(supabase, hf, configure: bool = True, **overrides: Any) -> dict[str, Check]:
    """Run the doctor with the service's settings (webhook URL configured in the database
    as the service does at start, unless `configure` is False)."""
    values = {"public_webhook_url": "https://captioner.example.com/webhooks/storage"}
    settings = service_settings(supabase, hf, **(values | overrides))
    if configure and settings.public_webhook_url:
        query(supabase.db_url, "update captioner.config set webhook_url = %s",
              settings.public_webhook_url)
    return {check.name: check for check in asyncio.run(run_checks(settings))}


@pytest.fixture
def healthy(supabase, hf):
    create_bucket(supabase.db_url, "images")
    return supabase


def test_a_healthy_setup_passes_every_check(healthy, hf):
    checks = checks_for(healthy, hf)

    assert all(check.ok for check in checks.values()), render(list(checks.values()))
    assert list(checks) == [
        "Supabase URL and key", "migrations", "buckets", "trigger", "pg_net",
        "wake-up webhook", "Hugging Face token", "model route", "caption of house.jpg",
    ]
    assert checks["migrations"].detail.startswith(f"schema version {expected_schema_version()}")
    assert "standin-user" in checks["Hugging Face token"].detail
    assert "picture" in checks["caption of house.jpg"].detail


def broken(name: str, checks: dict[str, Check]) -> Check:
    failed = [check.name for check in checks.values() if not check.ok]
    assert name in failed, render(list(checks.values()))
    return checks[name]


def test_supabase_unreachable(healthy, hf):
    check = broken("Supabase URL and key",
                   checks_for(healthy, hf, supabase_url=f"http://127.0.0.1:{free_port()}"))
    assert "SUPABASE_URL" in check.fix


def test_a_key_that_is_not_the_service_role_key(healthy, hf):
    check = broken("Supabase URL and key",
                   checks_for(healthy, hf, supabase_service_role_key=healthy.anon_key))
    assert "SUPABASE_SERVICE_ROLE_KEY" in check.fix


BREAKAGES: dict[str, tuple[str, str, str]] = {
    # id: (SQL that breaks it, the check that fails, what its fix says)
    "function-missing": ("drop function public.caption_jobs_stats", "migrations",
                         "captioner migrate"),
    "schema-older": ("create or replace function public.caption_schema_version() returns bigint "
                     "language sql as 'select 20261121000009'", "migrations", "captioner migrate"),
    "doctor-missing": ("drop function public.caption_doctor(text[], text[])", "migrations",
                       "captioner migrate"),
    "trigger-missing": ("drop trigger caption_on_object_change on storage.objects", "trigger",
                        "captioner migrate"),
    "pg-net-missing": ("drop function net.http_post cascade", "pg_net", "pg_net extension"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_a_broken_database(healthy, hf, case):
    sql, name, fix = BREAKAGES[case]
    query(healthy.db_url, sql)

    assert fix in broken(name, checks_for(healthy, hf)).fix


def test_a_watched_bucket_that_does_not_exist(healthy, hf):
    check = broken("buckets", checks_for(healthy, hf, caption_buckets=["images", "avatars"]))
    assert "avatars" in check.detail and "CAPTION_BUCKETS" in check.fix


def test_no_wake_up_webhook_url(healthy, hf):
    check = broken("wake-up webhook", checks_for(healthy, hf, public_webhook_url=None))
    assert "PUBLIC_WEBHOOK_URL" in check.fix


def test_a_wake_up_webhook_the_database_was_never_told(healthy, hf):
    check = broken("wake-up webhook", checks_for(healthy, hf, configure=False))
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



def test_the_doctor_knows_every_function_the_app_calls():
    """FUNCTIONS follows the code: each rpc the app calls is checked, and defined."""
    import re
    from pathlib import Path

    from app.commands.doctor import FUNCTIONS, MIGRATIONS_DIR

    root = Path(__file__).resolve().parents[2] / "app"
    code = "".join(path.read_text() for path in root.rglob("*.py"))
    called = set(re.findall(r'rpc\(\s*"([a-z_]+)"', code))
    sql = "".join(path.read_text() for path in MIGRATIONS_DIR.glob("*.sql"))
    defined = set(re.findall(r"function public\.([a-z_]+)\(", sql))

    assert called - set(FUNCTIONS) == set()
    assert set(FUNCTIONS) - defined == set()
