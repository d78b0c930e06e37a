"""Local transformers backend: one lazily loaded model, concurrent callers micro-batched.

transformers 5 has no image-to-text pipeline, so the processor and `generate` are driven
directly; this works for BLIP and vit-gpt2 style models on transformers 4.x and 5.x.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.captioning.description import DescribeRequest, Description
from app.core.batching import MicroBatcher
from app.core.config import CaptionSettings
from app.core.errors import ConfigurationError, RetryableError
from app.core.images import PreparedImage

if TYPE_CHECKING:
    import torch
    from PIL import Image

T = TypeVar("T")

# Tried in order; the first whose mapping knows the model's config wins.
AUTO_MODEL_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq")
MODEL_CLASS_BY_TYPE = {
    "blip": "BlipForConditionalGeneration",
    "vision-encoder-decoder": "VisionEncoderDecoderModel",
}


class ModelNotAvailable(RuntimeError):
    """The local model (or torch/transformers) cannot be loaded: a configuration problem."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(
            f"local captioning model {model!r} is not available: {reason}. Fix: "
            + how_to_provide(model)
        )


def how_to_provide(model: str) -> str:
    """The ways to a local model: fetch it from the Hub, a saved directory, or hosted."""
    fetch = (
        f"fetch it with `captioner fetch-model` (what `make run` does first; `make model` and "
        f"`hf download {model}` do the same; on a machine without internet, point HF_HOME at "
        "a copy of a cache that has it), "
        if looks_like_hub_id(model)
        else ""
    )
    return (
        f"{fetch}set LOCAL_MODEL to a directory holding a saved model (save_pretrained), or "
        "set HF_TOKEN to caption with Hugging Face's hosted inference"
    )


def looks_like_hub_id(name: str) -> bool:
    """`org/name` or `name`, not a path."""
    return not (name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name)


@dataclass(frozen=True)
class LoadedModel:
    """What one batch needs: the model, an image → tensors callable and a decoder."""

    model: Any
    processor: Any  # called as processor(images=[...], return_tensors="pt")
    decoder: Any  # has batch_decode(ids, skip_special_tokens=True)
    device: torch.device
    dtype: torch.dtype


class LocalCaptioner:
    """Captions with a local transformers model, batching concurrent calls."""

    def __init__(self, settings: CaptionSettings) -> None:
        self.model = settings.local_model or settings.caption_model
        self._settings = settings
        self._executor: ThreadPoolExecutor | None = None  # one thread: batches never overlap
        self._lock = asyncio.Lock()
        self._loaded: LoadedModel | None = None
        self._batcher = MicroBatcher(
            self._run_batch, settings.local_batch_size, settings.local_batch_wait_ms / 1000
        )

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    async def load(self) -> None:
        """Load the model once; concurrent callers wait for the same load."""
        if self._loaded is not None:
            return
        async with self._lock:
            if self._loaded is None:
                self._loaded = await self._in_thread(self._load_blocking)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-captioner")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _load_blocking(self) -> LoadedModel:
        s = self._settings
        return load_model(self.model, s.local_device, s.local_dtype)

    async def check(self) -> None:
        """The model loads (a configuration error names LOCAL_MODEL when it does not)."""
        try:
            await self.load()
        except ModelNotAvailable as exc:
            raise ConfigurationError(str(exc), "LOCAL_MODEL", "model_missing", fix="") from None

    async def caption(self, image: PreparedImage) -> str:
        await self.check()
        return await self._batcher.submit(image.pil)

    async def describe(self, image: PreparedImage, request: DescribeRequest) -> Description:
        """An image-to-text model's sentence: the caption and the alt text, nothing more."""
        caption = (await self.caption(image)).strip()
        limit = self._settings.alt_text_max_chars
        return Description.from_caption(caption, request, alt_text_max_chars=limit)

    @property
    def batches_run(self) -> int:
        return self._batcher.batches_run

    @property
    def images_captioned(self) -> int:
        return self._batcher.items_done

    async def _run_batch(self, images: list[Image.Image]) -> list[str]:
        try:
            return await self._in_thread(self._generate, images)
        except Exception as exc:
            raise RetryableError(f"local model failed: {type(exc).__name__}: {exc}") from None

    def _generate(self, images: list[Image.Image]) -> list[str]:
        assert self._loaded is not None
        return generate_captions(
            self._loaded, images, self._settings.max_new_tokens, self._settings.num_beams
        )

    async def aclose(self) -> None:
        """Fail what has not started, let running batches finish, free the model."""
        await self._batcher.aclose(RetryableError("local captioner is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._loaded = None


def load_model(name: str, device: str, dtype: str) -> LoadedModel:
    """Blocking: resolve `name` locally and load processor and model, never downloading."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelNotAvailable(
            name, f"{exc.name} is not installed (pip install 'supabase-captioner[local]')"
        ) from None
    source = resolve_source(name)
    torch_device = _device(torch, device, name)
    torch_dtype = _dtype(torch, dtype, torch_device)
    try:
        processor, decoder = _load_processor(transformers, source)
        model = _load_model(transformers, source)
    except (OSError, ValueError) as exc:
        reason = f"{source} does not hold a supported image-to-text model ({exc})"
        raise ModelNotAvailable(name, reason) from None
    model = model.to(device=torch_device, dtype=torch_dtype).eval()
    return LoadedModel(model, processor, decoder, torch_device, torch_dtype)


def resolve_source(name: str) -> str:
    """A directory as is, or the snapshot of a Hub model id in the local cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if not looks_like_hub_id(name):
        raise ModelNotAvailable(name, f"directory {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    try:
        return str(snapshot_download(name, local_files_only=True))
    except IncompleteSnapshotError as exc:  # fetched without the weights it does not need
        return str(exc.snapshot_path)
    except (OSError, ValueError):
        raise ModelNotAvailable(
            name, "it is not here yet (no such directory, and not in the Hugging Face cache)"
        ) from None


def _device(torch: Any, device: str, name: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailable(name, f"LOCAL_DEVICE={device} but CUDA is not available")
    return torch.device(device)


def _dtype(torch: Any, dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def _load_processor(transformers: Any, source: str) -> tuple[Any, Any]:
    """(processor, decoder): a combined processor, or image processor + tokenizer."""
    processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=True)
    if isinstance(processor, transformers.ProcessorMixin):
        return processor, processor
    image_processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
    return image_processor, tokenizer


def _load_model(transformers: Any, source: str) -> Any:
    config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    names = [*AUTO_MODEL_CLASSES, MODEL_CLASS_BY_TYPE.get(config.model_type)]
    for name in filter(None, names):
        model_class = getattr(transformers, name, None)  # absent in some versions
        if model_class is None:
            continue
        try:
            return model_class.from_pretrained(source, local_files_only=True)
        except ValueError:  # "Unrecognized configuration class" for this auto class
            continue
    raise ValueError(f"model type {config.model_type!r} is not an image-to-text model")


def generate_captions(
    loaded: LoadedModel, images: list[Image.Image], max_new_tokens: int, num_beams: int
) -> list[str]:
    """Blocking: one `generate` call for the whole batch."""
    import torch

    inputs = loaded.processor(images=images, return_tensors="pt")
    tensors = {key: _move(value, loaded) for key, value in inputs.items()}
    with torch.inference_mode():
        ids = loaded.model.generate(**tensors, max_new_tokens=max_new_tokens, num_beams=num_beams)
    texts = loaded.decoder.batch_decode(ids, skip_special_tokens=True)
    return [text.strip() for text in texts]


def _move(value: Any, loaded: LoadedModel) -> Any:
    if not hasattr(value, "to"):
        return value
    if value.is_floating_point():
        return value.to(device=loaded.device, dtype=loaded.dtype)
    return value.to(device=loaded.device)
