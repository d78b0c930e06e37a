"""Supabase API keys: each kind recognised, only a JWT ever in `Authorization`, the secret
key preferred, and a key without service_role's rights refused at start naming its setting."""

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.config import DiagnosisSettings, Settings, SettingsError, load_settings
from app.core.keys import classify

SECRET = "super-secret-jwt-token-with-at-least-32-characters"
BASE = {"supabase_url": "http://localhost:54321", "webhook_secret": "s", "_env_file": None}


def legacy(role: str | None, **claims: object) -> str:
    payload = {"iss": "supabase-demo", **claims} | ({"role": role} if role else {})
    return jwt.encode(payload, SECRET, algorithm="HS256")


@pytest.fixture(autouse=True)
def no_key_in_env(monkeypatch):
    for name in ("SUPABASE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.delenv(name, raising=False)


KINDS = {
    "sb_secret_abc123": ("secret", "service_role"),
    "sb_publishable_abc123": ("publishable", "anon"),
    legacy("service_role"): ("service_role", "service_role"),
    legacy("anon"): ("anon", "anon"),
    legacy("authenticated", sub="u1"): ("jwt", "authenticated"),
    legacy(None): ("jwt", None),
    "not-a-key": ("unknown", None),
    "a.b.c": ("unknown", None),  # three parts, but no JSON payload
}


@pytest.mark.parametrize("value", list(KINDS))
def test_each_kind_of_key_is_recognised(value):
    key = classify(value)
    assert (key.kind, key.role) == KINDS[value]
    assert key.has_service_rights == (key.role == "service_role")


key_text = st.text(st.characters(codec="ascii", exclude_characters="\r\n"), min_size=1)


@given(st.one_of(key_text, key_text.map(lambda s: "sb_secret_" + s), st.sampled_from(list(KINDS))))
def test_only_a_jwt_ever_goes_in_authorization(value):
    headers = classify(value).headers()
    assert headers["apikey"] == value
    if "Authorization" in headers:
        token = headers["Authorization"].removeprefix("Bearer ")
        assert token == value and len(token.split(".")) == 3
        assert not value.startswith("sb_")


def test_the_secret_key_wins_over_the_legacy_key():
    settings = load_settings(
        Settings,
        **BASE,
        supabase_secret_key="sb_secret_new",
        supabase_service_role_key=legacy("service_role"),
    )
    assert settings.service_key is not None
    assert settings.service_key[0] == "SUPABASE_SECRET_KEY"
    assert settings.supabase_credentials()[1].value == "sb_secret_new"


def test_the_legacy_service_role_key_alone_still_works():
    key = legacy("service_role")
    settings = load_settings(Settings, **BASE, supabase_service_role_key=key)
    url, used = settings.supabase_credentials()
    assert used.kind == "service_role" and used.headers()["Authorization"] == f"Bearer {key}"


WRONG = {
    "publishable": ("sb_publishable_abc", "publishable key"),
    "anon": (legacy("anon"), "anon key"),
    "user-token": (legacy("authenticated", sub="u1"), "role authenticated"),
    "not-a-key": ("hunter2", "not a Supabase API key"),
}


@pytest.mark.parametrize("setting", ["supabase_secret_key", "supabase_service_role_key"])
@pytest.mark.parametrize("case", list(WRONG))
def test_a_key_without_service_rights_is_refused_naming_its_setting(setting, case):
    value, said = WRONG[case]
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings, **BASE, **{setting: value})
    message = str(refused.value)
    assert f"{setting.upper()} is " in message and said in message
    assert "sb_secret_" in message  # what to set instead
    assert value not in message  # a key, even a wrong one, is never printed


def test_the_doctor_takes_a_wrong_key_to_say_what_is_wrong():
    settings = load_settings(DiagnosisSettings, **BASE, supabase_secret_key="sb_publishable_x")
    assert settings.service_key is not None
    assert settings.service_key[1].kind == "publishable"


def test_the_start_banner_names_the_key_in_use_and_its_kind():
    from app.commands.cli import start_banner

    settings = load_settings(
        Settings, **BASE, supabase_service_role_key=legacy("service_role"), ui_enabled=False
    )
    line = next(line for line in start_banner(settings) if "pipeline" in line)
    assert "with SUPABASE_SERVICE_ROLE_KEY, a legacy service_role key (JWT):" in line


def test_a_key_pasted_with_surrounding_space_is_used_without_it():
    settings = load_settings(Settings, **BASE, supabase_secret_key=" sb_secret_pasted\n")
    assert settings.supabase_credentials()[1].headers() == {"apikey": "sb_secret_pasted"}
