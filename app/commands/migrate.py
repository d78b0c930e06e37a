"""Apply migrations/*.sql to a database: in file order, each file in one transaction.

Every file is re-runnable, so applying all of them again after an upgrade is the upgrade.
(supabase/migrations is a link to migrations/: the Supabase CLI reads the same files.)
"""

from collections.abc import Callable
from pathlib import Path

import psycopg

# The package's own: app/migrations links to the checkout's migrations/, and an installed
# package carries the files (package data), so every command finds them from any directory.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


class MigrationError(Exception):
    """A migration could not be applied; the message names the file or the connection."""


def default_directory() -> Path:
    return MIGRATIONS_DIR


def migration_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise MigrationError(f"no *.sql files in {directory}")
    return files


def apply_migrations(
    database_url: str,
    directory: Path | None = None,
    on_applied: Callable[[Path], None] = lambda path: None,
) -> list[Path]:
    """Apply every file in `directory` in order; stops at the first that fails."""
    files = migration_files(directory or default_directory())
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for path in files:
                apply_file(conn, path)
                on_applied(path)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {exc}") from None
    return files


def apply_file(conn: psycopg.Connection, path: Path) -> None:
    """Run one file in one transaction."""
    try:
        with conn.transaction():
            conn.execute(path.read_bytes())
    except psycopg.Error as exc:
        raise MigrationError(f"{path.name} failed: {exc}") from None
