"""All settings, read once from the environment (and `.env`)."""

import ipaddress
import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from huggingface_hub import constants
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from standardwebhooks.webhooks import Webhook

from app.core.fields import FIELDS, LANGUAGE_TAG, FieldName
from app.core.keys import ApiKey, classify

CommaList = Annotated[list[str], NoDecode]
# The defaults (README, "Choosing a model"): image-to-text is served by Hugging Face only for
# the few models it deploys on hf-inference, while vision-language models are served through
# chat completion by many Inference Providers. The local default runs on a CPU without a token
# and fills caption, alt text, description and the text in the image (bench/describe.py).
DEFAULT_LOCAL_MODEL = "florence-community/Florence-2-base"
DEFAULT_HOSTED_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
# huggingface_hub's router (constants.INFERENCE_PROXY_TEMPLATE without its "/{provider}").
DEFAULT_ROUTER_URL = constants.INFERENCE_PROXY_TEMPLATE.removesuffix("/{provider}")

# What connects the bucket pipeline (webhook, queue, worker); without them the service runs
# the web page, the API and the CLI with the captioner alone.
PIPELINE_SETTINGS = ("SUPABASE_URL", "SUPABASE_SECRET_KEY", "WEBHOOK_SECRET")
# The service's key: the secret key (sb_secret_…) or, for projects still on them, the legacy
# service_role JWT. With both set, SUPABASE_SECRET_KEY is used.
KEY_SETTINGS = ("SUPABASE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY")
NOT_CONNECTED = (
    "the bucket pipeline is not connected: set SUPABASE_URL, SUPABASE_SECRET_KEY (or the legacy "
    "SUPABASE_SERVICE_ROLE_KEY) and WEBHOOK_SECRET (see .env.example) to caption every upload "
    "to Supabase Storage"
)
# The placeholders of .env.example: never accepted as real values.
EXAMPLE_VALUES = frozenset(
    {
        "https://your-project-ref.supabase.co",
        "change-me-to-a-long-random-string",
        "change-me",
    }
)


def language_tags(tags: list[str]) -> list[str]:
    """BCP 47 tags, each once, in order; a clear error for anything else."""
    bad = [tag for tag in tags if not re.fullmatch(LANGUAGE_TAG, tag) or len(tag) > 35]
    if bad:
        raise ValueError(f"not a BCP 47 language tag (en, de, pt-BR): {', '.join(bad)}")
    if not tags:
        raise ValueError("name at least one language (e.g. en)")
    return list(dict.fromkeys(tags))


class BucketCaptioning(BaseModel):
    """One bucket's own settings (CAPTION_BUCKET_SETTINGS); what it leaves out is the
    service's (CAPTION_MODEL, CAPTION_LANGUAGES, every field, the captioner's prompt)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    languages: list[str] | None = None
    fields: list[FieldName] | None = Field(default=None, min_length=1)
    prompt: str | None = None

    @field_validator("languages")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else language_tags(value)


class BucketPlan(BaseModel):
    """What the worker asks for an image of a bucket: one description per language (the
    first also fills image_caption.caption), these fields, with this model and prompt."""

    model_config = ConfigDict(frozen=True)

    model: str | None  # the bucket's own; None: the service's (CAPTION_MODEL)
    languages: tuple[str, ...]
    fields: tuple[FieldName, ...]
    prompt: str | None = None


class CaptionSettings(BaseSettings):
    """What captioning an image needs: enough for the CLI's `caption` on its own."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Captioning
    hf_token: SecretStr | None = None
    caption_backend: Literal["auto", "hf", "chat", "local"] = "auto"
    caption_model: str = ""  # empty: the default for the backend (see _default_model)
    hf_provider: str | None = None
    # Where Hub model ids are looked up (huggingface_hub's own variable) and served from.
    hf_endpoint: str = "https://huggingface.co"
    hf_router_url: str = DEFAULT_ROUTER_URL
    # The `model` a chat request names at an OpenAI-compatible CAPTION_MODEL URL: vLLM checks
    # it (its --served-model-name, by default the model's Hub id); TGI ignores it.
    served_model_name: str | None = None
    caption_prompt: str = "Write a one-sentence caption for this image."
    caption_language: str | None = None
    # One description per language per image, BCP 47 tags; the first fills `caption`.
    caption_languages: CommaList = ["en"]
    caption_timeout: float = 60.0
    # Descriptions (README "What you get for each image"): alt text's length limit, and the
    # tokens a vision-language model may spend on the one JSON answer with every field
    alt_text_max_chars: int = Field(default=125, ge=20, le=1000)
    describe_max_tokens: int = Field(default=512, ge=1)
    # Longer captions are cut (at a word boundary) before they are stored
    caption_max_chars: int = Field(default=1000, ge=1)

    # Local transformers backend
    local_model: str | None = None
    local_device: str = "auto"
    local_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    local_batch_size: int = Field(default=8, ge=1)
    # unset: driven by the model's own time per batch (app/core/batching.py)
    local_batch_wait_ms: float | None = Field(default=None, ge=0)
    local_compile: bool = False
    max_new_tokens: int = Field(default=30, ge=1)
    num_beams: int = Field(default=1, ge=1)

    # Images
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    caption_max_side: int = Field(default=512, ge=32)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_model(self) -> "CaptionSettings":
        if not self.caption_model:
            hosted = self.resolved_backend in ("auto", "chat")
            self.caption_model = DEFAULT_HOSTED_MODEL if hosted else DEFAULT_LOCAL_MODEL
        self.hf_endpoint = self.hf_endpoint.rstrip("/")
        self.hf_router_url = self.hf_router_url.rstrip("/")
        return self

    @field_validator("caption_languages", mode="before")
    @classmethod
    def _split_languages(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("caption_languages")
    @classmethod
    def _language_tags(cls, value: list[str]) -> list[str]:
        return language_tags(value)

    @property
    def resolved_backend(self) -> Literal["auto", "hf", "chat", "local"]:
        """`local` without a token; `auto` with one: hosted, with the task (image-to-text or
        chat) that Hugging Face serves the model for."""
        if self.caption_backend == "auto" and not self.hf_token:
            return "local"
        return self.caption_backend

    @property
    def model_name(self) -> str:
        """The model recorded next to each caption."""
        if self.resolved_backend == "local":
            return self.local_model or self.caption_model
        return self.caption_model


class Settings(CaptionSettings):
    """Everything the service needs: Supabase, the webhook, the worker, and captioning."""

    # Supabase (its own variable names); URL, a key and WEBHOOK_SECRET, or none: the bucket
    # pipeline is off. The key: SUPABASE_SECRET_KEY wins over SUPABASE_SERVICE_ROLE_KEY.
    supabase_url: str | None = None
    supabase_secret_key: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None

    # Webhook: several comma-separated secrets are all accepted (rotation)
    webhook_secret: CommaList = []
    # Standard Webhooks secrets (whsec_<base64>); when set, webhooks must also be signed
    webhook_signing_secret: CommaList = []
    public_webhook_url: str | None = None
    caption_buckets: CommaList = ["images"]
    # Per bucket (JSON): {"avatars": {"fields": ["alt_text"]}, "products": {"languages":
    # ["en", "de"], "fields": ["caption", "alt_text", "tags"], "prompt": "...", "model": "..."}}
    caption_bucket_settings: Annotated[dict[str, BucketCaptioning], NoDecode] = {}
    max_webhook_body_bytes: int = 256 * 1024

    # HTTP API (/v1/captions, /metrics) and web page (/ui)
    api_keys: CommaList = []  # bearer tokens for the API; empty: the webhook secrets
    ui_enabled: bool = True
    ui_username: str | None = None  # set both for HTTP Basic auth on /ui
    ui_password: SecretStr | None = None
    # with the pipeline connected, or on a non-loopback HOST, the page needs credentials;
    # true opens it to anyone
    ui_public: bool = False
    # with no API key on a non-loopback HOST, true serves the API to anyone
    api_public: bool = False

    # Where `captioner serve` listens (its --host, --port, --forwarded-allow-ips win); without
    # credentials the service is open only on a loopback HOST (see `ui_auth`, `api_auth`)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-* are trusted, or *

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
    # 0: no periodic pass; a pass still runs for a bucket new to the sweep and on `backfill`
    sweep_full_interval: float = Field(default=86400.0, ge=0)
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
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip().rstrip("/") or None

    @field_validator(
        "supabase_secret_key",
        "supabase_service_role_key",
        "ui_username",
        "ui_password",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        problems = self._pipeline_problems() + self._ui_problems() + self._bucket_problems()
        if problems:
            raise PydanticCustomError("settings", "; ".join(problems))
        return self

    def _pipeline_problems(self) -> list[str]:
        key = self.service_key
        values = {
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_SECRET_KEY": key[1].value if key else "",
            "WEBHOOK_SECRET": ",".join(self.webhook_secret),
        }
        if not any(values.values()):
            return []
        needs = f"the bucket pipeline needs {', '.join(PIPELINE_SETTINGS)}"
        problems = [
            f"{name} is required but not set ({_OR_LEGACY.get(name, '')}{needs}; set none of "
            "them to run without it)"
            for name, value in values.items()
            if not value
        ]
        problems += self._key_problems()
        examples = [
            ("SUPABASE_URL", [self.supabase_url or ""]),
            ("SUPABASE_SECRET_KEY", [_secret(self.supabase_secret_key)]),
            ("SUPABASE_SERVICE_ROLE_KEY", [_secret(self.supabase_service_role_key)]),
            ("WEBHOOK_SECRET", self.webhook_secret),
            ("WEBHOOK_SIGNING_SECRET", self.webhook_signing_secret),
            ("API_KEYS", self.api_keys),
            ("UI_PASSWORD", [_secret(self.ui_password)]),
        ]
        problems += [
            f"{name} is the example value from .env.example: set your own"
            for name, secrets in examples
            if EXAMPLE_VALUES.intersection(secrets)
        ]
        return problems

    def _key_problems(self) -> list[str]:
        """A key without service_role's rights is refused at start, naming its setting."""
        key = self.service_key
        if key is None or key[1].has_service_rights:
            return []
        return [key_refusal(*key)]

    @property
    def service_key(self) -> tuple[str, ApiKey] | None:
        """(the setting it comes from, the key): SUPABASE_SECRET_KEY wins when both are set."""
        for name, value in zip(
            KEY_SETTINGS, (self.supabase_secret_key, self.supabase_service_role_key), strict=True
        ):
            if value is not None:
                return name, classify(value.get_secret_value().strip())
        return None

    def _ui_problems(self) -> list[str]:
        if (self.ui_username is None) == (self.ui_password is None):
            return []
        missing = "UI_PASSWORD" if self.ui_password is None else "UI_USERNAME"
        return [f"UI_USERNAME and UI_PASSWORD protect the web page together: {missing} is not set"]

    @field_validator("caption_bucket_settings", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from None

    def _bucket_problems(self) -> list[str]:
        unwatched = sorted(set(self.caption_bucket_settings) - set(self.caption_buckets))
        if not unwatched:
            return []
        return [
            f"CAPTION_BUCKET_SETTINGS names {', '.join(unwatched)}, not in CAPTION_BUCKETS "
            f"({', '.join(self.caption_buckets)})"
        ]

    def bucket_plan(self, bucket: str) -> BucketPlan:
        """What to describe for an image of `bucket`: its own settings over the service's."""
        own = self.caption_bucket_settings.get(bucket) or BucketCaptioning()
        return BucketPlan(
            model=own.model,
            languages=tuple(own.languages or self.caption_languages),
            fields=tuple(own.fields or FIELDS),
            prompt=own.prompt,
        )

    def bucket_plans(self, shown: bool = False) -> dict[str, BucketPlan]:
        """Every watched bucket's plan (what the database keeps for content dedupe); `shown`:
        with the service's model named where a bucket has none of its own (status, doctor)."""
        plans = {bucket: self.bucket_plan(bucket) for bucket in self.caption_buckets}
        if shown:
            plans = {
                bucket: plan.model_copy(update={"model": plan.model or self.model_name})
                for bucket, plan in plans.items()
            }
        return plans

    @property
    def pipeline_connected(self) -> bool:
        """Whether the Supabase settings are there: webhook, queue and worker run."""
        return self.supabase_url is not None

    def supabase_credentials(self) -> tuple[str, ApiKey]:
        """(SUPABASE_URL, the service's key); only with the pipeline connected."""
        key = self.service_key
        if self.supabase_url is None or key is None:
            raise SettingsError(
                f"Invalid configuration: this needs the bucket pipeline's settings "
                f"({', '.join(PIPELINE_SETTINGS)})"
            )
        return self.supabase_url, key[1]

    @property
    def loopback(self) -> bool:
        """Whether HOST is a loopback address: only there is the service open without
        credentials (a local demo nobody else can reach)."""
        return is_loopback(self.host)

    @property
    def ui_auth(self) -> Literal["basic", "open", "locked"]:
        """How /ui is guarded: Basic auth when credentials are set; otherwise open with
        UI_PUBLIC=true or as a local demo (no pipeline, a loopback HOST), locked otherwise."""
        if self.ui_username and self.ui_password:
            return "basic"
        demo = not self.pipeline_connected and self.loopback
        return "open" if self.ui_public or demo else "locked"

    @property
    def api_auth(self) -> Literal["key", "open", "locked"]:
        """How /v1/captions, /metrics and /openapi.json are guarded: a bearer key when one
        exists (API_KEYS, else the webhook secrets); otherwise open on a loopback HOST or
        with API_PUBLIC=true, locked otherwise."""
        if self.accepted_api_keys:
            return "key"
        return "open" if self.api_public or self.loopback else "locked"

    @field_validator("webhook_signing_secret")
    @classmethod
    def _whsec(cls, secrets: list[str]) -> list[str]:
        """Refused here, at start: the database trigger signs with it, and a malformed secret
        there would fail every upload's transaction."""
        for secret in secrets:
            try:
                Webhook(secret)
            except Exception:
                raise ValueError("not a whsec_<base64> Standard Webhooks secret") from None
        return secrets

    @property
    def accepted_api_keys(self) -> list[str]:
        return self.api_keys or self.webhook_secret


class DiagnosisSettings(Settings):
    """Settings that also take a key without the service's rights, for `captioner doctor`
    to say what is wrong with it rather than refuse to start."""

    def _key_problems(self) -> list[str]:
        return []


_OR_LEGACY = {"SUPABASE_SECRET_KEY": "or SUPABASE_SERVICE_ROLE_KEY for a legacy service_role JWT; "}
_KEY_FIX = (
    "the service needs the secret key (sb_secret_…, Project Settings → API Keys) or the "
    "legacy service_role key"
)


def key_refusal(setting: str, key: ApiKey) -> str:
    """Why `key` cannot run the service, naming its setting and what to set instead."""
    rights = ", which has the anon role's rights only" if key.role == "anon" else ""
    return f"{setting} is {key.description}{rights}: {_KEY_FIX}"


S = TypeVar("S", bound=CaptionSettings)


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1; a name, 0.0.0.0 or :: (every address) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


class SettingsError(SystemExit):
    """Raised at start when the environment is incomplete; the message names each variable."""


def load_settings(cls: type[S] = Settings, **overrides: Any) -> S:  # type: ignore[assignment]
    """Settings from the environment, or one clear error naming what is missing or wrong."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else ""
            if not name:  # a check across settings: its message names them
                problems.append(error["msg"])
            elif error["type"] == "missing":
                problems.append(f"{name} is required but not set")
            else:
                problems.append(f"{name}: {error['msg']}")
        raise SettingsError("Invalid configuration: " + "; ".join(problems)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings(Settings)
