"""Hostile and odd input, table-driven. Every case has a clear outcome: a 4xx with a reason,
`ignored` with a reason, a job `failed` with a reason, or a caption (valid odd images);
never a 5xx, a hang or a dead worker.

One service (in a thread), one database and one set of stand-ins serve the whole module:
the object-level corpus is uploaded once, every outcome is awaited once, and each case
then checks its own."""

from __future__ import annotations

import io
import json
import logging
import socket
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from psycopg.types.json import Jsonb

from tests.harness.hf_stub import HuggingFaceStandIn
from tests.harness.postgres import create_database, drop_database
from tests.harness.supabase_stub import SupabaseStandIn, create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    TEST_SECRET,
    RunningService,
    caption_of,
    job_of,
    make_image,
    noise_image,
    query,
    start_service,
    upload,
    wait_for_caption,
)

MAX_IMAGE_BYTES = 300_000
AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}


# stand-ins ---------------------------------------------------------------------------
class MeteredSupabase(SupabaseStandIn):
    """Counts the bytes each download actually streamed; can serve chosen objects without
    a Content-Length (chunked), so the service's own byte cap is what stops it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streamed: dict[str, int] = {}
        self.chunked: set[str] = set()

    def _stream(self, obj: Any, request: Any) -> Any:
        response = super()._stream(obj, request)
        object_id = obj.id
        if object_id in self.chunked:
            del response.headers["content-length"]
        inner = response.body_iterator
        self.streamed.setdefault(object_id, 0)

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in inner:
                self.streamed[object_id] += len(chunk)
                yield chunk

        response.body_iterator = counted()
        return response


@dataclass
class Env:
    supabase: MeteredSupabase
    hf: HuggingFaceStandIn
    service: RunningService
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return self.supabase.db_url


@pytest.fixture(scope="module")
def env(pg_server, db_template, tmp_path_factory) -> Iterator[Env]:
    db_url = create_database(pg_server.admin_url, db_template)
    supabase = MeteredSupabase(db_url, tmp_path_factory.mktemp("storage")).start()
    hf = HuggingFaceStandIn().start()
    create_bucket(db_url, "images")
    create_bucket(db_url, "private")
    service = start_service(
        supabase, hf, webhook=False, max_image_bytes=MAX_IMAGE_BYTES, max_attempts=3
    )
    try:
        yield Env(supabase, hf, service)
    finally:
        service.stop()
        hf.stop()
        supabase.stop()
        drop_database(pg_server.admin_url, db_url)


def post(
    env: Env, body: bytes | str | None = None, headers: Any = None, **kwargs: Any
) -> httpx.Response:
    headers = AUTH if headers is None else headers
    return httpx.post(env.service.webhook_url, content=body, headers=headers, timeout=10, **kwargs)


def event(record: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    payload = {
        "type": "INSERT",
        "table": "objects",
        "schema": "storage",
        "record": record
        or {
            "id": str(uuid.uuid4()),
            "bucket_id": "images",
            "name": "x.png",
            "metadata": {"mimetype": "image/png"},
        },
        "old_record": None,
    }
    payload.update(overrides)
    return payload


# webhook-level cases -----------------------------------------------------------------
@dataclass
class Hook:
    body: Any  # dict/list (sent as JSON), bytes/str (sent raw) or a callable(env) -> bytes
    status: int
    reason: str = ""  # substring of the JSON answer (detail or reason)
    headers: Any = None  # None: the right secret
    outcome: str | None = None  # expected "status" field of a 200


def huge_body() -> bytes:
    payload = event()
    payload["record"]["user_metadata"] = {"padding": "x" * (300 * 1024)}
    return json.dumps(payload).encode()


def nested_body(depth: int) -> bytes:
    """A payload whose metadata nests `depth` objects deep (recursion in the parser)."""
    text = json.dumps(event())
    nested = '{"a":' * depth + "1" + "}" * depth
    return text.replace('"metadata": {"mimetype": "image/png"}', '"metadata": ' + nested).encode()


HOOKS = {
    "malformed-json": Hook(b'{"type": "INSERT", "table": ', 422, "json"),
    "not-utf8": Hook(b'{"type": "INSERT\xff\xfe"}', 422),
    "empty-body": Hook(b"", 422),
    "json-array": Hook([event()], 422),
    "json-string": Hook('"INSERT"', 422),
    "json-null": Hook("null", 422),
    "type-is-a-number": Hook(event(type=5), 422, "type"),
    "unknown-type": Hook(event(type="TRUNCATE"), 422, "type"),
    "record-id-not-uuid": Hook(event({"id": "../../etc/passwd", "bucket_id": "images"}), 422, "id"),
    "record-wrong-types": Hook(
        event({"id": str(uuid.uuid4()), "bucket_id": ["images"], "metadata": "image/png"}), 422
    ),
    "missing-record": Hook(
        {"type": "INSERT", "table": "objects", "schema": "storage"}, 422, "without record"
    ),
    "null-record-update": Hook({**event(type="UPDATE"), "record": None}, 422, "without record"),
    "missing-schema": Hook(
        {"type": "INSERT", "table": "objects", "record": event()["record"]}, 422, "schema"
    ),
    "unknown-schema": Hook(
        event(schema="public"), 200, "not a storage.objects event", outcome="ignored"
    ),
    "unknown-table": Hook(
        event(table="buckets"), 200, "not a storage.objects event", outcome="ignored"
    ),
    "delete-event": Hook(
        event(type="DELETE", old_record=event()["record"]), 200, "deletes", outcome="ignored"
    ),
    "unknown-object": Hook(event(), 200, "object not found", outcome="ignored"),
    "null-metadata": Hook(
        event({"id": str(uuid.uuid4()), "bucket_id": "images", "name": "a.png", "metadata": None}),
        200,
        outcome="ignored",
    ),
    "extra-unknown-keys": Hook(
        {**event(), "extra": {"level": 3}, "user_id": None}, 200, outcome="ignored"
    ),
    "deeply-nested-json": Hook(nested_body(5000), 422),
    "body-over-cap": Hook(huge_body(), 413, "body over"),
    "body-over-cap-chunked": Hook(lambda env: iter([huge_body()]), 413, "body over"),
    "no-secret": Hook(event(), 401, "secret", headers={}),
    "wrong-secret": Hook(event(), 401, "secret", headers={"Authorization": "Bearer nope"}),
    "secret-without-bearer": Hook(event(), 401, "secret", headers={"Authorization": TEST_SECRET}),
    "basic-auth-scheme": Hook(
        event(), 401, "secret", headers={"Authorization": f"Basic {TEST_SECRET}"}
    ),
    "secret-prefix-only": Hook(
        event(), 401, "secret", headers={"Authorization": f"Bearer {TEST_SECRET[:-1]}"}
    ),
    "duplicated-authorization-right-first": Hook(
        event(),
        401,
        "secret",
        headers=[("Authorization", f"Bearer {TEST_SECRET}"), ("Authorization", "Bearer nope")],
    ),
    "duplicated-authorization-wrong-first": Hook(
        event(),
        401,
        "secret",
        headers=[("Authorization", "Bearer nope"), ("Authorization", f"Bearer {TEST_SECRET}")],
    ),
    "non-ascii-secret": Hook(
        event(), 401, "secret", headers={"Authorization": "Bearer s\u00e9cret".encode()}
    ),
}


@pytest.mark.parametrize("case", HOOKS.values(), ids=HOOKS.keys())
def test_webhook_input(env: Env, case: Hook):
    body = case.body(env) if callable(case.body) else case.body
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    headers = case.headers
    if headers is not None and not isinstance(headers, list):
        headers = dict(headers)
    if isinstance(headers, list) or headers is None:
        base = [("content-type", "application/json")]
        headers = base + (list(AUTH.items()) if headers is None else headers)
    else:
        headers = {"content-type": "application/json", **headers}

    response = post(env, body, headers=headers)

    assert response.status_code == case.status, response.text
    assert case.reason.lower() in response.text.lower(), response.text
    if case.outcome:
        answer = response.json()
        assert answer["status"] == case.outcome
        assert answer["status"] != "ignored" or answer["reason"], "ignored without a reason"


def test_wrong_method_and_path_are_4xx(env: Env):
    assert httpx.get(env.service.webhook_url, headers=AUTH).status_code == 405
    assert httpx.post(env.service.url + "/webhooks/other", headers=AUTH).status_code == 404


def test_slow_loris_body_does_not_block_other_requests(env: Env):
    """A client that sends headers and stalls must not stall the service."""
    host, port = "127.0.0.1", env.service.server.port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            b"POST /webhooks/storage HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Authorization: Bearer " + TEST_SECRET.encode() + b"\r\n\r\n{"
        )
        started = time.monotonic()
        response = post(env, json.dumps(event()))
        assert response.status_code == 200
        assert time.monotonic() - started < 2


def test_a_sender_that_hangs_up_mid_body_leaves_no_traceback(env: Env, caplog):
    """uvicorn logs "Exception in ASGI application" for an unhandled ClientDisconnect."""
    from tests.integration.test_ops import metric

    asgi_errors = logging.getLogger("uvicorn.error")
    asgi_errors.addHandler(caplog.handler)

    def refused() -> float:
        text = httpx.get(env.service.url + "/metrics", headers=AUTH).text
        return metric(text, "captioner_webhooks_total", outcome="refused_400")

    before = refused()
    try:
        with socket.create_connection(("127.0.0.1", env.service.server.port)) as sock:
            sock.sendall(
                b"POST /webhooks/storage HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 5000\r\nAuthorization: Bearer "
                + TEST_SECRET.encode()
                + b'\r\n\r\n{"type": "INS'
            )
        wait_until(lambda: refused() > before, message="the hang-up was never answered")
    finally:
        asgi_errors.removeHandler(caplog.handler)
    assert "Exception in ASGI application" not in caplog.text
    assert "ClientDisconnect" not in caplog.text
    assert post(env, json.dumps(event())).status_code == 200  # still serving


# object-level corpus ---------------------------------------------------------------------
def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG of width x height zeros: tiny on disk, huge once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def heif_claiming(width: int, height: int) -> bytes:
    """A small HEIF whose image extents (its `ispe` box) claim width x height."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (0, 0, 0)), "HEIF"))
    box = data.index(b"ispe")
    data[box + 8 : box + 16] = struct.pack(">II", width, height)  # after version and flags
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ((220, 30, 30), (30, 60, 220))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (60, 40), (30, 60, 220))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(image, "JPEG", exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (50, 20), 65535)
    return encode(image, "PNG")


def transparent_palette_png() -> bytes:
    image = Image.new("P", (30, 30), 0)
    image.putpalette([0, 0, 0] + [220, 30, 30] * 255)
    return encode(image, "PNG", transparency=0)  # all pixels transparent: flattened on white


BILLION_LAUGHS_SVG = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
        for i in range(1, 10)
    )
    + b']><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<text>&lol9;</text></svg>"
)


@dataclass
class Obj:
    name: str
    data: bytes | Any  # bytes, or a callable producing them (lazy: big ones)
    mimetype: str = "image/png"
    expect: str = "caption"  # caption | failed | skipped (a job says why) | ignored (no job)
    reason: str = ""  # substring of the caption, the failure or the ignore reason
    bucket: str = "images"
    direct: bool = False  # insert the row in SQL (names the storage client refuses)
    metadata: Any = "auto"  # for direct rows: "auto", None or a dict
    setup: str = ""  # extra step: "lie-size-chunked"


OBJECTS = {
    "non-image-mimetype": Obj("docs/notes.txt", b"hello", "text/plain", "skipped", "not an image"),
    "pdf-mimetype": Obj("docs/a.pdf", b"%PDF-1.4", "application/pdf", "skipped", "not an image"),
    "folder-placeholder": Obj(
        "folder/.emptyFolderPlaceholder",
        b"",
        "application/octet-stream",
        "ignored",
        "folder placeholder",
    ),
    "null-metadata": Obj(
        "old/legacy.png",
        make_image(),
        expect="skipped",
        reason="unknown content type",
        direct=True,
        metadata=None,
    ),
    "other-bucket": Obj(
        "cat.png", make_image(), bucket="private", expect="ignored", reason="not watched"
    ),
    "svg-declared": Obj("vector.svg", BILLION_LAUGHS_SVG, "image/svg+xml", "skipped", "SVG"),
    "svg-disguised-as-png": Obj(
        "vector.png", BILLION_LAUGHS_SVG, "image/png", "failed", "not a supported raster image"
    ),
    "eps-no-ghostscript": Obj(
        "print.eps",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        "image/x-eps",
        "skipped",
        "not a format the captioner decodes",
    ),
    "heic-garbage": Obj(
        "phone.heic",
        b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64,
        "image/heic",
        "failed",
        "not a supported raster image",
    ),
    "heic": Obj(
        "IMG_0001.HEIC",
        lambda: encode(Image.new("RGB", (48, 36), (30, 60, 220)), "HEIF"),
        "image/heic",
        "caption",
        "mostly blue",
    ),
    "heif": Obj(
        "burst.heif",
        lambda: encode(Image.new("RGB", (36, 48), (30, 160, 60)), "HEIF"),
        "image/heif",
        "caption",
        "mostly green",
    ),
    "avif": Obj(
        "web.avif",
        lambda: encode(Image.new("RGB", (40, 40), (220, 30, 30)), "AVIF"),
        "image/avif",
        "caption",
        "a 40x40 picture, mostly red",
    ),
    "ico": Obj(
        "favicon.ico",
        lambda: encode(Image.new("RGB", (32, 32), (240, 220, 40)), "ICO"),
        "image/x-icon",
        "caption",
        "a 32x32 picture, mostly yellow",
    ),
    "ico-vnd-mimetype": Obj(
        "icon.ico",
        lambda: encode(Image.new("RGB", (16, 16), (0, 0, 0)), "ICO"),
        "image/vnd.microsoft.icon",
        "caption",
        "a 16x16 picture",
    ),
    "heif-bomb-20000x20000": Obj(
        "huge.heic", lambda: heif_claiming(20000, 20000), "image/heic", "failed", "too large"
    ),
    "text-claiming-jpeg": Obj(
        "liar.jpg", b"just some text", "image/jpeg", "failed", "not a supported raster image"
    ),
    "jpeg-claiming-png": Obj(
        "actually-jpeg.png",
        make_image((30, 160, 60), fmt="JPEG"),
        "image/png",
        "caption",
        "mostly green",
    ),
    "zero-bytes": Obj("empty.png", b"", "image/png", "failed", "empty file"),
    "truncated-jpeg": Obj(
        "cut.jpg", lambda: noise_image((300, 200))[:3000], "image/jpeg", "failed", "truncated"
    ),
    "png-bomb-20000x20000": Obj(
        "bomb.png", lambda: png_bomb(20000, 20000), "image/png", "failed", "too large"
    ),
    "png-bomb-10000x10000": Obj(
        "bomb2.png", lambda: png_bomb(10000, 10000), "image/png", "failed", "too large"
    ),
    "over-size-cap": Obj(
        "huge.png", lambda: noise_image((400, 400), fmt="PNG"), "image/png", "failed", "too large"
    ),
    "over-cap-lying-size-chunked": Obj(
        "sneaky.png", make_image(), "image/png", "failed", "too large", setup="lie-size-chunked"
    ),
    "animated-gif": Obj("anim.gif", animated_gif, "image/gif", "caption", "a 40x30 picture"),
    "cmyk-jpeg": Obj(
        "print.jpg",
        lambda: encode(Image.new("CMYK", (32, 24), (0, 0, 0, 0)), "JPEG"),
        "image/jpeg",
        "caption",
        "a 32x24 picture, mostly white",
    ),
    "16-bit-png": Obj(
        "deep.png", sixteen_bit_png, "image/png", "caption", "a 50x20 picture, mostly white"
    ),
    "palette-png-transparency": Obj(
        "clear.png",
        transparent_palette_png,
        "image/png",
        "caption",
        "a 30x30 picture, mostly white",
    ),
    "webp": Obj(
        "photo.webp",
        lambda: encode(Image.new("RGB", (40, 40), (240, 220, 40)), "WEBP"),
        "image/webp",
        "caption",
        "mostly yellow",
    ),
    "tiff": Obj(
        "scan.tiff",
        lambda: encode(Image.new("RGB", (40, 40), (130, 50, 160)), "TIFF"),
        "image/tiff",
        "caption",
        "mostly purple",
    ),
    "bmp": Obj(
        "old.bmp",
        lambda: encode(Image.new("RGB", (20, 10), (0, 0, 0)), "BMP"),
        "image/bmp",
        "caption",
        "mostly black",
    ),
    "exif-rotated": Obj(
        "rotated.jpg", exif_rotated_jpeg, "image/jpeg", "caption", "a 40x60 picture, mostly blue"
    ),
    "one-pixel": Obj("dot.png", make_image(size=(1, 1)), "image/png", "caption", "a 1x1 picture"),
    "extreme-aspect": Obj(
        "line.png", make_image(size=(5000, 1)), "image/png", "caption", "a 512x1 picture"
    ),
    "uppercase-mimetype": Obj("upper.png", make_image(), "IMAGE/PNG", "caption", "picture"),
    # every character storage-api's isValidKey accepts (unicode, "#" and "%" it refuses:
    # tests/integration/test_storage_server.py); a "?" name cannot be signed and is
    # downloaded with the key
    "question-mark-query-like": Obj(
        "q?x=1&y=2.png", make_image(size=(61, 40)), reason="a 61x40 picture"
    ),
    "spaces-and-specials": Obj(
        "a b/what?1&x=y;.png", make_image(size=(62, 40)), reason="a 62x40 picture"
    ),
    "plus-equals": Obj("c++/a+b=c.png", make_image(size=(63, 40)), reason="a 63x40 picture"),
    "every-allowed-punctuation": Obj(
        "odd !*'()$@;:,-_.png", make_image(size=(64, 40)), reason="a 64x40 picture"
    ),
    "deep-folders": Obj(
        "/".join("abcdefghijklmnop") + "/deep.png",
        make_image(size=(65, 40)),
        reason="a 65x40 picture",
    ),
    "dot-dot-segment": Obj(
        "x/../y.png", make_image(), expect="failed", reason="dot segment", direct=True
    ),
    "dot-segment": Obj(
        "x/./y.png", make_image(), expect="failed", reason="dot segment", direct=True
    ),
    "very-long-name-1024-bytes": Obj(
        "long/" + "e" * 1015 + ".png", make_image(size=(66, 40)), reason="a 66x40 picture"
    ),
}


def put_direct(
    env: Env, obj: Obj, data: bytes, object_id: str | None = None, size: int | None = None
) -> str:
    """Write a storage.objects row and its bytes directly (as storage-api would); `size`:
    what the metadata claims, if not the truth."""
    object_id, version = object_id or str(uuid.uuid4()), str(uuid.uuid4())
    (env.supabase.storage_dir / f"{object_id}.{version}").write_bytes(data)
    size = len(data) if size is None else size
    metadata = (
        {"mimetype": obj.mimetype, "size": size, "contentLength": size}
        if obj.metadata == "auto"
        else obj.metadata
    )
    query(
        env.db,
        "insert into storage.objects (id, bucket_id, name, version, metadata)"
        " values (%s, %s, %s, %s, %s)",
        object_id,
        obj.bucket,
        obj.name,
        version,
        Jsonb(metadata) if metadata is not None else None,
    )
    return object_id


def terminal(env: Env, object_id: str, obj: Obj) -> dict[str, Any] | None:
    job = job_of(env.db, object_id)
    if obj.expect in ("ignored", "skipped"):
        return {"job": job}  # the trigger decides at once, in the upload's transaction
    if job and job["state"] in ("done", "failed"):
        return {"job": job, "caption": caption_of(env.db, object_id)}
    return None


@pytest.fixture(scope="module")
def corpus(env: Env) -> dict[str, dict[str, Any]]:
    """Store every object of OBJECTS, then wait for every outcome (once for the module)."""
    ids: dict[str, str] = {}
    for key, obj in OBJECTS.items():
        data = obj.data() if callable(obj.data) else obj.data
        if obj.direct or obj.metadata != "auto":
            ids[key] = put_direct(env, obj, data)
        elif obj.setup == "lie-size-chunked":
            # the metadata says small; the bytes are 32 MB, served without a Content-Length
            object_id = str(uuid.uuid4())
            env.supabase.chunked.add(object_id)
            ids[key] = put_direct(
                env, obj, data + b"\x00" * (32 * 1024 * 1024), object_id, size=len(data)
            )
        else:
            ids[key] = upload(env.supabase, obj.name, data, obj.mimetype, bucket=obj.bucket)
    outcomes = {}
    for key, object_id in ids.items():
        obj = OBJECTS[key]
        outcome = wait_until(
            lambda oid=object_id, o=obj: terminal(env, oid, o),
            timeout=30,
            message=f"{key}: no outcome; job {job_of(env.db, object_id)}",
        )
        outcome["object_id"] = object_id
        if obj.expect in ("ignored", "skipped"):  # ask the service (a redelivered webhook)
            record = query(
                env.db, "select to_jsonb(o) as r from storage.objects o where id=%s", object_id
            )[0]["r"]
            outcome["answer"] = post(env, json.dumps(event(record)))
        outcomes[key] = outcome
    return outcomes


@pytest.mark.parametrize("key", OBJECTS.keys(), ids=OBJECTS.keys())
def test_object_input(env: Env, corpus: dict[str, dict[str, Any]], key: str):
    obj, outcome = OBJECTS[key], corpus[key]
    job = outcome["job"]
    if obj.expect in ("ignored", "skipped"):
        if obj.expect == "ignored":
            assert job is None, f"a job although it should be ignored: {job}"
        else:
            assert job["state"] == "skipped" and job["attempts"] == 0, job
            assert obj.reason.lower() in job["last_error"].lower(), job
        answer = outcome["answer"]
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ignored"
        assert obj.reason.lower() in answer.json()["reason"].lower(), answer.json()
    elif obj.expect == "failed":
        assert job["state"] == "failed", job
        assert obj.reason.lower() in job["last_error"].lower(), job["last_error"]
        assert job["attempts"] == 1, f"a permanent fault was retried: {job}"
        assert outcome["caption"] is None
    else:
        assert job["state"] == "done", job
        assert obj.reason in outcome["caption"]["caption"], outcome["caption"]


def test_size_cap_stops_the_download_early(env: Env, corpus):
    honest = corpus["over-size-cap"]["object_id"]
    sneaky = corpus["over-cap-lying-size-chunked"]["object_id"]
    # metadata says too large: refused before any download
    assert env.supabase.streamed.get(honest, 0) == 0
    # metadata lies and no Content-Length: the stream is cut soon after the cap
    assert 0 < env.supabase.streamed[sneaky] < 8 * 1024 * 1024, env.supabase.streamed[sneaky]
    assert f"more than {MAX_IMAGE_BYTES} bytes" in job_of(env.db, sneaky)["last_error"]


def test_svg_never_reaches_the_captioner_or_a_parser(env: Env, corpus):
    sizes = {call["n_bytes"] for call in env.hf.calls}
    assert len(BILLION_LAUGHS_SVG) not in sizes
    assert all(call["status"] == 200 for call in env.hf.calls), env.hf.calls


def test_worker_survives_the_corpus(env: Env, corpus):
    assert query(env.db, "select * from captioner.jobs where state in ('running', 'pending')") == []
    object_id = upload(env.supabase, "after/normal.png", make_image((30, 60, 220)))
    assert "mostly blue" in wait_for_caption(env.db, object_id)["caption"]
    assert env.service.app.state.ready
