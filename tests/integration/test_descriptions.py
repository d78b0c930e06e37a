"""Descriptions (migrations/20261126041333_descriptions.sql): one per image and language, a
person's correction wins over every re-caption of the same bytes, and only those storage
lets update an object may correct its description. Users are measured as they really call:
supabase-py through the PostgREST stand-in with their JWT (anon, another user, the owner),
and the service's API with its key."""

import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from postgrest.exceptions import APIError
from supabase import Client, create_client

from tests.acceptance.test_cli import captioner, supabase_env
from tests.harness.postgres import SUPABASE_SQL, apply_sql_file, create_database, drop_database
from tests.harness.supabase_stub import SupabaseStandIn, create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    TEST_SECRET,
    make_image,
    query,
    query_one,
    upload,
    wait_for_caption,
    wait_for_job_state,
)

API = {"Authorization": f"Bearer {TEST_SECRET}"}


@pytest.fixture
def people(supabase: SupabaseStandIn) -> tuple[str, str]:
    """Alice and Bob: both may see every object; each may update only their own (the
    usual owner policy of a Supabase app)."""
    query(
        supabase.db_url,
        "create policy seen on storage.objects for select to authenticated using (true)",
    )
    query(
        supabase.db_url,
        "create policy own on storage.objects for update to authenticated "
        "using (owner_id = (select auth.uid())::text)",
    )
    return str(uuid.uuid4()), str(uuid.uuid4())


def owned_upload(supabase: SupabaseStandIn, owner: str, name: str, colour, upsert=False) -> str:
    object_id = upload(supabase, name, make_image(colour), upsert=upsert)
    query(
        supabase.db_url, "update storage.objects set owner_id = %s where id = %s", owner, object_id
    )
    return object_id


def as_user(supabase: SupabaseStandIn, sub: str) -> Client:
    return create_client(supabase.url, supabase.user_key(sub))


def edit(client: Client, object_id: str, language: str = "en", **fields) -> list[dict]:
    args = {"p_id": object_id, "p_language": language, "p_fields": fields}
    return client.rpc("edit_image_description", args).execute().data


def description(db_url: str, object_id: str, language: str = "en") -> dict:
    row = query_one(
        db_url,
        "select * from public.image_description where id = %s and language = %s",
        object_id,
        language,
    )
    assert row is not None, f"no {language} description of {object_id}"
    return row


def recaptioned(db_url: str, object_id: str, after) -> None:
    """Wait until the model wrote the description again (after `after`)."""
    wait_for_job_state(db_url, object_id, "done")
    wait_until(
        lambda: (
            description(db_url, object_id)["machine"] is not None
            and description(db_url, object_id)["sources"]["caption"]["at"] > after.isoformat()
        ),
        message="the description was never written again",
    )


def test_each_upload_gets_a_description_with_its_sources(service, supabase):
    object_id = upload(supabase, "plain.png", make_image())

    caption = wait_for_caption(supabase.db_url, object_id)
    row = description(supabase.db_url, object_id)

    assert caption["language"] == "en" and caption["caption"] == row["caption"]
    assert row["alt_text"] == row["caption"]  # BLIP: one sentence, both fields
    assert row["missing"] == ["description", "tags", "text_in_image"]
    assert {field: entry["source"] for field, entry in row["sources"].items()} == {
        field: "model" for field in ("caption", "alt_text", "description", "tags", "text_in_image")
    }
    assert row["model"] == caption["model"] and row["object_version"] == caption["object_version"]


def test_a_user_corrects_only_what_storage_lets_them_update(service, supabase, people):
    alice, bob = people
    object_id = owned_upload(supabase, alice, "alice/red.png", (200, 30, 30))
    wait_for_caption(supabase.db_url, object_id)
    machine = description(supabase.db_url, object_id)

    anon = create_client(supabase.url, supabase.anon_key)
    with pytest.raises(APIError) as refused:
        edit(anon, object_id, alt_text="anon was here")
    assert refused.value.code == "42501"
    with pytest.raises(APIError) as refused:
        edit(as_user(supabase, bob), object_id, alt_text="bob was here")
    assert refused.value.code == "42501"  # new row violates row-level security policy
    bob_update = (
        as_user(supabase, bob)
        .table("image_description")
        .update({"alt_text": "bob again"})
        .eq("id", object_id)
        .execute()
    )
    assert bob_update.data == []  # RLS: no row of his to update
    assert description(supabase.db_url, object_id)["alt_text"] == machine["alt_text"]

    [row] = edit(
        as_user(supabase, alice), object_id, alt_text="A red square.", tags=["Red", "red "]
    )

    assert row["alt_text"] == "A red square." and row["tags"] == ["red"]
    assert row["caption"] == machine["caption"]  # fields not named stay
    source = row["sources"]["alt_text"]
    assert source["source"] == "person" and source["by"] == alice
    assert source["object_version"] == machine["object_version"]
    assert row["sources"]["caption"]["source"] == "model"
    with pytest.raises(APIError) as refused:  # provenance is the service's, not the user's
        as_user(supabase, alice).table("image_description").update({"model": "mine"}).eq(
            "id", object_id
        ).execute()
    assert refused.value.code == "42501"


def test_a_persons_text_survives_recaptions_and_moves_to_history_with_new_bytes(
    service_factory, supabase, hf, pgnet, people
):
    create_bucket(supabase.db_url, "images")
    first = service_factory()
    alice, bob = people
    object_id = owned_upload(supabase, alice, "alice/photo.png", (10, 120, 10))
    wait_for_caption(supabase.db_url, object_id)
    edit(as_user(supabase, alice), object_id, alt_text="Grandma's garden in May.")
    edited = description(supabase.db_url, object_id)

    # a re-caption asked for (what the gallery's button calls)
    query(supabase.db_url, "select public.caption_jobs_requeue(array[%s]::uuid[])", object_id)
    recaptioned(supabase.db_url, object_id, edited["updated_at"])
    assert description(supabase.db_url, object_id)["alt_text"] == "Grandma's garden in May."

    # a model change, then `captioner recaption`'s query
    first.stop()
    new_model = f"{hf.url}/models/another/captioner"
    service_factory(caption_model=new_model)
    before = description(supabase.db_url, object_id)["updated_at"]
    query(supabase.db_url, "select public.caption_jobs_recaption('images', '', %s, 10)", new_model)
    recaptioned(supabase.db_url, object_id, before)
    row = description(supabase.db_url, object_id)
    assert row["model"] == new_model and row["alt_text"] == "Grandma's garden in May."
    assert row["sources"]["alt_text"]["source"] == "person"
    assert row["sources"]["caption"] == {**row["sources"]["caption"], "by": new_model}

    # other bytes: a new machine description; her text is kept in the history she can read
    before = row["updated_at"]
    owned_upload(supabase, alice, "alice/photo.png", (240, 240, 20), upsert=True)
    recaptioned(supabase.db_url, object_id, before)
    row = description(supabase.db_url, object_id)
    assert row["alt_text"] != "Grandma's garden in May."
    assert row["sources"]["alt_text"]["source"] == "model"
    history = as_user(supabase, alice).table("image_description_history").select("*").execute().data
    assert [(h["field"], h["value"], h["edited_by"]) for h in history] == [
        ("alt_text", "Grandma's garden in May.", alice)
    ]
    assert history[0]["object_version"] == edited["sources"]["alt_text"]["object_version"]
    assert (
        as_user(supabase, bob).table("image_description_history").select("*").execute().data == []
    )


def described_by(db_url: str, names: dict[str, list[tuple[str, str | None]]]) -> None:
    """Captioned objects by model m (their jobs done) whose descriptions are these
    (language, model) pairs; model None: one a person wrote (no machine answer)."""
    create_bucket(db_url, "images")
    for name, languages in names.items():
        object_id = upload_raw_image(db_url, name)
        query(
            db_url,
            "insert into public.image_caption (id, caption, model, object_version, language)"
            " select id, 'words', 'm', version, 'en' from storage.objects where id = %s",
            object_id,
        )
        for language, model in languages:
            query(
                db_url,
                "insert into public.image_description (id, language, caption, model, machine)"
                " values (%s, %s, 'words', %s, case when %s::text is null then null"
                " else '{}'::jsonb end)",
                object_id,
                language,
                model,
                model,
            )
    query(db_url, "update captioner.jobs set state = 'done'")


def upload_raw_image(db_url: str, name: str) -> str:
    row = query_one(
        db_url,
        "insert into storage.objects (bucket_id, name, version, metadata) values "
        "('images', %s, 'v1', '{\"mimetype\": \"image/png\"}') returning id::text",
        name,
    )
    assert row is not None
    return row["id"]


def test_recaption_queues_images_without_a_configured_language_once(supabase):
    described_by(
        supabase.db_url,
        {
            "p/1-en.png": [("en", "m")],
            "p/2-both.png": [("en", "m"), ("de", "m")],
            "p/3-old-de.png": [("en", "m"), ("de", "old-model")],
            "p/4-person-de.png": [("en", "m"), ("de", None)],
        },
    )
    service = create_client(supabase.url, supabase.service_key)
    since = datetime.now(UTC).isoformat()

    def queue(languages: list[str] | None, limit: int = 10, run: str = since) -> int:
        args = {"p_bucket": "images", "p_prefix": "p/", "p_model": "m", "p_limit": limit}
        if languages is not None:
            args |= {"p_since": run, "p_languages": languages}
        return service.rpc("caption_jobs_recaption", args).execute().data

    def progress(languages: list[str]) -> dict:
        args = {"p_bucket": "images", "p_prefix": "p/", "p_model": "m", "p_languages": languages}
        return service.rpc("caption_recaption_progress", args).execute().data[0]

    def pending() -> list[str]:
        rows = query(
            supabase.db_url,
            "select o.name from captioner.jobs j join storage.objects o on o.id = j.object_id"
            " where j.state = 'pending' order by o.name",
        )
        return [row["name"] for row in rows]

    assert queue(["en"]) == 0 and queue(None) == 0  # only en: nothing lacks a language
    assert progress(["en"]) == {"captions": 4, "done": 4, "queued": 0, "failed": 0}
    assert progress(["en", "de"]) == {"captions": 4, "done": 1, "queued": 0, "failed": 0}

    assert queue(["en", "de"], limit=2) == 2  # in name order: 2-both has both
    assert pending() == ["p/1-en.png", "p/3-old-de.png"]
    assert queue(["en", "de"]) == 1
    jobs = query(supabase.db_url, "select object_id, updated_at from captioner.jobs order by 1")
    assert queue(["en", "de"]) == 0
    assert queue(["en", "de"], run=datetime.now(UTC).isoformat()) == 0  # a new run: pending
    assert (
        query(supabase.db_url, "select object_id, updated_at from captioner.jobs order by 1")
        == jobs
    )
    assert pending() == ["p/1-en.png", "p/3-old-de.png", "p/4-person-de.png"]
    assert progress(["en", "de"]) == {"captions": 4, "done": 1, "queued": 3, "failed": 0}


def test_recaption_describes_only_an_added_language_and_keeps_a_persons_fields(
    service_factory, supabase, hf, pgnet, people, tmp_path
):
    create_bucket(supabase.db_url, "images")
    first = service_factory()  # CAPTION_LANGUAGES=en
    alice, _ = people
    photo = owned_upload(supabase, alice, "alice/photo.png", (10, 120, 10))
    other = upload(supabase, "other.png", make_image((120, 10, 10)))
    for object_id in (photo, other):
        wait_for_caption(supabase.db_url, object_id)
    edit(as_user(supabase, alice), photo, alt_text="Grandma's garden in May.")
    first.stop()
    model = first.settings.model_name
    calls = len(hf.calls)

    def recaption(languages: str, model: str = model) -> subprocess.CompletedProcess[str]:
        env = supabase_env(supabase, hf, CAPTION_MODEL=model, CAPTION_LANGUAGES=languages)
        return captioner("recaption", "--bucket", "images", env=env, cwd=tmp_path)

    def rows(table: str) -> list[dict]:
        order = "id" if table == "image_caption" else "id, language"
        return query(supabase.db_url, f"select * from public.{table} order by {order}")

    only_en = recaption("en")
    assert only_en.returncode == 0, only_en.stderr
    assert only_en.stdout.splitlines()[-1] == (
        f"images/: 2 of 2 captions by {model} in en; 0 failed (their old captions kept)"
    )
    assert len(hf.calls) == calls
    en_before, captions_before = rows("image_description"), rows("image_caption")

    added = recaption("en,de")

    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[-1] == (
        f"images/: 2 of 2 captions by {model} in en, de; 0 failed (their old captions kept)"
    )
    assert len(hf.calls) == calls + 2  # each image, only in the added language
    for object_id in (photo, other):
        de = description(supabase.db_url, object_id, "de")
        assert de["model"] == model and de["machine"] is not None
    assert [row for row in rows("image_description") if row["language"] == "en"] == en_before
    assert rows("image_caption") == captions_before  # the en caption, untouched
    en = description(supabase.db_url, photo)
    assert en["alt_text"] == "Grandma's garden in May."
    assert en["sources"]["alt_text"]["source"] == "person"

    again = recaption("en,de")
    assert again.returncode == 0, again.stderr
    assert len(hf.calls) == calls + 2  # nothing left to do

    new_model = f"{hf.url}/models/new-model"
    changed = recaption("en,de", new_model)

    assert changed.returncode == 0, changed.stderr
    assert len(hf.calls) == calls + 2 + 4  # a model change: each image, in each language
    assert {(r["language"], r["model"]) for r in rows("image_description")} == {
        ("en", new_model),
        ("de", new_model),
    }
    assert all(r["model"] == new_model for r in rows("image_caption"))
    assert description(supabase.db_url, photo)["alt_text"] == "Grandma's garden in May."


def test_the_galleries_recaption_of_one_image_describes_every_language(
    service_factory, supabase, hf, pgnet
):
    create_bucket(supabase.db_url, "images")
    first = service_factory()  # CAPTION_LANGUAGES=en
    object_id = upload(supabase, "one.png", make_image((40, 40, 160)))
    wait_for_job_state(supabase.db_url, object_id, "done")
    first.stop()
    en = description(supabase.db_url, object_id)["updated_at"]
    query(supabase.db_url, "update captioner.jobs set only_missing = true")  # as recaption's
    service_factory(caption_languages=["en", "de"])
    calls = len(hf.calls)

    query(supabase.db_url, "select public.caption_jobs_requeue(array[%s]::uuid[])", object_id)

    wait_until(
        lambda: (
            [r["language"] for r in describing(supabase.db_url, object_id)] == ["de", "en"]
            and description(supabase.db_url, object_id)["updated_at"] > en
        ),
        message="the requeued image was not described again in every language",
    )
    assert len(hf.calls) == calls + 2


def test_a_new_first_language_describes_every_language_and_carries_the_caption(
    service_factory, supabase, hf, pgnet, tmp_path
):
    create_bucket(supabase.db_url, "images")
    first = service_factory()  # CAPTION_LANGUAGES=en
    object_id = upload(supabase, "first.png", make_image((160, 40, 40)))
    wait_for_job_state(supabase.db_url, object_id, "done")
    first.stop()
    calls = len(hf.calls)
    env = supabase_env(
        supabase, hf, CAPTION_MODEL=first.settings.model_name, CAPTION_LANGUAGES="de,en"
    )

    done = captioner("recaption", "--bucket", "images", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert len(hf.calls) == calls + 2
    caption = query_one(supabase.db_url, "select * from public.image_caption")
    assert caption is not None and caption["language"] == "de"
    assert caption["caption"] == description(supabase.db_url, object_id, "de")["caption"]


def describing(db_url: str, object_id: str) -> list[dict]:
    return query(
        db_url, "select * from public.image_description where id = %s order by 2", object_id
    )


def test_the_api_key_corrects_a_description(service, supabase):
    object_id = upload(supabase, "api.png", make_image((5, 5, 200)))
    wait_for_caption(supabase.db_url, object_id)
    url = f"{service.url}/v1/captions/{object_id}"

    assert httpx.patch(url, json={"alt_text": "x"}).status_code == 401
    assert httpx.patch(url, json={}, headers=API).status_code == 422
    assert httpx.patch(url, json={"model": "x"}, headers=API).status_code == 422
    missing = f"{service.url}/v1/captions/{uuid.uuid4()}"
    assert httpx.patch(missing, json={"alt_text": "x"}, headers=API).status_code == 404

    response = httpx.patch(
        url, json={"alt_text": "A blue tile.", "edited_by": "editor@example.com"}, headers=API
    )

    assert response.status_code == 200, response.text
    assert response.json()["alt_text"] == "A blue tile."
    assert response.json()["sources"]["alt_text"]["by"] == "editor@example.com"
    read = httpx.get(url, headers=API).json()
    assert [d["language"] for d in read["descriptions"]] == ["en"]
    assert read["descriptions"][0]["sources"]["alt_text"]["source"] == "person"


def test_every_language_gets_its_description(service_factory, supabase, pgnet):
    create_bucket(supabase.db_url, "images")
    service_factory(caption_languages=["en", "de"])
    object_id = upload(supabase, "two.png", make_image((90, 90, 90)))

    wait_for_caption(supabase.db_url, object_id)
    rows = query(
        supabase.db_url,
        "select language, search_language::text, missing from public.image_description "
        "where id = %s order by language",
        object_id,
    )

    assert [(r["language"], r["search_language"]) for r in rows] == [
        ("de", "german"),
        ("en", "english"),
    ]


def test_same_bytes_reuse_the_models_descriptions_never_a_persons(service, supabase, people):
    alice, _ = people
    first = owned_upload(supabase, alice, "alice/one.png", (1, 2, 3))
    wait_for_caption(supabase.db_url, first)
    edit(as_user(supabase, alice), first, alt_text="private words")

    second = upload(supabase, "other/two.png", make_image((1, 2, 3)))
    copy = wait_for_caption(supabase.db_url, second)

    assert copy["reused_from"] is None  # readers learn nothing of other objects (issue 17)
    assert query_one(
        supabase.db_url,
        "select source_id::text from captioner.caption_reuses where object_id = %s",
        second,
    ) == {"source_id": first}
    row = description(supabase.db_url, second)
    assert row["alt_text"] != "private words"
    assert row["alt_text"] == description(supabase.db_url, first)["machine"]["alt_text"]
    assert row["reused_from"] is None


def test_the_realtime_publication_holds_the_descriptions(db_url):
    tables = {
        r["tablename"]
        for r in query(
            db_url,
            "select tablename from pg_publication_tables "
            "where pubname = 'supabase_realtime' and schemaname = 'public'",
        )
    }
    assert {"image_description", "image_caption"} <= tables


DESCRIPTIONS = Path(__file__).parents[2] / "migrations" / "20261126041333_descriptions.sql"
MIGRATIONS = sorted(DESCRIPTIONS.parent.glob("*.sql"))


@pytest.fixture
def bare_db(pg_server):
    """A Supabase database with none of the captioner's migrations."""
    url = create_database(pg_server.admin_url, "template0")
    try:
        apply_sql_file(url, SUPABASE_SQL)
        yield url
    finally:
        drop_database(pg_server.admin_url, url)


def stored_object(db_url: str, name: str) -> str:
    create_bucket(db_url, "images")
    return upload_raw_image(db_url, name)


def test_todays_captions_become_descriptions_in_place(bare_db):
    for path in MIGRATIONS[: MIGRATIONS.index(DESCRIPTIONS)]:
        apply_sql_file(bare_db, path)
    object_id = stored_object(bare_db, "old.png")
    query(
        bare_db,
        "insert into public.image_caption (id, caption, model, object_version) "
        "values (%s, 'an old caption', 'blip', 'v1')",
        object_id,
    )

    for path in MIGRATIONS[MIGRATIONS.index(DESCRIPTIONS) :] * 2:  # and again: re-runnable
        apply_sql_file(bare_db, path)

    row = description(bare_db, object_id)
    assert (row["caption"], row["alt_text"], row["model"]) == ("an old caption",) * 2 + ("blip",)
    assert row["missing"] == ["description", "tags", "text_in_image"]
    assert row["sources"]["alt_text"]["source"] == "model"
    assert query_one(bare_db, "select language from public.image_caption") == {"language": "en"}
    assert query_one(bare_db, "select count(*) n from public.image_description") == {"n": 1}


def test_the_seeds_two_column_table_is_upgraded_in_place(bare_db):
    """Supabase's Edge Function example made image_caption(id, caption) and wrote to it."""
    object_id = stored_object(bare_db, "seed.png")
    query(
        bare_db,
        "create table public.image_caption (id uuid primary key "
        "references storage.objects (id), caption text)",
    )
    query(bare_db, "insert into public.image_caption values (%s, 'a seed caption')", object_id)

    for path in MIGRATIONS:
        apply_sql_file(bare_db, path)

    assert description(bare_db, object_id)["alt_text"] == "a seed caption"
    query(bare_db, "insert into storage.objects (bucket_id, name) values ('images', 'b.png')")
    query(  # the seed's own write still works
        bare_db,
        "insert into public.image_caption (id, caption) select id, 'by the edge function' "
        "from storage.objects where name = 'b.png'",
    )


VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


def chat_service(service_factory, supabase, hf, **overrides):
    """The service with a vision-language model through the router, as users configure it:
    a Hub id the router serves through an Inference Provider."""
    hf.add_model(VLM, {"together": "conversational"})
    create_bucket(supabase.db_url, "images")
    return service_factory(caption_backend="chat", caption_model=VLM, **overrides)


def chat_prompts(hf) -> list[str]:
    bodies = [json.loads(c["body"]) for c in hf.calls if c["path"].endswith("/chat/completions")]
    return [json.dumps(body["messages"]) for body in bodies]


def test_a_chat_model_fills_every_field_in_each_language(service_factory, supabase, hf, pgnet):
    hf.text_in_image = "LEMONADE 2 EUR"
    chat_service(service_factory, supabase, hf, caption_languages=["en", "de"])
    object_id = upload(supabase, "stand.png", make_image((250, 220, 40)))

    caption = wait_for_caption(supabase.db_url, object_id)
    en, de = description(supabase.db_url, object_id), description(supabase.db_url, object_id, "de")

    assert en["missing"] == [] and en["description"] and en["tags"]
    assert en["text_in_image"] == "LEMONADE 2 EUR"
    assert caption["caption"] == en["caption"] and caption["language"] == "en"
    assert de["alt_text"].startswith("[de] ") and de["search_language"] == "german"
    assert sorted(de["machine"]["fields"]) == sorted(en["sources"])


def test_a_buckets_own_prompt_and_fields_are_honoured(service_factory, supabase, hf, pgnet):
    create_bucket(supabase.db_url, "avatars")
    own = {"avatars": {"fields": ["alt_text"], "prompt": "Describe the person's face only."}}
    chat_service(
        service_factory,
        supabase,
        hf,
        caption_buckets=["images", "avatars"],
        caption_bucket_settings=own,
    )
    avatar = upload(supabase, "me.png", make_image((80, 60, 40)), bucket="avatars")
    photo = upload(supabase, "photo.png", make_image((80, 60, 40)))

    wait_for_caption(supabase.db_url, avatar)
    wait_for_caption(supabase.db_url, photo)
    row = description(supabase.db_url, avatar)

    assert row["alt_text"] and row["missing"] == []
    assert (row["description"], row["tags"], row["text_in_image"]) == ("", [], "")
    assert row["machine"]["fields"] == ["alt_text"]
    assert row["machine"]["prompt"] == "Describe the person's face only."
    assert sum("Describe the person's face only." in p for p in chat_prompts(hf)) == 1
    assert description(supabase.db_url, photo)["tags"]  # same bytes, other request: not reused
    assert (
        query(supabase.db_url, "select * from captioner.caption_reuses where object_id = %s", photo)
        == []
    )


def test_search_finds_words_only_in_the_text_in_the_image_or_in_tags(
    service_factory, supabase, hf, pgnet, people
):
    alice, _ = people
    hf.text_in_image = "LEMONADE 2 EUR"
    chat_service(service_factory, supabase, hf)
    object_id = owned_upload(supabase, alice, "alice/stand.png", (250, 220, 40))
    wait_for_caption(supabase.db_url, object_id)
    edit(as_user(supabase, alice), object_id, tags=["flamingo"])
    row = description(supabase.db_url, object_id)
    assert "lemonade" not in (row["caption"] + row["alt_text"] + row["description"]).lower()
    assert "flamingo" not in (row["caption"] + row["alt_text"] + row["description"]).lower()

    def found(client: Client, words: str) -> list[str]:
        rows = client.rpc("search_image_captions", {"query": words}).execute().data
        return [hit["id"] for hit in rows]

    as_alice = as_user(supabase, alice)
    assert found(as_alice, "lemonade") == [object_id]
    assert found(as_alice, "flamingos") == [object_id]  # english stemming
    query(supabase.db_url, "drop policy seen on storage.objects")
    query(
        supabase.db_url,
        "create policy mine on storage.objects for select to authenticated "
        "using (owner_id = (select auth.uid())::text)",
    )
    assert found(as_user(supabase, str(uuid.uuid4())), "lemonade") == []  # RLS as today
    assert found(create_client(supabase.url, supabase.anon_key), "flamingo") == []
    assert found(as_alice, "lemonade flamingo") == [object_id]
