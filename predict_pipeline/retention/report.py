"""What a retention step did (or, in a dry run, would do), as numbers and short lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class StepReport:
    step: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(value)

    def summary(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.counts.items()) or "nothing to do"
        return f"{self.step}: {shown}"
