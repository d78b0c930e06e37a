"""A Supabase stand-in: Storage (/storage/v1) and PostgREST (/rest/v1) over a real
PostgreSQL database, enforcing JWT roles, grants and RLS the way Supabase does.

Every request runs in one transaction as the JWT's role, set like PostgREST:
``set_config('role', ...)``, ``set_config('request.jwt.claims', ...)`` then
``SET LOCAL ROLE``. Uploads first INSERT a probe row in a transaction that is
always rolled back (like storage-api), then write the real row as
``supabase_storage_admin`` (owner of the storage tables).

What the storage side models, and where each fact comes from. M: measured on
storage-api v1.70.6 run locally (/work/shared/REFERENCE.md section 6); S: supabase/storage's
source (file named).

| behaviour | the stand-in | from |
| --- | --- | --- |
| object keys | ASCII ``A-Za-z0-9 _/!.*'()&$=@;:+,?-`` only, else 400 | M; S |
|             | ``InvalidKey`` "Invalid key: <name>" | storage/limits.ts ``isValidKey`` |
| error body | HTTP 400 (500 for a 5xx) ``{statusCode: "<status>", code, | M; S |
|            | error, message}`` | internal/errors/codes.ts |
| no Authorization | 400 ``InvalidRequest`` "headers must have required property | M |
|                  | 'authorization'" (storage never reads ``apikey``) | |
| sign | ``{"signedURL": "/object/sign/<bucket>/<name>?token=<jwt>"}``, the | M; S |
|      | name NOT percent-encoded; claims ``{url, scope: "download", iat, exp}`` | getSignedURL.ts |
| signed GET | no token ``InvalidRequest``; bad JWT ``InvalidJWT``; ``url`` claim | M; S |
|            | differs from the path ``InvalidSignature`` | getSignedObject.ts |
| name with ``?`` | signs, but the URL never verifies (``InvalidSignature``): unencoded | M (how: |
|                 | the path ends at the first ``?``; encoded, ``%3F`` is not decoded | our model) |
| authenticated GET | ``/object/authenticated/<bucket>/<name>``, ``/object/<bucket>/<name>`` | M |
| upload row | one INSERT; ``metadata``: ``eTag`` (quoted MD5), ``size``, ``mimetype`` | M |
|            | as sent, ``cacheControl`` ``no-cache`` (raw body) or ``max-age=N`` | |
|            | (multipart), ISO-8601 ``lastModified``, ``contentLength``, | |
|            | ``httpStatusCode``; ``owner`` NULL, ``owner_id`` = ``sub``; | |
|            | ``user_metadata`` ``{}`` | |
| upsert | one UPDATE: same id, new version | M |
| move | ``POST /object/move``: same id, new name and version | M; moveObject.ts |
| copy | ``POST /object/copy``: new id and version, same bytes, eTag, size | M; copyObject.ts |
| delete | the API's ``DELETE /object/<bucket>`` works; a direct ``DELETE FROM | M; S migration |
|        | storage.objects`` fails 42501 (trigger ``protect_objects_delete``) | 0050 |
| columns | ``archived_at``, ``is_delete_marker``, ``is_versioned``; no ``level`` | M; S migration |
|         | (tests/harness/supabase.sql) | 0063 |
| image | sign with ``transform`` {width, height, resize, quality, format}: | S: getSignedURL.ts |
| resizing | the token also holds ``transformations`` ("height:H,width:W,resize:R") | object.ts |
|          | and the URL is ``/render/image/sign/<bucket>/<name>?token=``; its GET | render/ |
|          | checks the token like a signed download, then resizes (Pillow here, | renderSigned- |
|          | imgproxy there): cover/contain/fill, never enlarging, sides clamped | Image.ts, |
|          | to 1..2500. ``image_transformation = False``: ``transform`` ignored | renderer/ |
|          | | image.ts |

Not modelled: TUS and S3-protocol uploads (their rows have ``user_metadata`` NULL),
imgproxy's WebP/AVIF answers to a browser's Accept header, multipart eTags
(``"<md5>-<parts>"``), object versioning beyond
its columns, and which other percent-escapes the real router leaves undecoded.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg
from psycopg.types.json import Jsonb
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .stub_common import (
    STORAGE_ADMIN,
    ApiError,
    Caller,
    check_key,
    json_body,
    not_found,
    storage_error,
)

CHUNK = 64 * 1024


class StorageApi:
    """storage-api's routes (mixed into SupabaseStandIn, which gives ``_caller``, ``_tx``,
    ``_handle``, ``jwt_secret``, ``storage_dir`` and ``image_transformation``)."""

    async def _upload(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            check_key(path)
            data, mimetype, cache_control, user_meta = await _read_upload(request)
            upsert = request.method == "PUT" or \
                request.headers.get("x-upsert", "").lower() == "true"
            await self._probe(caller, bucket, path, mimetype, upsert)
            object_id = await self._store(caller, bucket, path, data,
                                          _metadata(data, mimetype, cache_control),
                                          user_meta, upsert)
            return JSONResponse({"Key": f"{bucket}/{path}", "Id": object_id})
        return await self._handle("upload", request, True, work)

    async def _probe(self, caller: Caller, bucket: str, path: str, mimetype: str,
                     upsert: bool) -> None:
        """storage-api's permission check: insert a probe row, always roll back."""
        query = ("insert into storage.objects (bucket_id, name, owner_id, version,"
                 " metadata) values (%s, %s, %s, '1', %s)")
        if upsert:
            query += (" on conflict (bucket_id, name) do update set version = '1',"
                      " owner_id = excluded.owner_id, metadata = excluded.metadata")
        try:
            async with self._tx(caller, rollback=True) as conn:
                await conn.execute(query, (bucket, path, caller.sub,
                                           Jsonb({"mimetype": mimetype})))
        except psycopg.Error as exc:
            raise _storage_db_error(exc) from exc

    async def _store(self, caller: Caller, bucket: str, path: str, data: bytes,
                     metadata: dict[str, Any], user_meta: Any, upsert: bool) -> str:
        version = str(uuid.uuid4())
        try:
            async with self._tx(caller, role=STORAGE_ADMIN) as conn:
                row = await (await conn.execute(
                    "select id from storage.objects where bucket_id = %s and name = %s"
                    " for update", (bucket, path))).fetchone()
                if row is not None and not upsert:
                    raise _duplicate()
                object_id = str(row[0]) if row else str(uuid.uuid4())
                self._blob(object_id, version).write_bytes(data)
                if row is None:
                    await conn.execute(
                        "insert into storage.objects (id, bucket_id, name, owner_id,"
                        " version, metadata, user_metadata) values (%s,%s,%s,%s,%s,%s,%s)",
                        (object_id, bucket, path, caller.sub, version, Jsonb(metadata),
                         Jsonb(user_meta)))
                else:
                    await conn.execute(
                        "update storage.objects set version = %s, metadata = %s,"
                        " user_metadata = %s, owner_id = %s where id = %s",
                        (version, Jsonb(metadata), Jsonb(user_meta), caller.sub, object_id))
        except psycopg.Error as exc:
            raise _storage_db_error(exc) from exc
        return object_id

    def _blob(self, object_id: str, version: str) -> Path:
        return self.storage_dir / f"{object_id}.{version}"

    async def _sign(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            body = await json_body(request)
            try:
                expires_in = int(body.get("expiresIn"))
            except (TypeError, ValueError) as exc:
                raise storage_error("InvalidRequest",
                                    "body/expiresIn must be integer") from exc
            await self._find(caller, bucket, path)
            now = int(time.time())
            claims: dict[str, Any] = {"url": f"{bucket}/{path}", "scope": "download",
                                      "iat": now, "exp": now + expires_in}
            transform = body.get("transform")
            route = "object"
            if self.image_transformation and isinstance(transform, dict):
                if transformations := _transformations(transform):
                    claims["transformations"] = transformations
                    route = "render/image"
                if transform.get("format"):
                    claims["format"] = transform["format"]
            token = jwt.encode(claims, self.jwt_secret, algorithm="HS256")
            return JSONResponse({"signedURL": f"/{route}/sign/{bucket}/{path}?token={token}"})
        return await self._handle("sign", request, True, work)

    async def _find(self, caller: Caller, bucket: str, path: str,
                    role: str | None = None) -> dict[str, Any]:
        async with self._tx(caller, role=role) as conn:
            row = await (await conn.execute(
                "select id::text, version, metadata from storage.objects"
                " where bucket_id = %s and name = %s", (bucket, path))).fetchone()
        if row is None:
            raise not_found()
        return {"id": row[0], "version": row[1], "metadata": row[2] or {}}

    async def _signed_download(self, request: Request) -> Response:
        async def work() -> Response:
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            self._verify_url_token(request, bucket, path)
            caller = Caller("service_role", {"role": "service_role"})
            obj = await self._find(caller, bucket, path, role=STORAGE_ADMIN)
            return self._stream(obj)
        return await self._handle("download", request, True, work)

    async def _render_signed(self, request: Request) -> Response:
        """GET /render/image/sign/...: the transformations come from the token."""
        async def work() -> Response:
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            payload = self._verify_url_token(request, bucket, path)
            caller = Caller("service_role", {"role": "service_role"})
            obj = await self._find(caller, bucket, path, role=STORAGE_ADMIN)
            blob = self._blob(obj["id"], obj["version"])
            if not blob.exists():
                raise not_found()
            options = _parse_transformations(payload.get("transformations") or "")
            data, mimetype = await asyncio.to_thread(_render, blob.read_bytes(), options)
            meta = obj["metadata"]
            headers = {"cache-control": meta.get("cacheControl", "no-cache"),
                       "etag": meta.get("eTag", ""), "x-transformations": ",".join(
                           f"{k}:{v}" for k, v in options.items())}
            return Response(data, media_type=mimetype, headers=headers)
        return await self._handle("render", request, True, work)

    def _verify_url_token(self, request: Request, bucket: str, path: str) -> dict[str, Any]:
        """The claims of a signed URL's token, checked against the requested path."""
        token = _signed_token(request)
        if not token:
            raise storage_error("InvalidRequest",
                                "querystring must have required property 'token'")
        try:
            payload: dict[str, Any] = jwt.decode(token, self.jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise storage_error("InvalidJWT", str(exc)) from exc
        # "?" in the path: it came as %3F, which the real router leaves undecoded here
        if payload.get("url") != f"{bucket}/{path}" or "?" in path:
            raise storage_error("InvalidSignature", "The url do not match the signature")
        return payload

    async def _download(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            return self._stream(await self._find(caller, bucket, path))
        return await self._handle("download", request, True, work)

    def _stream(self, obj: dict[str, Any]) -> Response:
        blob = self._blob(obj["id"], obj["version"])
        if not blob.exists():
            raise not_found()
        meta = obj["metadata"]
        headers = {"content-length": str(blob.stat().st_size),
                   "cache-control": meta.get("cacheControl", "no-cache"),
                   "etag": meta.get("eTag", ""),
                   "last-modified": meta.get("lastModified", "")}

        async def chunks() -> AsyncIterator[bytes]:
            with blob.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
                    await asyncio.sleep(0)

        return StreamingResponse(chunks(), headers=headers,
                                 media_type=meta.get("mimetype", "application/octet-stream"))

    async def _move(self, request: Request) -> Response:
        """Same id, new name and version (the bytes move to the new version's blob)."""
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, source, dest_bucket, dest = await _transfer_body(request)
            version = str(uuid.uuid4())
            try:
                async with self._tx(caller) as conn:
                    row = await (await conn.execute(
                        "select id::text, version from storage.objects"
                        " where bucket_id = %s and name = %s for update",
                        (bucket, source))).fetchone()
                    if row is None:
                        raise not_found()
                    object_id, old_version = row
                    await conn.execute(
                        "update storage.objects set bucket_id = %s, name = %s, version = %s"
                        " where id = %s", (dest_bucket, dest, version, object_id))
                    shutil.copyfile(self._blob(object_id, old_version),
                                    self._blob(object_id, version))
            except psycopg.Error as exc:
                raise _storage_db_error(exc) from exc
            self._blob(object_id, old_version).unlink(missing_ok=True)
            return JSONResponse({"message": "Successfully moved", "Id": object_id,
                                 "Key": dest})
        return await self._handle("move", request, True, work)

    async def _copy(self, request: Request) -> Response:
        """A new object (new id and version) with the source's bytes and metadata."""
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, source, dest_bucket, dest = await _transfer_body(request)
            obj = await self._find(caller, bucket, source)
            data = self._blob(obj["id"], obj["version"]).read_bytes()
            meta = obj["metadata"]
            mimetype = meta.get("mimetype", "application/octet-stream")
            await self._probe(caller, dest_bucket, dest, mimetype, upsert=False)
            object_id = await self._store(
                caller, dest_bucket, dest, data,
                _metadata(data, mimetype, meta.get("cacheControl", "no-cache")), {},
                upsert=False)
            return JSONResponse({"Key": f"{dest_bucket}/{dest}", "Id": object_id})
        return await self._handle("copy", request, True, work)

    async def _remove(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket = request.path_params["bucket"]
            prefixes = (await json_body(request)).get("prefixes") or []
            try:
                async with self._tx(caller) as conn:
                    # the API's own deletes pass storage.protect_delete()
                    await conn.execute("select set_config('storage.can_delete', 'true', true)")
                    rows = await (await conn.execute(
                        "with d as (delete from storage.objects where bucket_id = %s"
                        " and name = any(%s) returning *)"
                        " select coalesce(jsonb_agg(to_jsonb(d)), '[]') from d",
                        (bucket, list(prefixes)))).fetchone()
            except psycopg.Error as exc:
                raise _storage_db_error(exc) from exc
            for obj in rows[0]:
                self._blob(obj["id"], obj["version"] or "").unlink(missing_ok=True)
            return JSONResponse(rows[0])
        return await self._handle("remove", request, True, work)


# image transformation (storage-api src/storage/renderer/image.ts, imgproxy) ---------
IMG_SIZE_LIMITS = (1, 2500)  # storage-api's IMG_LIMITS_MIN_SIZE / IMG_LIMITS_MAX_SIZE defaults


def _transformations(transform: dict[str, Any]) -> str:
    """ImageRenderer.applyTransformation(transform, keepOriginal=true): the string kept in
    the signed token, e.g. "height:200,width:200,resize:cover"."""
    def clamp(value: Any) -> int:
        return min(max(int(value), IMG_SIZE_LIMITS[0]), IMG_SIZE_LIMITS[1])

    segments = []
    if transform.get("height"):
        segments.append(f"height:{clamp(transform['height'])}")
    if transform.get("width"):
        segments.append(f"width:{clamp(transform['width'])}")
    if transform.get("width") or transform.get("height"):
        segments.append(f"resize:{transform.get('resize')}")  # "None" when absent, as in JS
    if transform.get("quality"):
        segments.append(f"quality:{int(transform['quality'])}")
    if transform.get("format") and transform["format"] != "origin":
        segments.append(f"format:{transform['format']}")
    return ",".join(segments)


def _parse_transformations(text: str) -> dict[str, Any]:
    """ImageRenderer.setTransformationsFromString."""
    options: dict[str, Any] = {}
    for segment in filter(None, text.split(",")):
        name, _, value = segment.partition(":")
        if name in ("width", "height", "quality"):
            options[name] = int(value)
        elif name in ("resize", "format"):
            options[name] = value
    return options


def _render(data: bytes, options: dict[str, Any]) -> tuple[bytes, str]:
    """What imgproxy answers for storage-api's options: `cover` (its default) fills the box
    and crops the centre, `contain` fits inside it, `fill` stretches; one side alone keeps
    the aspect ratio; never enlarges. The original format is kept (imgproxy may instead
    answer WebP/AVIF to a browser's Accept header)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format or "PNG"
        image = ImageOps.exif_transpose(image)
        w, h = image.size
        width, height = options.get("width"), options.get("height")
        mode = options.get("resize")
        if width and height:
            box = (min(width, w), min(height, h))
            if mode == "contain":
                image = ImageOps.contain(image, box)
            elif mode == "fill":
                image = image.resize(box)
            else:
                image = ImageOps.fit(image, box)
        elif width or height:
            scale = min((width or w) / w, (height or h) / h, 1.0)
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))))
        out = io.BytesIO()
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, format=fmt, quality=options.get("quality", 80))
    return out.getvalue(), Image.MIME.get(fmt, "application/octet-stream")



# helpers ---------------------------------------------------------------------------
def _duplicate() -> ApiError:
    return storage_error("Duplicate", "The resource already exists", 409, "Duplicate")


def _storage_db_error(exc: psycopg.Error) -> ApiError:
    code = exc.sqlstate or ""
    if code == "23505":
        return _duplicate()
    if code == "23503":
        return storage_error("NoSuchBucket", "Bucket not found", 404, "Bucket not found")
    if code == "42501":
        return storage_error("AccessDenied", "new row violates row-level security policy",
                             403, "Unauthorized")
    return storage_error("DatabaseError", str(exc), 500)


def _metadata(data: bytes, mimetype: str, cache_control: str) -> dict[str, Any]:
    """The ``metadata`` storage-api writes for stored bytes."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"eTag": f'"{hashlib.md5(data).hexdigest()}"', "size": len(data),
            "mimetype": mimetype, "cacheControl": cache_control, "lastModified": now,
            "contentLength": len(data), "httpStatusCode": 200}


def _signed_token(request: Request) -> str | None:
    """The ``token`` query parameter. When the object's name holds a ``?``, the unencoded
    signed path ends there and the token is found after the name's own ``?``: the path
    the server checks is then cut short, so the signature never matches (as measured)."""
    token = request.query_params.get("token")
    if token is None and "token=" in request.url.query:
        token = request.url.query.rpartition("token=")[2]
    return token


async def _transfer_body(request: Request) -> tuple[str, str, str, str]:
    """(bucket, source, destination bucket, destination) of a move or copy."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise storage_error("InvalidRequest", "body must be object")
    for field in ("bucketId", "sourceKey", "destinationKey"):
        if not isinstance(body.get(field), str):
            raise storage_error("InvalidRequest", f"body must have required property '{field}'")
    check_key(body["destinationKey"])
    return (body["bucketId"], body["sourceKey"], body.get("destinationBucket") or
            body["bucketId"], body["destinationKey"])



async def _read_upload(request: Request) -> tuple[bytes, str, str, Any]:
    """(bytes, mimetype, cacheControl, user_metadata) from multipart or a raw body."""
    ctype = request.headers.get("content-type", "application/octet-stream")
    cache = request.headers.get("cache-control", "no-cache")
    user_meta: Any = {}
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise storage_error("InvalidRequest", "No file in the form")
        data = await files[0].read()
        ctype = files[0].content_type or "application/octet-stream"
        cache = str(form.get("cacheControl") or "3600")
        if form.get("metadata"):
            user_meta = json.loads(str(form["metadata"]))
    else:
        data = await request.body()
    cache = f"max-age={cache}" if cache.isdigit() else cache
    return data, ctype, cache, user_meta


def create_bucket(db_url: str, bucket_id: str, public: bool = False) -> None:
    """Create a storage bucket directly in the database (like the dashboard does)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into storage.buckets (id, name, public) values (%s, %s, %s)",
                     (bucket_id, bucket_id, public))
