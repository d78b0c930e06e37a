"""Buckets with versioning on, as storage-api v1.77.0 keeps them (one row per version, the
current one with archived_at null; tests/harness/storage_rows.py): only the current version
is queued and captioned, archiving a version queues nothing and keeps the current caption,
a delete marker hides the caption, and the sweep walks current versions only."""

import httpx

from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    caption_of,
    job_of,
    make_image,
    object_id,
    query,
    query_one,
    storage_client,
    upload,
    wait_for_caption,
)

RED, BLUE = make_image((220, 30, 30)), make_image((30, 60, 220))


def versioning(db_url: str, bucket: str, status: str) -> None:
    query(db_url, "update storage.buckets set versioning_status = %s where id = %s", status, bucket)


def readable_captions(supabase) -> list[str]:
    """Caption ids anon reads, with a policy letting anon read every object of the bucket."""
    answer = httpx.get(
        f"{supabase.url}/rest/v1/image_caption?select=id",
        headers={"apikey": supabase.anon_key, "Authorization": f"Bearer {supabase.anon_key}"},
    )
    assert answer.status_code == 200, answer.text
    return sorted(row["id"] for row in answer.json())


def found_by_search(supabase, words: str) -> list[str]:
    answer = httpx.post(
        f"{supabase.url}/rest/v1/rpc/search_image_captions",
        json={"query": words},
        headers={"apikey": supabase.anon_key, "Authorization": f"Bearer {supabase.anon_key}"},
    )
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()]


def rows_of(supabase, name: str) -> list[dict]:
    return query(
        supabase.db_url,
        "select *, id::text as id from storage.objects where name = %s order by created_at",
        name,
    )


def open_jobs(supabase) -> list[dict]:
    return query(
        supabase.db_url,
        "select * from captioner.jobs where state in ('pending', 'running', 'skipped')",
    )


def test_overwrite_archive_and_delete_marker(service, supabase, hf):
    versioning(supabase.db_url, "images", "ENABLED")
    query(
        supabase.db_url,
        "create policy anon_reads on storage.objects for select to anon"
        " using (bucket_id = 'images')",
    )
    bucket = storage_client(supabase).storage.from_("images")

    first = upload(supabase, "v.png", RED)
    assert "mostly red" in wait_for_caption(supabase.db_url, first)["caption"]
    second = upload(supabase, "v.png", BLUE, upsert=True)  # overwrite: archives `first`
    assert second != first
    assert "mostly blue" in wait_for_caption(supabase.db_url, second)["caption"]
    assert len(hf.calls) == 2
    archived = rows_of(supabase, "v.png")[0]
    assert archived["id"] == first and archived["archived_at"] is not None
    assert caption_of(supabase.db_url, first) is not None  # kept, as the version's history
    assert job_of(supabase.db_url, first)["state"] == "done" and open_jobs(supabase) == []
    assert readable_captions(supabase) == [second]  # only the current version's
    assert found_by_search(supabase, "red") == [] and found_by_search(supabase, "blue") == [second]
    assert query_one(supabase.db_url, "select captioner_search.roles_exact() as exact")["exact"]

    bucket.remove(["v.png"])  # a delete marker: `second` is archived too
    marker = object_id(supabase, "images", "v.png")
    assert query_one(
        supabase.db_url, "select is_delete_marker from storage.objects where id = %s", marker
    )["is_delete_marker"]
    assert job_of(supabase.db_url, marker) is None and open_jobs(supabase) == []
    assert readable_captions(supabase) == []  # deleted, as the user sees it
    assert caption_of(supabase.db_url, second) is not None

    again = upload(supabase, "v.png", RED)  # back, with the first version's bytes
    assert "mostly red" in wait_for_caption(supabase.db_url, again)["caption"]
    assert len(hf.calls) == 2  # reused the archived version's caption
    assert readable_captions(supabase) == [again] and found_by_search(supabase, "red") == [again]
    assert len(rows_of(supabase, "v.png")) == 4


def test_an_archived_version_loses_its_waiting_job_and_the_sweep_skips_it(supabase):
    create_bucket(supabase.db_url, "images", versioning="ENABLED")  # no worker: jobs wait
    first = upload(supabase, "w.png", RED)
    assert job_of(supabase.db_url, first)["state"] == "pending"
    second = upload(supabase, "w.png", BLUE, upsert=True)

    assert job_of(supabase.db_url, first) is None
    assert job_of(supabase.db_url, second)["state"] == "pending"
    storage_client(supabase).storage.from_("images").remove(["w.png"])
    assert job_of(supabase.db_url, second) is None
    query(supabase.db_url, "delete from captioner.jobs")

    query(supabase.db_url, "select public.caption_jobs_sweep_start('images')")
    swept = query(supabase.db_url, "select * from public.caption_jobs_sweep(100)")
    assert [(s["bucket_id"], s["examined"], s["queued"]) for s in swept] == [("images", 0, 0)]
    assert (
        query_one(supabase.db_url, "select public.caption_jobs_bucket_size('images') as n")["n"]
        == 0
    )
    plan = query(supabase.db_url, "explain select * from captioner.sweep_slice('images', '', 10)")
    assert plan  # the slice plans on v1.77's indexes (no bucketid_objname)
    assert (
        query(supabase.db_url, "select 1 from pg_indexes where indexname = 'bucketid_objname'")
        == []
    )


def test_a_delete_marker_in_a_suspended_bucket_removes_the_caption(service, supabase, hf):
    versioning(supabase.db_url, "images", "ENABLED")
    versioning(supabase.db_url, "images", "SUSPENDED")
    only = upload(supabase, "s.png", RED)
    wait_for_caption(supabase.db_url, only)

    storage_client(supabase).storage.from_("images").remove(["s.png"])

    row = query_one(supabase.db_url, "select * from storage.objects where id = %s", only)
    assert row["is_delete_marker"] and row["archived_at"] is None  # the same row, in place
    wait_until(
        lambda: caption_of(supabase.db_url, only) is None,
        timeout=5,
        message="the deleted object's caption stayed",
    )
    assert job_of(supabase.db_url, only) is None and len(hf.calls) == 1


def test_a_version_made_current_again_is_captioned_only_if_it_never_was(supabase):
    create_bucket(supabase.db_url, "images", versioning="ENABLED")  # no worker: jobs wait
    first = upload(supabase, "r.png", RED)
    second = upload(supabase, "r.png", BLUE, upsert=True)
    assert job_of(supabase.db_url, first) is None  # archived before it was captioned

    def make_current(object_id: str) -> None:  # what a restore by versionId leaves
        query(
            supabase.db_url,
            "update storage.objects set archived_at = now()"
            " where name = 'r.png' and archived_at is null",
        )
        query(
            supabase.db_url,
            "update storage.objects set archived_at = null where id = %s",
            object_id,
        )

    make_current(first)
    assert job_of(supabase.db_url, first)["state"] == "pending"
    assert job_of(supabase.db_url, second) is None

    query(
        supabase.db_url,
        "insert into public.image_caption (id, caption, object_version)"
        " values (%s, 'a blue square', %s)",
        second,
        query_one(supabase.db_url, "select version from storage.objects where id = %s", second)[
            "version"
        ],
    )
    make_current(second)
    assert job_of(supabase.db_url, second) is None  # its caption shows again, nothing queued
