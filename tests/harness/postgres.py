"""A throwaway PostgreSQL cluster and template databases for tests."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parent.parent
SUPABASE_SQL = HARNESS_DIR / "supabase.sql"
MIGRATIONS_DIR = REPO_ROOT / "migrations"
SEARCH_PATH = '"$user", public, extensions'


def initdb(bin_dir: str, data: str) -> list[str]:
    """The command that creates a throwaway cluster in `data`: trust auth, UTF-8, no fsync."""
    options = "-U postgres --auth=trust -E UTF8 --locale=C --no-sync"
    return [f"{bin_dir}/initdb", "-D", data, *options.split()]


def find_bin_dir() -> str:
    """Newest /usr/lib/postgresql/<version>/bin (or $PG_BIN_DIR)."""
    if os.environ.get("PG_BIN_DIR"):
        return os.environ["PG_BIN_DIR"]
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    if not dirs:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return max(dirs, key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server: $TEST_DATABASE_URL if set, else a throwaway cluster."""

    def __init__(self) -> None:
        self.admin_url: str = ""
        self._dir: str | None = None
        self._data: str | None = None

    def start(self) -> PostgresServer:
        if os.environ.get("TEST_DATABASE_URL"):
            self.admin_url = os.environ["TEST_DATABASE_URL"]
            return self
        bin_dir = find_bin_dir()
        self._dir = tempfile.mkdtemp(prefix="captioner-pg-")
        self._data = os.path.join(self._dir, "data")
        port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
        self._run(initdb(bin_dir, self._data))
        opts = (
            f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            [
                f"{bin_dir}/pg_ctl",
                "-D",
                self._data,
                "-l",
                os.path.join(self._dir, "log"),
                "-o",
                opts,
                "-w",
                "start",
            ]
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def stop(self) -> None:
        if self._dir is None:
            return
        if self._data and os.path.exists(os.path.join(self._data, "postmaster.pid")):
            self._run(
                [f"{find_bin_dir()}/pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop"],
                check=False,
            )
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _run(self, cmd: list[str], check: bool = True) -> None:
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and res.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{res.stdout}\n{res.stderr}")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def database_url(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + dbname))
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def _dbname(url_or_name: str) -> str:
    if "://" in url_or_name or "=" in url_or_name:
        return psycopg.conninfo.conninfo_to_dict(url_or_name)["dbname"]
    return url_or_name


def _admin(admin_url: str, statement: sql.Composable) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


def apply_sql_file(url: str, path: Path) -> None:
    """Execute a whole SQL file in autocommit mode."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(path.read_text().encode())


def build_template(admin_url: str, name: str = "captioner_template") -> str:
    """(Re)create database ``name`` with supabase.sql then migrations/*.sql applied."""
    ident = sql.Identifier(name)
    _admin(admin_url, sql.SQL("drop database if exists {} with (force)").format(ident))
    _admin(admin_url, sql.SQL("create database {}").format(ident))
    url = database_url(admin_url, name)
    for path in [SUPABASE_SQL, *sorted(MIGRATIONS_DIR.glob("*.sql"))]:
        try:
            apply_sql_file(url, path)
        except psycopg.Error as exc:
            raise RuntimeError(f"applying {path} failed: {exc}") from exc
    return name


def create_database(admin_url: str, template: str) -> str:
    """A fresh database cloned from ``template``; returns its URL."""
    name = f"captioner_test_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    _admin(
        admin_url, sql.SQL("create database {} template {}").format(ident, sql.Identifier(template))
    )
    # Database-level settings are not copied from the template.
    _admin(
        admin_url,
        sql.SQL("alter database {} set search_path to {}").format(ident, sql.SQL(SEARCH_PATH)),
    )
    return database_url(admin_url, name)


def drop_database(admin_url: str, url_or_name: str) -> None:
    """Drop a database made by create_database (kicking out its connections)."""
    ident = sql.Identifier(_dbname(url_or_name))
    _admin(admin_url, sql.SQL("drop database if exists {} with (force)").format(ident))


# pg_dump's lines that differ between runs or client versions, not between schemas
_DUMP_NOISE = ("-- Dumped ", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")


def dump_schema(url: str) -> str:
    """What the migrations make, as pg_dump writes it: schemas captioner and public (tables,
    indexes, functions, policies, grants) and the triggers they put on storage.objects."""
    dump = subprocess.run(
        [
            f"{find_bin_dir()}/pg_dump",
            "--schema-only",
            "--no-owner",
            "--schema=captioner",
            "--schema=public",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in dump.splitlines() if not line.startswith(_DUMP_NOISE)]
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "select pg_get_triggerdef(t.oid) || ';' from pg_trigger t"
            " join pg_proc p on p.oid = t.tgfoid"
            " where t.tgrelid = 'storage.objects'::regclass and not t.tgisinternal"
            " and p.pronamespace = 'captioner'::regnamespace order by t.tgname"
        ).fetchall()
    lines += ["", "-- Triggers on storage.objects", *(row[0] for row in triggers)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
