"""Every auth rule of app/api/auth.py, in process: the webhook's bearer (whatever other
headers come with it, Standard Webhooks signature headers included), the API key, and the
page's login. The decisions are properties of the header, tested over generated headers."""

import base64
import string

import httpx
import jwt
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import PlainTextResponse

from app.api.auth import UI_LOCKED_REASON, ApiKeyAuth, WebhookAuth, WebPageAuth, parse_basic
from app.core.config import Settings

SECRETS = ["first-secret", "second-secret"]
SIGNED = {  # a Standard Webhooks signature: it never stands in for the bearer
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}


SERVICE_KEY = jwt.encode({"role": "service_role", "iss": "supabase"}, "x" * 32, algorithm="HS256")


def settings(**overrides: object) -> Settings:
    """A connected service (the webhook secrets are only read with the pipeline's settings)."""
    values = {"supabase_url": "http://127.0.0.1:9", "supabase_service_role_key": SERVICE_KEY}
    return Settings(_env_file=None, webhook_secret=SECRETS, **{**values, **overrides})  # type: ignore[call-arg]


def app_for(config: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = config

    @app.post("/hook")
    async def hook(_: WebhookAuth) -> str:
        return "ok"

    @app.get("/api")
    async def api(_: ApiKeyAuth) -> str:
        return "ok"

    @app.get("/ui/{rest:path}")
    @app.get("/ui")
    @app.get("/uix")
    async def page() -> PlainTextResponse:
        return PlainTextResponse("page")

    app.add_middleware(WebPageAuth, settings=config, prefix="/ui")
    return app


async def call(app: FastAPI, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.request(method, path, headers=headers)).status_code


def status(app: FastAPI, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    import asyncio

    return asyncio.run(call(app, method, path, headers))


WEBHOOK = app_for(settings())
tokens = st.one_of(st.sampled_from(SECRETS), st.text(string.printable, max_size=20))
schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""])


@given(scheme=schemes, token=tokens, padded=st.booleans(), signed=st.booleans())
def test_the_webhook_needs_exactly_one_bearer_with_a_secret(scheme, token, padded, signed):
    value = f"{scheme} {' ' + token + ' ' if padded else token}"
    headers = [("authorization", value), *(SIGNED.items() if signed else [])]

    accepted = scheme.lower() == "bearer" and token.strip() in SECRETS

    assert status(WEBHOOK, "POST", "/hook", headers) == (200 if accepted else 401)


@pytest.mark.parametrize("bearer", [None, "Bearer wrong", "Bearer ", f"Basic {SECRETS[0]}"])
def test_a_signature_never_replaces_the_webhook_secret(bearer):
    headers = list(SIGNED.items()) + ([("authorization", bearer)] if bearer else [])

    assert status(WEBHOOK, "POST", "/hook", headers) == 401


def test_two_authorization_headers_are_refused_even_if_one_is_right():
    right = ("authorization", f"Bearer {SECRETS[0]}")

    assert status(WEBHOOK, "POST", "/hook", [right]) == 200
    assert status(WEBHOOK, "POST", "/hook", [right, right]) == 401
    assert status(WEBHOOK, "POST", "/hook", [right, ("authorization", "Bearer x")]) == 401


@given(token=tokens)
def test_api_keys_when_set_replace_the_webhook_secrets(token):
    app = app_for(settings(api_keys=["api-key"]))

    code = status(app, "GET", "/api", [("authorization", f"Bearer {token}")])

    assert code == (200 if token.strip() == "api-key" else 401)


def test_without_api_keys_the_webhook_secrets_open_the_api():
    headers = [("authorization", f"Bearer {SECRETS[1]}")]

    assert status(WEBHOOK, "GET", "/api", headers) == 200
    assert status(WEBHOOK, "GET", "/api", []) == 401


def test_the_api_is_open_only_when_no_key_exists_at_all():
    app = app_for(Settings(_env_file=None))  # type: ignore[call-arg]

    assert status(app, "GET", "/api", []) == 200


def basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


@given(user=st.sampled_from(["alice", "bob", ""]), password=st.sampled_from(["pw", "PW", ""]))
def test_the_page_login_needs_both_the_user_and_the_password(user, password):
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    code = status(app, "GET", "/ui/x", [basic(user, password)])

    assert code == (200 if (user, password) == ("alice", "pw") else 401)


@pytest.mark.parametrize(("path", "guarded"), [("/ui", True), ("/ui/a/b", True), ("/uix", False)])
def test_the_login_guards_the_prefix_and_only_the_prefix(path, guarded):
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    assert status(app, "GET", path, []) == (401 if guarded else 200)
    assert status(app, "GET", path, [basic("alice", "pw")]) == 200


def test_a_connected_page_without_credentials_is_locked_with_the_reason():
    config = settings()
    assert config.ui_auth == "locked"
    app = app_for(config)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/ui/")

    import asyncio

    answer = asyncio.run(get())
    assert answer.status_code == 403 and answer.text == UI_LOCKED_REASON
    assert status(app, "GET", "/uix", []) == 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"a:b:c").decode(), ("a", "b:c")),
        ("basic " + base64.b64encode(b"a:").decode(), ("a", "")),
        ("Bearer " + base64.b64encode(b"a:b").decode(), ("", "")),
        ("Basic not-base64!", ("", "")),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_basic(header, expected):
    assert parse_basic(header) == expected


def response(
    app: FastAPI, method: str, path: str, headers: list[tuple[str, str]]
) -> httpx.Response:
    import asyncio

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def refused_webhooks() -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("captioner_webhooks_total", {"outcome": "refused_401"})
    return value or 0.0


def test_a_refused_webhook_says_why_asks_for_a_bearer_and_is_counted():
    before = refused_webhooks()

    answer = response(WEBHOOK, "POST", "/hook", [("authorization", "Bearer wrong")])

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "detail": "missing or wrong webhook secret (Authorization: Bearer <WEBHOOK_SECRET>)"
    }
    assert refused_webhooks() == before + 1


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (f"Bearer {SECRETS[0]}", True),
        (f"bearer {SECRETS[1]}", True),
        (f"BEARER  {SECRETS[0]} ", True),
        (f"Bearer{SECRETS[0]}", False),
        (f"Bearer {SECRETS[0]}x", False),
        (f"Bearer x{SECRETS[0]}", False),
        (f"Bearer {SECRETS[0][:-1]}", False),
        (f"Basic {SECRETS[0]}", False),
        (f"Bearer {SECRETS[0]} {SECRETS[1]}", False),
        ("Bearer", False),
        ("", False),
    ],
)
def test_the_webhook_bearer_cases(header, accepted):
    assert status(WEBHOOK, "POST", "/hook", [("authorization", header)]) == (
        200 if accepted else 401
    )


def test_a_wrong_api_key_is_refused_with_401_and_a_bearer_challenge():
    app = app_for(settings(api_keys=["api-key", "other-key"]))

    for header in ["Bearer api-key", "Bearer other-key", "bearer  other-key "]:
        assert status(app, "GET", "/api", [("authorization", header)]) == 200
    answer = response(app, "GET", "/api", [("authorization", "Bearer api-keyx")])

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    detail = "missing or wrong API key (Authorization: Bearer <API_KEYS>)"
    assert answer.json() == {"detail": detail}
    assert status(app, "GET", "/api", []) == 401
    assert status(app, "GET", "/api", [("authorization", "Bearer api-key")] * 2) == 401


def test_an_api_without_any_key_on_a_public_address_is_locked_with_403_and_the_reason():
    app = app_for(Settings(_env_file=None, host="0.0.0.0"))  # type: ignore[call-arg]

    answer = response(app, "GET", "/api", [("authorization", "Bearer anything")])

    assert answer.status_code == 403
    assert "www-authenticate" not in answer.headers
    assert answer.json() == {
        "detail": "the API needs a key on a non-loopback address (HOST=0.0.0.0): set API_KEYS "
        "and send Authorization: Bearer <key> (or API_PUBLIC=true to open it to anyone)"
    }


def test_api_public_opens_a_keyless_api_on_a_public_address():
    app = app_for(Settings(_env_file=None, host="0.0.0.0", api_public=True))  # type: ignore[call-arg]

    assert status(app, "GET", "/api", []) == 200
    assert status(app, "GET", "/api", [("authorization", "Bearer anything")]) == 200


def test_the_page_login_challenge_is_basic_with_a_plain_text_reason():
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    answer = response(app, "GET", "/ui/x", [])

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="captioner", charset="UTF-8"'
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-length"] == str(len(b"authentication required"))
    assert answer.content == b"authentication required"


def test_a_locked_page_answers_403_without_a_challenge():
    answer = response(app_for(settings()), "GET", "/ui", [basic("alice", "pw")])

    assert answer.status_code == 403
    assert "www-authenticate" not in answer.headers
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-length"] == str(len(UI_LOCKED_REASON.encode()))
    assert answer.text == UI_LOCKED_REASON


def test_a_page_on_a_public_address_without_credentials_is_locked_naming_host():
    config = Settings(_env_file=None, host="0.0.0.0")  # type: ignore[call-arg]

    answer = response(app_for(config), "GET", "/ui/", [])

    assert answer.status_code == 403
    assert answer.text == (
        "the web page needs credentials on a non-loopback address (HOST=0.0.0.0): set "
        "UI_USERNAME and UI_PASSWORD (or UI_PUBLIC=true to open it to anyone)"
    )


@pytest.mark.parametrize(
    "config",
    [
        Settings(_env_file=None),  # type: ignore[call-arg]  # a local demo
        Settings(_env_file=None, host="0.0.0.0", ui_public=True),  # type: ignore[call-arg]
    ],
)
def test_an_open_page_needs_no_login(config):
    assert config.ui_auth == "open"

    assert status(app_for(config), "GET", "/ui/x", []) == 200
    assert status(app_for(config), "GET", "/ui/x", [basic("x", "y")]) == 200


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"alice:pw").decode(),
        "basic " + base64.b64encode(b"alice:pw").decode(),
        "BASIC  " + base64.b64encode(b"alice:pw").decode() + " ",
    ],
)
def test_the_basic_scheme_is_case_insensitive(header):
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    assert status(app, "GET", "/ui/x", [("authorization", header)]) == 200


@pytest.mark.parametrize(
    "credentials", [b"alice:pwx", b"alicex:pw", b"alice", b"alice:", b":pw", b"pw:alice"]
)
def test_near_miss_credentials_are_refused(credentials):
    app = app_for(settings(ui_username="alice", ui_password="pw"))
    header = ("authorization", "Basic " + base64.b64encode(credentials).decode())

    assert status(app, "GET", "/ui/x", [header]) == 401


def test_a_password_with_a_colon_is_kept_whole():
    app = app_for(settings(ui_username="alice", ui_password="p:w"))

    assert status(app, "GET", "/ui/x", [basic("alice", "p:w")]) == 200
    assert status(app, "GET", "/ui/x", [basic("alice", "p")]) == 401


class Recorder:
    """A raw ASGI app behind the middleware: records what reaches it."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []
        self.received: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        self.received.append(await receive())


def drive(guard: WebPageAuth, scope: dict) -> list[dict]:
    import asyncio

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent


def websocket(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "websocket", "path": path, "headers": headers}


@pytest.mark.parametrize("config", [settings(ui_username="alice", ui_password="pw"), settings()])
def test_a_refused_websocket_is_closed_with_policy_violation(config):
    inner = Recorder()
    guard = WebPageAuth(inner, config, "/ui")

    sent = drive(guard, websocket("/ui/queue/join", []))

    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert inner.scopes == []


def test_an_authorized_websocket_and_unguarded_paths_reach_the_app():
    inner = Recorder()
    guard = WebPageAuth(inner, settings(ui_username="alice", ui_password="pw"), "/ui")
    good = [(b"authorization", basic("alice", "pw")[1].encode())]

    assert drive(guard, websocket("/ui/queue/join", good)) == []
    assert drive(guard, websocket("/other", [])) == []
    assert [scope["path"] for scope in inner.scopes] == ["/ui/queue/join", "/other"]
    assert inner.received == [{"type": "websocket.connect"}] * 2


def test_non_http_scopes_pass_through_untouched():
    inner = Recorder()
    guard = WebPageAuth(inner, settings(), "/ui")  # locked: every http request refused
    lifespan = {"type": "lifespan"}  # no path, no headers

    assert drive(guard, lifespan) == []
    assert inner.scopes == [lifespan]


def http(path: str) -> dict:
    return {"type": "http", "method": "GET", "path": path, "headers": []}


def test_the_refusals_are_asgi_messages_with_lowercase_header_names():
    """ASGI: header names in http.response.start must be lowercased."""
    challenge = WebPageAuth(Recorder(), settings(ui_username="alice", ui_password="pw"), "/ui")
    locked = WebPageAuth(Recorder(), settings(), "/ui")
    plain = (b"content-type", b"text/plain; charset=utf-8")

    assert drive(challenge, http("/ui")) == [
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"www-authenticate", b'Basic realm="captioner", charset="UTF-8"'),
                plain,
                (b"content-length", b"23"),
            ],
        },
        {"type": "http.response.body", "body": b"authentication required"},
    ]
    reason = UI_LOCKED_REASON.encode()
    assert drive(locked, http("/ui/x")) == [
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [plain, (b"content-length", str(len(reason)).encode())],
        },
        {"type": "http.response.body", "body": reason},
    ]


@pytest.mark.parametrize("junk", ["!", "*", " x", "#"])
def test_basic_credentials_must_be_strict_base64(junk):
    token = base64.b64encode(b"alice:pw").decode()
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    assert parse_basic(f"Basic {token}{junk}") == ("", "")
    assert parse_basic(f"Basic {token[:4]}{junk}{token[4:]}") == ("", "")
    assert status(app, "GET", "/ui/x", [("authorization", f"Basic {token[:4]}!{token[4:]}")]) == 401
