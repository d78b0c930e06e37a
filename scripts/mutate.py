#!/usr/bin/env python3
"""Mutation testing of the core guarantees (`make mutate`; not part of CI).

Python: mutmut (https://mutmut.readthedocs.io; configured in pyproject.toml [tool.mutmut])
mutates the target modules in a copy (`mutants/`) and runs, for each mutant, the in-process
tests that reach the mutated function; a mutant the tests still pass with (or that no test
reaches) has survived. SQL: each entry of SQL_MUTATIONS replaces one piece of the effective
definition of a queue function (the last migration file that has it) and runs the queue's
behaviour tests; the schema snapshot, which fails on any edit, is not among them.

    python scripts/mutate.py                 # everything: the table, then docs/MUTATION-RUN.md
    python scripts/mutate.py --only auth sql # some targets
    python scripts/mutate.py --list          # the targets

Survivors are listed under the table with their place and change; the ones known to be
equivalent (no behaviour can tell them apart) are in docs/MUTATION.md with the reason.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # dotted, as mutmut names mutants
    functions: tuple[str, ...] = ()  # only mutants inside these (default: the whole module)


CLASSIFY = ("classify", "_classify_status", "_body", "_error_detail", "_model_not_supported")
# The modules are [tool.mutmut] only_mutate in pyproject.toml; their tests are its
# pytest_add_cli_args_test_selection.
TARGETS = (
    Target("auth", "app.api.auth"),
    Target("webhook triage", "app.api.webhook", ("triage",)),
    Target("failure classes", "app.captioning.hf", (*CLASSIFY, "_hint")),
    Target("failure classes (errors)", "app.core.errors"),
    Target("worker: settle and retry", "app.pipeline.settle"),
    Target("worker: backoff", "app.pipeline.backoff"),
    Target("worker: pause, probe, resume", "app.pipeline.health"),
    Target("bounded reading", "app.core.bounded"),
    Target(
        "image preparation", "app.core.images", ("prepare_image", "_to_rgb", "_too_many_pixels")
    ),
    Target("lease heartbeat", "app.pipeline.lease"),
    Target("description deadline", "app.captioning.deadline"),
)
MUTANT = re.compile(r"^\s*(?P<module>[\w.]+)\.x[_ǁ](?P<function>\S+?)__mutmut_\d+: (?P<status>.+)$")
KILLED = {"killed", "timeout", "segfault"}


@dataclass(frozen=True)
class SqlMutation:
    name: str
    original: str
    mutated: str


SQL_TESTS = (
    "tests/integration/test_queue_guarantees.py",
    "tests/integration/test_scale.py",
    "tests/integration/test_pause_bound.py",
)
SQL_MUTATIONS = (
    SqlMutation(
        "caption_jobs_claim: expired-lease select without FOR UPDATE SKIP LOCKED",
        "order by r.lease_until limit p_limit\n       for update skip locked",
        "order by r.lease_until limit p_limit",
    ),
    SqlMutation(
        "caption_jobs_claim: expired-lease select FOR UPDATE without SKIP LOCKED",
        "order by r.lease_until limit p_limit\n       for update skip locked",
        "order by r.lease_until limit p_limit\n       for update",
    ),
    SqlMutation(
        "caption_jobs_claim: due select without FOR UPDATE SKIP LOCKED",
        "limit p_limit - cardinality(expired)\n       for update skip locked",
        "limit p_limit - cardinality(expired)",
    ),
    SqlMutation(
        "caption_jobs_claim: due select FOR UPDATE without SKIP LOCKED",
        "limit p_limit - cardinality(expired)\n       for update skip locked",
        "limit p_limit - cardinality(expired)\n       for update",
    ),
    SqlMutation(
        "caption_jobs_claim: one more run after the last attempt's lease expired",
        "j.lease_until < now() and j.attempts >= p_max_attempts",
        "j.lease_until < now() and j.attempts > p_max_attempts",
    ),
    SqlMutation(
        "caption_jobs_claim: pending jobs taken before they are due",
        "p.state = 'pending' and p.run_after <= now()",
        "p.state = 'pending'",
    ),
    SqlMutation(
        "caption_jobs_complete: the lease token ignored",
        "where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'"
        "\n  returning * into job;",
        "where j.object_id = p_object_id and j.state = 'running'\n  returning * into job;",
    ),
    SqlMutation(
        "caption_jobs_complete: a finished job completed again",
        "where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'"
        "\n  returning * into job;",
        "where j.object_id = p_object_id and j.lease_token = p_lease_token"
        "\n  returning * into job;",
    ),
    SqlMutation(
        "caption_jobs_retry: the lease token ignored",
        "lease_token = null, lease_until = null, updated_at = now()\n"
        "   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';\n"
        "  return found;",
        "lease_token = null, lease_until = null, updated_at = now()\n"
        "   where object_id = p_object_id and state = 'running';\n"
        "  return found;",
    ),
    SqlMutation(
        "caption_jobs_retry: the delay ignored",
        "set state = 'pending', run_after = now() + make_interval(secs => p_delay_seconds),",
        "set state = 'pending', run_after = now(),",
    ),
    SqlMutation(
        "caption_jobs_retry: a refund not given back",
        "attempts = attempts - case when p_refund then 1 else 0 end,",
        "attempts = attempts,",
    ),
    SqlMutation(
        "caption_jobs_retry: a give-back in a pause not counted",
        "pauses = pauses + case when p_pause then 1 else 0 end,",
        "pauses = pauses,",
    ),
    SqlMutation(
        "caption_jobs_claim: no progress one pause early",
        "leased.pauses >= p_max_pauses",
        "leased.pauses >= p_max_pauses - 1",
    ),
    SqlMutation(
        "caption_jobs_fail: the lease token ignored",
        "updated_at = now()\n   where object_id = p_object_id and lease_token = p_lease_token"
        " and state = 'running'\n  returning version into failed_version;",
        "updated_at = now()\n   where object_id = p_object_id and state = 'running'"
        "\n  returning version into failed_version;",
    ),
)


@dataclass
class Score:
    name: str
    mutants: int = 0
    killed: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def survived(self) -> int:
        return len(self.survivors)

    def row(self) -> str:
        score = 100 * self.killed / self.mutants if self.mutants else 0.0
        return f"| {self.name} | {self.mutants} | {self.killed} | {self.survived} | {score:.0f} % |"


def run_python(targets: list[Target]) -> list[Score]:
    """One mutmut run over every target module, its results counted per target."""
    mutmut = [sys.executable, "-m", "mutmut"]
    subprocess.run([*mutmut, "run"], cwd=ROOT, check=False)
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    scores = {target.name: Score(target.name) for target in targets}
    for line in listing.splitlines():
        if (match := MUTANT.match(line)) is None:
            continue
        function = match["function"].rpartition("ǁ")[2]
        for target in targets:
            if target.module == match["module"] and function in (target.functions or (function,)):
                score = scores[target.name]
                score.mutants += 1
                if match["status"] in KILLED:
                    score.killed += 1
                else:
                    score.survivors.append(f"{match[0].strip()} (mutmut show to see it)")
    return list(scores.values())


def effective_file(mutation: SqlMutation) -> Path:
    """The last migration file defining the mutated function (the definition the database
    ends with); it must hold the original text, or the mutation no longer applies."""
    function = "function public." + mutation.name.split(":")[0] + "("
    definers = [p for p in sorted((ROOT / "migrations").glob("*.sql")) if function in p.read_text()]
    if not definers or mutation.original not in definers[-1].read_text():
        raise SystemExit(f"SQL mutation no longer applies: {mutation.name} (update SQL_MUTATIONS)")
    return definers[-1]


def run_sql() -> Score:
    score = Score("queue SQL functions")
    for mutation in SQL_MUTATIONS:
        path = effective_file(mutation)
        text = path.read_text()
        path.write_text(text.replace(mutation.original, mutation.mutated, 1))
        try:
            result = subprocess.run([*PYTEST, *SQL_TESTS], cwd=ROOT, capture_output=True)
        finally:
            path.write_text(text)
        score.mutants += 1
        if result.returncode == 0:
            score.survivors.append(f"{path.name}: {mutation.name}")
        else:
            score.killed += 1
        print(f"{'survived' if result.returncode == 0 else 'killed  '}  {mutation.name}")
    return score


def report(scores: list[Score]) -> str:
    lines = ["| module | mutants | killed | survived | score |", "| --- | --- | --- | --- | --- |"]
    lines += [score.row() for score in scores]
    total = Score("all", sum(s.mutants for s in scores), sum(s.killed for s in scores))
    total.survivors = [x for s in scores for x in s.survivors]
    lines.append(total.row())
    survivors = [f"- {x}" for x in total.survivors]
    return "\n".join([*lines, "", "Survivors:" if survivors else "No survivors.", *survivors])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="target names (see --list), or 'sql'")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "MUTATION-RUN.md")
    args = parser.parse_args()
    if args.list:
        print("\n".join([*(f"{t.name}: {t.module}" for t in TARGETS), "sql: queue SQL functions"]))
        return
    chosen = set(args.only or [*(t.name for t in TARGETS), "sql"])
    targets = [target for target in TARGETS if target.name in chosen]
    scores = run_python(targets) if targets else []
    if "sql" in chosen:
        scores.append(run_sql())
    table = report(scores)
    print(table)
    args.output.write_text(f"# Last `make mutate` run\n\n{table}\n")


if __name__ == "__main__":
    main()
