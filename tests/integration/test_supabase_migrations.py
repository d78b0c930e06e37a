"""migrations/ is the one home of the SQL, under the names the Supabase CLI reads;
supabase/migrations is a link to it, so `supabase start`, `db reset` and `db push` apply it."""

import re
import tomllib
from pathlib import Path

from tests.harness.postgres import SUPABASE_SQL, apply_sql_file, create_database, drop_database
from tests.support import query

ROOT = Path(__file__).resolve().parents[2]
# The Supabase CLI's rule for migration files (supabase/cli, pkg/migration: migrateFilePattern)
CLI_NAME = re.compile(r"^([0-9]+)_(.*)\.sql$")


def test_supabase_migrations_is_a_link_to_the_one_home():
    link = ROOT / "supabase" / "migrations"

    assert link.is_symlink() and link.resolve() == (ROOT / "migrations").resolve()


def test_every_file_has_a_name_the_cli_reads_and_a_unique_version():
    names = sorted(path.name for path in (ROOT / "migrations").glob("*.sql"))
    parsed = [CLI_NAME.match(name) for name in names]

    assert names and all(parsed), names
    versions = [int(match.group(1)) for match in parsed if match]
    assert versions == sorted(set(versions))
    assert all(len(str(version)) == 14 for version in versions)  # <yyyymmddhhmmss>


def test_the_cli_files_build_the_schema(pg_server):
    """What `supabase start` / `db reset` do: every file in version order, on a fresh project."""
    url = create_database(pg_server.admin_url, "template0")
    try:
        apply_sql_file(url, SUPABASE_SQL)
        for path in sorted((ROOT / "supabase" / "migrations").glob("*.sql")):
            apply_sql_file(url, path)
        functions = {
            row["proname"]
            for row in query(url, "select proname from pg_proc where proname like 'caption%%'")
        }
        assert {"caption_configure", "caption_jobs_claim", "caption_jobs_sweep_start"} <= functions
        triggers = query(
            url,
            "select tgname, tgrelid::regclass::text as tab from pg_trigger"
            " where tgname like 'caption%%' order by tgname",
        )
        assert [(row["tgname"], row["tab"]) for row in triggers] == [
            ("caption_hide_reuse", "image_caption"),
            ("caption_on_object_archived", "storage.objects"),
            ("caption_on_object_change", "storage.objects"),
        ]
    finally:
        drop_database(pg_server.admin_url, url)


def test_the_cli_project_creates_the_watched_bucket():
    config = tomllib.loads((ROOT / "supabase" / "config.toml").read_text())

    assert config["project_id"] == "supabase-captioner"
    assert config["storage"]["buckets"]["images"]["public"] is False
