"""Tests proving the harness stand-ins against the real clients."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid

import httpx
import psycopg
import pytest
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from postgrest.exceptions import APIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from storage3.exceptions import StorageApiError
from supabase import acreate_client, create_client

from tests.harness.hf_stub import Loading, RateLimited, ServerError, caption_for
from tests.harness.servers import serve_in_thread
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until


def image_bytes(fmt: str = "PNG", size=(40, 30), colour=(220, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def sql(db_url: str, query: str, params=None):
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


@pytest.fixture
def client(supabase):
    create_bucket(supabase.db_url, "images")
    return create_client(supabase.url, supabase.service_key)


# storage ---------------------------------------------------------------------------
def test_upload_row_sign_and_download(client, supabase):
    data = image_bytes()
    client.storage.from_("images").upload("folder/cat.png", data, {"content-type": "image/png"})
    [(oid, version, meta, tokens, owner)] = sql(
        supabase.db_url, "select id, version, metadata, path_tokens, owner from storage.objects"
    )
    assert tokens == ["folder", "cat.png"] and owner is None
    uuid.UUID(version)
    assert meta["mimetype"] == "image/png" and meta["size"] == len(data)
    assert meta["contentLength"] == len(data) and meta["httpStatusCode"] == 200
    assert meta["eTag"].startswith('"') and meta["cacheControl"] == "max-age=3600"
    assert "lastModified" in meta

    signed = client.storage.from_("images").create_signed_url("folder/cat.png", 60)
    assert signed["signedURL"].startswith(supabase.url + "/storage/v1/object/sign/images/")
    resp = httpx.get(signed["signedURL"])
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["content-type"] == "image/png"
    assert client.storage.from_("images").download("folder/cat.png") == data

    bad = httpx.get(signed["signedURL"].split("?")[0] + "?token=nope")
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidJWT"

    removed = client.storage.from_("images").remove(["folder/cat.png"])
    assert [r["name"] for r in removed] == ["folder/cat.png"]
    gone = httpx.get(signed["signedURL"])
    assert gone.status_code == 400 and gone.json()["code"] == "NoSuchKey"
    with pytest.raises(StorageApiError) as err:
        client.storage.from_("images").create_signed_url("folder/cat.png", 60)
    assert err.value.status == "404"


def test_duplicate_and_upsert_keep_id(client, supabase):
    bucket = client.storage.from_("images")
    bucket.upload("a.png", image_bytes(), {"content-type": "image/png"})
    with pytest.raises(StorageApiError) as err:
        bucket.upload("a.png", image_bytes(), {"content-type": "image/png"})
    assert err.value.status == "409" and err.value.code == "Duplicate"
    [(oid, v1)] = sql(supabase.db_url, "select id, version from storage.objects")
    bigger = image_bytes(size=(80, 80))
    bucket.upload("a.png", bigger, {"content-type": "image/png", "upsert": "true"})
    [(oid2, v2, size)] = sql(
        supabase.db_url, "select id, version, (metadata->>'size')::int from storage.objects"
    )
    assert oid2 == oid and v2 != v1 and size == len(bigger)


def test_probe_row_never_commits(client, supabase):
    sql(
        supabase.db_url,
        """
        create table public.insert_log (version text);
        create function public.log_insert() returns trigger language plpgsql
        security definer as $$ begin insert into public.insert_log values (new.version);
        return new; end $$;
        create trigger log_insert after insert on storage.objects
          for each row execute function public.log_insert();
    """,
    )
    client.storage.from_("images").upload("x.png", image_bytes(), {"content-type": "image/png"})
    rows = sql(supabase.db_url, "select version from public.insert_log")
    assert len(rows) == 1 and rows[0][0] != "1"


def test_storage_rls_and_faults(client, supabase):
    client.storage.from_("images").upload("p.png", image_bytes(), {"content-type": "image/png"})
    anon = create_client(supabase.url, supabase.anon_key)
    with pytest.raises(StorageApiError) as err:
        anon.storage.from_("images").create_signed_url("p.png", 60)
    assert err.value.status == "404"
    with pytest.raises(StorageApiError):  # no insert policy for anon: probe fails
        anon.storage.from_("images").upload("q.png", image_bytes())

    supabase.faults.add("sign", status=503, times=1)
    with pytest.raises(StorageApiError) as err:
        client.storage.from_("images").create_signed_url("p.png", 60)
    assert err.value.status == "503"
    assert client.storage.from_("images").create_signed_url("p.png", 60)["signedURL"]
    assert ("sign", 503) in supabase.calls and ("sign", 200) in supabase.calls


def test_download_streams_in_chunks(client, supabase):
    big = bytes(range(256)) * 4096  # 1 MiB
    client.storage.from_("images").upload("big.bin", big)
    url = client.storage.from_("images").create_signed_url("big.bin", 60)["signedURL"]
    received = 0
    with httpx.stream("GET", url) as resp:
        assert int(resp.headers["content-length"]) == len(big)
        for chunk in resp.iter_bytes():
            received += len(chunk)
            if received >= 100_000:
                break
    assert 100_000 <= received < len(big)


def test_async_client(supabase):
    create_bucket(supabase.db_url, "images")

    async def main():
        client = await acreate_client(supabase.url, supabase.service_key)
        await client.storage.from_("images").upload(
            "a/b.jpg", image_bytes("JPEG"), {"content-type": "image/jpeg"}
        )
        signed = await client.storage.from_("images").create_signed_url("a/b.jpg", 30)
        rows = await client.table("notes").upsert({"id": 1, "body": "x"}).execute()
        return signed, rows.data

    sql(supabase.db_url, "create table public.notes (id int primary key, body text)")
    signed, rows = asyncio.run(main())
    assert httpx.get(signed["signedURL"]).status_code == 200
    assert rows == [{"id": 1, "body": "x"}]


# PostgREST -------------------------------------------------------------------------
def test_rpc_shapes_and_errors(client, supabase):
    sql(
        supabase.db_url,
        """
        create function public.pairs(n int) returns table (i int, label text)
          language sql as $$ select g, 'n' || g from generate_series(1, n) g $$;
        create function public.add(a int, b int default 1) returns int
          language sql as $$ select a + b $$;
        create function public.echo(doc jsonb, id uuid) returns jsonb
          language sql as $$ select doc || jsonb_build_object('id', id) $$;
        create function public.nothing() returns void language sql as $$ select $$;
        create function public.boom() returns int language plpgsql
          as $$ begin raise exception 'kaboom'; end $$;
        create function public.secret() returns int language sql as $$ select 42 $$;
        revoke execute on function public.secret() from anon, public;
    """,
    )
    assert client.rpc("pairs", {"n": 2}).execute().data == [
        {"i": 1, "label": "n1"},
        {"i": 2, "label": "n2"},
    ]
    assert client.rpc("add", {"a": 2}).execute().data == 3
    uid = str(uuid.uuid4())
    assert client.rpc("echo", {"doc": {"k": [1]}, "id": uid}).execute().data == {
        "k": [1],
        "id": uid,
    }
    assert client.rpc("nothing", {}).execute().data == []
    with pytest.raises(APIError) as err:
        client.rpc("missing", {}).execute()
    assert err.value.code == "PGRST202"
    with pytest.raises(APIError) as err:
        client.rpc("boom", {}).execute()
    assert err.value.code == "P0001" and err.value.message == "kaboom"
    anon = create_client(supabase.url, supabase.anon_key)
    with pytest.raises(APIError) as err:
        anon.rpc("secret", {}).execute()
    assert err.value.code == "42501"
    assert client.rpc("secret", {}).execute().data == 42
    resp = httpx.post(
        f"{supabase.url}/rest/v1/rpc/add",
        json={"a": 1},
        headers={"apikey": supabase.anon_key, "Content-Profile": "storage"},
    )
    assert resp.status_code == 406 and resp.json()["code"] == "PGRST106"
    bad = httpx.post(
        f"{supabase.url}/rest/v1/rpc/add", json={"a": 1}, headers={"apikey": "not-a-jwt"}
    )
    assert bad.status_code == 401


def test_table_insert_upsert_select(client, supabase):
    sql(supabase.db_url, "create table public.items (id int primary key, label text, n int)")
    t = client.table("items")
    assert t.insert([{"id": 1, "label": "a", "n": 1}, {"id": 2, "label": "b"}]).execute().data == [
        {"id": 1, "label": "a", "n": 1},
        {"id": 2, "label": "b", "n": None},
    ]
    t.upsert({"id": 1, "label": "A", "n": 5}, on_conflict="id").execute()
    with pytest.raises(APIError) as err:
        t.insert({"id": 2, "label": "dup"}).execute()
    assert err.value.code == "23505"
    assert t.select("id,label").eq("id", 1).execute().data == [{"id": 1, "label": "A"}]
    assert [
        r["id"] for r in t.select("*").in_("id", [1, 2]).order("id", desc=True).execute().data
    ] == [2, 1]
    assert t.select("id").is_("n", "null").execute().data == [{"id": 2}]
    assert t.select("id").order("id").limit(1).execute().data == [{"id": 1}]
    assert t.update({"n": 9}).eq("id", 2).execute().data == [{"id": 2, "label": "b", "n": 9}]
    assert t.delete().neq("id", 2).execute().data[0]["id"] == 1
    assert t.select("id").execute().data == [{"id": 2}]


def test_anon_cannot_see_rows_rls_hides(client, supabase):
    sql(
        supabase.db_url,
        """
        create table public.owned (id serial primary key, owner uuid, body text);
        alter table public.owned enable row level security;
        create policy own on public.owned for select to authenticated
          using (owner = auth.uid());
    """,
    )
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    client.table("owned").insert(
        [{"owner": me, "body": "mine"}, {"owner": other, "body": "theirs"}]
    ).execute()
    assert len(client.table("owned").select("*").execute().data) == 2
    anon = create_client(supabase.url, supabase.anon_key)
    assert anon.table("owned").select("*").execute().data == []
    user = create_client(supabase.url, supabase.anon_key)
    user.postgrest.auth(supabase.user_key(me))
    assert [r["body"] for r in user.table("owned").select("*").execute().data] == ["mine"]


# pg_net + Database Webhooks -----------------------------------------------------------
@pytest.fixture
def receiver():
    received: list[tuple[dict, dict]] = []

    async def hook(request: Request):
        received.append((dict(request.headers), json.loads(await request.body())))
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as srv:
        srv.received = received
        yield srv


def test_webhook_payload(client, supabase, pgnet, receiver):
    sql(
        supabase.db_url,
        f"""
        create trigger caption_images after insert or update on storage.objects
        for each row execute function supabase_functions.http_request(
          '{receiver.url}/hook', 'POST',
          '{{"Content-Type":"application/json","Authorization":"Bearer s3cret"}}',
          '{{}}', '5000');
    """,
    )
    data = image_bytes()
    client.storage.from_("images").upload("f/cat.png", data, {"content-type": "image/png"})
    wait_until(lambda: len(receiver.received) == 1, message="webhook not delivered")
    headers, body = receiver.received[0]
    assert headers["authorization"] == "Bearer s3cret"
    assert {k: body[k] for k in ("type", "table", "schema", "old_record")} == {
        "type": "INSERT",
        "table": "objects",
        "schema": "storage",
        "old_record": None,
    }
    rec = body["record"]
    assert rec["name"] == "f/cat.png" and rec["bucket_id"] == "images"
    assert rec["path_tokens"] == ["f", "cat.png"] and rec["metadata"]["size"] == len(data)
    assert rec["metadata"]["mimetype"] == "image/png"

    client.storage.from_("images").upload(
        "f/cat.png", image_bytes(size=(9, 9)), {"content-type": "image/png", "upsert": "true"}
    )
    wait_until(lambda: len(receiver.received) == 2, message="update webhook not delivered")
    _, update = receiver.received[1]
    assert update["type"] == "UPDATE" and update["old_record"]["version"] == rec["version"]
    assert update["record"]["id"] == rec["id"] and update["record"]["version"] != rec["version"]
    pgnet.wait_idle()
    assert sql(supabase.db_url, "select status_code from net._http_response") == [(200,), (200,)]
    assert sql(supabase.db_url, "select count(*) from supabase_functions.hooks") == [(2,)]


def test_pgnet_drop_and_duplicate(db_url, pgnet, receiver):
    pgnet.drop_rate = 1.0
    sql(db_url, f"select net.http_post('{receiver.url}/hook', '{{\"n\": 1}}')")
    wait_until(lambda: pgnet.dropped == 1)
    pgnet.drop_rate, pgnet.duplicate_rate = 0.0, 1.0
    sql(db_url, f"select net.http_post('{receiver.url}/hook', '{{\"n\": 2}}')")
    pgnet.wait_idle()
    assert len(receiver.received) in (2, 3)
    assert all(b == {"n": 2} for _, b in receiver.received)


# Hugging Face -------------------------------------------------------------------------
def test_hf_image_to_text_and_errors(hf):
    jpeg = image_bytes("JPEG", size=(64, 48), colour=(20, 40, 230))
    hf.require_token = "hf_x"

    async def main():
        client = AsyncInferenceClient(model=f"{hf.url}/models/blip", token="hf_x")
        out = await client.image_to_text(jpeg)
        hf.script(Loading(estimated_time=3.0), RateLimited(retry_after=2), ServerError(502))
        errors = []
        for _ in range(3):
            try:
                await client.image_to_text(jpeg)
            except HfHubHTTPError as exc:
                errors.append(exc.response)
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        chat = await client.chat_completion(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": "Caption this."},
                    ],
                }
            ],
            model=f"{hf.url}/models/vlm",
            max_tokens=30,
        )
        return out, errors, chat

    out, errors, chat = asyncio.run(main())
    assert out.generated_text == "a 64x48 picture, mostly blue" == caption_for(jpeg)
    assert [r.status_code for r in errors] == [503, 429, 502]
    assert errors[0].json()["estimated_time"] == 3.0
    assert errors[1].headers["retry-after"] == "2"
    assert chat.choices[0].message.content == "a 64x48 picture, mostly blue"
    assert hf.calls[0]["n_bytes"] == len(jpeg) and hf.calls[0]["authorization"] == "Bearer hf_x"
    # with a URL model on the client, the URL wins and `model=` only fills the payload
    assert hf.calls[-1]["path"] == "/models/blip/v1/chat/completions"

    assert (
        httpx.post(
            f"{hf.url}/models/blip", content=b"junk", headers={"Authorization": "Bearer hf_x"}
        ).status_code
        == 400
    )
    assert httpx.post(f"{hf.url}/models/blip", content=jpeg).status_code == 401
    hf.refuse_connections(True)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{hf.url}/models/blip", content=jpeg)
    hf.refuse_connections(False)
    assert httpx.post(
        f"{hf.url}/models/blip", content=jpeg, headers={"Authorization": "Bearer hf_x"}
    ).json() == [{"generated_text": "a 64x48 picture, mostly blue"}]


def test_hf_hang_times_out_and_supabase_delay_fault(hf, client, supabase):
    from huggingface_hub.errors import InferenceTimeoutError

    from tests.harness.hf_stub import Hang

    hf.script(Hang(1.5))

    async def main():
        client = AsyncInferenceClient(model=f"{hf.url}/models/blip", timeout=0.3)
        await client.image_to_text(image_bytes())

    with pytest.raises((InferenceTimeoutError, TimeoutError)):
        asyncio.run(main())

    client.storage.from_("images").upload("d.png", image_bytes())
    supabase.faults.add("download", status=None, delay=0.5)
    url = client.storage.from_("images").create_signed_url("d.png", 60)["signedURL"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.1)
    assert httpx.get(url).status_code == 200


@pytest.fixture
def client_routes_to(hf, monkeypatch):
    """huggingface_hub's own routing pointed at the stand-in: the Hub (read when HfApi is
    made) and the router (read per call by the provider helpers)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hf.url)
    monkeypatch.setattr(constants, "INFERENCE_PROXY_TEMPLATE", hf.url + "/{provider}")
    return hf


def test_hf_client_routing_through_an_explicit_provider(client_routes_to):
    """What AsyncInferenceClient(provider=...) sends, as the real client builds it: a Hub
    look-up, then the provider's own route on the router."""
    hf = client_routes_to
    model = f"standin/vlm-{uuid.uuid4().hex[:6]}"  # the client caches mappings per process
    hf.add_model(model, {"together": "conversational"})
    jpeg = image_bytes("JPEG", size=(64, 48), colour=(20, 40, 230))
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": "Caption this."},
            ],
        }
    ]

    async def main():
        client = AsyncInferenceClient(provider="together", token="hf_x")
        try:
            return await client.chat_completion(messages, model=model, max_tokens=30)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert out.choices[0].message.content == caption_for(jpeg)
    assert hf.hub_calls[0]["path"] == f"/api/models/{model}"
    assert hf.calls[0]["path"] == "/together/v1/chat/completions"


def test_hf_client_with_an_empty_mapping_fails_as_measured(client_routes_to):
    """The measured behaviour of huggingface_hub 2.4 against a model no provider serves:
    `RuntimeError: coroutine raised StopIteration` (what the service must never see)."""
    hf = client_routes_to
    model = f"standin/orphan-{uuid.uuid4().hex[:6]}"
    hf.add_model(model, {})

    async def main():
        client = AsyncInferenceClient(token="hf_x")
        try:
            await client.image_to_text(image_bytes("JPEG"), model=model)
        finally:
            await client.close()

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(main())
    assert hf.calls == []
