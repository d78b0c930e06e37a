"""Local torch backends: a model loaded at start, run on its own thread, concurrent callers
micro-batched.

`LocalModel` is the part every local backend shares (placement, loading at start, the model
thread, batching); `LocalCaptioner` is the transformers image-to-text one. transformers 5 has
no image-to-text pipeline, so the processor and `generate` are driven directly; this works
for BLIP and vit-gpt2 style models on transformers 4.x and 5.x.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from app.captioning.deadline import within
from app.captioning.description import DescribeRequest, Description
from app.core import metrics
from app.core.batching import MicroBatcher
from app.core.config import CaptionSettings
from app.core.errors import ConfigurationError, RetryableError
from app.core.images import PreparedImage

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)
T = TypeVar("T")
Item = TypeVar("Item")
Result = TypeVar("Result")

# Tried in order; the first whose mapping knows the model's config wins.
AUTO_MODEL_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq")
MODEL_CLASS_BY_TYPE = {
    "blip": "BlipForConditionalGeneration",
    "vision-encoder-decoder": "VisionEncoderDecoderModel",
}
# The CPU features that run bfloat16 natively (torch.cpu reports them), best first.
CPU_BF16_FEATURES = (
    ("_is_amx_tile_supported", "AMX"),
    ("_is_avx512_bf16_supported", "AVX512_BF16"),
)
# Where image-to-text models keep their image encoder (BLIP, Florence-2, vit-gpt2).
VISION_MODULES = ("vision_model", "vision_tower", "encoder")
LOADING = "loading"
READY = "ready"


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
class Placement:
    """Where a model runs and in which number type, and why (logged, shown in /readyz)."""

    device: torch.device
    dtype: torch.dtype
    reason: str

    def describe(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')} on {self.device} ({self.reason})"


def choose_placement(device: str, dtype: str, name: str) -> Placement:
    """Blocking: LOCAL_DEVICE and LOCAL_DTYPE resolved. `auto` dtype: bfloat16 on a CPU that
    runs it natively, float32 on other CPUs; on CUDA the half type the GPU supports."""
    torch = import_torch(name)
    torch_device = _device(torch, device, name)
    if dtype != "auto":
        return Placement(torch_device, getattr(torch, dtype), f"LOCAL_DTYPE={dtype}")
    if torch_device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Placement(torch_device, torch.bfloat16, "auto: the GPU supports bfloat16")
        return Placement(torch_device, torch.float16, "auto: the GPU has no bfloat16")
    if torch_device.type != "cpu":
        return Placement(torch_device, torch.float32, f"auto: {torch_device.type}")
    capability = torch.backends.cpu.get_cpu_capability()
    feature = cpu_bf16_feature(torch)
    if feature is None:
        reason = f"auto: the CPU has no native bfloat16 (torch reports {capability})"
        return Placement(torch_device, torch.float32, reason)
    reason = f"auto: the CPU runs bfloat16 natively ({feature}; torch reports {capability})"
    return Placement(torch_device, torch.bfloat16, reason)


def cpu_bf16_feature(torch: Any) -> str | None:
    """The CPU feature torch reports for native bfloat16 (AMX, AVX512_BF16), or None."""
    for probe, feature in CPU_BF16_FEATURES:
        supported = getattr(torch.cpu, probe, None)
        if supported is not None and supported():
            return feature
    return None


def import_torch(name: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ModelNotAvailable(
            name, f"{exc.name} is not installed (pip install 'supabase-captioner[local]')"
        ) from None
    return torch


def _device(torch: Any, device: str, name: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailable(name, f"LOCAL_DEVICE={device} but CUDA is not available")
    return torch.device(device)


class LocalModel(ABC, Generic[Item, Result]):
    """A local model behind a micro-batcher: loaded once (from `start()`, at the app's start),
    every load and batch run on one thread of its own, so batches never overlap.

    Subclasses say how to load (`load_blocking`) and how to run one batch (`run_blocking`)."""

    def __init__(self, settings: CaptionSettings, model: str) -> None:
        self.model = model
        self.placement: Placement | None = None
        self._settings = settings
        self._executor: ThreadPoolExecutor | None = None
        self._loading: asyncio.Task[Any] | None = None
        self._loaded: Any = None
        wait = settings.local_batch_wait_ms
        self._batcher: MicroBatcher[Item, Result] = MicroBatcher(
            self._run_batch, settings.local_batch_size, None if wait is None else wait / 1000
        )

    @abstractmethod
    def load_blocking(self, placement: Placement) -> Any:
        """Load the model (never downloading); raise ModelNotAvailable when it cannot be."""

    @abstractmethod
    def run_blocking(self, loaded: Any, items: list[Item]) -> list[Result]:
        """One batch, a result per item, in order."""

    def compile_blocking(self, loaded: Any) -> None:  # noqa: B027 (optional hook)
        """LOCAL_COMPILE=true: compile (and warm up) what pays for it; nothing by default."""

    def sample(self) -> Item | None:
        """An item for the warm-up batch run at load (its time seeds the batcher's)."""
        return None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def state(self) -> str:
        """`ready`, `loading`, `not loaded`, or why loading failed."""
        if self._loaded is not None:
            return READY
        if self._loading is None:
            return "not loaded"
        if not self._loading.done():
            return LOADING
        if self._loading.cancelled():
            return "not loaded"
        return str(self._loading.exception())

    def start(self) -> None:
        """Begin loading in the background (the caller's event loop); no-op when started."""
        if self._loaded is None and (self._loading is None or self._failed_loading()):
            self._loading = asyncio.get_running_loop().create_task(self._load())

    def _failed_loading(self) -> bool:
        task = self._loading
        return task is not None and task.done() and (task.cancelled() or bool(task.exception()))

    async def load(self) -> None:
        """Load once; concurrent callers wait for the same load; a failed load is retried."""
        self.start()
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def _load(self) -> None:
        settings, started = self._settings, time.perf_counter()
        await self._in_thread(resolve_source, self.model)  # a missing model says so at once
        placement = await self._in_thread(
            choose_placement, settings.local_device, settings.local_dtype, self.model
        )
        self.placement = placement
        log.info("local model %s: %s; loading", self.model, placement.describe())
        loaded = await self._in_thread(self.load_blocking, placement)
        if settings.local_compile:
            log.info("local model %s: compiling (LOCAL_COMPILE=true)", self.model)
            await self._in_thread(self.compile_blocking, loaded)
        await self._in_thread(self._warm_up, loaded)
        self._loaded = loaded
        seconds = time.perf_counter() - started
        log.info("local model %s ready in %.1f s: %s", self.model, seconds, placement.describe())

    def _warm_up(self, loaded: Any) -> None:
        """Run `sample()` through the model (at batch 1 and full batches when compiled, so no
        request pays a compilation), then time one batch of 1: the batcher's first measure."""
        sample = self.sample()
        if sample is None:
            return
        sizes = {1, self._settings.local_batch_size} if self._settings.local_compile else {1}
        try:
            for size in sorted(sizes):
                self.run_blocking(loaded, [sample] * size)
            started = time.perf_counter()
            self.run_blocking(loaded, [sample])
        except Exception as exc:  # each batch will say it again, to its callers
            log.warning(
                "local model %s: warm-up failed: %s: %s", self.model, type(exc).__name__, exc
            )
            return
        self._batcher.observe(time.perf_counter() - started)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-model")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def check(self) -> None:
        """The model loads (a configuration error names LOCAL_MODEL when it does not)."""
        try:
            await self.load()
        except ModelNotAvailable as exc:
            raise ConfigurationError(str(exc), "LOCAL_MODEL", "model_missing", fix="") from None

    def incoming(self) -> AbstractContextManager[None]:
        """Announce an item being prepared (decoded): a batch being formed waits for it."""
        return self._batcher.incoming()

    async def run(self, item: Item) -> Result:
        await self.check()
        return await self._batcher.submit(item)

    @property
    def batches_run(self) -> int:
        return self._batcher.batches_run

    @property
    def images_captioned(self) -> int:
        return self._batcher.items_done

    async def _run_batch(self, items: list[Item]) -> list[Result]:
        try:
            results = await self._in_thread(self.run_blocking, self._loaded, items)
        except Exception as exc:
            raise RetryableError(f"local model failed: {type(exc).__name__}: {exc}") from None
        metrics.LOCAL_BATCH_SIZE.observe(len(items))
        return results

    async def aclose(self) -> None:
        """Fail what has not started, let running batches finish, free the model."""
        await self._batcher.aclose(RetryableError("local captioner is shutting down"))
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._loaded = self._loading = None


@dataclass(frozen=True)
class LoadedModel:
    """What one batch needs: the model, an image → tensors callable and a decoder."""

    model: Any
    processor: Any  # called as processor(images=[...], return_tensors="pt")
    decoder: Any  # has batch_decode(ids, skip_special_tokens=True)
    device: torch.device
    dtype: torch.dtype


class LocalCaptioner(LocalModel["Image.Image", str]):
    """Captions with a local transformers image-to-text model (BLIP, vit-gpt2)."""

    def __init__(self, settings: CaptionSettings) -> None:
        super().__init__(settings, settings.local_model or settings.caption_model)

    def load_blocking(self, placement: Placement) -> LoadedModel:
        return load_model(self.model, placement)

    def run_blocking(self, loaded: LoadedModel, items: list[Image.Image]) -> list[str]:
        s = self._settings
        return generate_captions(loaded, items, s.max_new_tokens, s.num_beams)

    def compile_blocking(self, loaded: LoadedModel) -> None:
        compile_vision_encoder(loaded)

    def sample(self) -> Image.Image:
        from PIL import Image

        return Image.new("RGB", (64, 64), (90, 140, 200))

    async def caption(self, image: PreparedImage) -> str:
        return await self.run(image.pil)

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        """An image-to-text model's sentence: the caption and the alt text, nothing more (one
        request: within CAPTION_TIMEOUT, as a caption)."""
        timeout = self._settings.caption_timeout
        caption = (await within(lambda: self.caption(image), timeout, deadline)).strip()
        limit = self._settings.alt_text_max_chars
        return Description.from_caption(caption, request, alt_text_max_chars=limit)


def load_model(name: str, placement: Placement) -> LoadedModel:
    """Blocking: resolve `name` locally and load processor and model, never downloading."""
    import_torch(name)
    import transformers

    source = resolve_source(name)
    try:
        processor, decoder = _load_processor(transformers, source)
        model = _load_model(transformers, source, placement.dtype)
    except (OSError, ValueError) as exc:
        reason = f"{source} does not hold a supported image-to-text model ({exc})"
        raise ModelNotAvailable(name, reason) from None
    model = model.to(device=placement.device).eval()
    return LoadedModel(model, processor, decoder, placement.device, placement.dtype)


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


def from_pretrained_in(model_class: Any, source: str, dtype: torch.dtype) -> Any:
    """`model_class.from_pretrained` straight in `dtype` (no float32 copy first)."""
    import transformers

    keyword = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return model_class.from_pretrained(source, local_files_only=True, **{keyword: dtype})


def _load_processor(transformers: Any, source: str) -> tuple[Any, Any]:
    """(processor, decoder): a combined processor, or image processor + tokenizer."""
    processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=True)
    if isinstance(processor, transformers.ProcessorMixin):
        return processor, processor
    image_processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
    return image_processor, tokenizer


def _load_model(transformers: Any, source: str, dtype: torch.dtype) -> Any:
    config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    names = [*AUTO_MODEL_CLASSES, MODEL_CLASS_BY_TYPE.get(config.model_type)]
    for name in filter(None, names):
        model_class = getattr(transformers, name, None)  # absent in some versions
        if model_class is None:
            continue
        try:
            return from_pretrained_in(model_class, source, dtype)
        except ValueError:  # "Unrecognized configuration class" for this auto class
            continue
    raise ValueError(f"model type {config.model_type!r} is not an image-to-text model")


def compile_vision_encoder(loaded: LoadedModel) -> None:
    """torch.compile the image encoder (its batch dimension dynamic: one compilation for
    every batch size but 1); the warm-up at load compiles it."""
    import torch

    owner = loaded.model
    if not any(hasattr(owner, name) for name in VISION_MODULES):
        owner = getattr(owner, "model", owner)  # models that keep their parts in .model
    name = next((n for n in VISION_MODULES if hasattr(owner, n)), None)
    if name is None:
        raise ModelNotAvailable(str(type(loaded.model).__name__), "no image encoder to compile")
    setattr(owner, name, torch.compile(getattr(owner, name), dynamic=True))


def generate_captions(
    loaded: LoadedModel, images: list[Image.Image], max_new_tokens: int, num_beams: int
) -> list[str]:
    """Blocking: one `generate` call for the whole batch."""
    import torch

    inputs = loaded.processor(images=images, return_tensors="pt")
    tensors = {key: to_device(value, loaded) for key, value in inputs.items()}
    with torch.inference_mode():
        ids = loaded.model.generate(**tensors, max_new_tokens=max_new_tokens, num_beams=num_beams)
    texts = loaded.decoder.batch_decode(ids, skip_special_tokens=True)
    return [text.strip() for text in texts]


def to_device(value: Any, loaded: LoadedModel) -> Any:
    """A processor output on the model's device, floating point in the model's dtype."""
    if not hasattr(value, "to"):
        return value
    if value.is_floating_point():
        return value.to(device=loaded.device, dtype=loaded.dtype)
    return value.to(device=loaded.device)
