"""Turns catalog tools into Temporal activities and runs them with typed results.

Each tool is an activity named after it (``docker.start``), so the Web UI's timeline reads like the
runbook. ``tool.prepare`` captures a write's before-state, exact preview and compensation before
any gate or execution, so approvals show the real change and the saga can undo it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import (
    Catalog,
    NoParams,
    TargetClients,
    ToolContext,
    ToolFailure,
    ToolSpec,
    call_maybe_async,
)
from core import contracts
from core.binding import binding
from core.metrics import TOOL_CALLS, TOOL_LATENCY
from core.models import (
    PreparedWrite,
    Reversibility,
    RiskLevel,
    TargetRef,
    ToolCall,
    ToolErrorKind,
    ToolResult,
)
from core.redact import redact, redact_text

log = logging.getLogger(__name__)

UNREACHABLE_ERROR_TYPE = "ToolUnreachable"


def retryable(failure: ToolFailure) -> ApplicationError:
    """A transient failure as Temporal's retry sees it (after the API's Retry-After, if any)."""
    return ApplicationError(
        redact_text(failure.message),
        type=UNREACHABLE_ERROR_TYPE,
        next_retry_delay=(
            timedelta(seconds=min(failure.retry_after, 300)) if failure.retry_after else None
        ),
    )


class ToolRunner:
    """Validates a call, resolves its target, runs the tool and types every failure."""

    def __init__(self, catalog: Catalog, clients: TargetClients) -> None:
        self.catalog = catalog
        self.clients = clients

    def context(self, spec: ToolSpec, call: ToolCall) -> ToolContext[Any]:
        if call.target.service != spec.service:
            raise ToolFailure(
                ToolErrorKind.INVALID,
                f"{spec.name} acts on {spec.service} targets, not on {call.target}",
            )
        self.clients.target(spec.service, call.target.target)
        if spec.needs_resource and not call.target.resource:
            raise ToolFailure(
                ToolErrorKind.INVALID, f"{spec.name} needs a resource in its target ({call.target})"
            )
        params = spec.parse_params(call.params)
        return ToolContext(
            ref=call.target,
            params=params,
            clients=self.clients,
            before=call.before,
            change_id=call.change_id,
            incident_id=call.incident_id,
            restores=call.restores,
        )

    async def _invoke(self, spec: ToolSpec, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await call_maybe_async(fn, *args)
        except ToolFailure:
            raise
        except Exception as exc:
            failure = spec.translate(exc) if spec.translate else None
            if failure is None:
                raise
            raise failure from exc

    async def run(self, call: ToolCall, *, raise_transient: bool = False) -> ToolResult:
        """Run a tool. Transient failures raise (for Temporal to retry) when asked to."""
        started = time.monotonic()
        outcome = "ok"
        try:
            spec = self.catalog.get(call.tool)
            ctx = self.context(spec, call)
            if spec.is_write and call.dry_run:
                prepared = await self._prepare(spec, ctx)
                data: dict[str, Any] = {"dry_run": True, "preview": prepared.preview}
            else:
                data = await self._invoke(spec, spec.run, ctx)
            summary = str(data.pop("_summary", "")) if isinstance(data, dict) else ""
            return ToolResult(
                tool=call.tool, target=str(call.target), ok=True, data=redact(data), summary=summary
            )
        except ToolFailure as failure:
            outcome = failure.kind.value
            if failure.transient and raise_transient:
                raise retryable(failure) from failure
            error = failure.to_error()
            error.message = redact_text(error.message)
            return ToolResult(tool=call.tool, target=str(call.target), ok=False, error=error)
        except Exception as exc:  # a bug or an unmapped client error: typed, never data-shaped
            outcome = "failed"
            log.exception("tool %s failed unexpectedly", call.tool)
            return ToolResult(
                tool=call.tool,
                target=str(call.target),
                ok=False,
                error=ToolFailure(
                    ToolErrorKind.FAILED, redact_text(f"{type(exc).__name__}: {exc}")
                ).to_error(),
            )
        finally:
            kind = (
                self.catalog.get(call.tool).kind.value if call.tool in self.catalog else "unknown"
            )
            TOOL_CALLS.labels(call.tool, kind, outcome).inc()
            TOOL_LATENCY.labels(call.tool).observe(time.monotonic() - started)

    async def _prepare(self, spec: ToolSpec, ctx: ToolContext[Any]) -> PreparedWrite:
        assert spec.capture is not None and spec.preview is not None
        before = await self._invoke(spec, spec.capture, ctx)
        preview = spec.preview(ctx, before)
        compensation = None
        reversibility = spec.reversibility
        if spec.compensate is not None:
            undo = spec.compensate(ctx, before)
            if isinstance(undo, tuple):
                tool, params = undo
                compensation = ToolCall(tool=tool, target=ctx.ref, params=params, before=None)
            elif undo is Reversibility.IRREVERSIBLE:
                reversibility = Reversibility.IRREVERSIBLE
            elif reversibility is Reversibility.COMPENSATED:
                reversibility = Reversibility.STATELESS  # nothing changed that needs undoing
        facts = spec.facts(ctx, before) if spec.facts else preview
        # Undoing a change puts back what was there: not a new risk, whatever direction it goes.
        risks = spec.risks(ctx, before) if spec.risks and not ctx.restores else []
        if compensation is not None:  # into history: text-redacted like the rest
            compensation.params = redact(compensation.params, mask_secret_keys=False)
        return PreparedWrite(
            risks=risks,
            binding=binding(spec.name, str(ctx.ref), ctx.params.model_dump(mode="json"), facts),
            # History, the approval request and the Web UI see these: no secret text in them
            # (toolsets keep secrets out of before-states; this is the net under them).
            before=redact(before, mask_secret_keys=False),
            preview=redact_text(preview),
            noop=bool(spec.is_noop and spec.is_noop(ctx, before)),
            reversibility=reversibility,
            compensation=compensation,
            default_level=spec.level,
            timeout_seconds=spec.timeout.total_seconds(),
        )

    async def canonical(self, ref: TargetRef) -> tuple[TargetRef, str]:
        """``ref`` with its resource's one name, and a note when it differed (or could not be
        resolved: then the name is kept as given, and nothing can be written there anyway)."""
        toolset = self.catalog.toolset(ref.service)
        if toolset is None or toolset.canonical is None or not ref.resource:
            return ref, ""
        ctx: ToolContext[Any] = ToolContext(ref=ref, params=NoParams(), clients=self.clients)
        try:
            name = await call_maybe_async(toolset.canonical, ctx)
        except Exception as exc:
            failure = toolset.translate(exc) if toolset.translate else None
            why = failure.message if failure else f"{type(exc).__name__}: {exc}"
            return ref, f"resource {ref.resource!r} kept as named: {redact_text(why)[:200]}"
        if name == ref.resource:
            return ref, ""
        return ref.model_copy(update={"resource": name}), (
            f"resource {ref.resource!r} is {name!r} (its one name: policy, lock and limits use it)"
        )

    async def prepare(self, call: ToolCall) -> PreparedWrite:
        level = RiskLevel.HARD  # an unknown tool: the strictest, it will fail anyway
        try:
            spec = self.catalog.get(call.tool)
            level = spec.level
            if not spec.is_write:
                raise ToolFailure(ToolErrorKind.INVALID, f"{spec.name} is a read tool, not a write")
            return await self._prepare(spec, self.context(spec, call))
        except ToolFailure as failure:
            if failure.transient:
                raise retryable(failure) from failure
            return PreparedWrite(
                preview="",
                reversibility=Reversibility.IRREVERSIBLE,
                default_level=level,  # the change log shows the tool's real level
                error=ToolFailure(failure.kind, redact_text(failure.message)).to_error(),
            )


HEARTBEAT_EVERY = 2.0


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a tool runs, so a dead worker is noticed in seconds, not at the timeout."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ToolActivities:
    """The activity objects a worker registers: one per tool, plus ``tool.prepare``."""

    def __init__(
        self,
        runner: ToolRunner,
        site: str = "",
        site_of: Callable[[TargetRef], str] | None = None,
    ) -> None:
        """``site``/``site_of``: this worker acts only on the targets of its own site (the main
        worker on those at none), whatever a task queue hands it."""
        self.runner = runner
        self.site = site
        self.site_of = site_of

    def check_site(self, call: ToolCall) -> None:
        if self.site_of is None:
            return
        where = self.site_of(call.target)
        if where != self.site:
            raise ApplicationError(
                f"{call.target} is at {f'site {where!r}' if where else 'no site'}; this worker "
                f"serves {f'site {self.site!r}' if self.site else 'the main queue'}: not run",
                type="ToolInvalid",
                non_retryable=True,
            )

    def _activity_for(self, spec: ToolSpec) -> Callable[..., Any]:
        runner = self.runner
        name = spec.name

        async def run_tool(call: ToolCall) -> ToolResult:
            if call.tool != name:
                call = call.model_copy(update={"tool": name})
            self.check_site(call)
            async with heartbeating():
                return await runner.run(call, raise_transient=True)

        run_tool.__name__ = run_tool.__qualname__ = "run_" + name.replace(".", "_")
        return activity.defn(name=name)(run_tool)

    def all(self) -> list[Callable[..., Any]]:
        runner = self.runner

        @activity.defn(name=contracts.PREPARE.name)
        async def prepare(call: ToolCall) -> PreparedWrite:
            self.check_site(call)
            async with heartbeating():
                return await runner.prepare(call)

        return [prepare, *(self._activity_for(spec) for spec in runner.catalog)]


def ref(service: str, target: str, resource: str = "") -> TargetRef:
    return TargetRef(service=service, target=target, resource=resource)
