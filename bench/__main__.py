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

BENCHMARKS = ["ingress", "pipeline", "memory", "image_bytes", "local_batching", "edge_baseline"]
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args()
    names = args.only or BENCHMARKS
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    started = time.monotonic()
    with Environment(args.quick) as env:
        for name in names:
            t0 = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                results += importlib.import_module(f"bench.{name}").run(env, args.quick)
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
    RESULTS_MD.write_text(header + body + "\n")
    print(f"\nwrote {RESULTS_MD} ({elapsed:.0f} s)", file=sys.stderr)
    return 0 if all(r.passed is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
