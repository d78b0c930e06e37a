"""`captioner fetch-model`: put the local model in the Hugging Face cache, with progress, as
the seed's `pipeline(...)` did on first use; `make run` runs it before the service starts.

Only the files a PyTorch load needs: where a repository has safetensors weights, its
`pytorch_model.bin` copies are skipped, and so are TensorFlow, Flax, ONNX and Core ML files
(BLIP-base: 990 MB instead of 3 GB). Offline, it says so in one line and the service starts
without the model (the page and /readyz say what is missing).
"""

from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from app.captioning.local import looks_like_hub_id, resolve_source
from app.core.config import CaptionSettings

# Weights for other frameworks, never loaded by the local backend (app/captioning/local.py).
OTHER_FRAMEWORKS = [
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.onnx_data",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
    "*.gguf",
    "onnx/*",
    "coreml/*",
    "openvino/*",
    "tf_model*",
    "flax_model*",
    "rust_model*",
]
PICKLED_WEIGHTS = ["*.bin", "*.pt", "*.pth"]  # skipped when safetensors are there


@dataclass(frozen=True)
class Fetched:
    """What `fetch-model` did: `ok` False when the model is still not here."""

    ok: bool
    message: str


def model_to_fetch(settings: CaptionSettings) -> str | None:
    """The Hub id the local backend will load, or None (hosted backend, or a directory)."""
    if settings.resolved_backend != "local":
        return None
    name = settings.model_name
    return name if looks_like_hub_id(name) and not Path(name).expanduser().is_dir() else None


def fetch(settings: CaptionSettings, name: str | None = None) -> Fetched:
    """Download `name` (default: the configured local model) into the Hugging Face cache."""
    name = name or model_to_fetch(settings)
    if name is None:
        return Fetched(True, nothing_to_fetch(settings))
    endpoint = settings.hf_endpoint
    try:
        path = download(name, endpoint)
    except HfHubHTTPError as exc:
        if exc.response.status_code in (401, 403, 404):
            reason = str(exc).splitlines()[0]
            return Fetched(False, f"{endpoint} (HF_ENDPOINT) has no model {name} for you: {reason}")
        return unreachable(name, endpoint, exc)  # the Hub is down (5xx)
    except (httpx2.HTTPError, OfflineModeIsEnabled, OSError) as exc:
        return unreachable(name, endpoint, exc)
    return Fetched(True, f"{name} is in the Hugging Face cache: {path}")


def download(name: str, endpoint: str) -> str:
    """snapshot_download of the files a PyTorch load needs, with huggingface_hub's progress."""
    files = [
        sibling.rfilename for sibling in HfApi(endpoint=endpoint).model_info(name).siblings or []
    ]
    skipped = OTHER_FRAMEWORKS + (
        PICKLED_WEIGHTS if any(f.endswith(".safetensors") for f in files) else []
    )
    return str(snapshot_download(name, ignore_patterns=skipped, endpoint=endpoint))


def unreachable(name: str, endpoint: str, exc: BaseException) -> Fetched:
    """One line: the Hub was not reached; fine if the model is already here."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        resolve_source(name)
    except Exception:
        return Fetched(
            False,
            f"could not fetch the local model {name}: {endpoint} (HF_ENDPOINT) cannot be "
            f"reached ({reason}); the service starts without it and says so on the page and "
            "at /readyz; run `captioner fetch-model` (or `make model`) once it can be reached, "
            "or set HF_TOKEN to caption with Hugging Face's hosted inference",
        )
    return Fetched(True, f"{name} is in the Hugging Face cache ({endpoint} not reached: {reason})")


def nothing_to_fetch(settings: CaptionSettings) -> str:
    if settings.resolved_backend != "local":
        return f"nothing to fetch: captioning with {settings.model_name} through Hugging Face"
    return f"nothing to fetch: LOCAL_MODEL is a directory ({settings.model_name})"
