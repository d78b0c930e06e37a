"""storage-api's resumable uploads (TUS 1.0.0 at /storage/v1/upload/resumable), as supabase-js
sends them for large files. S: supabase/storage src/http/routes/tus/ (@tus/server with its
S3 or file store); M7: measured on v1.70.6 (/work/shared/REFERENCE.md section 7).

- ``POST`` with ``Upload-Length`` and ``Upload-Metadata`` (``bucketName``, ``objectName``,
  ``contentType``, ``cacheControl``, base64 values; ``x-upsert: true`` to overwrite) answers
  201 with ``Location: <origin>/storage/v1/upload/resumable/<id>``; a body sent with it is the
  first chunk (creation-with-upload).
- ``PATCH <location>`` with ``Upload-Offset`` (it must equal the bytes received, else 409)
  and ``Content-Type: application/offset+octet-stream`` appends a chunk and answers 204 with
  the new ``Upload-Offset``; ``HEAD`` answers the offset. The last chunk stores the object as
  the caller (the probe and RLS as for any upload).
- The object name may start with ``/`` and hold empty segments; ``.`` and ``..`` segments are
  refused (M7). The row's ``user_metadata`` is NULL (M6). On ``storage_backend = "s3"`` each
  chunk is one S3 part, so the eTag is ``"<h>-<chunks>"`` (M7: ``"<h>-1"`` for one chunk).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .stub_common import Caller, check_key, storage_error

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Pending:
    caller: Caller
    bucket: str
    name: str
    length: int
    mimetype: str
    cache_control: str
    upsert: bool
    parts: list[bytes] = field(default_factory=list)

    @property
    def offset(self) -> int:
        return sum(len(p) for p in self.parts)


class TusApi:
    """Mixed into SupabaseStandIn with StorageApi (``put_object``)."""

    _tus: dict[str, Pending]

    async def _tus_create(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            pending = _pending(caller, request)
            upload_id = uuid.uuid4().hex
            self._tus_uploads()[upload_id] = pending
            origin = str(request.base_url).rstrip("/")
            location = f"{origin}/storage/v1/upload/resumable/{upload_id}"
            if body := await request.body():
                await self._tus_append(upload_id, pending, body)
            return Response(
                status_code=201,
                headers={**TUS_HEADERS, "Location": location, "Upload-Offset": str(pending.offset)},
            )

        return await self._handle("upload", request, True, work)

    async def _tus_patch(self, request: Request) -> Response:
        async def work() -> Response:
            self._caller(request, storage=True)
            upload_id = request.path_params["upload_id"]
            pending = self._tus_uploads().get(upload_id)
            if pending is None:
                return Response(status_code=404, headers=TUS_HEADERS)
            if request.headers.get("upload-offset") != str(pending.offset):
                return Response(status_code=409, headers=TUS_HEADERS)
            await self._tus_append(upload_id, pending, await request.body())
            return Response(
                status_code=204, headers={**TUS_HEADERS, "Upload-Offset": str(pending.offset)}
            )

        return await self._handle("upload", request, True, work)

    async def _tus_head(self, request: Request) -> Response:
        pending = self._tus_uploads().get(request.path_params["upload_id"])
        if pending is None:
            return Response(status_code=404, headers=TUS_HEADERS)
        return Response(
            status_code=200,
            headers={
                **TUS_HEADERS,
                "Upload-Offset": str(pending.offset),
                "Upload-Length": str(pending.length),
                "Cache-Control": "no-store",
            },
        )

    async def _tus_append(self, upload_id: str, pending: Pending, chunk: bytes) -> None:
        if pending.offset + len(chunk) > pending.length:
            raise storage_error("TusError", "Upload-Length exceeded", 413)
        pending.parts.append(chunk)
        if pending.offset < pending.length:
            return
        self._tus_uploads().pop(upload_id, None)
        await self.put_object(
            pending.caller,
            pending.bucket,
            pending.name,
            pending.parts,
            pending.mimetype,
            pending.cache_control,
            None,
            pending.upsert,
            multipart=True,
        )

    def _tus_uploads(self) -> dict[str, Pending]:
        if not hasattr(self, "_tus"):
            self._tus = {}
        return self._tus


def _pending(caller: Caller, request: Request) -> Pending:
    meta = _upload_metadata(request.headers.get("upload-metadata", ""))
    try:
        length = int(request.headers["upload-length"])
    except (KeyError, ValueError) as exc:
        raise storage_error(
            "InvalidRequest", "Upload-Length header is required", 400, "Error"
        ) from exc
    bucket, name = meta.get("bucketName"), meta.get("objectName")
    if not bucket or not name:
        raise storage_error("InvalidRequest", "Metadata header is required")
    check_key(name)
    if any(part in (".", "..") for part in name.split("/")):
        raise storage_error("InvalidKey", f"Invalid key: {name}")
    cache = meta.get("cacheControl") or "no-cache"
    return Pending(
        caller,
        bucket,
        name,
        length,
        meta.get("contentType") or "application/octet-stream",
        f"max-age={cache}" if cache.isdigit() else cache,
        request.headers.get("x-upsert", "").lower() == "true",
    )


def _upload_metadata(header: str) -> dict[str, str]:
    """TUS ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise storage_error("InvalidRequest", f"Upload-Metadata {key} is not base64") from exc
    return out


def tus_metadata(**values: Any) -> str:
    """An ``Upload-Metadata`` header, as tus-js-client writes it."""
    return ",".join(f"{k} {base64.b64encode(str(v).encode()).decode()}" for k, v in values.items())
