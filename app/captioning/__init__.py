"""Captioner backends behind one interface, chosen by one setting."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from app.captioning.deadline import description_time
from app.captioning.description import DescribeRequest, Description
from app.core import metrics
from app.core.config import CaptionSettings
from app.core.errors import CaptionerAway, CaptionError, RetryableError, empty_caption
from app.core.images import PreparedImage, prepare_image
from app.core.text import clean_text

log = logging.getLogger(__name__)
T = TypeVar("T")
# A describe that overruns its deadline is cut this much later: a backend's own cut comes
# first, and its failure says more than this one.
BACKSTOP_SECONDS = 1.0


class Captioner(Protocol):
    """Turns a prepared image into a caption.

    Raises a `CaptionError` whose `failure` says whose fault it is (app/core/errors.py).
    """

    model: str

    async def caption(self, image: PreparedImage) -> str: ...

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        """Every field of `request` the model can fill, the others named in `missing`. Each
        request to the model ends within CAPTION_TIMEOUT, all of them by `deadline` (event-loop
        time; app/captioning/deadline.py). An answer that misses the schema is retried once,
        then falls back: raised only when the deadline leaves no time for the fallback."""
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
    image = await prepare(data, settings, captioner)
    return await ask_captioner(image, captioner, settings, slots)


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
    image = await prepare(data, settings, captioner)
    return await ask_description(image, captioner, settings, request, slots)


async def prepare(
    data: bytes, settings: CaptionSettings, captioner: Captioner | None = None
) -> PreparedImage:
    """Decode `data` within the limits, downscaled for the model (off the event loop). A
    `captioner` that batches (`incoming()`) is told an image is on its way meanwhile."""
    incoming = getattr(captioner, "incoming", contextlib.nullcontext)
    with incoming():
        image = await asyncio.to_thread(
            prepare_image,
            data,
            max_side=settings.caption_max_side,
            max_pixels=settings.max_image_pixels,
        )
    metrics.BYTES_SENT.inc(len(image.data))
    return image


async def ask_captioner(
    image: PreparedImage,
    captioner: Captioner,
    settings: CaptionSettings,
    slots: asyncio.Semaphore | None = None,
) -> tuple[str, int]:
    """One caption, cut at CAPTION_TIMEOUT; cleaned (NUL, lone surrogates, whitespace,
    CAPTION_MAX_CHARS: app/core/text.py), an empty one refused; and the call's time in ms.
    `slots` bounds the calls at once (the wait is not timed)."""
    raw, elapsed_ms = await _call(
        lambda _: captioner.caption(image), settings.caption_timeout, slots
    )
    caption = clean_text(raw, settings.caption_max_chars)
    if not caption:
        metrics.CAPTION_ERRORS.labels("empty").inc()
        raise empty_caption()
    return caption, elapsed_ms


async def ask_description(
    image: PreparedImage,
    captioner: Captioner,
    settings: CaptionSettings,
    request: DescribeRequest | None = None,
    slots: asyncio.Semaphore | None = None,
) -> tuple[Description, int]:
    """`ask_captioner` for every field: each text cleaned alike; each request to the model
    within CAPTION_TIMEOUT, all of them (a retry, a fallback) by one deadline, 2 ×
    CAPTION_TIMEOUT after the first (app/captioning/deadline.py)."""
    wanted = request or DescribeRequest()
    raw, elapsed_ms = await _call(
        lambda deadline: captioner.describe(image, wanted, deadline),
        description_time(settings.caption_timeout),
        slots,
        BACKSTOP_SECONDS,
    )
    description = clean_description(raw, settings.caption_max_chars)
    if not description.caption:
        metrics.CAPTION_ERRORS.labels("empty").inc()
        raise empty_caption()
    return description, elapsed_ms


def clean_description(description: Description, max_chars: int) -> Description:
    """Every text field of `description` through `clean_text`; empty tags dropped."""
    texts = {
        name: clean_text(getattr(description, name), max_chars)
        for name in ("caption", "alt_text", "description", "text_in_image")
    }
    tags = [tag for tag in (clean_text(t, max_chars) for t in description.tags) if tag]
    return description.model_copy(update={**texts, "tags": tags})


async def _call(
    call: Callable[[float], Awaitable[T]],
    limit_s: float,
    slots: asyncio.Semaphore | None,
    backstop_s: float = 0.0,
) -> tuple[T, int]:
    """`call(deadline)` within a slot, the deadline (event-loop time) `limit_s` seconds after
    it starts, cut `backstop_s` after it (a timeout, transient, as a TimeoutError it raises
    itself), timed."""
    async with slots or contextlib.nullcontext():
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + limit_s
        try:
            with metrics.CAPTION_SECONDS.time():
                async with asyncio.timeout_at(deadline + backstop_s):
                    result = await call(deadline)
        except TimeoutError as exc:
            said = str(exc) or f"captioner timed out after {limit_s:g}s"
            error = RetryableError(said, kind="timeout")
            metrics.CAPTION_ERRORS.labels(error.kind).inc()
            raise error from None
        except CaptionError as exc:
            metrics.CAPTION_ERRORS.labels(exc.kind).inc()
            raise
        return result, round((time.perf_counter() - started) * 1000)
