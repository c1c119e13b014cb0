"""Calling catalog tools in tests exactly as the worker does: ToolRunner, prepare, then run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import PreparedWrite, TargetRef, ToolCall, ToolResult

CATALOG = default_catalog()


@dataclass
class Tools:
    """One settings' runner; ``aclose`` closes its HTTP clients (call it at the end of a test)."""

    settings: Settings
    service: str
    target: str = "lab"

    def __post_init__(self) -> None:
        self.clients = TargetClients(self.settings)
        self.runner = ToolRunner(CATALOG, self.clients)

    def call(self, tool: str, resource: str = "", incident: str = "", **params: Any) -> ToolCall:
        return ToolCall(
            tool=f"{self.service}.{tool}",
            target=TargetRef(service=self.service, target=self.target, resource=resource),
            params=params,
            incident_id=incident,
        )

    async def read(self, tool: str, resource: str = "", **params: Any) -> ToolResult:
        return await self.runner.run(self.call(tool, resource, **params))

    async def prepare(
        self, tool: str, resource: str = "", incident: str = "", **params: Any
    ) -> PreparedWrite:
        return await self.runner.prepare(self.call(tool, resource, incident, **params))

    async def write(
        self, tool: str, resource: str = "", incident: str = "inc-test", **params: Any
    ) -> tuple[PreparedWrite, ToolResult]:
        """Prepare (before-state, preview, compensation), then run with that before-state."""
        call = self.call(tool, resource, incident, **params)
        prepared = await self.runner.prepare(call)
        assert prepared.error is None, prepared.error
        call = call.model_copy(update={"before": prepared.before, "change_id": "chg-test"})
        return prepared, await self.runner.run(call)

    async def compensate(self, prepared: PreparedWrite) -> ToolResult:
        """Run the compensation a write registered, as the saga would (prepared first)."""
        assert prepared.compensation is not None
        comp = prepared.compensation
        again = await self.runner.prepare(comp)
        assert again.error is None, again.error
        return await self.runner.run(comp.model_copy(update={"before": again.before}))

    async def aclose(self) -> None:
        await self.clients.aclose()
