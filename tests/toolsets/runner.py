"""Running catalog tools in tests exactly as the worker does (ToolRunner: validation, target,
typed failures, redaction), against the real services the conftest fixtures start."""

from __future__ import annotations

from typing import Any

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import PreparedWrite, TargetRef, ToolCall, ToolResult


class Tools:
    def __init__(self, settings: Settings, default_target: str) -> None:
        self.clients = TargetClients(settings)
        self.runner = ToolRunner(default_catalog(), self.clients)
        self.default_target = default_target

    def call(self, tool: str, params: dict[str, Any] | None, target: str | None) -> ToolCall:
        return ToolCall(
            tool=tool, target=TargetRef.parse(target or self.default_target), params=params or {}
        )

    async def run(
        self, tool: str, params: dict[str, Any] | None = None, target: str | None = None
    ) -> ToolResult:
        return await self.runner.run(self.call(tool, params, target))

    async def ok(
        self, tool: str, params: dict[str, Any] | None = None, target: str | None = None
    ) -> dict[str, Any]:
        result = await self.run(tool, params, target)
        assert result.ok, result.error
        return result.data

    async def prepare(
        self, tool: str, params: dict[str, Any] | None = None, target: str | None = None
    ) -> PreparedWrite:
        return await self.runner.prepare(self.call(tool, params, target))

    async def apply(
        self, tool: str, params: dict[str, Any] | None = None, target: str | None = None
    ) -> tuple[PreparedWrite, ToolResult]:
        """prepare (before-state, preview, compensation), then run with that before-state —
        the order the incident workflow uses."""
        prepared = await self.prepare(tool, params, target)
        assert prepared.error is None, prepared.error
        call = self.call(tool, params, target).model_copy(update={"before": prepared.before})
        return prepared, await self.runner.run(call)

    async def compensate(self, prepared: PreparedWrite) -> ToolResult:
        assert prepared.compensation is not None
        return await self.runner.run(prepared.compensation)

    async def aclose(self) -> None:
        await self.clients.aclose()
