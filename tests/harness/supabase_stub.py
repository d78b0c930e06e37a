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
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .servers import ThreadedServer, serve_in_thread

DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"
API_ROLES = ("anon", "authenticated", "service_role")
STORAGE_ADMIN = "supabase_storage_admin"
CHUNK = 64 * 1024
# storage-api's isValidKey: the characters S3 handles without special encoding.
VALID_KEY = re.compile(r"[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+")


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def storage_error(code: str, message: str, status: int = 400,
                  error: str | None = None) -> ApiError:
    """storage-api style: HTTP 400 (500 for a 5xx) with the real status in the body."""
    body = {"statusCode": str(status), "code": code, "error": error or code,
            "message": message}
    return ApiError(500 if status >= 500 else 400, body)


def not_found() -> ApiError:
    return storage_error("NoSuchKey", "Object not found", 404, "not_found")


def check_key(name: str) -> None:
    if not VALID_KEY.fullmatch(name):
        raise storage_error("InvalidKey", f"Invalid key: {name}")


def pgrst_error(status: int, code: str, message: str, details: Any = None,
                hint: Any = None) -> ApiError:
    return ApiError(status, {"code": code, "details": details, "hint": hint,
                             "message": message})


# PostgREST's SQLSTATE -> HTTP status table (docs: "Errors from PostgreSQL").
_STATUS_BY_CODE = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404,
                   "42P17": 500, "P0001": 400}
_STATUS_BY_CLASS = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403,
                    "2D": 500, "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503,
                    "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
                    "P0": 500, "XX": 500}


def db_error(exc: psycopg.Error, role: str) -> ApiError:
    """Map a PostgreSQL error to a PostgREST error response."""
    code = exc.sqlstate or "XX000"
    if code == "42501":
        status = 401 if role == "anon" else 403
    elif code.startswith("PT") and code[2:].isdigit():
        status = int(code[2:])
    else:
        status = _STATUS_BY_CODE.get(code) or _STATUS_BY_CLASS.get(code[:2], 400)
    diag = exc.diag
    return pgrst_error(status, code, diag.message_primary or str(exc),
                       diag.message_detail, diag.message_hint)


# Faults ---------------------------------------------------------------------------
@dataclass
class Fault:
    route: str
    status: int | None
    body: Any
    times: int
    delay: float


class Faults:
    """Scripted failures: the next ``times`` requests to ``route`` get ``status``
    (and/or wait ``delay`` seconds first). Routes: "upload", "sign", "download",
    "remove", "rpc:<fn>", "rest:<table>", "*"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, route: str, status: int | None = 500, body: Any = None, times: int = 1,
            delay: float = 0.0) -> None:
        with self._lock:
            self._faults.append(Fault(route, status, body, times, delay))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route in (route, "*") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None


@dataclass
class Caller:
    role: str
    claims: dict[str, Any]

    @property
    def sub(self) -> str | None:
        return self.claims.get("sub")


class ConnectionPool:
    """A few reused connections, as PostgREST and storage-api keep; made on first use, in
    the server's event loop. A connection left broken is dropped, not reused."""

    def __init__(self, db_url: str, size: int = 10) -> None:
        self._db_url = db_url
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots: asyncio.Semaphore | None = None

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        await self._slots.acquire()
        try:
            return self._idle.pop() if self._idle else \
                await psycopg.AsyncConnection.connect(self._db_url)
        except BaseException:
            self._slots.release()
            raise

    async def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.closed or conn.broken:
            await conn.close()
        else:
            self._idle.append(conn)
        assert self._slots is not None
        self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


# The stand-in ---------------------------------------------------------------------
class SupabaseStandIn:
    """Storage + PostgREST stand-in. ``.app`` is the ASGI app; ``start()`` serves it."""

    def __init__(self, db_url: str, storage_dir: str | Path,
                 jwt_secret: str = DEFAULT_JWT_SECRET) -> None:
        self.db_url = db_url
        self.storage_dir = Path(storage_dir)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.jwt_secret = jwt_secret
        self.faults = Faults()
        # storage-api's ENABLE_IMAGE_TRANSFORMATION (a paid add-on on Supabase's platform):
        # off, a sign request's `transform` is ignored and the URL serves the original
        self.image_transformation = True
        self.calls: list[tuple[str, int]] = []
        self.service_key = self._key({"role": "service_role"})
        self.anon_key = self._key({"role": "anon"})
        self._server: ThreadedServer | None = None
        self._pool = ConnectionPool(db_url)
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self._pool.close()

    # keys and serving ------------------------------------------------------------
    def _key(self, claims: dict[str, Any], ttl: int = 10 * 365 * 86400) -> str:
        now = int(time.time())
        payload = {"iss": "supabase-demo", "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(payload, self.jwt_secret, algorithm="HS256")

    def user_key(self, sub: str, **claims: Any) -> str:
        """A JWT for an authenticated user (what supabase-js sends after sign-in)."""
        return self._key({"role": "authenticated", "sub": sub, "aud": "authenticated",
                          **claims}, ttl=3600)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SupabaseStandIn not started")
        return self._server.url

    def start(self) -> SupabaseStandIn:
        self._server = serve_in_thread(self.app)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SupabaseStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _routes(self) -> list[Route]:
        s = "/storage/v1/object"
        return [
            Route(s + "/move", self._move, methods=["POST"]),
            Route(s + "/copy", self._copy, methods=["POST"]),
            Route(s + "/sign/{bucket}/{path:path}", self._sign, methods=["POST"]),
            Route(s + "/sign/{bucket}/{path:path}", self._signed_download, methods=["GET"]),
            Route(s + "/authenticated/{bucket}/{path:path}", self._download, methods=["GET"]),
            Route("/storage/v1/render/image/sign/{bucket}/{path:path}", self._render_signed,
                  methods=["GET"]),
            Route(s + "/{bucket}/{path:path}", self._download, methods=["GET"]),
            Route(s + "/{bucket}/{path:path}", self._upload, methods=["POST", "PUT"]),
            Route(s + "/{bucket}", self._remove, methods=["DELETE"]),
            Route("/rest/v1/rpc/{fn}", self._rpc, methods=["POST"]),
            Route("/rest/v1/{table}", self._rest,
                  methods=["GET", "POST", "PATCH", "DELETE"]),
        ]

    # plumbing ---------------------------------------------------------------------
    async def _handle(self, route: str, request: Request, storage: bool, work: Any) -> Response:
        """Apply faults, run ``work()``, turn errors into JSON, record the call."""
        try:
            fault = self.faults.take(route)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise ApiError(fault.status, fault.body or _fault_body(fault.status, storage))
            response = await work()
        except ApiError as exc:
            response = JSONResponse(exc.body, status_code=exc.status)
        self.calls.append((route, response.status_code))
        return response

    def _caller(self, request: Request, storage: bool) -> Caller:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if storage and not auth:  # storage-api reads only Authorization, never apikey
            raise storage_error("InvalidRequest",
                                "headers must have required property 'authorization'")
        token = token or request.headers.get("apikey")
        if not token:
            raise self._auth_error(storage, "No API key found in request")
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"],
                                options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            raise self._auth_error(storage, f"JWSError: {exc}") from exc
        role = claims.get("role", "anon")
        if role not in API_ROLES:
            raise self._auth_error(storage, f'role "{role}" does not exist')
        return Caller(role, claims)

    @staticmethod
    def _auth_error(storage: bool, message: str) -> ApiError:
        if storage:
            return storage_error("AccessDenied", message, 403, "Unauthorized")
        return pgrst_error(401, "PGRST301", message)

    @asynccontextmanager
    async def _tx(self, caller: Caller, role: str | None = None,
                  rollback: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One transaction as the caller's role (or ``role``), like PostgREST."""
        conn = await self._pool.acquire()
        try:
            async with conn.transaction(force_rollback=rollback):
                await conn.execute(
                    "select set_config('role', %s, true),"
                    " set_config('request.jwt.claims', %s, true),"
                    " set_config('search_path', 'public, extensions', true)",
                    (caller.role, json.dumps(caller.claims)),
                )
                await conn.execute(sql.SQL("set local role {}").format(
                    sql.Identifier(role or caller.role)))
                yield conn
        finally:
            await self._pool.release(conn)

    # storage ----------------------------------------------------------------------
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
            body = await _json_body(request)
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
            prefixes = (await _json_body(request)).get("prefixes") or []
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

    # PostgREST --------------------------------------------------------------------
    async def _rpc(self, request: Request) -> Response:
        fn = request.path_params["fn"]

        async def work() -> Response:
            _check_profile(request)
            caller = self._caller(request, storage=False)
            args = await _json_body(request)
            try:
                async with self._tx(caller) as conn:
                    return await _call_function(conn, fn, args)
            except psycopg.Error as exc:
                raise db_error(exc, caller.role) from exc
        return await self._handle(f"rpc:{fn}", request, False, work)

    async def _rest(self, request: Request) -> Response:
        table = request.path_params["table"]

        async def work() -> Response:
            _check_profile(request)
            caller = self._caller(request, storage=False)
            body = await _json_body(request) if request.method in ("POST", "PATCH") else None
            try:
                async with self._tx(caller) as conn:
                    return await _table_request(conn, request, table, body)
            except psycopg.Error as exc:
                raise db_error(exc, caller.role) from exc
        return await self._handle(f"rest:{table}", request, False, work)


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
def _fault_body(status: int, storage: bool) -> dict[str, Any]:
    if storage:
        return {"statusCode": str(status), "code": "InternalError", "error": "InternalError",
                "message": f"injected fault ({status})"}
    return {"code": "PGRST000", "details": None, "hint": None,
            "message": f"injected fault ({status})"}


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
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise storage_error("InvalidRequest", "body must be object")
    for field in ("bucketId", "sourceKey", "destinationKey"):
        if not isinstance(body.get(field), str):
            raise storage_error("InvalidRequest", f"body must have required property '{field}'")
    check_key(body["destinationKey"])
    return (body["bucketId"], body["sourceKey"], body.get("destinationBucket") or
            body["bucketId"], body["destinationKey"])


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise pgrst_error(400, "PGRST102", "Empty or invalid json") from exc


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


def _check_profile(request: Request) -> None:
    for header in ("accept-profile", "content-profile"):
        schema = request.headers.get(header)
        if schema and schema != "public":
            raise pgrst_error(406, "PGRST106", f"Invalid schema: {schema}",
                              hint="Only the following schemas are exposed: public")


FUNCTION_SQL = """
select p.proretset, p.prorettype::regtype::text, t.typtype,
       coalesce(p.proargnames, '{}'::text[]),
       coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs])),
       coalesce(p.proallargtypes, p.proargtypes::oid[])::regtype[]::text[]
from pg_proc p join pg_type t on t.oid = p.prorettype
where p.pronamespace = 'public'::regnamespace and p.proname = %s
"""


async def _call_function(conn: psycopg.AsyncConnection[Any], fn: str,
                         args: dict[str, Any]) -> Response:
    """Call public.fn with named args; shape the answer like PostgREST."""
    if not isinstance(args, dict):
        raise pgrst_error(400, "PGRST102", "RPC arguments must be a JSON object")
    found = await _resolve_function(conn, fn, args)
    if found is None:
        raise pgrst_error(404, "PGRST202",
                          f"Could not find the function public.{fn}({', '.join(sorted(args))})"
                          " in the schema cache")
    retset, rettype, typtype, inputs = found
    call = sql.SQL("public.{}({})").format(sql.Identifier(fn), sql.SQL(", ").join(
        sql.SQL("{} => %s::{}").format(sql.Identifier(k), sql.SQL(inputs[k])) for k in args))
    params = [_adapt(v, inputs[k]) for k, v in args.items()]
    if retset:
        query = sql.SQL("select coalesce(jsonb_agg(to_jsonb(_r)), '[]') from {} _r")
    elif rettype == "void":
        await conn.execute(sql.SQL("select {}").format(call), params)
        return Response(status_code=204)
    elif typtype == "c" or rettype == "record":
        query = sql.SQL("select to_jsonb(_r) from {} _r")
    else:
        query = sql.SQL("select to_jsonb({})")
    row = await (await conn.execute(query.format(call), params)).fetchone()
    return _json(200, row[0] if row else None)


async def _resolve_function(conn: psycopg.AsyncConnection[Any], fn: str,
                            args: dict[str, Any]) -> tuple[bool, str, str, dict[str, str]] | None:
    """The overload of public.fn whose input argument names cover ``args``."""
    rows = await (await conn.execute(FUNCTION_SQL, (fn,))).fetchall()
    for retset, rettype, typtype, names, modes, types in rows:
        inputs = {n: t for n, m, t in zip(names, modes, types, strict=False) if m in "ibv"}
        if set(args) <= set(inputs):
            return retset, rettype, typtype, inputs
    return None


def _adapt(value: Any, pg_type: str) -> Any:
    if pg_type in ("json", "jsonb") or isinstance(value, dict):
        return Jsonb(value)
    return value


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json")


FILTER_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
              "like": "like", "ilike": "ilike"}
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}


def _where(request: Request) -> tuple[sql.Composable, list[Any]]:
    """PostgREST horizontal filters: col=eq.v, neq, gt(e), lt(e), (i)like, is, in.(...)."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for col, expr in request.query_params.multi_items():
        if col in RESERVED:
            continue
        op, _, value = expr.partition(".")
        ident = sql.Identifier(col)
        if op in FILTER_OPS:
            parts.append(sql.SQL("{} {} %s").format(ident, sql.SQL(FILTER_OPS[op])))
            params.append(value.replace("*", "%") if "like" in op else value)
        elif op == "is":
            parts.append(sql.SQL("{} is {}").format(
                ident, sql.SQL({"null": "null", "true": "true", "false": "false"}[value])))
        elif op == "in":
            items = [v.strip().strip('"') for v in value.strip("()").split(",") if v.strip()]
            if not items:
                parts.append(sql.SQL("false"))
                continue
            parts.append(sql.SQL("{} in ({})").format(
                ident, sql.SQL(", ").join(sql.Placeholder() * len(items))))
            params.extend(items)
        else:
            raise pgrst_error(400, "PGRST100", f'"failed to parse filter ({expr})"')
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" where ") + sql.SQL(" and ").join(parts), params


def _select_list(request: Request) -> sql.Composable:
    raw = request.query_params.get("select", "*").strip() or "*"
    if raw == "*":
        return sql.SQL("*")
    cols = []
    for item in raw.split(","):
        alias, _, col = item.strip().rpartition(":")
        col = col.strip()
        ident = sql.Identifier(col)
        cols.append(sql.SQL("{} as {}").format(ident, sql.Identifier(alias)) if alias else ident)
    return sql.SQL(", ").join(cols)


def _order_limit(request: Request) -> sql.Composable:
    out: list[sql.Composable] = []
    if order := request.query_params.get("order"):
        terms = []
        for term in order.split(","):
            col, *mods = term.strip().split(".")
            words = [{"asc": "asc", "desc": "desc", "nullsfirst": "nulls first",
                      "nullslast": "nulls last"}[m] for m in mods]
            terms.append(sql.SQL(" ").join([sql.Identifier(col), *map(sql.SQL, words)]))
        out.append(sql.SQL(" order by ") + sql.SQL(", ").join(terms))
    if (limit := request.query_params.get("limit")) is not None:
        out.append(sql.SQL(" limit {}").format(sql.Literal(int(limit))))
    if (offset := request.query_params.get("offset")) is not None:
        out.append(sql.SQL(" offset {}").format(sql.Literal(int(offset))))
    return sql.Composed(out)


def _prefer(request: Request) -> set[str]:
    return {p.strip() for p in request.headers.get("prefer", "").split(",") if p.strip()}


async def _primary_key(conn: psycopg.AsyncConnection[Any], table: str) -> list[str]:
    rows = await (await conn.execute(
        "select a.attname from pg_index i join pg_attribute a"
        " on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
        " where i.indrelid = %s::regclass and i.indisprimary",
        (f"public.{table}",))).fetchall()
    return [r[0] for r in rows]


async def _table_request(conn: psycopg.AsyncConnection[Any], request: Request, table: str,
                         body: Any) -> Response:
    tbl = sql.Identifier("public", table)
    where, params = _where(request)
    prefer = _prefer(request)
    returning = "return=representation" in prefer
    if request.method == "GET":
        query = sql.SQL("select coalesce(jsonb_agg(to_jsonb(_t)), '[]') from"
                        " (select {} from {}{}{}) _t").format(
            _select_list(request), tbl, where, _order_limit(request))
        row = await (await conn.execute(query, params)).fetchone()
        return _json(200, row[0])
    if request.method == "POST":
        query, params = await _insert_sql(conn, request, table, body, prefer)
        status_ok = 201
    elif request.method == "PATCH":
        if not isinstance(body, dict):
            raise pgrst_error(400, "PGRST102", "PATCH body must be a JSON object")
        cols = sql.SQL(", ").join(map(sql.Identifier, body))
        query = sql.SQL("update {} set ({}) = (select {} from jsonb_populate_record(null::{},"
                        " %s))").format(tbl, cols, cols, tbl) + where
        params = [Jsonb(body), *params]
        status_ok = 200
    else:
        query = sql.SQL("delete from {}").format(tbl) + where
        status_ok = 200
    rows = await (await conn.execute(
        sql.SQL("with _w as ({} returning *) select coalesce(jsonb_agg(to_jsonb(_w)), '[]')"
                " from _w").format(query), params)).fetchone()
    if returning:
        return _json(status_ok, rows[0])
    return Response(status_code=201 if request.method == "POST" else 204)


async def _insert_sql(conn: psycopg.AsyncConnection[Any], request: Request, table: str,
                      body: Any, prefer: set[str]) -> tuple[sql.Composable, list[Any]]:
    rows = body if isinstance(body, list) else [body]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise pgrst_error(400, "PGRST102", "Body must be a JSON object or array of objects")
    if columns := request.query_params.get("columns"):
        names = [c.strip().strip('"') for c in columns.split(",")]
    else:
        names = list(dict.fromkeys(k for r in rows for k in r))
    tbl = sql.Identifier("public", table)
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    query = sql.SQL("insert into {} ({}) select {} from jsonb_populate_recordset(null::{}, %s)"
                    ).format(tbl, cols, cols, tbl)
    merge = "resolution=merge-duplicates" in prefer
    if merge or "resolution=ignore-duplicates" in prefer:
        target = request.query_params.get("on_conflict")
        keys = [c.strip() for c in target.split(",")] if target else \
            await _primary_key(conn, table)
        query += sql.SQL(" on conflict ({}) ").format(
            sql.SQL(", ").join(map(sql.Identifier, keys)))
        updates = [sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
                   for c in names if c not in keys]
        if merge and updates:
            query += sql.SQL("do update set ") + sql.SQL(", ").join(updates)
        else:
            query += sql.SQL("do nothing")
    return query, [Jsonb(rows)]


def create_bucket(db_url: str, bucket_id: str, public: bool = False) -> None:
    """Create a storage bucket directly in the database (like the dashboard does)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into storage.buckets (id, name, public) values (%s, %s, %s)",
                     (bucket_id, bucket_id, public))
