#!/usr/bin/env python3
"""Mutation testing of the core guarantees (`make mutate`; not part of CI).

Python: cosmic-ray (https://cosmic-ray.readthedocs.io) mutates each target module in place,
one mutant at a time, and runs that module's behaviour tests; a mutant the tests still pass
with has survived. SQL: each entry of SQL_MUTATIONS replaces one piece of the effective
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
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
# the Python targets' tests are in-process: no harness (conftest), fewer fixed examples
UNIT = [*PYTEST, "--noconftest", "-p", "tests.mutate_profile"]


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # only mutants inside these (default: the whole module)


CLASSIFY = ("classify", "_classify_status", "_body", "_error_detail", "_model_not_supported")
TARGETS = (
    Target("auth", "app/api/auth.py", ("tests/unit/test_auth_rules.py",)),
    Target(
        "webhook triage", "app/api/webhook.py", ("tests/unit/test_webhook_triage.py",), ("triage",)
    ),
    Target(
        "failure classes",
        "app/captioning/hf.py",
        ("tests/unit/test_failure_classes.py",),
        (*CLASSIFY, "_hint"),
    ),
    Target(
        "failure classes (errors.py)",
        "app/core/errors.py",
        ("tests/unit/test_failure_classes.py", "tests/unit/test_settle.py"),
    ),
    Target("worker: settle and retry", "app/pipeline/settle.py", ("tests/unit/test_settle.py",)),
    Target("worker: backoff", "app/pipeline/backoff.py", ("tests/unit/test_captioner_health.py",)),
    Target(
        "worker: pause, probe, resume",
        "app/pipeline/health.py",
        ("tests/unit/test_captioner_health.py", "tests/unit/test_settle.py"),
    ),
    Target("bounded reading", "app/core/bounded.py", ("tests/unit/test_bounded.py",)),
    Target(
        "image preparation",
        "app/core/images.py",
        ("tests/unit/test_image_modes.py", "tests/unit/test_image_limits.py"),
        ("prepare_image", "_to_rgb", "_too_many_pixels"),
    ),
)


@dataclass(frozen=True)
class SqlMutation:
    name: str
    original: str
    mutated: str


SQL_TESTS = (
    "tests/integration/test_queue_guarantees.py",
    "tests/integration/test_scale.py",
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


def run_python(target: Target, workdir: Path) -> Score:
    config = workdir / f"{target.module.replace('/', '_')}.toml"
    session = config.with_suffix(".sqlite")
    command = " ".join([*UNIT, *target.tests])
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        "timeout = 300.0\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    cosmic_ray = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic_ray, "init", str(config), str(session)], cwd=ROOT, check=True)
    if target.functions:
        keep_only(session, target.functions)
    subprocess.run([*cosmic_ray, "exec", str(config), str(session)], cwd=ROOT, check=True)
    dump = subprocess.run(
        [*cosmic_ray, "dump", str(session)], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    score = Score(target.name)
    for line in dump.splitlines():
        job, result = json.loads(line)
        if result is None or result.get("test_outcome") == "incompetent":
            continue
        score.mutants += 1
        if result["test_outcome"] == "survived":
            (mutation,) = job["mutations"]
            score.survivors.append(
                f"{mutation['module_path']}:{mutation['start_pos'][0]} "
                f"{mutation['operator_name']} (occurrence {mutation['occurrence']}) "
                f"in {mutation.get('definition_name')}"
            )
        else:
            score.killed += 1
    return score


def keep_only(session: Path, functions: tuple[str, ...]) -> None:
    """Drop the session's mutants outside `functions` (cosmic-ray mutates whole modules)."""
    from cosmic_ray.work_db import use_db  # installed by `make mutate` only

    with use_db(str(session)) as db:
        items = list(db.work_items)
        db.clear()
        db.add_work_items(
            item
            for item in items
            if all(
                (m.definition_name or "").rpartition(".")[2] in functions for m in item.mutations
            )
        )


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
    scores = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in TARGETS:
            if target.name in chosen:
                scores.append(run_python(target, Path(tmp)))
    if "sql" in chosen:
        scores.append(run_sql())
    table = report(scores)
    print(table)
    args.output.write_text(f"# Last `make mutate` run\n\n{table}\n")


if __name__ == "__main__":
    main()
