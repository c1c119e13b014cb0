"""Running tools the way the worker does, and an agents stack on the session's dev server, for
the toolsets whose services are single processes or fakes (no dockerd needed)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import PreparedWrite, TargetRef, ToolCall, ToolResult
from tests.conftest import make_settings
from tests.integration.stack import Stack, running_stack, target_host
from workers.lab.processes import free_port


class Tools:
    """A catalog runner over one settings object: run, prepare, apply (prepare + run with the
    captured before-state, as the workflow does) and compensate."""

    def __init__(self, **sections: Any) -> None:
        self.settings = Settings(**{"docker": [], **sections})
        self.clients = TargetClients(self.settings)
        self.runner = ToolRunner(default_catalog(), self.clients)

    def call(self, tool: str, resource: str = "", target: str = "", **params: Any) -> ToolCall:
        service = tool.split(".")[0]
        name = target or self.settings.targets(service)[0].name
        return ToolCall(
            tool=tool,
            target=TargetRef(service=service, target=name, resource=resource),
            params=params,
            incident_id="incident-0123456789abcdef",
        )

    async def run(self, tool: str, resource: str = "", **params: Any) -> ToolResult:
        return await self.runner.run(self.call(tool, resource, **params))

    async def prepare(self, tool: str, resource: str = "", **params: Any) -> PreparedWrite:
        return await self.runner.prepare(self.call(tool, resource, **params))

    async def apply(
        self, tool: str, resource: str = "", **params: Any
    ) -> tuple[PreparedWrite, ToolResult]:
        prepared = await self.prepare(tool, resource, **params)
        assert prepared.error is None, prepared.error
        call = self.call(tool, resource, **params).model_copy(
            update={"before": prepared.before, "change_id": "c0ffee00-1111"}
        )
        return prepared, await self.runner.run(call)

    async def compensate(self, prepared: PreparedWrite) -> ToolResult:
        assert prepared.compensation is not None
        again = await self.runner.prepare(prepared.compensation)
        assert again.error is None, again.error
        return await self.runner.run(
            prepared.compensation.model_copy(update={"before": again.before})
        )

    async def aclose(self) -> None:
        await self.clients.aclose()


@contextlib.asynccontextmanager
async def edge_stack(
    env: WorkflowEnvironment, tmp: Path, *, approval: dict[str, Any] | None = None, **targets: Any
) -> AsyncIterator[Stack]:
    """The real worker and intake on the dev server with only these targets configured."""
    settings = make_settings(
        tmp,
        f"tq-{uuid.uuid4().hex[:10]}",
        temporal={"address": target_host(env), "state_dir": str(tmp / "state")},
        intake={"port": free_port()},
        approval={"approvers": ["alice"], **(approval or {})},
        worker={"metrics_port": 0},
        **targets,
    )
    async with running_stack(env, None, tmp, settings=settings) as stack:  # type: ignore[arg-type]
        yield stack


def alert(name: str, *, instance: str = "edge:9100", **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "instance": instance, "severity": "warning", **labels},
        "annotations": {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }
