"""supabase/migrations/ mirrors migrations/ under the Supabase CLI's names, and never drifts."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.harness.postgres import (
    SUPABASE_SQL,
    apply_sql_file,
    create_database,
    drop_database,
)
from tests.support import query

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "supabase_migrations.py"
# The Supabase CLI's rule for migration files (supabase/cli, pkg/migration: migrateFilePattern)
CLI_NAME = re.compile(r"^([0-9]+)_(.*)\.sql$")


def run(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_migration_has_its_supabase_copy():
    result = run("--check")

    assert result.returncode == 0, result.stderr  # fix: make supabase-migrations


def test_copies_keep_the_order_and_names_the_cli_reads():
    sources = sorted(path.name for path in (ROOT / "migrations").glob("*.sql"))
    copies = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
    parsed = [CLI_NAME.match(path.name) for path in copies]

    assert all(parsed), [path.name for path in copies]
    versions = [int(match.group(1)) for match in parsed if match]
    assert versions == sorted(set(versions))  # unique, and in the order of migrations/
    assert [f"{path.name[:4]}" for path in map(Path, sources)] == [
        f"{version % 10_000:04d}" for version in versions
    ]


def test_drift_is_named_file_by_file(tmp_path):
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    assert run(root=tmp_path).returncode == 0
    assert run("--check", root=tmp_path).returncode == 0

    first = sorted((tmp_path / "migrations").glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    (tmp_path / "migrations" / "0999_new.sql").write_text("select 1;\n")
    stale = tmp_path / "supabase" / "migrations" / "20261121009998_gone.sql"
    stale.write_text("select 1;\n")
    mine = tmp_path / "supabase" / "migrations" / "20270101000000_users_own.sql"
    mine.write_text("select 1;\n")

    result = run("--check", root=tmp_path)

    assert result.returncode == 1
    assert "differs from its source" in result.stderr and first.stem[5:] in result.stderr
    assert "20261121000999_new.sql: missing" in result.stderr
    assert "20261121009998_gone.sql: no source" in result.stderr
    assert "users_own" not in result.stderr  # a project's own migrations are left alone
    assert run(root=tmp_path).returncode == 0
    assert run("--check", root=tmp_path).returncode == 0
    assert not stale.exists() and mine.exists()


def test_the_cli_copies_build_the_schema(pg_server):
    """What `supabase start` / `db reset` do: every copy in version order, on a fresh project."""
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
        triggers = query(url, "select tgname from pg_trigger where tgname like 'caption%%'")
        assert [row["tgname"] for row in triggers] == ["caption_on_object_change"]
    finally:
        drop_database(pg_server.admin_url, url)


def test_the_cli_project_creates_the_watched_bucket():
    config = tomllib.loads((ROOT / "supabase" / "config.toml").read_text())

    assert config["project_id"] == "supabase-captioner"
    assert config["storage"]["buckets"]["images"]["public"] is False
