"""`python -m bench.search [--captions N]`: the cost of public.search_image_captions.

A throwaway Postgres gets N objects (default 100,000) in one bucket, owned by 1,000 users,
each with a caption drawn from a small vocabulary with skewed word frequencies (so some
words match most captions and some a handful) plus one word of a long tail (30,000 words,
as real captions have: it keeps the planner's estimate for a rare word realistic), and the
usual owner-only read policy on storage.objects. Each query is timed in the database as
PostgREST runs an rpc (one transaction, `set local role`, the JWT's claims), as the service
(service_role, no RLS) and as a signed-in user (RLS: the user owns 1 in 1,000 objects),
then again as the user once storage.objects has an index on the policy's column.
Prints a Markdown table of the median and 95th percentile over the runs, and how many rows
each query matched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg

from bench.common import percentile
from tests.harness.postgres import PostgresServer, build_template, create_database
from tests.harness.supabase_stub import create_bucket

USERS = 1000
RUNS = 30
ADJECTIVES = ["red", "blue", "green", "small", "large", "old", "young", "happy", "wooden"]
NOUNS = ["dog", "cat", "car", "house", "tree", "boat", "person", "bird", "horse", "bicycle"]
PLACES = ["street", "beach", "park", "kitchen", "field", "table", "river", "forest", "road"]
POSES = ["standing", "sitting", "parked", "lying"]
QUERIES = {
    "very common word (photo)": "photo",
    "common word (dog)": "dog",
    "rare word (horse)": "horse",
    "very rare word (xylophone)": "xylophone",
    "two words (red car)": "red car",
    'phrase ("sitting on a beach")': '"sitting on a beach"',
    "or (cat or bird)": "cat or bird",
    "no match (submarine)": "submarine",
}


def populate(db_url: str, count: int) -> None:
    """`count` objects and captions, in SQL (seconds for 100 k)."""
    create_bucket(db_url, "images")
    with psycopg.connect(db_url) as conn:
        conn.execute("set session_replication_role = replica")  # no jobs: captions only
        conn.execute("select setseed(0.42)")
        conn.execute(
            "insert into storage.objects (id, bucket_id, name, owner_id, version, metadata)"
            " select gen_random_uuid(), 'images', format('bench/%%s.jpg', i),"
            " md5('user' || i %% %s)::uuid::text, 'v1', '{\"mimetype\": \"image/jpeg\"}'"
            " from generate_series(1, %s) i",
            (USERS, count),
        )
        conn.execute(
            """
            insert into public.image_caption (id, caption, model, object_version)
            select o.id,
                   case when random() < 0.5 then 'a photo of ' else '' end
                   || format('a %%s %%s %%s on a %%s',
                        (%s::text[])[1 + floor(power(random(), 2) * %s)::int],
                        (%s::text[])[1 + floor(power(random(), 2) * %s)::int],
                        (%s::text[])[1 + floor(random() * %s)::int],
                        (%s::text[])[1 + floor(power(random(), 2) * %s)::int])
                   || format(' near %%s', md5(floor(random() * 30000)::text))  -- a long tail
                   || case when random() < 0.0001 then ' next to a xylophone' else '' end,
                   'bench-model', 'v1'
              from storage.objects o
            """,
            [x for words in (ADJECTIVES, NOUNS, POSES, PLACES) for x in (words, len(words))],
        )
        conn.execute(
            "create policy own on storage.objects for select to authenticated"
            " using (owner_id = (select auth.uid())::text)"
        )
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("vacuum analyze storage.objects")
        conn.execute("vacuum analyze public.image_caption")


def timed(db_url: str, role: str, claims: dict, text: str) -> tuple[list[float], int]:
    """Times (ms) of RUNS calls like PostgREST's, and the number of rows answered."""
    times: list[float] = []
    rows = 0
    with psycopg.connect(db_url) as conn:
        for _ in range(RUNS + 2):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                conn.execute(f"set local role {role}")
                rows = len(
                    conn.execute(
                        "select * from public.search_image_captions(query => %s, bucket => %s,"
                        " max_results => 20)",
                        (text, "images"),
                    ).fetchall()
                )
            times.append((time.perf_counter() - started) * 1000)
    return times[2:], rows  # the first two warm the caches


def matches(db_url: str, text: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "select count(*) from public.image_caption"
            " where search_vector @@ websearch_to_tsquery('english', %s)",
            (text,),
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--captions", type=int, default=100_000)
    args = parser.parse_args()
    with PostgresServer() as server:
        template = build_template(server.admin_url, "captioner_search_bench")
        db_url = create_database(server.admin_url, template)
        started = time.perf_counter()
        populate(db_url, args.captions)
        print(f"{args.captions:,} captions loaded in {time.perf_counter() - started:.1f} s")
        user_id = str(uuid.UUID(bytes=bytes.fromhex(_md5("user1"))))
        service = ("service_role", {"role": "service_role"})
        user = ("authenticated", {"role": "authenticated", "sub": user_id})
        print(
            f"\n| query | captions matching (of {args.captions:,}) | caller | rows answered"
            " | median ms | p95 ms |\n|---|---|---|---|---|---|"
        )
        for label, text in QUERIES.items():
            for caller, (role, claims) in (("service_role", service), ("user (RLS)", user)):
                print(row(db_url, label, text, caller, role, claims))
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("create index on storage.objects (owner_id)")  # the policy's column
            conn.execute("analyze storage.objects")
        for label, text in QUERIES.items():
            print(row(db_url, label, text, "user (RLS), owner_id indexed", *user))


def row(db_url: str, label: str, text: str, caller: str, role: str, claims: dict) -> str:
    times, answered = timed(db_url, role, claims, text)
    return (
        f"| {label} | {matches(db_url, text):,} | {caller} | {answered} |"
        f" {statistics.median(times):.1f} | {percentile(times, 95):.1f} |"
    )


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


if __name__ == "__main__":
    main()
