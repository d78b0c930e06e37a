"""The storage stand-in behaves as storage-api v1.70.6 was measured to (REFERENCE.md §6, §7):
the names it refuses, its signed URLs, error bodies, row shapes, downloads, move, copy,
delete, info, list, signed uploads, TUS and eTags, versioned buckets; driven through the real
supabase-py client where it has the call, raw HTTP where it does not."""

from __future__ import annotations

import email.utils
import hashlib
import io
import re
from datetime import datetime
from urllib.parse import quote, unquote

import httpx
import jwt
import psycopg
import pytest
from PIL import Image
from storage3.exceptions import StorageApiError
from supabase import create_client

from tests.harness.storage_tus import tus_metadata
from tests.harness.supabase_stub import create_bucket
from tests.support import query, query_one, upload_tus

# names the real server accepts: every character of its isValidKey set
ACCEPTED = [
    "q?x=1&y=2.png",
    "a b/c d.png",
    "plus+sign=yes.png",
    "deep/a/b/c/d/e/f/g/h/i.png",
    "odd !*'()$@;:,-_.png",
]
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
    raw = httpx.post(
        f"{supabase.url}/storage/v1/object/images/%C3%BC.png",
        content=b"x",
        headers={"Authorization": f"Bearer {supabase.service_key}"},
    )
    assert raw.status_code == 400
    assert raw.json() == {
        "statusCode": "400",
        "code": "InvalidKey",
        "error": "InvalidKey",
        "message": "Invalid key: ü.png",
    }
    missing = httpx.get(
        f"{supabase.url}/storage/v1/object/authenticated/images/none.png",
        headers={"Authorization": f"Bearer {supabase.service_key}"},
    )
    assert missing.status_code == 400 and missing.json()["code"] == "NoSuchKey"
    assert missing.json()["statusCode"] == "404"


def test_no_authorization_header_is_a_400(supabase):
    answer = httpx.get(
        f"{supabase.url}/storage/v1/object/authenticated/images/a.png",
        headers={"apikey": supabase.service_key},
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidRequest"
    assert answer.json()["message"] == "headers must have required property 'authorization'"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names_and_their_signed_urls(client, supabase, name):
    data = png()
    client.storage.from_("images").upload(name, data, {"content-type": "image/png"})
    via_client = client.storage.from_("images").create_signed_url(name, 60)["signedURL"]
    token = via_client.rpartition("token=")[2]
    assert jwt.get_unverified_header(token) == {"alg": "HS256"}  # no "typ"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "download" and claims["exp"] > claims["iat"]
    download = httpx.get(via_client)
    if "?" in name:  # measured: storage3 sends it as %3F, which stays in the claim
        assert claims["url"] == "images/" + name.replace("?", "%3F")
        assert download.status_code == 400 and download.json()["code"] == "InvalidSignature"
    else:
        assert claims["url"] == f"images/{name}"
        assert download.status_code == 200 and download.content == data
    authenticated = httpx.get(
        f"{supabase.url}/storage/v1/object/authenticated/images/{quote(name)}",
        headers={"Authorization": f"Bearer {supabase.service_key}"},
    )
    assert authenticated.status_code == 200 and authenticated.content == data


@pytest.mark.parametrize(
    ("sent", "claimed"),
    [
        ("a%20b/c%20d.png", "a b/c d.png"),
        ("q%3Fx%3D1%26y%3D2.png", "q%3Fx%3D1%26y%3D2.png"),
        ("odd%20%21%2A%27%28%29%24%40%3B%3A%2C-_.png", "odd !*'()%24%40%3B%3A%2C-_.png"),
        ("plus%2Bsign.png", "plus%2Bsign.png"),
        ("plus+sign=yes.png", "plus+sign=yes.png"),
    ],
)
def test_the_url_claim_is_the_request_path_decoded_like_decode_uri(client, supabase, sent, claimed):
    name = unquote(sent)
    client.storage.from_("images").upload(name, png(), {"content-type": "image/png"})
    answer = httpx.post(
        f"{supabase.url}/storage/v1/object/sign/images/{sent}",
        json={"expiresIn": 60},
        headers={"Authorization": f"Bearer {supabase.service_key}"},
    )
    path, _, token = answer.json()["signedURL"].rpartition("?token=")
    assert path == f"/object/sign/images/{claimed}"
    assert jwt.decode(token, options={"verify_signature": False})["url"] == f"images/{claimed}"
    verified = httpx.get(f"{supabase.url}/storage/v1/object/sign/images/{sent}?token={token}")
    assert (verified.status_code == 200) == (claimed == name)


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
    httpx.post(
        f"{supabase.url}/storage/v1/object/images/raw.png",
        content=data,
        headers={"Authorization": f"Bearer {supabase.service_key}", "Content-Type": "IMAGE/PNG"},
    ).raise_for_status()
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
    query(
        supabase.db_url,
        "create policy up on storage.objects for insert to authenticated"
        " with check (bucket_id = 'images')",
    )
    answer = httpx.post(
        f"{supabase.url}/storage/v1/object/images/mine.png",
        content=png(),
        headers={"Authorization": f"Bearer {supabase.user_key(user)}", "Content-Type": "image/png"},
    )
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
    got = httpx.get(
        f"{supabase.url}/storage/v1/object/authenticated/images/new/name%3F.png",
        headers={"Authorization": f"Bearer {supabase.service_key}"},
    )
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
    assert err.value.code == "Duplicate"  # storage3 reads `error`


def test_direct_deletes_are_refused_but_the_api_deletes(client, supabase):
    client.storage.from_("images").upload("a.png", png(), {"content-type": "image/png"})
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        query(supabase.db_url, "delete from storage.objects")
    assert [r["name"] for r in client.storage.from_("images").remove(["a.png"])] == ["a.png"]
    assert query(supabase.db_url, "select 1 from storage.objects") == []


def service_headers(supabase, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {supabase.service_key}", **extra}


def test_duplicates_and_schema_errors_carry_the_real_codes(client, supabase):
    client.storage.from_("images").upload("a.png", png(), {"content-type": "image/png"})
    client.storage.from_("images").upload("b.png", png(), {"content-type": "image/png"})
    base = f"{supabase.url}/storage/v1/object"
    again = httpx.post(f"{base}/images/a.png", content=png(), headers=service_headers(supabase))
    copy = httpx.post(
        f"{base}/copy",
        json={"bucketId": "images", "sourceKey": "a.png", "destinationKey": "b.png"},
        headers=service_headers(supabase),
    )
    move = httpx.post(
        f"{base}/move",
        json={"bucketId": "images", "sourceKey": "a.png", "destinationKey": "b.png"},
        headers=service_headers(supabase),
    )
    for answer, code in (
        (again, "KeyAlreadyExists"),
        (copy, "KeyAlreadyExists"),
        (move, "ResourceAlreadyExists"),
    ):
        assert answer.status_code == 400 and answer.json() == {
            "statusCode": "409",
            "code": code,
            "error": "Duplicate",
            "message": "The resource already exists",
        }
    schema = httpx.post(
        f"{base}/move", json={"bucketId": "images"}, headers=service_headers(supabase)
    )
    assert schema.json() == {
        "statusCode": "400",
        "code": "InvalidRequest",
        "error": "Error",
        "message": "body must have required property 'sourceKey'",
    }


def test_downloads_send_http_dates_and_answer_ranges(client, supabase):
    data = png()
    client.storage.from_("images").upload("r.png", data, {"content-type": "image/png"})
    url = f"{supabase.url}/storage/v1/object/authenticated/images/r.png"
    whole = httpx.get(url, headers=service_headers(supabase))
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["x-robots-tag"] == "none"
    assert email.utils.parsedate_to_datetime(whole.headers["last-modified"]).tzinfo is not None
    part = httpx.get(url, headers=service_headers(supabase, Range="bytes=2-9"))
    assert part.status_code == 206 and part.content == data[2:10]
    assert part.headers["content-range"] == f"bytes 2-9/{len(data)}"
    tail = httpx.get(url, headers=service_headers(supabase, Range="bytes=-4"))
    assert tail.status_code == 206 and tail.content == data[-4:]


def test_move_answers_only_its_message_and_rewrites_last_modified(client, supabase):
    client.storage.from_("images").upload("m.png", png(), {"content-type": "image/png"})
    before = row(supabase, "m.png")
    answer = httpx.post(
        f"{supabase.url}/storage/v1/object/move",
        json={"bucketId": "images", "sourceKey": "m.png", "destinationKey": "moved/m.png"},
        headers=service_headers(supabase),
    )
    assert answer.json() == {"message": "Successfully moved"}
    after = row(supabase, "moved/m.png")
    assert after["metadata"]["lastModified"] > before["metadata"]["lastModified"]


def test_copy_answers_the_row_and_copies_user_metadata(client, supabase):
    client.storage.from_("images").upload(
        "u.png", png(), {"content-type": "image/png", "metadata": {"album": "summer"}}
    )
    answer = client.storage.from_("images").copy("u.png", "copies/u.png")
    copied = row(supabase, "copies/u.png")
    assert answer["Id"] == answer["id"] == str(copied["id"])
    assert answer["name"] == "copies/u.png" and answer["version"] == copied["version"]
    assert copied["user_metadata"] == {"album": "summer"}


def test_a_form_without_cache_control_stores_no_cache(client, supabase):
    httpx.post(
        f"{supabase.url}/storage/v1/object/images/form.png",
        files={"file": ("form.png", png(), "image/png")},
        headers=service_headers(supabase),
    ).raise_for_status()
    assert row(supabase, "form.png")["metadata"]["cacheControl"] == "no-cache"


def test_delete_info_list_and_signed_upload(client, supabase):
    bucket = client.storage.from_("images")
    bucket.upload("dir/a.png", png(), {"content-type": "image/png"})
    bucket.upload("dir/sub/b.png", png(), {"content-type": "image/png"})
    info = bucket.info("dir/a.png")
    assert info["name"] == "dir/a.png" and info["content_type"] == "image/png"
    assert info["size"] == len(png()) and bucket.exists("dir/a.png")
    assert not bucket.exists("dir/none.png")
    listed = {item["name"]: item["id"] for item in bucket.list("dir")}
    assert set(listed) == {"a.png", "sub"} and listed["sub"] is None
    gone = httpx.delete(
        f"{supabase.url}/storage/v1/object/images/dir/a.png", headers=service_headers(supabase)
    )
    assert gone.json() == {"message": "Successfully deleted"}
    assert not bucket.exists("dir/a.png")
    signed = bucket.create_signed_upload_url("dir/c.png")
    bucket.upload_to_signed_url("dir/c.png", signed["token"], png(), {"content-type": "image/png"})
    assert row(supabase, "dir/c.png")["metadata"]["mimetype"] == "image/png"


def test_tus_uploads_and_their_etags(client, supabase):
    data = png() * 3
    upload_tus(supabase, "/tus/leading.png", data, chunk=len(data))
    plain = row(supabase, "/tus/leading.png")
    assert plain["metadata"]["eTag"] == f'"{hashlib.md5(data).hexdigest()}"'  # file backend
    assert plain["user_metadata"] is None
    supabase.storage_backend = "s3"
    upload_tus(supabase, "tus/one.png", data, chunk=len(data))
    upload_tus(supabase, "tus/three.png", data, chunk=len(data) // 3 + 1)
    one, three = row(supabase, "tus/one.png"), row(supabase, "tus/three.png")
    inner = hashlib.md5(hashlib.md5(data).digest()).hexdigest()
    assert one["metadata"]["eTag"] == f'"{inner}-1"'
    assert three["metadata"]["eTag"].endswith('-3"')
    client.storage.from_("images").copy("tus/one.png", "tus/copy.png")
    client.storage.from_("images").move("tus/three.png", "tus/moved.png")
    for name in ("tus/copy.png", "tus/moved.png"):  # S3 re-copies: a plain MD5
        assert row(supabase, name)["metadata"]["eTag"] == f'"{hashlib.md5(data).hexdigest()}"'
    refused = httpx.post(
        f"{supabase.url}/storage/v1/upload/resumable",
        headers={
            **service_headers(supabase),
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "3",
            "Upload-Metadata": tus_metadata(bucketName="images", objectName="a/../b.png"),
        },
    )
    assert refused.json()["code"] == "InvalidKey"


def test_versioned_bucket_archives_overwrites_and_writes_delete_markers(supabase):
    create_bucket(supabase.db_url, "versions", versioning="ENABLED")
    bucket = create_client(supabase.url, supabase.service_key).storage.from_("versions")
    bucket.upload("v.png", png((1, 2, 3)), {"content-type": "image/png"})
    bucket.upload("v.png", png((4, 5, 6)), {"content-type": "image/png", "upsert": "true"})
    rows = query(
        supabase.db_url, "select * from storage.objects where name = 'v.png' order by created_at"
    )
    assert len(rows) == 2 and rows[0]["id"] != rows[1]["id"]
    assert rows[0]["archived_at"] is not None and rows[1]["archived_at"] is None
    assert all(r["is_versioned"] for r in rows)
    assert bucket.download("v.png") == png((4, 5, 6))
    bucket.remove(["v.png"])
    marker = query_one(
        supabase.db_url,
        "select * from storage.objects where name = 'v.png' and archived_at is null",
    )
    assert marker and marker["is_delete_marker"] and marker["metadata"] is None
    assert not bucket.exists("v.png")
    bucket.upload("v.png", png((7, 8, 9)), {"content-type": "image/png"})  # no upsert needed
    assert bucket.download("v.png") == png((7, 8, 9))
    assert len(query(supabase.db_url, "select 1 from storage.objects where name = 'v.png'")) == 4


def test_a_nul_in_rpc_arguments_is_postgres_22p05(supabase):
    answer = httpx.post(
        f"{supabase.url}/rest/v1/rpc/caption_jobs_enqueue",
        json={"p_object_ids": ["a\u0000b"]},
        headers={"apikey": supabase.service_key, "Authorization": f"Bearer {supabase.service_key}"},
    )
    assert answer.status_code == 400 and answer.json()["code"] == "22P05"
