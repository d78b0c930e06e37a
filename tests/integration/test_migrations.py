"""The SQL in migrations/: re-runnable, transactional triggers, and the dashboard's webhook."""

import json
from pathlib import Path

import psycopg

from tests.harness.postgres import apply_sql_file
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import TEST_SECRET, make_image, query, query_one, upload, wait_for_caption

MIGRATIONS = sorted(Path(__file__).parents[2].joinpath("migrations").glob("*.sql"))


def test_migrations_run_again_without_error_and_keep_data(db_url):
    create_bucket(db_url, "images")
    query(
        db_url,
        "insert into storage.objects (bucket_id, name, version, metadata) values "
        "('images', 'a.png', 'v1', '{\"mimetype\": \"image/png\"}')",
    )

    for path in MIGRATIONS:
        apply_sql_file(db_url, path)

    assert query_one(db_url, "select count(*) n from captioner.jobs")["n"] == 1
    assert query_one(db_url, "select count(*) n from captioner.config")["n"] == 1


def test_edge_function_table_is_upgraded_in_place(pg_server, db_template):
    """A project that followed Supabase's example already has image_caption(id, caption)."""
    from tests.harness.postgres import create_database, drop_database

    url = create_database(pg_server.admin_url, db_template)
    try:
        query(url, "drop table public.image_caption cascade")
        query(
            url,
            "create table public.image_caption (id uuid primary key "
            "references storage.objects (id), caption text)",
        )
        for path in MIGRATIONS:
            apply_sql_file(url, path)
        columns = {
            r["column_name"]
            for r in query(
                url,
                "select column_name from information_schema.columns "
                "where table_schema='public' and table_name='image_caption'",
            )
        }
        assert {"id", "caption", "model", "object_version", "created_at", "updated_at"} <= columns
    finally:
        drop_database(pg_server.admin_url, url)


def test_rolled_back_upload_queues_nothing(db_url):
    """storage-api's permission probe inserts a row and rolls back: no job, no webhook."""
    create_bucket(db_url, "images")
    query(db_url, "select caption_configure('{images}', 'http://127.0.0.1:9/hook', 's')")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "insert into storage.objects (bucket_id, name, version, metadata) values "
            "('images', 'probe.png', '1', '{\"mimetype\": \"image/png\"}')"
        )
        conn.rollback()

    assert query(db_url, "select * from captioner.jobs") == []
    assert query(db_url, "select * from net.http_request_queue") == []


def test_dashboard_webhook_payload_is_understood(service, supabase, pgnet):
    """A webhook made in the dashboard (supabase_functions.http_request) works as-is."""
    query(supabase.db_url, "select caption_configure('{images}', null, null)")
    query(supabase.db_url, "update captioner.config set webhook_url = null")
    headers = json.dumps(
        {"Content-Type": "application/json", "Authorization": f"Bearer {TEST_SECRET}"}
    )
    query(
        supabase.db_url,
        "create trigger dashboard_hook after insert on storage.objects for each row "
        "execute function supabase_functions.http_request("
        f"'{service.webhook_url}', 'POST', '{headers}', '{{}}', '5000')",
    )

    object_id = upload(supabase, "dash.png", make_image())

    wait_for_caption(supabase.db_url, object_id)
    wait_until(lambda: pgnet.responses, message="dashboard webhook never delivered")
    status, body = pgnet.responses[0]
    assert status == 200 and '"duplicate"' in body  # the trigger had queued it already


def test_the_schema_version_is_the_highest_migration_file(db_url):
    """The convention (docs/ARCHITECTURE.md): every file from 20261121000010 on redefines
    caption_schema_version() to return its own version, so `captioner doctor` can tell an
    out-of-date database."""
    import re

    from app.commands.doctor import expected_schema_version

    for path in MIGRATIONS:
        number = int(re.match(r"\d+", path.name).group())  # type: ignore[union-attr]
        if number >= 20261121000010:
            declared = re.search(
                r"function public\.caption_schema_version\(\).*?select (\d+)",
                path.read_text(),
                re.S,
            )
            assert declared and int(declared.group(1)) == number, path.name
    version = query_one(db_url, "select public.caption_schema_version() v")
    assert version == {"v": expected_schema_version()}
