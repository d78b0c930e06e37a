"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks, print a table and
write bench/RESULTS.md. Measurements are against the local stand-ins on this machine and
taken in one run, so compare ratios, not absolute numbers, between machines."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Environment, Result

BENCHMARKS = [
    "ingress",
    "pipeline",
    "memory",
    "image_bytes",
    "local_batching",
    "edge_baseline",
    "scale",
    "backfill",
    "dedupe",
]
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, no GPU used; "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def table(results: list[Result]) -> str:
    lines = [
        "| benchmark | measured | target | pass/fail | notes |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        notes = r.notes.replace("|", "/")
        lines.append(f"| {r.name} | {r.shown} | {r.target} | {r.verdict} | {notes} |")
    return "\n".join(lines)


def merged(
    previous: str, header: str, results: list[Result], sections: dict[str, str], rerun: str
) -> str:
    """RESULTS.md: the header and table of this run, then the `## ` sections. A re-run of
    some benchmarks (`rerun`: a line saying so) keeps the previous header and rows, and its rows
    replace theirs by name. A section this run wrote replaces the one with its heading;
    the others stay (such as those written by hand from a standalone bench script)."""
    first, *rest = previous.split("\n## ") if previous else [""]
    kept = {"## " + part.split("\n", 1)[0]: "## " + part.rstrip() for part in rest}
    kept.update({text.split("\n", 1)[0]: text.rstrip() for text in sections.values()})
    if rerun and first:
        lines = first.rstrip().splitlines()
        names = {r.name for r in results}
        rows = [line for line in lines if line.startswith("| ") and line[2:11] != "benchmark"]
        old = [row for row in rows if row.split(" | ")[0][2:] not in names]
        top = "\n".join(line for line in lines if not line.startswith("|")).rstrip()
        header = f"{top}\n{rerun}"
        body = "\n".join([*table([]).splitlines(), *old, *table(results).splitlines()[2:]])
        return header + "\n\n" + body + "\n\n" + "\n\n".join(kept.values()) + "\n"
    return header + table(results) + "\n\n" + "\n\n".join(kept.values()) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args()
    names = args.only or BENCHMARKS
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    started = time.monotonic()
    sections: dict[str, str] = {}
    with Environment(args.quick) as env:
        for name in names:
            t0 = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            module = importlib.import_module(f"bench.{name}")
            try:
                results += module.run(env, args.quick)
                if hasattr(module, "section") and (text := module.section(env)):
                    sections[name] = text
            except Exception as exc:
                traceback.print_exc()
                results.append(Result(name, float("nan"), "", "", False, f"error: {exc!r}"))
            print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()[0]
    body = table(results)
    print(body)
    header = (
        f"# Benchmark results{' (--quick)' if args.quick else ''}\n\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}\n"
        f"- machine: {machine()}\n"
        f"- command: `python -m bench{' --quick' if args.quick else ''}` "
        f"({elapsed:.0f} s in all)\n"
        f"- load average (1 min) {load_before:.1f} before, {load_after:.1f} after: anything "
        f"above ~{os.cpu_count()} means other processes shared the CPUs with this run\n"
        "- against the local stand-ins (tests/harness): throwaway Postgres, Supabase "
        "storage + PostgREST stand-in, Hugging Face stand-in. Ratios taken in one run; "
        "see each module's docstring in bench/ for the method.\n\n"
    )
    previous = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    rerun = (
        f"- re-run: `python -m bench --only {' '.join(names)}` at "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} ({elapsed:.0f} s, load average "
        f"{load_before:.1f} before, {load_after:.1f} after)"
        if args.only
        else ""
    )
    RESULTS_MD.write_text(merged(previous, header, results, sections, rerun))
    for text in sections.values():
        print("\n" + text)
    print(f"\nwrote {RESULTS_MD} ({elapsed:.0f} s)", file=sys.stderr)
    return 0 if all(r.passed is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
