"""Reuse reveals nothing about objects the reader cannot see: when user 1 uploads the same
bytes as user 2's private object, user 1's caption is the same text but reads like one made
for user 1's own object (no reused_from, a captioner time), read with user 1's own JWT;
where it came from is recorded for the service only."""

import json

import httpx

from tests.harness.waiting import wait_until
from tests.support import make_image, query, query_one, upload_raw, wait_for_caption

USER_1 = "11111111-1111-4111-8111-111111111111"
USER_2 = "22222222-2222-4222-8222-222222222222"


def own_objects_only(db_url: str) -> None:
    """The usual Supabase policies: a signed-in user uploads and reads only their objects."""
    query(
        db_url,
        "create policy own_insert on storage.objects for insert to authenticated"
        " with check (bucket_id = 'images' and owner_id = auth.uid()::text)",
    )
    query(
        db_url,
        "create policy own_select on storage.objects for select to authenticated"
        " using (owner_id = auth.uid()::text)",
    )


def captions_as(supabase, user: str) -> list[dict]:
    answer = httpx.get(
        f"{supabase.url}/rest/v1/image_caption?select=*",
        headers={"apikey": supabase.anon_key, "Authorization": f"Bearer {supabase.user_key(user)}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_reused_caption_does_not_reveal_the_other_users_private_object(service, supabase, hf):
    own_objects_only(supabase.db_url)
    data = make_image((30, 60, 220))
    private = upload_raw(supabase, "u2/private.png", data, key=supabase.user_key(USER_2))
    original = wait_for_caption(supabase.db_url, private)
    mine = upload_raw(supabase, "u1/mine.png", data, key=supabase.user_key(USER_1))
    wait_for_caption(supabase.db_url, mine)
    assert len(hf.calls) == 1  # reused all the same

    seen = captions_as(supabase, USER_1)

    assert [row["id"] for row in seen] == [mine]
    row = seen[0]
    assert row["caption"] == original["caption"]
    assert row["reused_from"] is None and row["caption_ms"] == original["caption_ms"]
    assert row["attempts"] == 1
    assert private not in json.dumps(seen)  # nothing in user 1's answer names it
    assert [r["id"] for r in captions_as(supabase, USER_2)] == [private]
    kept = query_one(
        supabase.db_url, "select source_id from captioner.caption_reuses where object_id = %s", mine
    )
    assert kept and str(kept["source_id"]) == private  # the service still knows


def test_a_reuse_from_the_object_itself_still_says_so(service, supabase, hf):
    own_objects_only(supabase.db_url)
    query(
        supabase.db_url,
        "create policy own_update on storage.objects for update"
        " to authenticated using (owner_id = auth.uid()::text)",
    )
    data = make_image((30, 160, 60))
    object_id = upload_raw(supabase, "u1/photo.png", data, key=supabase.user_key(USER_1))
    first = wait_for_caption(supabase.db_url, object_id)
    moved = httpx.post(
        f"{supabase.url}/storage/v1/object/move",
        json={
            "bucketId": "images",
            "sourceKey": "u1/photo.png",
            "destinationKey": "u1/sorted/photo.png",
        },
        headers={"Authorization": f"Bearer {supabase.user_key(USER_1)}"},
    )
    assert moved.status_code == 200, moved.text

    def moved_caption() -> dict | None:
        rows = captions_as(supabase, USER_1)
        return rows[0] if rows and rows[0]["object_version"] != first["object_version"] else None

    row = wait_until(moved_caption, timeout=15, message="the move was not captioned")
    assert row["reused_from"] == object_id and len(hf.calls) == 1
