"""Compensations registered before each write and run in reverse when a remediation must be undone.

The Python SDK has no saga class; this is the idiom from Temporal's courses: register first (the
step may have side effects even when it fails), then compensate newest-first, each compensation
independent of the others' success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models import ToolCall


@dataclass
class Compensation:
    change_id: str
    call: ToolCall
    done: bool = False


@dataclass
class Saga:
    steps: list[Compensation] = field(default_factory=list)

    def register(self, change_id: str, call: ToolCall) -> None:
        self.steps.append(Compensation(change_id=change_id, call=call))

    def pending(self) -> list[Compensation]:
        """Compensations still to run, newest first."""
        return [step for step in reversed(self.steps) if not step.done]

    def __bool__(self) -> bool:
        return any(not step.done for step in self.steps)
