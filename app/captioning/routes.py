"""Where a Hugging Face model is served: model → provider → task → URL, resolved once.

An http(s) `CAPTION_MODEL` (an Inference Endpoint, or an OpenAI-compatible server such as
TGI or vLLM for `chat`) is used as it is. A Hub model id is looked up on the Hub
(`HF_ENDPOINT/api/models/<id>?expand=inferenceProviderMapping`, as huggingface_hub does) and
served through the router (`HF_ROUTER_URL`):

- image-to-text: only the `hf-inference` provider offers it (huggingface_hub's PROVIDERS
  table), at `<router>/hf-inference/models/<id>`, the URL its HFInferenceTask builds;
- chat: the router's OpenAI-compatible `<router>/v1/chat/completions`, with `model` set to
  `<id>` (the router picks the provider, by the account's preference order) or
  `<id>:<provider>` for HF_PROVIDER (https://huggingface.co/docs/inference-providers/tasks/image-text-to-text).

Resolving it ourselves, off the event loop and once, replaces the client's own look-up,
which is synchronous, cached for the process's life, and fails as `StopIteration` when the
model has no provider.
"""

import asyncio
from dataclasses import dataclass
from typing import Literal

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from app.core.config import CaptionSettings
from app.core.errors import CaptionerAway, ConfigurationError

Task = Literal["image-to-text", "conversational"]
IMAGE_TO_TEXT: Task = "image-to-text"
CHAT: Task = "conversational"
HUB_TIMEOUT = 10.0
ENDPOINT_WAY = (
    "set CAPTION_MODEL to an Inference Endpoint URL (https://...endpoints.huggingface.cloud)"
)
EXAMPLE_VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass(frozen=True)
class Route:
    """How to reach the model: `url` is the client's `model` (image-to-text) or `base_url`
    (chat); `payload_model` is the chat request's `model` field."""

    model: str
    task: Task
    provider: str  # "endpoint" for a URL, "auto" when the router picks
    url: str
    payload_model: str | None = None

    def describe(self) -> str:
        return f"{self.model} → {self.provider} → {self.task}"


def tasks_for(backend: str) -> tuple[Task, ...]:
    """The tasks a backend may use, in the order preferred."""
    return {"hf": (IMAGE_TO_TEXT,), "chat": (CHAT,)}.get(backend, (IMAGE_TO_TEXT, CHAT))


async def resolve_route(settings: CaptionSettings) -> Route:
    """The route for the configured model. Raises ConfigurationError when Hugging Face serves
    no route for it, CaptionerAway when the Hub cannot be asked."""
    model = settings.caption_model
    tasks = tasks_for(settings.resolved_backend)
    if model.startswith(("http://", "https://")):
        return Route(model, tasks[0], "endpoint", model, settings.served_model_name)
    providers = await _providers(settings)
    wanted = settings.hf_provider if settings.hf_provider not in (None, "auto") else None
    for task in tasks:
        offering = [p for p, t in providers.items() if t == task and _offers(p, task)]
        if wanted is not None:
            offering = [p for p in offering if p == wanted]
        if offering:
            return _route(settings, task, offering[0] if wanted else "auto", offering)
    found = _found(providers, wanted)
    raise ConfigurationError(
        f"Hugging Face offers no {' or '.join(tasks)} route for {model}: {found}. "
        f"To caption, {_ways_out(settings)}",
        _setting(wanted),
    )


def _offers(provider: str, task: Task) -> bool:
    """Whether huggingface_hub can call `provider` for `task` (image-to-text: hf-inference)."""
    return task == CHAT or provider == "hf-inference"


def _route(settings: CaptionSettings, task: Task, provider: str, offering: list[str]) -> Route:
    model, router = settings.caption_model, settings.hf_router_url
    if task == IMAGE_TO_TEXT:
        return Route(model, task, "hf-inference", f"{router}/hf-inference/models/{model}")
    payload = model if provider == "auto" else f"{model}:{provider}"
    shown = provider if provider != "auto" else f"auto ({', '.join(offering)})"
    return Route(model, task, shown, f"{router}/v1", payload)


async def _providers(settings: CaptionSettings) -> dict[str, str]:
    """{provider: task} of the model's live providers, from the Hub."""
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    api = HfApi(endpoint=settings.hf_endpoint, token=token)
    model = settings.caption_model
    try:
        info = await asyncio.to_thread(
            api.model_info, model, expand=["inferenceProviderMapping"], timeout=HUB_TIMEOUT
        )
    except GatedRepoError:
        raise ConfigurationError(
            f"{model} is gated: accept its terms on huggingface.co with the token's account",
            "HF_TOKEN",
        ) from None
    except RepositoryNotFoundError:
        raise ConfigurationError(
            f"{model} is not a model on the Hub ({settings.hf_endpoint})", "CAPTION_MODEL"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise ConfigurationError(
                f"the Hub refused the token (HTTP {status})", "HF_TOKEN"
            ) from None
        raise CaptionerAway(
            f"the Hub could not be asked for {model}'s providers: HTTP {status}",
            kind="unreachable",
        ) from None
    except httpx2.HTTPError as exc:  # refused, reset, timed out: huggingface_hub's transport
        raise CaptionerAway(
            f"the Hub at {settings.hf_endpoint} (HF_ENDPOINT) cannot be reached: "
            f"{type(exc).__name__}: {exc}",
            kind="unreachable",
        ) from None
    live = [m for m in info.inference_provider_mapping or [] if m.status == "live"]
    return {mapping.provider: mapping.task for mapping in live}


def _found(providers: dict[str, str], wanted: str | None) -> str:
    if wanted is not None and wanted in providers:
        return f"provider {wanted} serves it for {providers[wanted]} only"
    if wanted is not None:
        return f"provider {wanted} does not serve it"
    if providers:
        served = ", ".join(f"{p}: {t}" for p, t in providers.items())
        return f"its providers serve other tasks ({served})"
    return "no Inference Provider serves it"


def _ways_out(settings: CaptionSettings) -> str:
    """The ways out that differ from what is configured."""
    vlm = "a vision-language model that Inference Providers serve"
    if settings.resolved_backend != "chat":
        chat = f"CAPTION_BACKEND=chat with {vlm} (e.g. CAPTION_MODEL={EXAMPLE_VLM})"
    elif settings.caption_model != EXAMPLE_VLM:
        chat = f"CAPTION_MODEL set to {vlm} (e.g. {EXAMPLE_VLM})"
    else:
        chat = f"CAPTION_MODEL set to another {vlm}"
    return f"{ENDPOINT_WAY}, or {chat}, or CAPTION_BACKEND=local"


def _setting(wanted: str | None) -> str:
    return "HF_PROVIDER" if wanted is not None else "CAPTION_MODEL or CAPTION_BACKEND"
