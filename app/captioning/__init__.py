"""Captioner backends behind one interface, chosen by one setting."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from app.captioning.description import DescribeRequest, Description
from app.core import metrics
from app.core.config import CaptionSettings
from app.core.errors import CaptionerAway, CaptionError, RetryableError
from app.core.images import PreparedImage, prepare_image

log = logging.getLogger(__name__)
T = TypeVar("T")


class Captioner(Protocol):
    """Turns a prepared image into a caption.

    Raises a `CaptionError` whose `failure` says whose fault it is (app/core/errors.py).
    """

    model: str

    async def caption(self, image: PreparedImage) -> str: ...

    async def describe(self, image: PreparedImage, request: DescribeRequest) -> Description:
        """Every field of `request` the model can fill, the others named in `missing`. An
        answer that misses the schema is retried once, then falls back: never raised."""
        ...

    async def check(self) -> None:
        """Raise what captioning would raise now (route, token, model), or return."""

    async def aclose(self) -> None: ...


def build_captioner(settings: CaptionSettings) -> Captioner:
    """The backend named by `settings.caption_backend`."""
    backend = settings.resolved_backend
    if backend == "local":
        from app.captioning.florence import FlorenceCaptioner, is_florence
        from app.captioning.local import LocalCaptioner

        if is_florence(settings.local_model or settings.caption_model):
            return FlorenceCaptioner(settings)
        return LocalCaptioner(settings)
    from app.captioning.hf import HuggingFaceCaptioner

    return HuggingFaceCaptioner(settings)


async def open_captioner(settings: CaptionSettings) -> Captioner:
    """The backend, with its route (model → provider → task) resolved and logged once.

    Raises ConfigurationError when Hugging Face serves no route for the model: refuse to
    start. A Hub that cannot be reached now is only logged; the route is resolved later."""
    captioner = build_captioner(settings)
    resolve = getattr(captioner, "resolve", None)
    if resolve is None:
        return captioner
    try:
        route = await resolve()
    except CaptionerAway as exc:
        log.warning("caption route not resolved yet: %s", exc.reason)
    except BaseException:
        await captioner.aclose()
        raise
    else:
        log.info("caption route: %s", route.describe())
    return captioner


async def caption_image(
    data: bytes,
    captioner: Captioner,
    settings: CaptionSettings,
    slots: asyncio.Semaphore | None = None,
) -> str:
    """Decode `data` within the limits and caption it: the one path the worker, the API, the
    web page and the CLI share. `slots` bounds the captioner calls, not the decoding."""
    caption, _ = await caption_image_timed(data, captioner, settings, slots)
    return caption


async def caption_image_timed(
    data: bytes,
    captioner: Captioner,
    settings: CaptionSettings,
    slots: asyncio.Semaphore | None = None,
) -> tuple[str, int]:
    """`caption_image`, and the captioner's own time in ms (not decoding, not waiting)."""
    caption, elapsed_ms = await _timed(data, captioner.caption, settings, slots)
    caption = caption.strip()
    if not caption:
        raise RetryableError("captioner returned an empty caption")
    return caption, elapsed_ms


async def describe_image(
    data: bytes,
    captioner: Captioner,
    settings: CaptionSettings,
    request: DescribeRequest | None = None,
    slots: asyncio.Semaphore | None = None,
) -> Description:
    """Decode `data` within the limits and describe it (`caption_image`'s path, every field)."""
    description, _ = await describe_image_timed(data, captioner, settings, request, slots)
    return description


async def describe_image_timed(
    data: bytes,
    captioner: Captioner,
    settings: CaptionSettings,
    request: DescribeRequest | None = None,
    slots: asyncio.Semaphore | None = None,
) -> tuple[Description, int]:
    """`describe_image`, and the captioner's own time in ms (all its calls for this image)."""
    wanted = request or DescribeRequest()

    async def describe(image: PreparedImage) -> Description:
        return await captioner.describe(image, wanted)

    description, elapsed_ms = await _timed(data, describe, settings, slots)
    if not description.caption.strip():
        raise RetryableError("captioner returned an empty caption")
    return description, elapsed_ms


async def _timed(
    data: bytes,
    call: Callable[[PreparedImage], Awaitable[T]],
    settings: CaptionSettings,
    slots: asyncio.Semaphore | None,
) -> tuple[T, int]:
    image = await asyncio.to_thread(
        prepare_image,
        data,
        max_side=settings.caption_max_side,
        max_pixels=settings.max_image_pixels,
    )
    metrics.BYTES_SENT.inc(len(image.data))
    try:
        async with slots or contextlib.nullcontext():
            started = time.perf_counter()
            with metrics.CAPTION_SECONDS.time():
                result = await call(image)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
    except CaptionError as exc:
        metrics.CAPTION_ERRORS.labels(exc.kind).inc()
        raise
    return result, elapsed_ms
