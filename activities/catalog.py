"""The tool catalog: one registry that serves the planner, the workflow, the CLI and the docs.

A tool is declared once, HolmesGPT-style, by the service module that implements it: name,
description, a pydantic parameter model, read or write, default risk level, reversibility and, for
writes, how to capture the before-state, preview the change exactly (dry-run) and compensate it.
Every tool becomes a Temporal activity of the same name; nothing else calls a target.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.config import Settings
from core.models import (
    Reversibility,
    RiskLevel,
    TargetRef,
    ToolError,
    ToolErrorKind,
    ToolKind,
)
from core.targets import Target
from core.units import parse_duration

P = TypeVar("P", bound=BaseModel)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaxAgeParams(BaseModel):
    """For tools that judge staleness (backups, snapshots)."""

    model_config = ConfigDict(extra="forbid")
    max_age: str = Field(default="26h", description="older than this is stale (26h, 7d)")

    @field_validator("max_age")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        if not isinstance(parse_duration(value), timedelta):
            raise ValueError(f"{value!r} is not a duration such as 26h or 7d")
        return value

    @property
    def max_age_seconds(self) -> float:
        parsed = parse_duration(self.max_age)
        assert isinstance(parsed, timedelta)
        return parsed.total_seconds()


class ToolFailure(Exception):
    """Raised by tool code; becomes a typed ``ToolError`` (or a retry, when transient)."""

    def __init__(
        self, kind: ToolErrorKind, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying later: the target did not answer, or asked us to slow down."""
        return self.kind in (ToolErrorKind.UNREACHABLE, ToolErrorKind.RATE_LIMITED)

    def to_error(self) -> ToolError:
        return ToolError(kind=self.kind, message=self.message)


class TargetClients:
    """Per-target client cache: the one way any tool reaches a configured target."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], Any] = {}

    def target(self, service: str, name: str) -> Target:
        found = self.settings.find_target(service, name)
        if found is None:
            configured = ", ".join(t.name for t in self.settings.targets(service)) or "none"
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"no {service} target named {name!r} is configured (configured: {configured})",
            )
        return found

    def client(self, service: str, name: str, factory: Callable[[Any], Any]) -> Any:
        key = (service, name)
        if key not in self._clients:
            self._clients[key] = factory(self.target(service, name))
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            closer = getattr(client, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    pass
        self._clients.clear()

    async def aclose(self) -> None:
        """Close every client, awaiting those that close asynchronously (connection pools)."""
        for client in list(self._clients.values()):
            closer = getattr(client, "aclose", None) or getattr(client, "close", None)
            if not callable(closer):
                continue
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                pass
        self._clients.clear()


@dataclass
class ToolContext(Generic[P]):
    """What a tool function receives: its validated parameters, target and clients."""

    ref: TargetRef
    params: P
    clients: TargetClients
    before: dict[str, Any] | None = None
    change_id: str = ""
    incident_id: str = ""
    restores: str = ""

    @property
    def settings(self) -> Settings:
        return self.clients.settings

    def where(self) -> str:
        return f"{self.ref.resource}@{self.ref.target}" if self.ref.resource else self.ref.target


ToolFn = Callable[[ToolContext[Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
CaptureFn = Callable[[ToolContext[Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
PreviewFn = Callable[[ToolContext[Any], dict[str, Any]], str]
CompensateFn = Callable[
    [ToolContext[Any], dict[str, Any]], "tuple[str, dict[str, Any]] | Reversibility | None"
]
"""A compensation is (tool, params); ``None`` when nothing needs undoing; IRREVERSIBLE when it can't."""
TranslateFn = Callable[[Exception], "ToolFailure | None"]
FactsFn = Callable[[ToolContext[Any], dict[str, Any]], Any]
"""The stable facts a human approves (what changes, not how long it has been so), for a tool
whose preview shows values that move between two looks (seconds, ages, usage)."""
RisksFn = Callable[[ToolContext[Any], dict[str, Any]], list[str]]
"""What this call would do beyond the tool's usual, from its parameters and the before-state
(e.g. "memory 64 MiB → 6 MiB shrinks the container"): each raises the write to HARD."""
NoopFn = Callable[[ToolContext[Any], dict[str, Any]], bool]
"""True when the target is already in the state the write would produce (re-checked after a wait)."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    service: str
    description: str
    params: type[BaseModel]
    kind: ToolKind
    run: ToolFn
    level: RiskLevel = RiskLevel.NONE
    reversibility: Reversibility = Reversibility.STATELESS
    capture: CaptureFn | None = None
    preview: PreviewFn | None = None
    compensate: CompensateFn | None = None
    is_noop: NoopFn | None = None
    facts: FactsFn | None = None
    risks: RisksFn | None = None
    needs_resource: bool = True
    timeout: timedelta = timedelta(seconds=30)
    translate: TranslateFn | None = None

    @property
    def is_write(self) -> bool:
        return self.kind is ToolKind.WRITE

    def parse_params(self, raw: dict[str, Any]) -> BaseModel:
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolFailure(
                ToolErrorKind.INVALID, f"invalid parameters for {self.name}: {problems}"
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "kind": self.kind.value,
            "level": self.level.value if self.is_write else None,
            "reversibility": self.reversibility.value if self.is_write else None,
            "dry_run": self.is_write,
            "needs_resource": self.needs_resource,
            "description": self.description,
            "parameters": self.params.model_json_schema(),
        }


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Run sync tool code (docker SDK, SQLAlchemy) in a thread so the event loop stays free."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await asyncio.to_thread(fn, *args)


@dataclass
class Toolset:
    """A service's tools, declared with decorators next to their implementation."""

    service: str
    description: str
    translate: TranslateFn | None = None
    """Maps the service client's exceptions to typed failures (unreachable, not found...)."""
    probe: Callable[[Any], str] | None = None
    """Checks one configured target (for ``doctor``): returns what it found or raises."""
    canonical: Callable[[ToolContext[Any]], str | Awaitable[str]] | None = None
    """The one name of the resource in ``ctx.ref`` (a container id prefix → its name, ``0100``
    → ``lxc/100``), so policy patterns, the lock and the write count see one target."""
    tools: list[ToolSpec] = field(default_factory=list)

    def read(
        self,
        name: str,
        description: str,
        params: type[BaseModel] = NoParams,
        *,
        needs_resource: bool = True,
        timeout: timedelta = timedelta(seconds=30),
    ) -> Callable[[ToolFn], ToolFn]:
        def register(fn: ToolFn) -> ToolFn:
            self.tools.append(
                ToolSpec(
                    name=f"{self.service}.{name}",
                    service=self.service,
                    description=description,
                    params=params,
                    kind=ToolKind.READ,
                    run=fn,
                    needs_resource=needs_resource,
                    timeout=timeout,
                    translate=self.translate,
                )
            )
            return fn

        return register

    def write(
        self,
        name: str,
        description: str,
        params: type[BaseModel] = NoParams,
        *,
        level: RiskLevel,
        reversibility: Reversibility,
        capture: CaptureFn,
        preview: PreviewFn,
        compensate: CompensateFn | None = None,
        is_noop: NoopFn | None = None,
        facts: FactsFn | None = None,
        risks: RisksFn | None = None,
        needs_resource: bool = True,
        timeout: timedelta = timedelta(seconds=120),
    ) -> Callable[[ToolFn], ToolFn]:
        if reversibility is Reversibility.COMPENSATED and compensate is None:
            raise ValueError(f"{self.service}.{name}: a compensated tool needs `compensate`")

        def register(fn: ToolFn) -> ToolFn:
            self.tools.append(
                ToolSpec(
                    name=f"{self.service}.{name}",
                    service=self.service,
                    description=description,
                    params=params,
                    kind=ToolKind.WRITE,
                    run=fn,
                    level=level,
                    reversibility=reversibility,
                    capture=capture,
                    preview=preview,
                    compensate=compensate,
                    is_noop=is_noop,
                    facts=facts,
                    risks=risks,
                    needs_resource=needs_resource,
                    timeout=timeout,
                    translate=self.translate,
                )
            )
            return fn

        return register


class Catalog:
    """All tools by name. Built once per process from the service toolsets."""

    def __init__(self, toolsets: Iterable[Toolset]) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self.toolsets = list(toolsets)
        for toolset in self.toolsets:
            for spec in toolset.tools:
                if spec.name in self._tools:
                    raise ValueError(f"tool {spec.name} is declared twice")
                self._tools[spec.name] = spec

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Any:
        return iter(sorted(self._tools.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no tool named {name!r}") from None

    def for_service(self, service: str) -> list[ToolSpec]:
        return [s for s in self if s.service == service]

    def toolset(self, service: str) -> Toolset | None:
        return next((ts for ts in self.toolsets if ts.service == service), None)
