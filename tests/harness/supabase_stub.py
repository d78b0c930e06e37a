"""A Supabase stand-in: Storage (/storage/v1, tests/harness/storage_stub.py) and PostgREST
(/rest/v1, tests/harness/postgrest_stub.py) over a real PostgreSQL database, enforcing JWT
roles, grants and RLS the way Supabase does, behind Supabase's API gateway with both kinds
of keys (tests/harness/gateway.py).

Every request runs in one transaction as the JWT's role, set like PostgREST:
``set_config('role', ...)``, ``set_config('request.jwt.claims', ...)`` then
``SET LOCAL ROLE``. Storage uploads first INSERT a probe row in a transaction that is
always rolled back (like storage-api), then write the real row as
``supabase_storage_admin`` (owner of the storage tables).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import psycopg
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .gateway import Gateway, GatewayRefusal, hs256_minter
from .postgrest_stub import call_function, check_profile, table_request
from .servers import ThreadedServer, serve_in_thread
from .storage_stub import StorageApi, create_bucket
from .storage_tus import TusApi
from .stub_common import (
    ApiError,
    Caller,
    db_error,
    fault_body,
    json_body,
    pgrst_error,
    storage_error,
)

__all__ = ["SupabaseStandIn", "create_bucket"]

DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"
API_ROLES = ("anon", "authenticated", "service_role")


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

    def add(
        self,
        route: str,
        status: int | None = 500,
        body: Any = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
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
            return (
                self._idle.pop()
                if self._idle
                else await psycopg.AsyncConnection.connect(self._db_url)
            )
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
class SupabaseStandIn(StorageApi, TusApi):
    """Storage + PostgREST stand-in. ``.app`` is the ASGI app; ``start()`` serves it."""

    def __init__(
        self, db_url: str, storage_dir: str | Path, jwt_secret: str = DEFAULT_JWT_SECRET
    ) -> None:
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
        # the new API keys (sb_secret_…, sb_publishable_…): tests/harness/gateway.py
        self.gateway = Gateway(
            hs256_minter(jwt_secret), legacy_keys=frozenset({self.service_key, self.anon_key})
        )
        self.secret_key = self.gateway.secret_key
        self.publishable_key = self.gateway.publishable_key
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
        return self._key(
            {"role": "authenticated", "sub": sub, "aud": "authenticated", **claims}, ttl=3600
        )

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
        return [
            *self._storage_routes(),
            Route("/rest/v1/rpc/{fn}", self._rpc, methods=["POST"]),
            Route("/rest/v1/{table}", self._rest, methods=["GET", "POST", "PATCH", "DELETE"]),
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
                    raise ApiError(fault.status, fault.body or fault_body(fault.status, storage))
            response = await work()
        except ApiError as exc:
            response = JSONResponse(exc.body, status_code=exc.status)
        self.calls.append((route, response.status_code))
        return response

    def _caller(self, request: Request, storage: bool) -> Caller:
        try:  # the API gateway first: it may refuse, or put a JWT for a new key
            auth = self.gateway.forward(request.url.path, request.headers) or ""
        except GatewayRefusal as exc:
            raise ApiError(exc.status, exc.body) from exc
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if storage and not auth:  # storage-api reads only Authorization, never apikey
            raise storage_error(
                "InvalidRequest", "headers must have required property 'authorization'"
            )
        apikey = request.headers.get("apikey")
        token = token or (apikey if apikey and not apikey.startswith("sb_") else None)
        if not token:
            raise self._auth_error(storage, "No API key found in request")
        if token.count(".") != 2:  # PostgREST's and jose's words for a non-JWT
            raise self._auth_error(
                storage,
                "Invalid Compact JWS"
                if storage
                else f"Expected 3 parts in JWT; got {token.count('.') + 1}",
            )
        try:
            claims = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}
            )
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
    async def _tx(
        self, caller: Caller, role: str | None = None, rollback: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
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
                await conn.execute(
                    sql.SQL("set local role {}").format(sql.Identifier(role or caller.role))
                )
                yield conn
        finally:
            await self._pool.release(conn)

    # PostgREST --------------------------------------------------------------------
    async def _rpc(self, request: Request) -> Response:
        fn = request.path_params["fn"]

        async def work() -> Response:
            check_profile(request)
            caller = self._caller(request, storage=False)
            args = await json_body(request)
            try:
                async with self._tx(caller) as conn:
                    return await call_function(conn, fn, args)
            except psycopg.Error as exc:
                raise db_error(exc, caller.role) from exc

        return await self._handle(f"rpc:{fn}", request, False, work)

    async def _rest(self, request: Request) -> Response:
        table = request.path_params["table"]

        async def work() -> Response:
            check_profile(request)
            caller = self._caller(request, storage=False)
            body = await json_body(request) if request.method in ("POST", "PATCH") else None
            try:
                async with self._tx(caller) as conn:
                    return await table_request(conn, request, table, body)
            except psycopg.Error as exc:
                raise db_error(exc, caller.role) from exc

        return await self._handle(f"rest:{table}", request, False, work)
