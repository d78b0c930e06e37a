"""Settings: one place, clear errors naming the variable."""

import pytest

from app.config import CaptionSettings, Settings, SettingsError, load_settings

REQUIRED = {
    "SUPABASE_URL": "http://localhost:54321",
    "SUPABASE_SERVICE_ROLE_KEY": "key",
    "WEBHOOK_SECRET": "secret",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [*REQUIRED, "HF_TOKEN", "CAPTION_BUCKETS", "CAPTION_BACKEND"]:
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
    assert settings.accepted_api_keys == ["old", "new"]
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert load_settings(Settings).resolved_backend == "hf"


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("CAPTION_MODEL=nlpconnect/vit-gpt2-image-captioning\n")

    assert load_settings(CaptionSettings).caption_model == "nlpconnect/vit-gpt2-image-captioning"
