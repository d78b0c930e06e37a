"""Supabase's API gateway in front of the stand-in's PostgREST and Storage: which keys it
accepts, which it refuses, and the `Authorization` header it forwards.

A project has both kinds of keys: the new opaque ones (`sb_secret_…`, `sb_publishable_…`)
and the legacy JWTs (`service_role`, `anon`, signed with the project's JWT secret). What
the gateway does with a request, and where each rule comes from. D: the API-keys guide
(supabase/supabase apps/docs/content/guides/api/api-keys.mdx, "Known limitations" and "How
are publishable and secret keys implemented"); K: the self-hosted gateway that "replicates
the platform behavior for sb_ keys substitution" (supabase/supabase PR #43554,
docker/volumes/api/kong.yml and kong-entrypoint.sh `LUA_AUTH_EXPR`); I: issues.

What a request gets (the source of each rule in brackets):

- `apikey: sb_…` that is not one of the project's keys: 401 ``{"message": "Invalid API
  key", "hint": "Double check your Supabase `anon` or `service_role` API key."}`` [K
  key-auth; the platform's answer as quoted in issues].
- `apikey: sb_secret_…` with a browser's `User-Agent`: 401 ["matches on the `User-Agent`
  header and it will always reply with HTTP 401 Unauthorized", D].
- no `Authorization`, `apikey: sb_secret_…`: the service behind gets `Authorization:
  Bearer <short-lived service_role JWT>`; `sb_publishable_…`: an anon JWT [D, K rules 2-3].
- `Authorization` that is not `Bearer sb_…` (a user's JWT, a legacy key): forwarded
  unchanged [K rule 1].
- `Authorization: Bearer sb_…` equal to `apikey`: forwarded unchanged, so PostgREST
  answers 401 PGRST301 "Expected 3 parts in JWT; got 1" ["your request will be forwarded
  down to your project's database, but will be rejected as the value is not a JWT", D;
  supabase-py #1228, #1230].
- `Authorization: Bearer sb_…` not equal to `apikey`: 401 ["You cannot send a
  publishable or secret key in the Authorization: Bearer header, except if the value
  exactly equals the apikey header", D].
- no `Authorization`, `apikey` a legacy JWT: nothing added (see below).
- `legacy_keys_enabled = False` (Dashboard → API Keys: the legacy `anon` and `service_role`
  keys are disabled together): either one as `apikey` gets 401 ``{"message": "Legacy API
  keys are disabled"}``; a legacy JWT as a Bearer token is not checked ["Disabling legacy
  API keys does not revoke the old JWT as a Bearer token"; the message and the pairing as
  quoted in dyad-sh/dyad#4173, chuan-101/Hamster-Nest#472, supabase/agent-skills#482].

Where the two sources differ: the self-hosted Kong (K) replaces an equal
`Bearer sb_…` with the minted JWT, while the guide says it goes down to the database and
is refused; the stand-in follows the guide, the stricter of the two. supabase-py 2.34 sends
its key both as `apikey` and as `Authorization: Bearer <key>` (supabase/_async/client.py
`_get_auth_headers`), so a plain `create_client(url, "sb_secret_…")` gets PGRST301 here,
as in the issues; the service sends a new key only as `apikey` (app/core/keys.py), which
works under both. postgrest-py and storage3 send the headers supabase-py hands them
unchanged (postgrest base_request_builder.py `send` adds `Authorization` only from them or
`.auth()`; storage3 `AsyncStorageClient(url, headers)`), so app/main.py sets them once.
Storage sees the same forwarded header; storage-api refuses a non-JWT
with AccessDenied "Invalid Compact JWS" (jose's message; supabase/agent-skills#280).

The body of the browser refusal is not documented; the stand-in's message is its own. K
copies a legacy JWT `apikey` into a missing `Authorization`; the stand-in adds nothing, so
that PostgREST reads the key from `apikey` and storage-api answers as measured without a
gateway (tests/harness/supabase_stub.py).

The minted JWT is HS256 with the project's JWT secret here (the platform signs it with its
own asymmetric key, which storage-api and PostgREST check against the project's JWKS); it
lives a minute. Not modelled: rate limits, the `apikey` query parameter (WebSocket only),
and Edge Functions' `sb-api-key` header."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jwt

SECRET_PREFIX = "sb_secret_"
PUBLISHABLE_PREFIX = "sb_publishable_"
MINTED_TTL = 60
# every browser's User-Agent starts with this; curl, python-httpx and supabase-py's do not
BROWSER_MARK = "Mozilla/"
INVALID_KEY = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}


class GatewayRefusal(Exception):
    """The gateway answers itself: ``status`` with ``body``; nothing reaches the service."""

    def __init__(self, status: int, body: dict[str, str]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Forwarded:
    """What one request carried and what reached the service behind the gateway."""

    route: str
    apikey: str | None
    sent_authorization: str | None
    authorization: str | None  # the header PostgREST or Storage sees


@dataclass
class Gateway:
    """The project's keys and the gateway's rules (see the module's table)."""

    mint: Callable[[str, int], str]  # (role, ttl) -> a JWT the services accept
    secret_key: str = field(default_factory=lambda: SECRET_PREFIX + secrets.token_urlsafe(24))
    publishable_key: str = field(
        default_factory=lambda: PUBLISHABLE_PREFIX + secrets.token_urlsafe(16)
    )
    legacy_keys: frozenset[str] = frozenset()  # the project's anon and service_role JWTs
    legacy_keys_enabled: bool = True
    forwarded: list[Forwarded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def forward(self, route: str, headers: Mapping[str, str]) -> str | None:
        """The `Authorization` header the service behind receives, or GatewayRefusal."""
        apikey = headers.get("apikey")
        sent = headers.get("authorization")
        authorization = self._authorization(apikey, sent, headers.get("user-agent", ""))
        with self._lock:
            self.forwarded.append(Forwarded(route, apikey, sent, authorization))
        return authorization

    def _authorization(self, apikey: str | None, sent: str | None, agent: str) -> str | None:
        if not self.legacy_keys_enabled and apikey in self.legacy_keys:
            raise GatewayRefusal(401, {"message": "Legacy API keys are disabled"})
        role = self._role_of(apikey)
        if role == "service_role" and agent.startswith(BROWSER_MARK):
            raise GatewayRefusal(
                401, {"message": "Unauthorized: secret API keys cannot be used in a browser"}
            )
        if sent is not None and not sent.startswith("Bearer sb_"):
            return sent
        if sent is not None:
            if sent != f"Bearer {apikey}":
                raise GatewayRefusal(401, dict(INVALID_KEY))
            return sent  # the guide: forwarded down, refused there as not a JWT
        if role is not None:
            return f"Bearer {self.mint(role, MINTED_TTL)}"
        return None

    def _role_of(self, apikey: str | None) -> str | None:
        """The role of a new key; None for a legacy JWT or no key (checked further down)."""
        if apikey is None or not apikey.startswith("sb_"):
            return None
        if secrets.compare_digest(apikey, self.secret_key):
            return "service_role"
        if secrets.compare_digest(apikey, self.publishable_key):
            return "anon"
        raise GatewayRefusal(401, dict(INVALID_KEY))

    def non_jwt_authorizations(self) -> list[Forwarded]:
        """Requests whose own `Authorization` held something other than a JWT."""
        with self._lock:
            return [
                f
                for f in self.forwarded
                if f.sent_authorization is not None and not _is_jwt(f.sent_authorization)
            ]

    def clear(self) -> None:
        with self._lock:
            self.forwarded.clear()


def _is_jwt(header: str) -> bool:
    token = header[7:] if header.lower().startswith("bearer ") else header
    return token.count(".") == 2


def hs256_minter(jwt_secret: str) -> Callable[[str, int], str]:
    """Short-lived JWTs of a role, as the gateway forwards for a new key."""

    def mint(role: str, ttl: int) -> str:
        now = int(time.time())
        claims = {"role": role, "iss": "supabase", "iat": now, "exp": now + ttl}
        return jwt.encode(claims, jwt_secret, algorithm="HS256")

    return mint
