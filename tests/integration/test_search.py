"""public.search_image_captions: full-text search that honours who may read what (RLS),
called as an application does, through supabase-py and PostgREST with the user's JWT."""

import uuid

import pytest
from supabase import Client, create_client

from tests.harness.supabase_stub import SupabaseStandIn, create_bucket
from tests.support import make_image, query, query_one, upload, wait_for_caption

RED, BLUE = (200, 30, 30), (30, 30, 200)
NASTY_QUERIES = [
    "",
    "   ",
    '"',
    '"unbalanced phrase',
    "'",
    "red & | ! : * ( )",
    "&|!:*()<->",
    "!!!",
    "red:*",
    "(red",
    "red)",
    "<->",
    "-",
    "- -red",
    "or",
    "red or",
    "or red",
    "\\",
    "\\\\red\\",
    "red\\:*A",
    "%_%",
    "'; drop table public.image_caption; --",
    "\u00e9t\u00e9 \u2603 \U0001f600",
    "\t\n\r",
    "red " * 5000,
    "x" * 100_000,
    "a" * 2047 + " red",
]


@pytest.fixture
def readers(supabase: SupabaseStandIn) -> tuple[str, str]:
    """Alice and Bob, each of whom may read only the objects they own (a typical policy)."""
    query(
        supabase.db_url,
        "create policy own on storage.objects for select to authenticated "
        "using (owner_id = (select auth.uid())::text)",
    )
    return str(uuid.uuid4()), str(uuid.uuid4())


def owned_upload(supabase: SupabaseStandIn, owner: str, name: str, colour) -> str:
    object_id = upload(supabase, name, make_image(colour))
    query(
        supabase.db_url, "update storage.objects set owner_id = %s where id = %s", owner, object_id
    )
    return object_id


def search(client: Client, text: str, **args) -> list[dict]:
    return client.rpc("search_image_captions", {"query": text, **args}).execute().data


def names(rows: list[dict]) -> list[str]:
    return [row["name"] for row in rows]


def test_users_find_their_own_images_and_never_another_users(service, supabase, readers):
    alice, bob = readers
    red = owned_upload(supabase, alice, "alice/red.png", RED)
    blue = owned_upload(supabase, bob, "bob/blue.png", BLUE)
    wait_for_caption(supabase.db_url, red)
    wait_for_caption(supabase.db_url, blue)
    as_alice = create_client(supabase.url, supabase.user_key(alice))
    as_bob = create_client(supabase.url, supabase.user_key(bob))
    as_anon = create_client(supabase.url, supabase.anon_key)

    found = search(as_alice, "red")
    assert names(found) == ["alice/red.png"]
    assert found[0]["bucket_id"] == "images" and found[0]["id"] == red
    assert found[0]["caption"] == "a 64x48 picture, mostly red" and found[0]["rank"] > 0
    assert search(as_alice, "blue") == []
    assert names(search(as_bob, "blue")) == ["bob/blue.png"]
    assert search(as_bob, "red") == []
    assert search(as_anon, "red") == search(as_anon, "blue") == []
    # the same words, as the service (which bypasses RLS), find both
    as_service = create_client(supabase.url, supabase.service_key)
    assert sorted(names(search(as_service, "picture"))) == ["alice/red.png", "bob/blue.png"]


def insert_captions(db_url: str, captions: dict[str, str], bucket: str = "images") -> None:
    """Objects and their captions straight into the database (no pipeline needed)."""
    for name, caption in captions.items():
        query(
            db_url,
            "with o as (insert into storage.objects (bucket_id, name, version, metadata)"
            " values (%s, %s, 'v1', '{\"mimetype\": \"text/plain\"}') returning id)"
            " insert into public.image_caption (id, caption, model, object_version)"
            " select id, %s, 'test-model', 'v1' from o",
            bucket,
            name,
            caption,
        )


@pytest.fixture
def corpus(supabase: SupabaseStandIn) -> Client:
    create_bucket(supabase.db_url, "images")
    create_bucket(supabase.db_url, "other")
    insert_captions(
        supabase.db_url,
        {
            "dogs.png": "two dogs running on a beach",
            "dog.png": "a dog sleeping on a sofa",
            "cat.png": "a cat sitting on a windowsill",
            "boat.png": "a red sailboat on the sea",
        },
    )
    insert_captions(supabase.db_url, {"elsewhere.png": "a dog in another bucket"}, "other")
    return create_client(supabase.url, supabase.service_key)


def test_ranked_stemmed_filtered_by_bucket_and_paged(corpus):
    assert sorted(names(search(corpus, "dog"))) == ["dog.png", "dogs.png", "elsewhere.png"]
    assert sorted(names(search(corpus, "dogs running", bucket="images"))) == ["dogs.png"]
    assert names(search(corpus, "dog", bucket="other")) == ["elsewhere.png"]
    assert names(search(corpus, '"cat sitting"')) == ["cat.png"]
    assert names(search(corpus, "dog -sofa", bucket="images")) == ["dogs.png"]
    assert sorted(names(search(corpus, "cat or sailboat"))) == ["boat.png", "cat.png"]
    ranked = search(corpus, "dog beach", bucket="images")
    assert names(ranked) == ["dogs.png"]
    both = search(corpus, "dog or beach", bucket="images")
    assert names(both)[0] == "dogs.png" and both[0]["rank"] > both[1]["rank"]
    first = search(corpus, "dog", max_results=1)
    second = search(corpus, "dog", max_results=1, skip=1)
    assert len(first) == len(second) == 1 and first[0]["id"] != second[0]["id"]
    assert search(corpus, "dog", max_results=0) == []
    assert len(search(corpus, "a", max_results=1000)) == 0  # a stop word alone matches nothing


@pytest.mark.parametrize("text", NASTY_QUERIES, ids=lambda t: repr(t[:20]))
def test_odd_queries_answer_results_or_nothing_never_an_error(corpus, text):
    rows = search(corpus, text)
    assert isinstance(rows, list)
    assert all(row["caption"] for row in rows)


def test_odd_queries_still_find_their_words(corpus):
    assert "boat.png" in names(search(corpus, "red & | ! : * ( )"))
    assert "boat.png" in names(search(corpus, "\\\\red\\"))
    assert "boat.png" in names(search(corpus, "q" * 900 + " or red"))


def test_search_language_is_configurable(corpus, supabase):
    assert search(corpus, "sitting")  # english: "sitting" and "sits" share a stem
    reindexed = corpus.rpc("caption_search_configure", {"p_language": "simple"}).execute().data
    assert reindexed == 5
    assert query_one(supabase.db_url, "select search_language::text l from captioner.config") == {
        "l": "simple"
    }
    assert search(corpus, "dog", bucket="images") and not search(corpus, "dogs sleeping")
    insert_captions(supabase.db_url, {"new.png": "the running dogs"})
    # new captions follow the setting; "simple" keeps stop words
    assert sorted(names(search(corpus, "the"))) == ["boat.png", "new.png"]


def test_only_service_role_may_change_the_language(corpus, supabase, readers):
    alice, _ = readers
    for key in (supabase.anon_key, supabase.user_key(alice)):
        with pytest.raises(Exception) as denied:
            create_client(supabase.url, key).rpc(
                "caption_search_configure", {"p_language": "simple"}
            ).execute()
        assert "permission denied" in str(denied.value)
