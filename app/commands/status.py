"""`captioner status`: the queue at a glance, from kept counters and small index reads."""

from dataclasses import dataclass, field
from typing import Any

from app.core.config import BucketPlan
from app.pipeline.jobs import JobQueue, QueueStats, SweepPass


@dataclass
class StatusReport:
    stats: list[QueueStats]
    buckets: dict[str, dict[str, int]]
    passes: list[SweepPass]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    plans: dict[str, BucketPlan] = field(default_factory=dict)


async def read_status(
    queue: JobQueue, limit: int, plans: dict[str, BucketPlan] | None = None
) -> StatusReport:
    return StatusReport(
        await queue.stats(),
        await queue.bucket_states(),
        await queue.sweep_passes(),
        await queue.recent("failed", limit) if limit else [],
        await queue.recent("skipped", limit) if limit else [],
        plans or {},
    )


def plan_line(bucket: str, plan: BucketPlan) -> str:
    """What an image of `bucket` is described with (CAPTION_LANGUAGES and
    CAPTION_BUCKET_SETTINGS over the service's model)."""
    prompt = repr(plan.prompt) if plan.prompt else "the captioner's"
    return (
        f"{bucket}: languages {', '.join(plan.languages)}; fields {', '.join(plan.fields)}; "
        f"model {plan.model or 'CAPTION_MODEL'}; prompt {prompt}"
    )


def status_lines(report: StatusReport) -> list[str]:
    """Jobs per state (in all, then per bucket), the reconciliation passes, and the newest
    failed and skipped jobs, each with its reason."""
    lines = ["jobs:"]
    for row in report.stats:
        oldest = row.state == "pending" and row.jobs
        age = f"  (oldest {format_age(row.oldest_seconds)})" if oldest else ""
        lines.append(f"  {row.state:<8} {row.jobs:>8}{age}")
    for bucket, states in report.buckets.items():
        counts = ", ".join(f"{count} {state}" for state, count in states.items())
        lines.append(f"bucket {bucket}: {counts}")
    if report.passes:
        lines.append("reconciliation passes:")
    for sweep in report.passes:
        where = "running" if sweep.running else f"ended {sweep.finished_at}"
        lines.append(
            f"  {sweep.bucket_id}: {where}, {sweep.examined:,} objects examined, "
            f"{sweep.queued:,} queued (began {sweep.started_at})"
        )
    if report.plans:
        lines.append("descriptions:")
    lines.extend(f"  {plan_line(bucket, plan)}" for bucket, plan in report.plans.items())
    for title, rows in (("recent failures", report.failed), ("recently skipped", report.skipped)):
        if rows:
            lines.append(f"{title}:")
        lines.extend(
            f"  {job['at']}  {job['bucket_id']}/{job['name']}"
            f"  ({job['attempts']} attempts): {job['reason']}"
            for job in rows
        )
    return lines


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
