"""Captioning images named on the command line: local files and http(s) URLs, a few at a
time, each read under MAX_IMAGE_BYTES (the `caption` command's work)."""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.captioning import Captioner, describe_image, open_captioner
from app.captioning.description import DescribeRequest, Description
from app.core.bounded import read_file, read_stream
from app.core.config import CaptionSettings
from app.core.errors import CaptionError, ConfigurationError, PermanentError

CAPTION_CONCURRENCY = 4
DOWNLOAD_TIMEOUT = 30.0


@dataclass
class Outcome:
    source: str
    description: Description | None = None
    model: str | None = None
    elapsed_ms: int | None = None
    error: str | None = None

    @property
    def caption(self) -> str | None:
        return self.description.caption if self.description is not None else None

    def as_json(self) -> dict[str, Any]:
        """The JSON line: the source, every field of the description, model and time."""
        fields = self.description.model_dump() if self.description is not None else {}
        return {"source": self.source, **fields, "model": self.model, "elapsed_ms": self.elapsed_ms}


async def caption_sources(
    sources: list[str], settings: CaptionSettings, request: DescribeRequest | None = None
) -> list[Outcome]:
    """Describe every source (a few at a time), in the order given. Raises ConfigurationError
    at once when no source can be captioned (no route for the model, a refused token...)."""
    captioner = await open_captioner(settings)
    limit = asyncio.Semaphore(CAPTION_CONCURRENCY)
    try:
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as http:

            async def one(source: str) -> Outcome:
                async with limit:
                    return await caption_source(source, captioner, settings, http, request)

            return list(await asyncio.gather(*(one(source) for source in sources)))
    finally:
        await captioner.aclose()


async def caption_source(
    source: str,
    captioner: Captioner,
    settings: CaptionSettings,
    http: httpx.AsyncClient,
    request: DescribeRequest | None = None,
) -> Outcome:
    started = time.perf_counter()
    try:
        data = await read_source(source, settings.max_image_bytes, http)
        description = await describe_image(data, captioner, settings, request)
    except ConfigurationError:
        raise  # not this source's fault: the others would fail the same way
    except CaptionError as exc:
        return Outcome(source, error=exc.reason)
    except OSError as exc:
        return Outcome(source, error=exc.strerror or str(exc))
    except httpx.HTTPError as exc:
        return Outcome(source, error=f"download failed: {type(exc).__name__}: {exc}")
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    return Outcome(source, description, captioner.model, elapsed_ms)


async def read_source(source: str, limit: int, http: httpx.AsyncClient) -> bytes:
    """A local file's or an http(s) URL's bytes, never more than `limit`."""
    if source.startswith(("http://", "https://")):
        return await download(source, limit, http)
    return await asyncio.to_thread(read_file, Path(source), limit)


async def download(url: str, limit: int, http: httpx.AsyncClient) -> bytes:
    async with http.stream("GET", url) as response:
        if response.status_code != 200:
            raise PermanentError(f"download failed: HTTP {response.status_code}")
        return await read_stream(response, limit)
