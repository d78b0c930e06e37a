"""All settings, read once from the environment (and `.env`)."""

from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class CaptionSettings(BaseSettings):
    """What captioning an image needs: enough for the CLI's `caption` on its own."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Captioning
    hf_token: SecretStr | None = None
    caption_backend: Literal["auto", "hf", "chat", "local"] = "auto"
    caption_model: str = "Salesforce/blip-image-captioning-base"
    hf_provider: str | None = None
    caption_prompt: str = "Write a one-sentence caption for this image."
    caption_language: str | None = None
    caption_timeout: float = 60.0

    # Local transformers backend
    local_model: str | None = None
    local_device: str = "auto"
    local_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    local_batch_size: int = Field(default=8, ge=1)
    local_batch_wait_ms: float = Field(default=20.0, ge=0)
    max_new_tokens: int = Field(default=30, ge=1)
    num_beams: int = Field(default=1, ge=1)

    # Images
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    caption_max_side: int = Field(default=512, ge=32)

    log_level: str = "INFO"

    @property
    def resolved_backend(self) -> Literal["hf", "chat", "local"]:
        if self.caption_backend == "auto":
            return "hf" if self.hf_token else "local"
        return self.caption_backend

    @property
    def model_name(self) -> str:
        """The model recorded next to each caption."""
        if self.resolved_backend == "local":
            return self.local_model or self.caption_model
        return self.caption_model


class Settings(CaptionSettings):
    """Everything the service needs: Supabase, the webhook, the worker, and captioning."""

    # Supabase (its own variable names)
    supabase_url: str = Field(min_length=1)
    supabase_service_role_key: SecretStr = Field(min_length=1)

    # Webhook: several comma-separated secrets are all accepted (rotation)
    webhook_secret: CommaList = Field(min_length=1)
    # Standard Webhooks secrets (whsec_<base64>); when set, webhooks must also be signed
    webhook_signing_secret: CommaList = []
    public_webhook_url: str | None = None
    caption_buckets: CommaList = ["images"]
    max_webhook_body_bytes: int = 256 * 1024

    # HTTP API (/v1/captions, /metrics) and web page (/ui)
    api_keys: CommaList = []  # bearer tokens for the API; empty: the webhook secrets
    ui_enabled: bool = True
    ui_username: str | None = None  # set both for HTTP Basic auth on /ui
    ui_password: SecretStr | None = None

    # Worker
    worker_enabled: bool = True
    worker_concurrency: int = Field(default=4, ge=1)
    worker_poll_interval: float = Field(default=5.0, gt=0)
    lease_seconds: int = Field(default=300, ge=5)
    max_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=600.0, ge=0)
    signed_url_ttl: int = Field(default=60, ge=1)
    download_timeout: float = 30.0
    sweep_interval: float = Field(default=300.0, ge=0)
    sweep_batch: int = Field(default=1000, ge=1)  # objects examined per slice of a pass
    sweep_full_interval: float = Field(default=86400.0, ge=0)  # 0: only on demand
    shutdown_grace_seconds: float = 20.0

    @field_validator(
        "webhook_secret", "webhook_signing_secret", "caption_buckets", "api_keys", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("supabase_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def accepted_api_keys(self) -> list[str]:
        return self.api_keys or self.webhook_secret


S = TypeVar("S", bound=CaptionSettings)


class SettingsError(SystemExit):
    """Raised at start when the environment is incomplete; the message names each variable."""


def load_settings(cls: type[S] = Settings, **overrides: Any) -> S:  # type: ignore[assignment]
    """Settings from the environment, or one clear error naming what is missing or wrong."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            if error["type"] == "missing":
                problems.append(f"{name} is required but not set")
            else:
                problems.append(f"{name}: {error['msg']}")
        raise SettingsError("Invalid configuration: " + "; ".join(problems)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings(Settings)
