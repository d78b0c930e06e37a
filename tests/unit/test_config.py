"""Settings: one place, clear errors naming the variable."""

from pathlib import Path

import pytest

from app.core.config import CaptionSettings, Settings, SettingsError, load_settings

UI = ["UI_USERNAME", "UI_PASSWORD", "UI_PUBLIC", "API_KEYS"]
REQUIRED = {
    "SUPABASE_URL": "http://localhost:54321",
    "SUPABASE_SECRET_KEY": "sb_secret_key",
    "WEBHOOK_SECRET": "secret",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    names = [
        *REQUIRED,
        "SUPABASE_SERVICE_ROLE_KEY",
        "HF_TOKEN",
        "CAPTION_BUCKETS",
        "CAPTION_BACKEND",
        *UI,
    ]
    for name in names:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_missing_required_setting_is_named(monkeypatch, missing):
    for name, value in REQUIRED.items():
        if name != missing:
            monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as error:
        load_settings(Settings)

    assert f"{missing} is required but not set" in str(error.value)


def test_empty_setting_is_refused(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBHOOK_SECRET", " , ")

    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        load_settings(Settings)


def test_lists_secrets_and_backend_defaults(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBHOOK_SECRET", "old, new")
    monkeypatch.setenv("CAPTION_BUCKETS", "images,avatars")
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co/")

    settings = load_settings(Settings)

    assert settings.webhook_secret == ["old", "new"]
    assert settings.caption_buckets == ["images", "avatars"]
    assert settings.supabase_url == "https://abc.supabase.co"
    assert settings.resolved_backend == "local"  # no HF_TOKEN: the local model
    assert settings.caption_model == "florence-community/Florence-2-base"
    assert settings.accepted_api_keys == ["old", "new"]
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    hosted = load_settings(Settings)
    assert hosted.resolved_backend == "auto"  # hosted: the task the Hub says the model serves
    assert hosted.caption_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert hosted.hf_router_url == "https://router.huggingface.co"
    assert hosted.hf_endpoint == "https://huggingface.co"


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("CAPTION_MODEL=nlpconnect/vit-gpt2-image-captioning\n")

    assert load_settings(CaptionSettings).caption_model == "nlpconnect/vit-gpt2-image-captioning"


def test_no_supabase_settings_is_the_local_mode():
    settings = load_settings(Settings)

    assert not settings.pipeline_connected
    assert settings.ui_auth == "open"  # a local demo: nothing to protect yet
    assert settings.accepted_api_keys == []


def test_half_a_ui_credential_pair_names_both(monkeypatch):
    monkeypatch.setenv("UI_USERNAME", "alice")

    with pytest.raises(SettingsError) as error:
        load_settings(Settings)

    assert "UI_USERNAME and UI_PASSWORD" in str(error.value)
    assert "UI_PASSWORD is not set" in str(error.value)


def test_connected_page_needs_credentials_unless_opened(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)

    assert load_settings(Settings).ui_auth == "locked"
    monkeypatch.setenv("UI_PUBLIC", "true")
    assert load_settings(Settings).ui_auth == "open"
    monkeypatch.setenv("UI_USERNAME", "alice")
    monkeypatch.setenv("UI_PASSWORD", "correct horse")
    assert load_settings(Settings).ui_auth == "basic"


def test_the_example_file_is_refused_naming_what_to_fill_in(tmp_path):
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())

    with pytest.raises(SettingsError) as error:
        load_settings(Settings)

    message = str(error.value)
    assert "SUPABASE_SECRET_KEY is required but not set" in message
    assert "SUPABASE_URL is the example value from .env.example" in message
    assert "WEBHOOK_SECRET is the example value from .env.example" in message


def test_example_secrets_are_refused_even_when_complete(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBHOOK_SECRET", "real-one, change-me-to-a-long-random-string")

    with pytest.raises(SettingsError, match="WEBHOOK_SECRET is the example value"):
        load_settings(Settings)


def test_a_malformed_signing_secret_is_refused_at_start(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_!!")

    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)

    assert "WEBHOOK_SIGNING_SECRET" in str(refused.value)
    assert "whsec_!!" not in str(refused.value)  # a secret, even a broken one


def test_languages_and_per_bucket_settings_resolve_per_bucket(monkeypatch):
    monkeypatch.setenv("CAPTION_BUCKETS", "images,avatars,products")
    monkeypatch.setenv("CAPTION_LANGUAGES", "en, de ,en")
    monkeypatch.setenv(
        "CAPTION_BUCKET_SETTINGS",
        '{"avatars": {"fields": ["alt_text"]}, '
        '"products": {"languages": ["pt-BR"], "prompt": "Name the product.", "model": "m/x"}}',
    )

    plans = load_settings(Settings).bucket_plans()

    assert plans["images"].languages == ("en", "de")
    assert plans["images"].fields == ("caption", "alt_text", "description", "tags", "text_in_image")
    assert (plans["avatars"].languages, plans["avatars"].fields) == (("en", "de"), ("alt_text",))
    assert plans["products"].languages == ("pt-BR",) and plans["products"].model == "m/x"
    assert plans["products"].prompt == "Name the product."
    assert plans["images"].model is None and plans["avatars"].model is None  # the service's
    shown = load_settings(Settings).bucket_plans(shown=True)
    assert shown["images"].model == load_settings(Settings).model_name != "m/x"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("CAPTION_LANGUAGES", "en,english!", "CAPTION_LANGUAGES"),
        ("CAPTION_LANGUAGES", " , ", "CAPTION_LANGUAGES"),
        ("CAPTION_BUCKET_SETTINGS", "{not json", "not JSON"),
        ("CAPTION_BUCKET_SETTINGS", '{"images": {"fields": ["alt"]}}', "alt_text"),
        ("CAPTION_BUCKET_SETTINGS", '{"images": {"colour": "red"}}', "CAPTION_BUCKET_SETTINGS"),
        ("CAPTION_BUCKET_SETTINGS", '{"elsewhere": {}}', "not in CAPTION_BUCKETS"),
    ],
)
def test_wrong_language_or_bucket_settings_are_refused_by_name(monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as error:
        load_settings(Settings)

    assert named in str(error.value)


def test_status_shows_what_each_bucket_is_described_with(monkeypatch):
    from app.commands.status import StatusReport, status_lines

    monkeypatch.setenv("CAPTION_BUCKET_SETTINGS", '{"images": {"fields": ["alt_text", "tags"]}}')
    plans = load_settings(Settings).bucket_plans(shown=True)

    lines = status_lines(StatusReport([], {}, [], [], [], plans))

    assert lines[1] == "descriptions:"
    assert lines[2].startswith("  images: languages en; fields alt_text, tags; model ")
