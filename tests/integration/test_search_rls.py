"""Caption search under row-level security (migration 20261126024414): every caller finds
exactly the matching captions it could read with a plain select, ranked and paged the same
way, and the search starts from its indexes whoever calls. Calls are made as PostgREST makes
them: one transaction, `set local role`, the JWT's claims in request.jwt.claims."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.supabase_stub import create_bucket
from tests.support import query

ALICE, BOB = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
CALLERS = {  # name: (role, claims)
    "anon": ("anon", {"role": "anon"}),
    "alice": ("authenticated", {"role": "authenticated", "sub": ALICE}),
    "bob": ("authenticated", {"role": "authenticated", "sub": BOB}),
    "service": ("service_role", {"role": "service_role"}),
}
# each role's own path, which takes the window as an argument (the public function: 250)
RANKED = 250
PATHS = {
    "anon": "captioner_search.as_anon",
    "authenticated": "captioner_search.as_authenticated",
    "service_role": "captioner_search.run",
}
WORDS = ["dog", "cat", "beach", "red", "car", "tree"]
POLICIES = [  # a public bucket for anon, owner-only reads for signed-in users
    "create policy public_read on storage.objects for select to anon using (bucket_id = 'public')",
    "create policy own on storage.objects for select to authenticated"
    " using (owner_id = (select auth.uid())::text)",
]

Conn = psycopg.Connection[Any]


@pytest.fixture
def db(db_url: str) -> str:
    for bucket in ("public", "private"):
        create_bucket(db_url, bucket)
    for policy in POLICIES:
        query(db_url, policy)
    return db_url


@contextmanager
def as_caller(conn: Conn, caller: str) -> Iterator[None]:
    """Inside the open transaction, act as PostgREST does for this caller, then back."""
    role, claims = CALLERS[caller]
    conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
    conn.execute(f"set local role {role}")
    try:
        yield
    finally:
        conn.execute("reset role")


def add(conn: Conn, bucket: str, owner: str | None, caption: str, age: int) -> str:
    row = conn.execute(
        "with o as (insert into storage.objects (bucket_id, name, owner_id, version, metadata)"
        " values (%s, gen_random_uuid()::text, %s, 'v1', '{\"mimetype\": \"image/png\"}')"
        " returning id)"
        " insert into public.image_caption (id, caption, model, object_version, updated_at)"
        " select id, %s, 'm', 'v1', timestamptz '2026-11-01' - make_interval(secs => %s)"
        " from o returning id::text",
        (bucket, owner, caption, age),
    ).fetchone()
    assert row is not None
    return str(row[0])


def readable_matches(conn: Conn, caller: str, text: str, bucket: str | None) -> list[tuple]:
    """(id, updated_at, rank) of the matching captions the caller reads with a plain select."""
    with as_caller(conn, caller):
        return conn.execute(
            "select ic.id::text, ic.updated_at, ts_rank(ic.search_vector, q)"
            "  from public.image_caption ic,"
            "       websearch_to_tsquery(public.image_caption_search_language(), %s) q"
            " where ic.search_vector @@ q and (%s::text is null or exists ("
            "   select 1 from storage.objects o where o.id = ic.id and o.bucket_id = %s))",
            (text, bucket, bucket),
        ).fetchall()


def expected_page(matches: list[tuple], window: int, limit: int, skip: int) -> list[tuple]:
    """The documented order: the newest `window` matches best first, then newest first."""
    newest = sorted(matches, key=lambda m: (m[1], m[0]), reverse=True)
    newest = newest[: max(window, skip + limit)]
    placed = [(i >= window, m) for i, m in enumerate(newest)]
    placed.sort(key=lambda p: p[1][0])
    placed.sort(key=lambda p: p[1][1], reverse=True)
    placed.sort(key=lambda p: (p[0], 0 if p[0] else -p[1][2]))
    return [(m[0], m[2]) for _, m in placed[skip : skip + limit]]


def searched(
    conn: Conn,
    caller: str,
    text: str,
    bucket: str | None,
    limit: int,
    skip: int,
    window: int | None,
    plan: str = "",
) -> list[tuple]:
    """(id, rank) as the caller gets them: the public function, or its role's own path
    with another window; `plan` forces one way to find the newest matches."""
    with as_caller(conn, caller):
        conn.execute("select set_config('captioner.search_plan', %s, true)", (plan,))
        if window is None:
            sql, args = "public.search_image_captions(%s, %s, %s, %s)", (text, bucket, limit, skip)
        else:
            sql = f"{PATHS[CALLERS[caller][0]]}(websearch_to_tsquery(%s), %s, %s, %s, %s)"
            args = (text, bucket, limit, skip, window)
        rows = conn.execute(f"select id::text, rank from {sql}", args).fetchall()
    return [(row[0], row[1]) for row in rows]


captions = st.lists(
    st.tuples(
        st.sampled_from(["public", "private"]),
        st.sampled_from([ALICE, BOB, None]),
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=5),
        st.integers(0, 4),  # age in seconds: ties happen, the id breaks them
    ),
    max_size=14,
)
queries = st.sampled_from(
    ["dog", "cat", "dog cat", "dog or beach", '"red car"', "dog -cat", "tree or car or red"]
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    corpus=captions,
    text=queries,
    caller=st.sampled_from(list(CALLERS)),
    bucket=st.sampled_from([None, "public", "private"]),
    limit=st.integers(0, 6),
    skip=st.integers(0, 8),
    window=st.sampled_from([None, 1, 3]),
    plan=st.sampled_from(["", "walk", "any", "hits"]),
)
def test_each_caller_finds_exactly_what_it_may_read_ranked_and_paged(
    db, corpus, text, caller, bucket, limit, skip, window, plan
):
    """Whichever way the newest matches are found (the planner's choice, or each forced)."""
    with psycopg.connect(db) as conn:
        for bucket_id, owner, words, age in corpus:
            add(conn, bucket_id, owner, " ".join(words), age)
        readable = readable_matches(conn, caller, text, bucket)

        got = searched(conn, caller, text, bucket, limit, skip, window, plan)

        assert {row[0] for row in got} <= {m[0] for m in readable}  # never another's row
        assert got == expected_page(readable, window or RANKED, limit, skip)
        conn.rollback()


def test_pages_cover_every_readable_match_once(db):
    """Paging past the ranked window continues newest first: each match exactly once."""
    with psycopg.connect(db) as conn:
        mine = [add(conn, "private", ALICE, f"dog number {n}", n) for n in range(9)]
        add(conn, "private", BOB, "dog of bob", 0)
        pages = [searched(conn, "alice", "dog", None, 2, skip, 4) for skip in range(0, 10, 2)]

        assert sorted(row[0] for page in pages for row in page) == sorted(mine)
        conn.rollback()


def rows_read(conn: Conn, table: str) -> int:
    """Rows of `table` this transaction read: by sequential scans and fetched through indexes."""
    row = conn.execute(
        "select pg_stat_get_xact_tuples_returned(t) + pg_stat_get_xact_tuples_fetched(t)"
        " from (select %s::regclass::oid) as t(t)",
        (table,),
    ).fetchone()
    return int(row[0]) if row else 0


def three_thousand_dogs(db: str, owner: str | None) -> None:
    """3,000 objects of bucket `public` owned by `owner`, each captioned and described in
    English "a dog", one ('p/7') "a rare xylophone dog"; analysed."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute(
            "with o as (insert into storage.objects (bucket_id, name, owner_id, version)"
            " select 'public', 'p/' || g, %s, 'v1' from generate_series(1, 3000) g"
            " returning id, name), c as (insert into public.image_caption (id, caption, model)"
            " select id, case when name = 'p/7' then 'a rare xylophone dog' else 'a dog' end,"
            " 'm' from o returning id, caption)"
            " insert into public.image_description (id, language, caption, alt_text,"
            " search_language, search_vector)"
            " select id, 'en', caption, caption, 'english', to_tsvector('english', caption)"
            " from c",
            (owner,),
        )
        conn.execute("insert into captioner.search_languages values ('english')")
        conn.execute("create index on storage.objects (owner_id)")  # the owner policy's column
        conn.execute("analyze storage.objects, public.image_caption, public.image_description")


@pytest.mark.parametrize("caller", list(CALLERS))
def test_every_caller_starts_from_an_index_not_from_every_caption(db, caller):
    """Under RLS the old search evaluated the policy on every caption (a sequential scan),
    and descriptions were matched per row in each row's language (the GIN index could not
    apply): now a rare word is found through the GIN index (or the caller's own objects) for
    anon, an owner and the service alike, in captions and descriptions. (A common word's
    newest-first walk pays only at scale: bench/scale.py.)"""
    three_thousand_dogs(db, ALICE if caller == "alice" else None)
    with psycopg.connect(db) as conn:
        found = searched(conn, caller, "xylophone", None, 20, 0, None)
        reads = {t: rows_read(conn, f"public.{t}") for t in ("image_caption", "image_description")}

    assert len(found) == (0 if caller == "bob" else 1)
    assert 0 < reads["image_description"] <= 10 and reads["image_caption"] <= 10, reads


def executed_plans(conn: Conn) -> list[str]:
    """From now on, collect the plan of every statement run (nested ones too, functions'
    dynamic SQL included) as auto_explain reports it to the client."""
    plans: list[str] = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    for setting in (
        "load 'auto_explain'",
        "set auto_explain.log_min_duration = 0",
        "set auto_explain.log_nested_statements = on",
        "set auto_explain.log_analyze = on",
        "set client_min_messages = log",
    ):
        conn.execute(setting)
    return plans


@pytest.mark.parametrize(("word", "way"), [("dog", "walk"), ("xylophone", "index")])
@pytest.mark.parametrize("caller", ["anon", "service"])
def test_descriptions_are_found_the_way_captions_are(db, caller, word, way):
    """Each language's descriptions are searched with its configuration and query as
    constants: a word in every description walks them newest first
    (image_description_updated_idx, as captions do), a rare word starts from the GIN index.
    (Matched per row in each row's language, neither applied: 8-10 s for a common word at
    1 M.) Sequential scans are off so that 3,000 rows plan as a million do."""
    three_thousand_dogs(db, None)
    with psycopg.connect(db) as conn:
        plans = executed_plans(conn)
        conn.execute("set local enable_seqscan = off")
        found = searched(conn, caller, word, None, 20, 0, None)

    ran = [p for p in plans if "actual time" in p and "image_description x_1" in p]
    assert len(found) == (20 if word == "dog" else 1) and ran, plans
    scan = {
        "walk": "Index Scan using image_description_updated_idx on image_description x_1",
        "index": "Bitmap Index Scan on image_description_search_idx",
    }[way]
    assert scan in ran[-1], ran[-1]


NARROWED = """
drop policy "Captions are readable where the image is" on public.image_caption;
create policy "Captions are readable where the image is" on public.image_caption
  for select to anon, authenticated using (exists (
    select 1 from storage.objects o where o.id = image_caption.id and o.bucket_id = 'public'))
"""
POLICY_CASES = {  # SQL, caller, whether the search roles' path still reads the same
    # a storage policy that decides by the database role's name: inside the search role's
    # function that name is the search role's, so search runs as the caller itself
    "role-name-policy": (
        "create policy by_name on storage.objects for select to anon"
        " using (current_user = 'anon' and bucket_id = 'private')",
        "anon",
        False,
    ),
    # 0001's caption policy narrowed: the search roles do not have it, so the same
    "caption-policy-changed": (NARROWED, "alice", False),
    # a restrictive caption policy applies to the search roles too (members of the roles)
    "restrictive-caption-policy": (
        "create policy no_cats on public.image_caption as restrictive for select"
        " to anon, authenticated using (caption not like '%%cat%%')",
        "alice",
        True,
    ),
}


@pytest.mark.parametrize("case", list(POLICY_CASES))
def test_other_policies_are_obeyed_exactly(db, case):
    policy, caller, mirrored_alike = POLICY_CASES[case]
    query(db, policy)
    with psycopg.connect(db) as conn:
        add(conn, "private", ALICE, "a dog", 1)
        add(conn, "private", ALICE, "a cat and a dog", 2)
        add(conn, "public", ALICE, "a dog in public", 3)
        readable = readable_matches(conn, caller, "dog", None)

        got = searched(conn, caller, "dog", None, 20, 0, None)
        mirrored = searched(conn, caller, "dog", None, 20, 0, RANKED)  # the search role's path

        assert got == expected_page(readable, RANKED, 20, 0)
        assert (mirrored == got) is mirrored_alike
        conn.rollback()
