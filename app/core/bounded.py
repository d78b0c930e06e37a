"""Reading untrusted bytes (a file, an HTTP body, an upload) without ever holding more than a
limit of them: the one capped reader the storage download, the webhook and the API share."""

from collections.abc import AsyncIterable, Callable
from pathlib import Path

import httpx

from app.core.errors import PermanentError


def too_large(size: str, limit: int) -> PermanentError:
    return PermanentError(f"image too large: {size} (limit MAX_IMAGE_BYTES={limit})")


async def read_capped(
    chunks: AsyncIterable[bytes],
    limit: int,
    refuse: Callable[[str], Exception],
    declared: str | None = None,
) -> bytes:
    """The chunks joined, refused by the declared length or as soon as they exceed `limit`.
    `refuse(size)` builds the error, `size` saying how much was declared or seen."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refuse(f"{declared} bytes")
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise refuse(f"more than {limit} bytes")
    return bytes(data)


def read_file(path: Path, limit: int) -> bytes:
    """A file's bytes, reading at most `limit` + 1. Blocking: call it in a worker thread."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"more than {limit} bytes", limit)
    return data


async def read_stream(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's body under MAX_IMAGE_BYTES."""
    return await read_capped(
        response.aiter_bytes(),
        limit,
        lambda size: too_large(size, limit),
        response.headers.get("content-length"),
    )
