"""How long each kind of row is kept: the spec's periods, configurable only upwards."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

# The spec's "Data Retention Policies" (schema.md): the shortest periods allowed without an
# explicit override.
SPEC_MINIMUM_DAYS = {
    "feed_runs_days": 90,
    "rule_executions_days": 90,
    "unmatched_signals_days": 30,
    "snapshot_downsample_days": 90,
    "snapshot_drop_days": 730,
    "audit_archive_days": 90,
    "audit_delete_days": 730,
}
MIN_PARTITION_MONTHS_AHEAD = 2


class RetentionPolicyError(ValueError):
    """A retention period that the spec does not allow (or that contradicts another)."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    feed_runs_days: int = 90
    rule_executions_days: int = 90
    unmatched_signals_days: int = 30
    snapshot_downsample_days: int = 90
    snapshot_drop_days: int = 730
    audit_archive_days: int = 90
    audit_delete_days: int = 730
    partition_months_ahead: int = MIN_PARTITION_MONTHS_AHEAD
    dagster_run_days: int = 90
    batch_size: int = 5000
    # Snapshots are downsampled this many hours at a time, each chunk one transaction.
    downsample_chunk_hours: int = 24
    # Periods shorter than the spec's need this, on purpose (e.g. a test or a legal request).
    allow_shorter_than_spec: bool = False

    def __post_init__(self) -> None:
        problems = []
        for name, minimum in SPEC_MINIMUM_DAYS.items():
            value = getattr(self, name)
            if value < 1:
                problems.append(f"{name}={value} must be at least 1")
            elif value < minimum and not self.allow_shorter_than_spec:
                problems.append(
                    f"{name}={value} is shorter than the spec's {minimum} days "
                    "(set allow_shorter_than_spec to override)"
                )
        if self.snapshot_drop_days <= self.snapshot_downsample_days:
            problems.append("snapshot_drop_days must exceed snapshot_downsample_days")
        if self.audit_delete_days < self.audit_archive_days:
            problems.append("audit_delete_days must not be shorter than audit_archive_days")
        if self.partition_months_ahead < MIN_PARTITION_MONTHS_AHEAD:
            problems.append(
                f"partition_months_ahead={self.partition_months_ahead} is below "
                f"{MIN_PARTITION_MONTHS_AHEAD}"
            )
        if min(self.dagster_run_days, self.batch_size, self.downsample_chunk_hours) < 1:
            problems.append(
                "dagster_run_days, batch_size and downsample_chunk_hours must be at least 1"
            )
        if problems:
            raise RetentionPolicyError("; ".join(problems))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RetentionPolicy:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def cutoff(self, now: datetime, days_field: str) -> datetime:
        return now - timedelta(days=getattr(self, days_field))
