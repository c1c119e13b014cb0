"""The shape every scheduled job shares: evaluate → route findings → record the run.

A failed evaluation or routing is recorded (the schedule's failure metric and alert) and then
fails the run, so it is red in the Web UI and in ``schedules list``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.contracts import Contract
    from core.schedules import (
        Evaluation,
        RouteRequest,
        RouteResult,
        RunRecord,
        ScheduledInput,
        ScheduleRunResult,
    )
    from workflows.calls import call
    from workflows.remediation import cause

NON_RETRYABLE = ["ToolInvalid", "ToolUnauthorized", "ToolNot_Found", "ValidationError"]


def evaluation_options(timeout: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    """Reading a month of series and fitting them: minutes at most, retried a few times."""
    return {
        "start_to_close_timeout": timeout,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=2),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=3,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def internal_options() -> dict[str, Any]:
    return {
        "start_to_close_timeout": timedelta(seconds=60),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=5,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def schedule_name(inp: ScheduledInput) -> str:
    return inp.schedule or workflow.info().workflow_type


async def record(
    name: str, ok: bool, started: Any, result: ScheduleRunResult, error: str = ""
) -> None:
    await call(
        contracts.SCHEDULE_FINISH,
        RunRecord(
            schedule=name,
            workflow=workflow.info().workflow_type,
            ok=ok,
            started_at=started,
            finished_at=workflow.now(),
            findings=result.findings,
            opened=result.opened,
            resolved=result.resolved,
            error=error,
        ),
        summary="record the run",
        **internal_options(),
    )


Evaluate = Callable[[], Awaitable[Evaluation]]
"""An evaluation of more than one activity (the sweeps: one per site)."""


async def run_job(
    evaluate: Contract[Evaluation] | Evaluate,
    inp: ScheduledInput,
    what: str,
    within: timedelta = timedelta(minutes=5),
) -> ScheduleRunResult:
    """Evaluate with ``evaluate`` (an activity, each attempt ``within`` this, or a function of
    several), route the findings, record the run; fail the run on errors."""
    name = schedule_name(inp)
    started = workflow.now()
    result = ScheduleRunResult(schedule=name)
    try:
        if isinstance(evaluate, Contract):
            evaluation = await call(evaluate, inp, summary=what, **evaluation_options(within))
        else:
            evaluation = await evaluate()
        result.series = evaluation.series
        result.findings = evaluation.found
        result.notes = list(evaluation.notes)
        series = f"{evaluation.series} series, " if evaluation.series else ""
        workflow.set_current_details(f"**{name}**: {series}{evaluation.found} finding(s)")
        routed: RouteResult = await call(
            contracts.FINDINGS_ROUTE,
            RouteRequest(schedule=name, evaluation=evaluation, repeat_interval=inp.repeat_interval),
            summary=f"route {evaluation.found} finding(s)",
            **internal_options(),
        )
    except ActivityError as err:
        why = cause(err)
        await record(name, False, started, result, why)
        raise ApplicationError(
            f"{name}: {why}", type="ScheduledRunFailed", non_retryable=True
        ) from err
    result.routed = routed.routed
    result.opened = sum(1 for r in routed.routed if r.action == "signal-with-start")
    result.resolved = sum(1 for r in routed.routed if r.status == "resolved")
    if routed.suppressed:
        result.notes.append(
            f"{routed.suppressed} finding(s) not re-opened: their incident closed within "
            "repeat_interval"
        )
    await record(name, True, started, result)
    return result
