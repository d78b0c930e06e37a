"""The same bytes are captioned once: a move (same id, new version), a copy (new id, same
bytes) or a re-upload reuses the caption without a download or a model call, whatever the
upload path (an S3 backend's TUS and multipart eTags are not MD5s); every caption's
provenance is recorded, where only the service reads it when it names another object."""

import hashlib

from psycopg.types.json import Jsonb

from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    caption_of,
    make_image,
    query,
    query_one,
    storage_client,
    upload,
    upload_tus,
    wait_for_caption,
)


def reused_from(supabase, object_id: str) -> str | None:
    """The object a caption was copied from: the row's own reused_from (a move), else the
    service-only record (captioner.caption_reuses)."""
    row = caption_of(supabase.db_url, object_id)
    if row and row["reused_from"] is not None:
        return str(row["reused_from"])
    hidden = query_one(
        supabase.db_url,
        "select source_id from captioner.caption_reuses where object_id = %s",
        object_id,
    )
    return str(hidden["source_id"]) if hidden else None


def downloads(supabase) -> int:
    return sum(1 for route, status in supabase.calls if route == "download" and status == 200)


def version_of(supabase, object_id: str) -> str:
    return query(supabase.db_url, "select version from storage.objects where id = %s", object_id)[
        0
    ]["version"]


def caption_for_version(supabase, object_id: str) -> dict:
    version = version_of(supabase, object_id)

    def current() -> dict | None:
        row = caption_of(supabase.db_url, object_id)
        return row if row and row["object_version"] == version else None

    return wait_until(current, timeout=15, message=f"no caption of {object_id} at {version}")


def test_a_new_caption_records_its_provenance(service, supabase, hf):
    hf.latency = 0.05
    data = make_image((30, 60, 220))
    object_id = upload(supabase, "new.png", data)

    row = wait_for_caption(supabase.db_url, object_id)

    assert row["model"] == service.settings.caption_model
    assert row["object_version"] == version_of(supabase, object_id)
    assert row["fingerprint"] == f"md5:{hashlib.md5(data).hexdigest()}:{len(data)}"
    assert row["attempts"] == 1 and row["caption_ms"] >= 50
    assert row["reused_from"] is None


def test_a_move_is_captioned_without_a_download_or_a_model_call(service, supabase, hf):
    object_id = upload(supabase, "inbox/photo.png", make_image((30, 160, 60)))
    first = wait_for_caption(supabase.db_url, object_id)
    old_version = first["object_version"]

    storage_client(supabase).storage.from_("images").move("inbox/photo.png", "sorted/photo?.png")

    moved = caption_for_version(supabase, object_id)
    assert moved["object_version"] != old_version
    assert moved["caption"] == first["caption"] and moved["fingerprint"] == first["fingerprint"]
    assert moved["reused_from"] == first["id"] and moved["caption_ms"] is None
    assert len(hf.calls) == 1 and downloads(supabase) == 1


def test_a_copy_and_a_reupload_reuse_the_caption(service, supabase, hf):
    data = make_image((220, 30, 30))
    source = upload(supabase, "a.png", data)
    original = wait_for_caption(supabase.db_url, source)

    storage_client(supabase).storage.from_("images").copy("a.png", "copies/a.png")
    copy = query_one(
        supabase.db_url, "select id from storage.objects where name = %s", "copies/a.png"
    )["id"]
    again = upload(supabase, "again/a.png", data)

    for object_id in (str(copy), again):
        row = wait_for_caption(supabase.db_url, object_id)
        assert row["caption"] == original["caption"]
        assert reused_from(supabase, object_id) == str(original["id"])  # the first, not a copy
        assert row["reused_from"] is None  # another object: the row does not name it
        assert row["model"] == original["model"]
        assert row["caption_ms"] == original["caption_ms"]
    assert len(hf.calls) == 1 and downloads(supabase) == 1


def test_other_bytes_or_another_model_are_captioned_again(service, supabase, hf):
    source = upload(supabase, "b.png", make_image((220, 30, 30)))
    wait_for_caption(supabase.db_url, source)
    other = upload(supabase, "c.png", make_image((220, 30, 31)))
    wait_for_caption(supabase.db_url, other)
    query(supabase.db_url, "update public.image_caption set model = 'another/model'")

    storage_client(supabase).storage.from_("images").copy("b.png", "b-copy.png")
    copy = query_one(
        supabase.db_url, "select id from storage.objects where name = %s", "b-copy.png"
    )["id"]

    wait_for_caption(supabase.db_url, str(copy))
    assert reused_from(supabase, str(copy)) is None
    assert len(hf.calls) == 3


def test_without_an_etag_the_worker_hashes_the_bytes(service, supabase, hf):
    data = make_image((130, 50, 160))
    ids = []
    for name in ("legacy/1.png", "legacy/2.png"):
        object_id, version = query(
            supabase.db_url, "select gen_random_uuid() as id, gen_random_uuid()::text as v"
        )[0].values()
        (supabase.storage_dir / f"{object_id}.{version}").write_bytes(data)
        query(
            supabase.db_url,
            "insert into storage.objects (id, bucket_id, name, version,"
            " metadata) values (%s, 'images', %s, %s, %s)",
            object_id,
            name,
            version,
            Jsonb({"mimetype": "image/png", "size": len(data)}),
        )
        ids.append(str(object_id))
        wait_for_caption(supabase.db_url, str(object_id))

    first, second = (caption_of(supabase.db_url, object_id) for object_id in ids)
    assert (
        first["fingerprint"]
        == second["fingerprint"]
        == (f"md5:{hashlib.md5(data).hexdigest()}:{len(data)}")
    )
    assert reused_from(supabase, ids[1]) == str(first["id"])
    assert len(hf.calls) == 1 and downloads(supabase) == 2  # hashed after the download


def test_a_recaption_asked_for_is_made_anew(service, supabase, hf):
    object_id = upload(supabase, "again.png", make_image((240, 220, 40)))
    first = wait_for_caption(supabase.db_url, object_id)

    query(supabase.db_url, "select public.caption_jobs_requeue(array[%s]::uuid[])", object_id)

    wait_until(lambda: len(hf.calls) == 2, timeout=15, message="not captioned again")
    wait_until(
        lambda: caption_of(supabase.db_url, object_id)["updated_at"] > first["updated_at"],
        timeout=15,
        message="the new caption was not written",
    )
    assert reused_from(supabase, object_id) is None


def test_the_same_bytes_claimed_together_are_captioned_once(service_factory, supabase, hf):
    create_bucket(supabase.db_url, "images")
    data = make_image((30, 160, 60))
    ids = [upload(supabase, f"burst/{n}.png", data) for n in range(4)]  # queued, not claimed
    hf.latency = 0.2

    service_factory(webhook=False)

    for object_id in ids:
        wait_for_caption(supabase.db_url, object_id)
    sources = {object_id: reused_from(supabase, object_id) for object_id in ids}
    first = [object_id for object_id, source in sources.items() if source is None]
    assert len(first) == 1 and len(hf.calls) == 1
    assert all(source == first[0] for source in sources.values() if source is not None)
    assert downloads(supabase) == 1


def test_a_tus_upload_then_a_move_of_the_same_bytes_makes_no_second_model_call(
    service, supabase, hf
):
    supabase.storage_backend = "s3"  # hosted Supabase: TUS stores "<h>-1", a move a plain MD5
    data = make_image((30, 160, 60))
    object_id = upload_tus(supabase, "inbox/big.png", data)
    assert query_one(
        supabase.db_url, "select metadata from storage.objects where id = %s", object_id
    )["metadata"]["eTag"].endswith('-1"')
    first = wait_for_caption(supabase.db_url, object_id)
    assert first["fingerprint"] == f"md5:{hashlib.md5(data).hexdigest()}:{len(data)}"

    storage_client(supabase).storage.from_("images").move("inbox/big.png", "sorted/big.png")

    moved = caption_for_version(supabase, object_id)
    assert moved["caption"] == first["caption"]
    assert len(hf.calls) == 1 and downloads(supabase) == 1  # the move: no download either


def test_a_plain_upload_then_a_tus_upload_of_the_same_bytes_reuse_the_caption(
    service, supabase, hf
):
    supabase.storage_backend = "s3"
    data = make_image((220, 30, 30))
    plain = wait_for_caption(supabase.db_url, upload(supabase, "plain.png", data))
    resumable = upload_tus(supabase, "resumable.png", data, chunk=len(data) // 2 + 1)
    row = wait_for_caption(supabase.db_url, resumable)
    assert row["caption"] == plain["caption"] and row["fingerprint"] == plain["fingerprint"]
    assert reused_from(supabase, resumable) == str(plain["id"])
    assert len(hf.calls) == 1 and downloads(supabase) == 2  # hashed after its download


def test_an_s3_multipart_upload_and_a_plain_upload_of_the_same_bytes_share_a_caption(
    service, supabase, hf
):
    supabase.storage_backend = "s3"
    data = make_image((130, 50, 160), size=(300, 200))
    parts = [data[:100], data[100:250], data[250:]]
    multipart = supabase.put_multipart("images", "s3/multi.png", parts)
    assert query_one(
        supabase.db_url, "select metadata from storage.objects where id = %s", multipart
    )["metadata"]["eTag"].endswith('-3"')
    first = wait_for_caption(supabase.db_url, multipart)
    plain = upload(supabase, "plain/multi.png", data)
    assert wait_for_caption(supabase.db_url, plain)["caption"] == first["caption"]
    assert reused_from(supabase, plain) == multipart
    assert len(hf.calls) == 1 and downloads(supabase) == 1  # the plain upload: its MD5 eTag
