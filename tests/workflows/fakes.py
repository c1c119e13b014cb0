"""Stand-ins for the Docker tool activities in time-skipping workflow tests.

They register under the real activity names, keep the container's state in memory and record
every write, so tests assert what the workflow did; every other activity (triage, planner, policy,
change log, approvals, locks) is the real one.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.toolsets import default_catalog
from core.models import (
    PreparedWrite,
    Reversibility,
    ToolCall,
    ToolResult,
    VerificationResult,
    VerifyRequest,
)

CATALOG = default_catalog()


class FakeDocker:
    def __init__(self, running: bool = False) -> None:
        self.running = running
        self.writes: list[ToolCall] = []

    def _inspect(self) -> dict[str, Any]:
        return {
            "name": "web",
            "state": {
                "status": "running" if self.running else "exited",
                "running": self.running,
                "exit_code": 0 if self.running else 3,
                "oom_killed": False,
                "health": "none",
                "started_at": "t0",
            },
            "restart_count": 0,
            "memory_limit": 0,
        }

    def activities(self) -> list[Any]:
        fake = self

        @activity.defn(name="docker.inspect")
        async def inspect(call: ToolCall) -> ToolResult:
            return ToolResult(
                tool=call.tool, target=str(call.target), ok=True, data=fake._inspect()
            )

        @activity.defn(name="docker.logs")
        async def logs(call: ToolCall) -> ToolResult:
            return ToolResult(
                tool=call.tool, target=str(call.target), ok=True, data={"lines": ["boom"]}
            )

        @activity.defn(name="tool.prepare")
        async def prepare(call: ToolCall) -> PreparedWrite:
            spec = CATALOG.get(call.tool)
            starting = call.tool == "docker.start"
            return PreparedWrite(
                before={"running": fake.running},
                preview=f"{'start' if starting else 'stop'} container {call.target.resource}",
                noop=fake.running if starting else not fake.running,
                reversibility=Reversibility.COMPENSATED,
                compensation=ToolCall(
                    tool="docker.stop" if starting else "docker.start", target=call.target
                ),
                default_level=spec.level,
                timeout_seconds=30,
            )

        @activity.defn(name="docker.start")
        async def start(call: ToolCall) -> ToolResult:
            fake.writes.append(call)
            fake.running = True
            return ToolResult(
                tool=call.tool, target=str(call.target), ok=True, data={"running": True}
            )

        @activity.defn(name="docker.stop")
        async def stop(call: ToolCall) -> ToolResult:
            fake.writes.append(call)
            fake.running = False
            return ToolResult(
                tool=call.tool, target=str(call.target), ok=True, data={"running": False}
            )

        @activity.defn(name="incident.verify")
        async def verify(request: VerifyRequest) -> VerificationResult:
            return VerificationResult(
                passed=fake.running, detail="running" if fake.running else "exited"
            )

        return [inspect, logs, prepare, start, stop, verify]


def activity_name(fn: Any) -> str:
    return str(fn.__temporal_activity_definition.name)


def merge(real: list[Any], fakes: list[Any]) -> list[Any]:
    """The real activities, with the fakes replacing those of the same name."""
    replaced = {activity_name(f) for f in fakes}
    return [a for a in real if activity_name(a) not in replaced] + fakes
