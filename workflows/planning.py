"""The planner chain, run inside IncidentWorkflow: LLM provider A → B → ... → the runbook planner.

Deterministic: ``llm.route`` (an activity) fixes the providers and their order in history; each
provider is asked through its own ``llm.plan`` activity (the Web UI names the provider), retried
under that provider's policy; when it gives up, fails non-retryably, or answers an invalid plan
twice (one repair round with the validator's errors), the next provider is asked. The route's
``deadline`` bounds the whole chain: each call's schedule-to-close is what is left of it (so no
provider's retries or Retry-After waits outlast it), and once it has passed the remaining providers
are skipped. The runbook planner always ends the chain, so an incident is planned with no LLM, a
broken or slow one, or none left in the month's budget. Every attempt is recorded on the plan.

Defence in depth: even a plan the activity validated is checked again here against the route
(offered tools, the incident's target, the runbook's action limit) before the gate can see it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from core.models import Plan, PlannerAttempt, PlanRequest
    from core.planning import (
        LLM_BUDGET,
        LLM_DEADLINE,
        NON_RETRYABLE,
        LLMPlanOutcome,
        LLMPlanRequest,
        LLMRepair,
        LLMRoute,
        ProviderRoute,
    )
    from workflows import options

# litellm's import (first call in a worker) and validation run inside the activity too.
ACTIVITY_MARGIN = timedelta(seconds=30)
ROUNDS: tuple[Literal["plan", "repair"], ...] = ("plan", "repair")


def llm_options(provider: ProviderRoute, left: timedelta | None = None) -> dict[str, Any]:
    """The provider's own retry policy, cut off at what is left of the chain's deadline."""
    bound = {} if left is None else {"schedule_to_close_timeout": left}
    return {
        **bound,
        "start_to_close_timeout": provider.timeout + ACTIVITY_MARGIN,
        "retry_policy": RetryPolicy(
            initial_interval=provider.backoff,
            backoff_coefficient=2.0,
            maximum_interval=max(provider.max_backoff, provider.backoff),
            maximum_attempts=provider.max_attempts,
            non_retryable_error_types=[*NON_RETRYABLE, *options.NON_RETRYABLE],
        ),
    }


def _failure(err: ActivityError) -> tuple[str, str]:
    """(error type, reason) of a provider the activity gave up on."""
    cause = err.cause
    retry = err.retry_state.name.lower().replace("_", " ") if err.retry_state else ""
    suffix = f" ({retry})" if retry else ""
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", f"{cause.message}{suffix}"[:800]
    if isinstance(cause, ActivityTimeoutError):
        return "ActivityTimeout", f"timed out ({cause.type.name if cause.type else ''}){suffix}"
    return type(cause).__name__, f"{cause}{suffix}"[:800]


def recheck(plan: Plan, request: PlanRequest, route: LLMRoute) -> list[str]:
    """The workflow's own check of an LLM plan against what the route allowed."""
    problems: list[str] = []
    target = str(request.triage.target)
    if len(plan.actions) > route.max_actions:
        problems.append(f"{len(plan.actions)} actions exceed the limit of {route.max_actions}")
    for action in plan.actions:
        if action.tool not in route.allowed_tools:
            problems.append(f"{action.id}: {action.tool} was not offered")
        if str(action.target) != target:
            problems.append(f"{action.id}: target {action.target} is not {target}")
    return problems


class PlannerChain:
    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self.attempts: list[PlannerAttempt] = []
        self.notes: list[str] = []
        self.deadline: datetime | None = None

    def _left(self) -> timedelta | None:
        """What is left of the chain's deadline (None: no deadline in this history)."""
        return None if self.deadline is None else self.deadline - workflow.now()

    def _out_of_time(self, providers: list[ProviderRoute], route: LLMRoute) -> bool:
        left = self._left()
        if left is None or left > timedelta(0):
            return False
        assert route.deadline is not None
        for provider in providers:
            self.attempts.append(
                PlannerAttempt(
                    provider=provider.name,
                    model=provider.model,
                    outcome="skipped",
                    error_type=LLM_DEADLINE,
                    reason=f"the LLM deadline of {route.deadline.total_seconds():g}s had passed",
                )
            )
        self.notes.append(
            f"LLM deadline of {route.deadline.total_seconds():g}s passed: "
            + (f"{len(providers)} provider(s) not asked" if providers else "no repair round")
        )
        return True

    async def run(self) -> Plan:
        route = await workflow.execute_activity(
            "llm.route",
            self.request,
            result_type=LLMRoute,
            summary="LLM route",
            **options.internal(),
        )
        if route.budget_exhausted:
            self.attempts.append(
                PlannerAttempt(
                    provider="llm", outcome="skipped", error_type=LLM_BUDGET, reason=route.reason
                )
            )
            self.notes.append(route.reason)
        elif route.configured:
            self.notes.append(f"LLM chain: {route.reason}")
        if route.deadline is not None:
            self.deadline = workflow.now() + route.deadline
        for position, provider in enumerate(route.providers):
            if self._out_of_time(route.providers[position:], route):
                break
            plan = await self._ask(provider, route)
            if plan is not None:
                return self._finish(plan)
            if self.attempts and self.attempts[-1].error_type == LLM_BUDGET:
                self.notes.append(f"{self.attempts[-1].reason}; remaining providers skipped")
                break
        if route.providers:
            self.notes.append("no LLM provider produced a valid plan: runbook planner used")
        plan = await workflow.execute_activity(
            "plan.runbook",
            self.request,
            result_type=Plan,
            summary="runbook planner",
            **options.internal(),
        )
        return self._finish(plan)

    def _finish(self, plan: Plan) -> Plan:
        return plan.model_copy(
            update={"attempts": self.attempts, "notes": [*self.notes, *plan.notes]}
        )

    async def _ask(self, provider: ProviderRoute, route: LLMRoute) -> Plan | None:
        repair: LLMRepair | None = None
        for round_ in ROUNDS:
            if round_ == "repair" and self._out_of_time([], route):
                return None
            started = workflow.now()
            label = f"LLM {provider.name} ({provider.model})" + (
                " repair" if round_ == "repair" else ""
            )
            attempt = PlannerAttempt(
                provider=provider.name,
                model=provider.model,
                round=round_,
                outcome="failed",
                started_at=started,
            )
            self.attempts.append(attempt)
            try:
                result = await workflow.execute_activity(
                    "llm.plan",
                    LLMPlanRequest(provider=provider, request=self.request, repair=repair),
                    result_type=LLMPlanOutcome,
                    summary=label,
                    **llm_options(provider, self._left()),
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise asyncio.CancelledError("the workflow was cancelled") from err
                attempt.error_type, attempt.reason = _failure(err)
                attempt.finished_at = workflow.now()
                self.notes.append(f"{label}: {attempt.error_type}: {attempt.reason}")
                return None
            usage = result.usage
            attempt.tokens_in, attempt.tokens_out = usage.tokens_in, usage.tokens_out
            attempt.cost_usd, attempt.latency_s = usage.cost_usd, usage.latency_s
            attempt.cached = usage.cached
            attempt.finished_at = workflow.now()
            errors = list(result.errors)
            if result.plan is not None:
                errors = recheck(result.plan, self.request, route)
                if not errors:
                    attempt.outcome = "ok"
                    self.notes.append(
                        f"plan by {label}" + (" (cached answer)" if usage.cached else "")
                    )
                    return result.plan
            attempt.outcome = "invalid"
            attempt.error_type = "LLMInvalidPlan"
            attempt.reason = "; ".join(errors)[:800]
            self.notes.append(f"{label}: invalid plan: {attempt.reason}")
            previous = result.raw_output or (result.plan.model_dump_json() if result.plan else "")
            repair = LLMRepair(previous_output=previous, errors=errors)
        return None


async def plan_incident(request: PlanRequest) -> Plan:
    """Ask the configured LLM providers in order; the runbook planner is always the last."""
    return await PlannerChain(request).run()
