"""The LLM planner's activities: ``llm.route`` (which providers, in which order) and ``llm.plan``.

``llm.plan`` asks one provider once per attempt. Temporal retries it under that provider's policy
(the typed errors of ``client.classify`` say which failures are worth retrying and when), and the
workflow moves to the next provider when it gives up. A cached answer (same provider and prompt,
within ``llm.cache_ttl``) is served without a call; every real call is written to the usage ledger
that enforces ``llm.monthly_budget_usd``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import Catalog
from activities.llm import client
from activities.llm.prompt import RAW_OUTPUT_LIMIT, build_messages, offered_tools
from activities.llm.validate import draft_schema, parse_answer, validate_draft
from activities.store import Store
from core import contracts
from core.config import LLMProvider, LLMSettings, Settings
from core.metrics import LLM_COST, LLM_LATENCY, LLM_MONTH_SPEND, LLM_REQUESTS, LLM_TOKENS
from core.models import PlanRequest
from core.planning import (
    LLM_BUDGET,
    LLM_CONFIG,
    LLM_ERROR,
    LLM_RATE_LIMITED,
    LLM_REJECTED,
    LLM_SERVER_ERROR,
    LLM_TIMEOUT,
    LLM_UNREACHABLE,
    LLMPlanOutcome,
    LLMPlanRequest,
    LLMRoute,
    LLMUsage,
    ProviderRoute,
)
from core.redact import redact_text

log = logging.getLogger(__name__)

OUTCOME_LABELS = {
    LLM_RATE_LIMITED: "rate_limited",
    LLM_TIMEOUT: "timeout",
    LLM_SERVER_ERROR: "server_error",
    LLM_REJECTED: "rejected",
    LLM_UNREACHABLE: "unreachable",
    LLM_CONFIG: "config",
    LLM_ERROR: "error",
}


def select_order(llm: LLMSettings, request: PlanRequest) -> tuple[list[int], str]:
    """Provider indexes in the order to ask them, and why (severity × complexity)."""
    rule = llm.selection
    triage = request.triage
    severe = triage.severity in rule.strong_severities
    complexity: list[str] = []
    if triage.incident_type in rule.complex_incident_types:
        complexity.append(f"incident type {triage.incident_type}")
    candidates = len(triage.runbook.remediations) if triage.runbook else 0
    if candidates >= rule.complex_min_remediations:
        complexity.append(f"{candidates} candidate remediations")
    failed = [e.key for e in request.evidence if not e.ok]
    if rule.complex_if_diagnostics_failed and failed:
        complexity.append(f"failed diagnostics {', '.join(failed)}")
    first = "strong" if severe and complexity else "cheap"
    order = [i for i, p in enumerate(llm.providers) if p.tier == first]
    order += [i for i, p in enumerate(llm.providers) if p.tier != first]
    shape = f"complex ({'; '.join(complexity)})" if complexity else "not complex"
    return order, f"severity {triage.severity}, {shape}: {first} tier first"


def cache_key(provider: LLMProvider, messages: list[dict[str, str]]) -> str:
    material = {
        "model": provider.model,
        "api_base": provider.api_base or "",
        "output": provider.output,
        "max_tokens": provider.max_tokens,
        "temperature": provider.temperature,
        "messages": messages,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


class LLMActivities:
    def __init__(self, settings: Settings, catalog: Catalog, store: Store) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store

    @property
    def llm(self) -> LLMSettings:
        return self.settings.llm

    async def _spent(self) -> float:
        spent = await asyncio.to_thread(self.store.llm_month_spend, month())
        LLM_MONTH_SPEND.set(spent)
        return spent

    @activity.defn(name=contracts.LLM_ROUTE.name)
    async def route(self, request: PlanRequest) -> LLMRoute:
        llm = self.llm
        triage = request.triage
        if not llm.providers:
            return LLMRoute(reason="no LLM providers configured")
        if triage.runbook is None or triage.target is None:
            return LLMRoute(configured=True, reason="no runbook or target: nothing to plan")
        offered = [s.name for s in offered_tools(self.catalog, request)]
        if triage.runbook.max_actions == 0 or not offered:
            return LLMRoute(
                configured=True,
                reason=f"runbook {triage.runbook.name} allows no actions here "
                "(diagnosis only): no LLM is asked",
            )
        spent = await self._spent()
        budget = llm.monthly_budget_usd
        if spent >= budget:
            return LLMRoute(
                configured=True,
                reason=f"monthly LLM budget reached: ${spent:.4f} of ${budget:.2f} spent in "
                f"{month()}; the runbook planner plans alone",
                budget_exhausted=True,
                spent_usd=spent,
                budget_usd=budget,
            )
        order, why = select_order(llm, request)
        providers = [
            ProviderRoute(
                index=i,
                name=llm.providers[i].name,
                model=llm.providers[i].model,
                tier=llm.providers[i].tier,
                timeout=llm.providers[i].timeout,
                max_attempts=llm.providers[i].max_attempts,
                backoff=llm.providers[i].backoff,
                max_backoff=llm.providers[i].max_backoff,
            )
            for i in order
        ]
        return LLMRoute(
            configured=True,
            providers=providers,
            reason=why,
            allowed_tools=offered,
            max_actions=triage.runbook.max_actions,
            deadline=llm.deadline,
            spent_usd=spent,
            budget_usd=budget,
        )

    def _provider(self, route: ProviderRoute) -> LLMProvider:
        providers = self.llm.providers
        if route.index < len(providers):
            provider = providers[route.index]
            if provider.name == route.name and provider.model == route.model:
                return provider
        raise ApplicationError(
            f"llm.providers changed since this incident was routed: no provider {route.name} "
            f"({route.model}) at index {route.index}",
            type=LLM_CONFIG,
            non_retryable=True,
        )

    async def _record(
        self, req: LLMPlanRequest, provider: LLMProvider, outcome: str, usage: LLMUsage
    ) -> None:
        labels = (provider.name, provider.model)
        LLM_REQUESTS.labels(*labels, outcome).inc()
        if not usage.cached:
            LLM_TOKENS.labels(*labels, "in").inc(usage.tokens_in)
            LLM_TOKENS.labels(*labels, "out").inc(usage.tokens_out)
            LLM_COST.labels(*labels).inc(usage.cost_usd)
            LLM_LATENCY.labels(*labels).observe(usage.latency_s)
        await asyncio.to_thread(
            lambda: self.store.record_llm_usage(
                incident_id=req.request.incident_id,
                provider=provider.name,
                model=provider.model,
                outcome=outcome,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
                cost_usd=usage.cost_usd,
                latency_s=usage.latency_s,
                cached=usage.cached,
            )
        )

    @activity.defn(name=contracts.LLM_PLAN.name)
    async def plan(self, req: LLMPlanRequest) -> LLMPlanOutcome:
        provider = self._provider(req.provider)
        llm = self.llm
        messages = build_messages(req.request, self.catalog, llm.evidence_budget_chars, req.repair)
        key = cache_key(provider, messages)
        use_cache = llm.cache_ttl.total_seconds() > 0
        text = await asyncio.to_thread(self.store.llm_cache_get, key) if use_cache else None
        if text is not None:
            usage = LLMUsage(cached=True)
        else:
            spent = await self._spent()
            if spent >= llm.monthly_budget_usd:
                raise ApplicationError(
                    f"monthly LLM budget reached: ${spent:.4f} of "
                    f"${llm.monthly_budget_usd:.2f} spent in {month()}",
                    type=LLM_BUDGET,
                    non_retryable=True,
                )
            start = datetime.now(UTC)
            try:
                answer = await client.complete(
                    provider, req.provider.index, messages, draft_schema()
                )
            except ApplicationError as err:
                elapsed = (datetime.now(UTC) - start).total_seconds()
                outcome = OUTCOME_LABELS.get(err.type or "", "error")
                await self._record(req, provider, outcome, LLMUsage(latency_s=elapsed))
                log.warning(
                    "LLM %s attempt %d failed: %s", provider.name, activity.info().attempt, err
                )
                raise
            text = answer.text
            usage = LLMUsage(
                tokens_in=answer.tokens_in,
                tokens_out=answer.tokens_out,
                cost_usd=answer.cost_usd,
                latency_s=answer.latency_s,
            )
        source = f"llm:{provider.name}"
        draft, errors = parse_answer(text)
        plan = None
        if draft is not None:
            plan, errors = validate_draft(draft, req.request, self.catalog, self.settings, source)
        if plan is not None and use_cache and not usage.cached:
            await asyncio.to_thread(
                self.store.llm_cache_put, key, provider.model, text, llm.cache_ttl
            )
        outcome = "invalid" if plan is None else ("cached" if usage.cached else "ok")
        await self._record(req, provider, outcome, usage)
        return LLMPlanOutcome(
            plan=plan,
            errors=errors,
            raw_output="" if plan is not None else redact_text(text)[:RAW_OUTPUT_LIMIT],
            usage=usage,
        )
