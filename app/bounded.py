"""Reading untrusted image bytes without ever holding more than MAX_IMAGE_BYTES of them."""

from pathlib import Path

import httpx

from app.errors import PermanentError


def too_large(size: str, limit: int) -> PermanentError:
    return PermanentError(f"image too large: {size} (limit MAX_IMAGE_BYTES={limit})")


def read_file(path: Path, limit: int) -> bytes:
    """A file's bytes, reading at most `limit` + 1. Blocking: call it in a worker thread."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"more than {limit} bytes", limit)
    return data


async def read_stream(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's body, refused by its Content-Length or cut at `limit` + 1."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"{declared} bytes", limit)
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise too_large(f"more than {limit} bytes", limit)
    return bytes(data)
