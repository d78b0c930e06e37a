"""storage-api's routes for the Supabase stand-in (/storage/v1), mixed into SupabaseStandIn.

What it models, and where each fact comes from. M6 / M7: measured on storage-api v1.70.6 run
locally (/work/shared/REFERENCE.md sections 6 and 7); S: supabase/storage's source (file
named); the rows each write leaves follow v1.77.0 (tests/harness/storage_rows.py, TUS in
tests/harness/storage_tus.py).

- Object keys: ASCII ``A-Za-z0-9 _/!.*'()&$=@;:+,?-`` only, else 400 ``InvalidKey``
  "Invalid key: <name>" (M6; S storage/limits.ts); empty segments (``a//b``, a trailing
  ``/``) are accepted, and TUS takes a leading ``/`` (M7).
- Error body: HTTP 400 (500 for a 5xx) ``{statusCode: "<status>", code, error, message}``
  (M6; S internal/errors/codes.ts); a request failing the schema check (a missing field or
  header) is ``InvalidRequest`` with ``error`` "Error" (M7).
- Duplicates: upload and copy ``KeyAlreadyExists``, move ``ResourceAlreadyExists``, both
  ``error`` "Duplicate", status "409" (M7; S codes.ts).
- No Authorization: 400 ``InvalidRequest`` "headers must have required property
  'authorization'"; storage never reads ``apikey`` (M6).
- Sign: the ``url`` claim is the raw request path after ``/object/sign/`` decoded like
  JavaScript's ``decodeURI`` (escapes of ``$ & + , : ; = @ ? # /`` stay); claims ``{url,
  scope: "download", iat, exp}``, header ``{"alg": "HS256"}`` with no ``typ``; the answer is
  ``{"signedURL": "/object/sign/<url claim>?token=<jwt>"}`` (M7; S getSignedURL.ts).
- Signed GET: no token ``InvalidRequest``; bad JWT ``InvalidJWT``; the ``url`` claim must
  equal ``<bucket>/<decoded path>``, else ``InvalidSignature``, so a name with ``?`` (signed
  as ``%3F``) never verifies (M6; S getSignedObject.ts).
- Downloads (``/object/authenticated/<b>/<name>``, ``/object/<b>/<name>``, signed): headers
  ``last-modified`` as an HTTP date, ``accept-ranges: bytes``, ``x-robots-tag: none``,
  ``etag``, ``cache-control``; ``Range: bytes=a-b`` answers 206 with ``content-range`` (M7).
- Upload row: ``metadata`` ``eTag``, ``size``, ``mimetype`` as sent, ``cacheControl``
  (``no-cache`` unless the form or header says; digits become ``max-age=N``), ISO-8601
  ``lastModified``, ``contentLength``, ``httpStatusCode``; ``owner_id`` = ``sub``;
  ``user_metadata`` ``{}`` or the form's ``metadata`` (M6, M7).
- eTags: ``storage_backend = "file"`` always writes the bytes' MD5; ``"s3"`` writes
  ``"<MD5 of the parts' MD5s>-<parts>"`` for TUS and multipart uploads, and a plain MD5 when
  a move or copy re-copies the object (M7).
- Move: same id, new name and version, ``metadata.lastModified`` rewritten; answers
  ``{"message": "Successfully moved"}`` (M7; S moveObject.ts). Copy: a new row with the
  source's bytes, eTag and ``user_metadata``; answers ``{Id, Key, ...the row}`` (M7).
- Delete: ``DELETE /object/<b>`` {prefixes} answers the rows; ``DELETE /object/<b>/<name>``
  ``{"message": "Successfully deleted"}`` (S deleteObject(s).ts); a direct ``DELETE FROM
  storage.objects`` fails 42501 unless ``storage.allow_delete_query`` is set (M7).
- Info and list: ``GET /object/info[/authenticated]/<b>/<name>`` the object's fields
  (S getObjectInfo.ts); ``POST /object/list/<b>`` {prefix, limit, offset, search} the files
  and folders one level under the prefix, like ``storage.search`` (S listObjects.ts).
- Signed upload: ``POST /object/upload/sign/<b>/<name>`` answers ``{url, token}``; a ``PUT``
  to it uploads as the token's owner (S getSignedUploadURL.ts, uploadSignedObject.ts).
- Versioning: buckets' ``versioning_status``; an overwrite archives the current row, a delete
  writes a delete marker (S v1.77.0, tests/harness/storage_rows.py).
- Image resizing: a sign with ``transform`` puts ``transformations`` in the token and answers
  ``/render/image/sign/...``; Pillow stands in for imgproxy (tests/harness/storage_render.py).

Not modelled: imgproxy's WebP/AVIF answers to a browser's Accept header, the S3 protocol's
routes (``put_multipart`` writes what its multipart upload leaves), ``versionId``
addressing, and a move within a versioned bucket (it moves the current row as in an
unversioned one).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg
from psycopg.types.json import Jsonb
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import storage_rows as rows
from .storage_render import parse_transformations, render, transformations
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
SERVICE = Caller("service_role", {"role": "service_role"})
# decodeURI leaves the escapes of these characters as they are (ECMA-262, "reserved" + "#")
DECODE_URI_KEEPS = set(";/?:@&=+$,#")


class StorageApi:
    """storage-api's routes (mixed into SupabaseStandIn, which gives ``_caller``, ``_tx``,
    ``_handle``, ``jwt_secret``, ``storage_dir`` and ``image_transformation``)."""

    # "file" (the local CLI's default) or "s3" (what hosted Supabase runs): the eTags it writes
    storage_backend = "file"

    def _storage_routes(self) -> list[Route]:
        s = "/storage/v1/object"
        tus = "/storage/v1/upload/resumable"
        return [
            Route(s + "/move", self._move, methods=["POST"]),
            Route(s + "/copy", self._copy, methods=["POST"]),
            Route(s + "/list/{bucket}", self._list, methods=["POST"]),
            Route(s + "/sign/{bucket}/{path:path}", self._sign, methods=["POST"]),
            Route(s + "/sign/{bucket}/{path:path}", self._signed_download, methods=["GET"]),
            Route(s + "/upload/sign/{bucket}/{path:path}", self._upload_sign, methods=["POST"]),
            Route(s + "/upload/sign/{bucket}/{path:path}", self._upload_signed, methods=["PUT"]),
            Route(s + "/info/authenticated/{bucket}/{path:path}", self._info, methods=["GET"]),
            Route(s + "/info/{bucket}/{path:path}", self._info, methods=["GET"]),
            Route(s + "/authenticated/{bucket}/{path:path}", self._download, methods=["GET"]),
            Route(
                "/storage/v1/render/image/sign/{bucket}/{path:path}",
                self._render_signed,
                methods=["GET"],
            ),
            Route(s + "/{bucket}/{path:path}", self._download, methods=["GET"]),
            Route(s + "/{bucket}/{path:path}", self._upload, methods=["POST", "PUT"]),
            Route(s + "/{bucket}/{path:path}", self._delete_one, methods=["DELETE"]),
            Route(s + "/{bucket}", self._remove, methods=["DELETE"]),
            Route(tus, self._tus_create, methods=["POST"]),
            Route(tus + "/{upload_id}", self._tus_patch, methods=["PATCH"]),
            Route(tus + "/{upload_id}", self._tus_head, methods=["HEAD"]),
        ]

    # uploads ----------------------------------------------------------------------
    async def _upload(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            check_key(path)
            data, mimetype, cache_control, user_meta = await _read_upload(request)
            upsert = (
                request.method == "PUT" or request.headers.get("x-upsert", "").lower() == "true"
            )
            object_id = await self.put_object(
                caller, bucket, path, [data], mimetype, cache_control, user_meta, upsert
            )
            return JSONResponse({"Key": f"{bucket}/{path}", "Id": object_id})

        return await self._handle("upload", request, True, work)

    async def put_object(
        self,
        caller: Caller,
        bucket: str,
        path: str,
        parts: Sequence[bytes],
        mimetype: str,
        cache_control: str,
        user_meta: Any,
        upsert: bool,
        multipart: bool = False,
    ) -> str:
        """Check the caller may write, then store the bytes and the row; returns the id.
        ``multipart``: the upload came in parts (TUS, S3 multipart)."""
        await self._probe(caller, bucket, path, mimetype, upsert)
        data = b"".join(parts)
        etag = (
            multipart_etag(parts) if multipart and self.storage_backend == "s3" else md5_etag(data)
        )
        return await self._store(
            caller,
            bucket,
            path,
            data,
            _metadata(data, mimetype, cache_control, etag),
            user_meta,
            upsert,
        )

    async def _probe(
        self, caller: Caller, bucket: str, path: str, mimetype: str, upsert: bool
    ) -> None:
        """storage-api's permission check: insert a probe row as the caller (RLS applies),
        always rolled back. Whether the key is taken is ``_store``'s to say (a delete marker
        does not take it): a unique violation here, after RLS passed, is not an answer."""
        query = (
            "insert into storage.objects (bucket_id, name, owner_id, version, metadata,"
            " is_versioned) values (%s, %s, %s, %s, %s, true)"
        )
        if upsert:
            query += (
                " on conflict (bucket_id, name) where archived_at is null do update"
                " set version = excluded.version, owner_id = excluded.owner_id,"
                " metadata = excluded.metadata"
            )
        try:
            async with self._tx(caller, rollback=True) as conn:
                await conn.execute(
                    query,
                    (bucket, path, caller.sub, str(uuid.uuid4()), Jsonb({"mimetype": mimetype})),
                )
        except psycopg.errors.UniqueViolation:
            pass
        except psycopg.Error as exc:
            raise _storage_db_error(exc) from exc

    async def _store(
        self,
        caller: Caller,
        bucket: str,
        path: str,
        data: bytes,
        metadata: dict[str, Any],
        user_meta: Any,
        upsert: bool,
    ) -> str:
        version = str(uuid.uuid4())
        try:
            async with self._tx(caller, role=STORAGE_ADMIN) as conn:
                object_id = await rows.write_version(
                    conn, bucket, path, caller.sub, version, metadata, user_meta, upsert
                )
                self._blob(object_id, version).write_bytes(data)
        except psycopg.Error as exc:
            raise _storage_db_error(exc) from exc
        return object_id

    def _blob(self, object_id: str, version: str | None) -> Path:
        return self.storage_dir / f"{object_id}.{version}"

    # signed URLs -------------------------------------------------------------------
    async def _sign(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            body = await json_body(request)
            try:
                expires_in = int(body.get("expiresIn"))
            except (TypeError, ValueError) as exc:
                raise _schema_error("body/expiresIn must be integer") from exc
            await self._find(caller, bucket, path)
            url = decode_uri(_raw_path(request).split("/object/sign/", 1)[1])
            now = int(time.time())
            claims: dict[str, Any] = {
                "url": url,
                "scope": "download",
                "iat": now,
                "exp": now + expires_in,
            }
            route = "object"
            transform = body.get("transform")
            if self.image_transformation and isinstance(transform, dict):
                if text := transformations(transform):
                    claims["transformations"] = text
                    route = "render/image"
                if transform.get("format"):
                    claims["format"] = transform["format"]
            token = self._sign_token(claims)
            return JSONResponse({"signedURL": f"/{route}/sign/{url}?token={token}"})

        return await self._handle("sign", request, True, work)

    def _sign_token(self, claims: dict[str, Any]) -> str:
        """storage-api signs with jsonwebtoken's defaults: the header is {"alg": "HS256"}."""
        return jwt.encode(claims, self.jwt_secret, algorithm="HS256", headers={"typ": None})

    async def _find(
        self, caller: Caller, bucket: str, path: str, role: str | None = None
    ) -> rows.Row:
        """The key's current object, as the caller sees it (RLS), or ``NoSuchKey``."""
        async with self._tx(caller, role=role) as conn:
            row = await rows.current(conn, bucket, path)
        if row is None or row.is_delete_marker:
            raise not_found()
        return row

    async def _signed_download(self, request: Request) -> Response:
        async def work() -> Response:
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            self._verify_url_token(request, bucket, path)
            obj = await self._find(SERVICE, bucket, path, role=STORAGE_ADMIN)
            return self._stream(obj, request)

        return await self._handle("download", request, True, work)

    async def _render_signed(self, request: Request) -> Response:
        """GET /render/image/sign/...: the transformations come from the token."""

        async def work() -> Response:
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            payload = self._verify_url_token(request, bucket, path)
            obj = await self._find(SERVICE, bucket, path, role=STORAGE_ADMIN)
            blob = self._blob(obj.id, obj.version)
            if not blob.exists():
                raise not_found()
            options = parse_transformations(payload.get("transformations") or "")
            data, mimetype = await asyncio.to_thread(render, blob.read_bytes(), options)
            meta = obj.metadata or {}
            headers = {
                "cache-control": meta.get("cacheControl", "no-cache"),
                "etag": meta.get("eTag", ""),
                "x-transformations": ",".join(f"{k}:{v}" for k, v in options.items()),
            }
            return Response(data, media_type=mimetype, headers=headers)

        return await self._handle("render", request, True, work)

    def _verify_url_token(self, request: Request, bucket: str, path: str) -> dict[str, Any]:
        """The claims of a signed URL's token, checked against the requested (decoded) path."""
        token = _signed_token(request)
        if not token:
            raise _schema_error("querystring must have required property 'token'")
        try:
            payload: dict[str, Any] = jwt.decode(token, self.jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise storage_error("InvalidJWT", str(exc)) from exc
        if payload.get("url") != f"{bucket}/{path}":
            raise storage_error("InvalidSignature", "The url do not match the signature")
        return payload

    # reads ------------------------------------------------------------------------
    async def _download(self, request: Request) -> Response:
        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            return self._stream(await self._find(caller, bucket, path), request)

        return await self._handle("download", request, True, work)

    def _stream(self, obj: rows.Row, request: Request) -> Response:
        blob = self._blob(obj.id, obj.version)
        if not blob.exists():
            raise not_found()
        size = blob.stat().st_size
        meta = obj.metadata or {}
        headers = {
            "cache-control": meta.get("cacheControl", "no-cache"),
            "etag": meta.get("eTag", ""),
            "last-modified": _http_date(meta),
            "accept-ranges": "bytes",
            "x-robots-tag": "none",
        }
        start, end, status = _range(request.headers.get("range"), size)
        if status == 416:
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        if status == 206:
            headers["content-range"] = f"bytes {start}-{end}/{size}"
        headers["content-length"] = str(end - start + 1)

        async def chunks() -> AsyncIterator[bytes]:
            with blob.open("rb") as fh:
                fh.seek(start)
                left = end - start + 1
                while left > 0 and (chunk := fh.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk
                    await asyncio.sleep(0)

        return StreamingResponse(
            chunks(),
            status_code=status,
            headers=headers,
            media_type=meta.get("mimetype", "application/octet-stream"),
        )

    async def _info(self, request: Request) -> Response:
        """GET /object/info/...: the object's fields (getObjectInfo.ts)."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            obj = await self._find(caller, bucket, path)
            meta = obj.metadata or {}
            return JSONResponse(
                {
                    "id": obj.id,
                    "name": obj.name,
                    "version": obj.version,
                    "bucket_id": obj.bucket_id,
                    "size": meta.get("size"),
                    "content_type": meta.get("mimetype"),
                    "cache_control": meta.get("cacheControl"),
                    "etag": meta.get("eTag"),
                    "metadata": obj.user_metadata,
                    "last_modified": meta.get("lastModified"),
                    "created_at": obj.created_at.isoformat() if obj.created_at else None,
                }
            )

        return await self._handle("info", request, True, work)

    async def _list(self, request: Request) -> Response:
        """POST /object/list/<bucket>: storage.search, one level under ``prefix``."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            body = await json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("prefix"), str):
                raise _schema_error("body must have required property 'prefix'")
            async with self._tx(caller) as conn:
                found = await (
                    await conn.execute(
                        "select name, id::text, updated_at, created_at, last_accessed_at, metadata"
                        " from storage.objects where bucket_id = %s and archived_at is null"
                        " and not is_delete_marker and starts_with(name, %s)"
                        ' order by name collate "C"',
                        (request.path_params["bucket"], _folder(body["prefix"])),
                    )
                ).fetchall()
            return JSONResponse(_listing(found, body))

        return await self._handle("list", request, True, work)

    # moves, copies, deletes -----------------------------------------------------------
    async def _move(self, request: Request) -> Response:
        """Same id, new name and version (the bytes move to the new version's blob)."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, source, dest_bucket, dest = await _transfer_body(request)
            version = str(uuid.uuid4())
            try:
                async with self._tx(caller) as conn:
                    obj = await rows.current(conn, bucket, source, lock=True)
                    if obj is None or obj.is_delete_marker:
                        raise not_found()
                    if await rows.current(conn, dest_bucket, dest) is not None:
                        raise rows.resource_exists()
                    data = self._blob(obj.id, obj.version).read_bytes()
                    meta = {**(obj.metadata or {}), "lastModified": _now()}
                    if self.storage_backend == "s3":  # S3 copies the object: a plain MD5
                        meta["eTag"] = md5_etag(data)
                    await conn.execute(
                        "update storage.objects set bucket_id = %s, name = %s, version = %s,"
                        " metadata = %s where id = %s",
                        (dest_bucket, dest, version, Jsonb(meta), obj.id),
                    )
                    shutil.copyfile(self._blob(obj.id, obj.version), self._blob(obj.id, version))
            except psycopg.Error as exc:
                raise _storage_db_error(exc, rows.resource_exists) from exc
            self._blob(obj.id, obj.version).unlink(missing_ok=True)
            return JSONResponse({"message": "Successfully moved"})

        return await self._handle("move", request, True, work)

    async def _copy(self, request: Request) -> Response:
        """A new object (new id and version) with the source's bytes and metadata."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, source, dest_bucket, dest = await _transfer_body(request)
            obj = await self._find(caller, bucket, source)
            data = self._blob(obj.id, obj.version).read_bytes()
            meta = obj.metadata or {}
            mimetype = meta.get("mimetype", "application/octet-stream")
            etag = md5_etag(data) if self.storage_backend == "s3" else meta.get("eTag")
            await self._probe(caller, dest_bucket, dest, mimetype, upsert=False)
            object_id = await self._store(
                caller,
                dest_bucket,
                dest,
                data,
                _metadata(data, mimetype, meta.get("cacheControl", "no-cache"), etag),
                obj.user_metadata,
                upsert=False,
            )
            async with self._tx(SERVICE, role=STORAGE_ADMIN) as conn:
                row = await rows.current(conn, dest_bucket, dest)
            assert row is not None
            return JSONResponse({"Id": object_id, "Key": f"{dest_bucket}/{dest}", **row.answer()})

        return await self._handle("copy", request, True, work)

    async def _remove(self, request: Request) -> Response:
        """DELETE /object/<bucket> {prefixes}: the rows removed (or hidden by a marker)."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket = request.path_params["bucket"]
            prefixes = (await json_body(request)).get("prefixes") or []
            gone = await self.delete_objects(caller, bucket, list(prefixes))
            return JSONResponse([row.answer() for row in gone])

        return await self._handle("remove", request, True, work)

    async def _delete_one(self, request: Request) -> Response:
        """DELETE /object/<bucket>/<name> (deleteObject.ts)."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            if not await self.delete_objects(caller, bucket, [path]):
                raise not_found()
            return JSONResponse({"message": "Successfully deleted"})

        return await self._handle("remove", request, True, work)

    async def delete_objects(self, caller: Caller, bucket: str, names: list[str]) -> list[rows.Row]:
        """Delete each name as the caller (RLS: only what it may see and delete)."""
        gone: list[tuple[rows.Row, bool]] = []
        try:
            async with self._tx(SERVICE, role=STORAGE_ADMIN) as conn:
                status = await rows.versioning(conn, bucket)
            async with self._tx(caller) as conn:
                await rows.allow_delete(conn)
                for name in names:
                    row, removed = await rows.delete_current(conn, bucket, name, status)
                    if row is not None:
                        gone.append((row, removed))
        except psycopg.Error as exc:
            raise _storage_db_error(exc) from exc
        for row, removed in gone:
            if removed:
                self._blob(row.id, row.version).unlink(missing_ok=True)
        return [row for row, _ in gone]

    def put_multipart(
        self, bucket: str, name: str, parts: Sequence[bytes], mimetype: str = "image/png"
    ) -> str:
        """What an S3-protocol multipart upload (``/storage/v1/s3``, CompleteMultipartUpload)
        leaves: the bytes and one row, its eTag the S3 multipart eTag on an S3 backend and
        ``user_metadata`` NULL (M6, M7). A key already there is overwritten in place (an
        unversioned bucket). Returns the id."""
        data = b"".join(parts)
        etag = multipart_etag(parts) if self.storage_backend == "s3" else md5_etag(data)
        meta = _metadata(data, mimetype, "no-cache", etag)
        version = str(uuid.uuid4())
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(f"set role {STORAGE_ADMIN}")
            row = conn.execute(
                "insert into storage.objects (bucket_id, name, version, metadata)"
                " values (%s, %s, %s, %s) on conflict (bucket_id, name)"
                " where archived_at is null do update set version = excluded.version,"
                " metadata = excluded.metadata returning id::text",
                (bucket, name, version, Jsonb(meta)),
            ).fetchone()
        assert row is not None
        self._blob(row[0], version).write_bytes(data)
        return str(row[0])

    # signed uploads -----------------------------------------------------------------
    async def _upload_sign(self, request: Request) -> Response:
        """POST /object/upload/sign/<bucket>/<name> (getSignedUploadURL.ts)."""

        async def work() -> Response:
            caller = self._caller(request, storage=True)
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            check_key(path)
            url = f"{bucket}/{path}"
            now = int(time.time())
            token = self._sign_token(
                {
                    "owner": caller.sub,
                    "url": url,
                    "iat": now,
                    "exp": now + 7200,
                    "upsert": request.headers.get("x-upsert", "").lower() == "true",
                }
            )
            return JSONResponse({"url": f"/object/upload/sign/{url}?token={token}", "token": token})

        return await self._handle("sign", request, True, work)

    async def _upload_signed(self, request: Request) -> Response:
        """PUT /object/upload/sign/<bucket>/<name>?token=: uploads as the token's owner."""

        async def work() -> Response:
            bucket, path = request.path_params["bucket"], request.path_params["path"]
            payload = self._verify_url_token(request, bucket, path)
            owner = (
                {"role": "authenticated", "sub": payload["owner"]}
                if payload.get("owner")
                else {"role": "service_role"}
            )
            caller = Caller(owner["role"], owner)
            data, mimetype, cache_control, user_meta = await _read_upload(request)
            await self.put_object(
                caller,
                bucket,
                path,
                [data],
                mimetype,
                cache_control,
                user_meta,
                bool(payload.get("upsert")),
            )
            return JSONResponse({"Key": f"{bucket}/{path}", "Url": f"{bucket}/{path}"})

        return await self._handle("upload", request, True, work)


# helpers ---------------------------------------------------------------------------
def _schema_error(message: str) -> ApiError:
    """A request that fails fastify's schema check (measured: ``error`` is "Error")."""
    return storage_error("InvalidRequest", message, 400, "Error")


def _storage_db_error(exc: psycopg.Error, duplicate: Any = None) -> ApiError:
    code = exc.sqlstate or ""
    if code == "23505":
        return (duplicate or (lambda: rows.key_exists("")))()
    if code == "23503":
        return storage_error("NoSuchBucket", "Bucket not found", 404, "Bucket not found")
    if code == "42501":
        return storage_error(
            "AccessDenied", "new row violates row-level security policy", 403, "Unauthorized"
        )
    return storage_error("DatabaseError", str(exc), 500)


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def multipart_etag(parts: Sequence[bytes]) -> str:
    """S3's eTag of a multipart upload (TUS on S3 is one): the MD5 of the parts' MD5s and
    the number of parts."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _metadata(
    data: bytes, mimetype: str, cache_control: str, etag: str | None = None
) -> dict[str, Any]:
    """The ``metadata`` storage-api writes for stored bytes."""
    return {
        "eTag": etag or md5_etag(data),
        "size": len(data),
        "mimetype": mimetype,
        "cacheControl": cache_control,
        "lastModified": _now(),
        "contentLength": len(data),
        "httpStatusCode": 200,
    }


def _http_date(meta: dict[str, Any]) -> str:
    try:
        when = datetime.fromisoformat(str(meta.get("lastModified")).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)


def _range(header: str | None, size: int) -> tuple[int, int, int]:
    """(start, end, status) for a ``Range: bytes=...`` header (200 without one)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.groups() == ("", ""):
        return 0, size - 1, 200
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return 0, 0, 416
    return start, end, 206


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return raw.decode("latin-1").split("?", 1)[0]


def decode_uri(text: str) -> str:
    """JavaScript's decodeURI (ASCII): escapes of reserved characters and ``#`` stay."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return match[0] if char in DECODE_URI_KEEPS or ord(char) > 0x7F else char

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def _signed_token(request: Request) -> str | None:
    """The ``token`` query parameter (after a name's own unencoded ``?``, the last one)."""
    token = request.query_params.get("token")
    if token is None and "token=" in request.url.query:
        token = request.url.query.rpartition("token=")[2]
    return token


def _folder(prefix: str) -> str:
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def _listing(found: list[tuple[Any, ...]], body: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = _folder(body["prefix"])
    search = str(body.get("search") or "")
    items: dict[str, dict[str, Any]] = {}
    for name, object_id, updated, created, accessed, metadata in found:
        head, slash, _ = name[len(prefix) :].partition("/")
        if search not in head or head in items:
            continue
        items[head] = (
            {
                "name": head,
                "id": None,
                "updated_at": None,
                "created_at": None,
                "last_accessed_at": None,
                "metadata": None,
            }
            if slash
            else {
                "name": head,
                "id": object_id,
                "updated_at": updated.isoformat(),
                "created_at": created.isoformat(),
                "last_accessed_at": accessed.isoformat(),
                "metadata": metadata,
            }
        )
    offset, limit = int(body.get("offset") or 0), int(body.get("limit") or 100)
    return list(items.values())[offset : offset + limit]


async def _transfer_body(request: Request) -> tuple[str, str, str, str]:
    """(bucket, source, destination bucket, destination) of a move or copy."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise _schema_error("body must be object")
    for field in ("bucketId", "sourceKey", "destinationKey"):
        if not isinstance(body.get(field), str):
            raise _schema_error(f"body must have required property '{field}'")
    check_key(body["destinationKey"])
    return (
        body["bucketId"],
        body["sourceKey"],
        body.get("destinationBucket") or body["bucketId"],
        body["destinationKey"],
    )


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
        cache = str(form.get("cacheControl") or "no-cache")
        if form.get("metadata"):
            user_meta = json.loads(str(form["metadata"]))
    else:
        data = await request.body()
    cache = f"max-age={cache}" if cache.isdigit() else cache
    return data, ctype, cache, user_meta


def create_bucket(
    db_url: str, bucket_id: str, public: bool = False, versioning: str = "DISABLED"
) -> None:
    """Create a storage bucket directly in the database (like the dashboard does)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into storage.buckets (id, name, public, versioning_status)"
            " values (%s, %s, %s, %s)",
            (bucket_id, bucket_id, public, versioning),
        )
