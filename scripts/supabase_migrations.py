#!/usr/bin/env python3
"""Mirror migrations/NNNN_name.sql into supabase/migrations/<timestamp>_name.sql.

migrations/ is where the SQL lives and is edited; supabase/migrations/ holds the same files
under the names the Supabase CLI reads (`supabase start`, `supabase db reset`, `supabase db
push`: `<digits>_<name>.sql`, applied in version order). Each copy starts with one line
saying where it comes from. The version of NNNN is 20261121 followed by NNNN as six digits
(0007 -> 20261121000007), so the order is kept and a file's version never changes.

    python3 scripts/supabase_migrations.py          # write the copies, remove stale ones
    python3 scripts/supabase_migrations.py --check  # exit 1, naming each file, if they drift
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path("migrations")
TARGET = Path("supabase/migrations")
DATE = "20261121"
SOURCE_NAME = re.compile(r"^(\d{4})_(.+)\.sql$")
COPY_NAME = re.compile(rf"^{DATE}\d{{6}}_.+\.sql$")  # the copies this script owns


def header(source: str) -> str:
    return (
        f"-- Generated from {source}: edit that file, then run\n"
        "-- `make supabase-migrations` (scripts/supabase_migrations.py).\n"
    )


def expected(root: Path) -> dict[str, str]:
    """The name and text of every copy that supabase/migrations/ should hold."""
    copies = {}
    for path in sorted((root / SOURCE).glob("*.sql")):
        match = SOURCE_NAME.match(path.name)
        if match is None:
            raise SystemExit(f"{path}: migrations are named NNNN_name.sql")
        number, name = match.groups()
        copies[f"{DATE}{int(number):06d}_{name}.sql"] = header(
            f"{SOURCE}/{path.name}"
        ) + path.read_text(encoding="utf-8")
    return copies


def drift(root: Path) -> list[str]:
    """What differs between migrations/ and supabase/migrations/, one line each."""
    want = expected(root)
    target = root / TARGET
    have = {p.name: p for p in target.glob("*.sql")} if target.is_dir() else {}
    problems = [f"{TARGET}/{name}: missing" for name in sorted(want.keys() - have.keys())]
    problems += [
        f"{TARGET}/{name}: differs from its source"
        for name in sorted(want.keys() & have.keys())
        if have[name].read_text(encoding="utf-8") != want[name]
    ]
    problems += [
        f"{TARGET}/{name}: no source in {SOURCE}/ (stale copy?)"
        for name in sorted(have.keys() - want.keys())
        if COPY_NAME.match(name)
    ]
    return problems


def sync(root: Path) -> list[str]:
    """Write every copy and remove stale ones; returns what changed."""
    target = root / TARGET
    target.mkdir(parents=True, exist_ok=True)
    want = expected(root)
    changed = []
    for name, text in want.items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(f"wrote {TARGET}/{name}")
    for path in sorted(target.glob("*.sql")):
        if COPY_NAME.match(path.name) and path.name not in want:
            path.unlink()
            changed.append(f"removed {TARGET}/{path.name}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.root)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: make supabase-migrations", file=sys.stderr)
        return 1 if problems else 0
    for line in sync(args.root):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
