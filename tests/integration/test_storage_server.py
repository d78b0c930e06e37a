"""The storage stand-in behaves as storage-api v1.70.6 was measured to (REFERENCE.md §6):
the names it refuses, its signed URLs, error bodies, row shapes, move, copy and delete
protection; driven through the real supabase-py client."""

from __future__ import annotations

import io
import re
from datetime import datetime
from urllib.parse import quote

import httpx
import jwt
import psycopg
import pytest
from PIL import Image
from storage3.exceptions import StorageApiError
from supabase import create_client

from tests.harness.supabase_stub import create_bucket
from tests.support import query, query_one

# names the real server accepts: every character of its isValidKey set
ACCEPTED = ["q?x=1&y=2.png", "a b/c d.png", "plus+sign=yes.png", "deep/a/b/c/d/e/f/g/h/i.png",
            "odd !*'()$@;:,-_.png"]
# names it refuses with InvalidKey
REFUSED = ["fotos/über/猫.png", "hash#1.png", "100%.png", "tab\there.png"]


def png(colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(supabase):
    create_bucket(supabase.db_url, "images")
    return create_client(supabase.url, supabase.service_key)


def row(supabase, name: str) -> dict:
    found = query_one(supabase.db_url, "select * from storage.objects where name = %s", name)
    assert found, name
    return found


@pytest.mark.parametrize("name", REFUSED)
def test_refuses_names_outside_the_key_alphabet(client, supabase, name):
    with pytest.raises(StorageApiError) as err:
        client.storage.from_("images").upload(name, png(), {"content-type": "image/png"})
    assert err.value.code == "InvalidKey" and err.value.status == "400"
    assert name in err.value.message
    assert query(supabase.db_url, "select 1 from storage.objects") == []


def test_error_bodies_carry_code(client, supabase):
    raw = httpx.post(f"{supabase.url}/storage/v1/object/images/%C3%BC.png", content=b"x",
                     headers={"Authorization": f"Bearer {supabase.service_key}"})
    assert raw.status_code == 400
    assert raw.json() == {"statusCode": "400", "code": "InvalidKey", "error": "InvalidKey",
                          "message": "Invalid key: ü.png"}
    missing = httpx.get(f"{supabase.url}/storage/v1/object/authenticated/images/none.png",
                        headers={"Authorization": f"Bearer {supabase.service_key}"})
    assert missing.status_code == 400 and missing.json()["code"] == "NoSuchKey"
    assert missing.json()["statusCode"] == "404"


def test_no_authorization_header_is_a_400(supabase):
    answer = httpx.get(f"{supabase.url}/storage/v1/object/authenticated/images/a.png",
                       headers={"apikey": supabase.service_key})
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidRequest"
    assert answer.json()["message"] == "headers must have required property 'authorization'"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names_and_their_signed_urls(client, supabase, name):
    data = png()
    client.storage.from_("images").upload(name, data, {"content-type": "image/png"})
    answer = httpx.post(f"{supabase.url}/storage/v1/object/sign/images/{quote(name)}",
                        json={"expiresIn": 60},
                        headers={"Authorization": f"Bearer {supabase.service_key}"})
    signed = answer.json()["signedURL"]
    path, _, token = signed.rpartition("?token=")
    assert path == f"/object/sign/images/{name}"  # not percent-encoded
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["url"] == f"images/{name}" and claims["scope"] == "download"
    assert claims["exp"] > claims["iat"]

    via_client = client.storage.from_("images").create_signed_url(name, 60)["signedURL"]
    download = httpx.get(via_client)
    if "?" in name:  # measured: such a URL never verifies
        assert download.status_code == 400 and download.json()["code"] == "InvalidSignature"
    else:
        assert download.status_code == 200 and download.content == data
    authenticated = httpx.get(
        f"{supabase.url}/storage/v1/object/authenticated/images/{quote(name)}",
        headers={"Authorization": f"Bearer {supabase.service_key}"})
    assert authenticated.status_code == 200 and authenticated.content == data


def test_signed_download_without_token_or_with_a_foreign_one(client, supabase):
    client.storage.from_("images").upload("a.png", png(), {"content-type": "image/png"})
    client.storage.from_("images").upload("b.png", png(), {"content-type": "image/png"})
    base = f"{supabase.url}/storage/v1/object/sign/images/"
    assert httpx.get(base + "a.png").json()["code"] == "InvalidRequest"
    token = client.storage.from_("images").create_signed_url("b.png", 60)["signedURL"]
    foreign = httpx.get(base + "a.png?token=" + token.rpartition("token=")[2])
    assert foreign.status_code == 400 and foreign.json()["code"] == "InvalidSignature"


def test_row_shapes(client, supabase):
    data = png()
    client.storage.from_("images").upload("multi.png", data, {"content-type": "image/png"})
    httpx.post(f"{supabase.url}/storage/v1/object/images/raw.png", content=data,
               headers={"Authorization": f"Bearer {supabase.service_key}",
                        "Content-Type": "IMAGE/PNG"}).raise_for_status()
    multi, raw = row(supabase, "multi.png"), row(supabase, "raw.png")
    assert multi["metadata"]["cacheControl"] == "max-age=3600"
    assert raw["metadata"]["cacheControl"] == "no-cache"
    assert raw["metadata"]["mimetype"] == "IMAGE/PNG"  # as sent
    assert re.fullmatch(r'"[0-9a-f]{32}"', raw["metadata"]["eTag"])
    datetime.fromisoformat(raw["metadata"]["lastModified"])
    assert raw["user_metadata"] == {} and raw["owner"] is None and raw["owner_id"] is None
    assert raw["archived_at"] is None and raw["is_delete_marker"] is False
    assert raw["is_versioned"] is False and "level" not in raw


def test_a_users_upload_sets_owner_id_not_owner(supabase):
    create_bucket(supabase.db_url, "images")
    user = "5b0c2c3e-1b2a-4c1d-9e8f-0a1b2c3d4e5f"
    query(supabase.db_url, "create policy up on storage.objects for insert to authenticated"
          " with check (bucket_id = 'images')")
    answer = httpx.post(f"{supabase.url}/storage/v1/object/images/mine.png", content=png(),
                        headers={"Authorization": f"Bearer {supabase.user_key(user)}",
                                 "Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    mine = row(supabase, "mine.png")
    assert mine["owner"] is None and mine["owner_id"] == user


def test_move_keeps_the_id_and_changes_the_version(client, supabase):
    data = png()
    client.storage.from_("images").upload("old/name.png", data, {"content-type": "image/png"})
    before = row(supabase, "old/name.png")
    answer = client.storage.from_("images").move("old/name.png", "new/name?.png")
    assert answer["message"] == "Successfully moved"
    after = row(supabase, "new/name?.png")
    assert after["id"] == before["id"] and after["version"] != before["version"]
    assert after["metadata"]["eTag"] == before["metadata"]["eTag"]
    got = httpx.get(f"{supabase.url}/storage/v1/object/authenticated/images/new/name%3F.png",
                    headers={"Authorization": f"Bearer {supabase.service_key}"})
    assert got.content == data
    with pytest.raises(StorageApiError) as err:
        client.storage.from_("images").move("new/name?.png", "über.png")
    assert err.value.code == "InvalidKey"


def test_copy_makes_a_new_object_with_the_same_bytes(client, supabase):
    data = png()
    client.storage.from_("images").upload("a.png", data, {"content-type": "image/png"})
    answer = client.storage.from_("images").copy("a.png", "copies/a.png")
    assert answer["Key"] == "images/copies/a.png"
    source, copy = row(supabase, "a.png"), row(supabase, "copies/a.png")
    assert copy["id"] != source["id"] and copy["version"] != source["version"]
    assert copy["metadata"]["eTag"] == source["metadata"]["eTag"]
    assert copy["metadata"]["size"] == source["metadata"]["size"]
    assert client.storage.from_("images").download("copies/a.png") == data
    with pytest.raises(StorageApiError) as err:
        client.storage.from_("images").copy("a.png", "copies/a.png")
    assert err.value.code == "Duplicate"


def test_direct_deletes_are_refused_but_the_api_deletes(client, supabase):
    client.storage.from_("images").upload("a.png", png(), {"content-type": "image/png"})
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        query(supabase.db_url, "delete from storage.objects")
    assert [r["name"] for r in client.storage.from_("images").remove(["a.png"])] == ["a.png"]
    assert query(supabase.db_url, "select 1 from storage.objects") == []
