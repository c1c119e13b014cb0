"""Models the LLM planner chain exchanges between the workflow and its activities.

``llm.route`` decides, once and in history, which providers to ask in which order (and why, or why
none); ``llm.plan`` asks one of them and returns a catalog-validated plan or the validation errors
(for the one repair round). Provider keys, prompts and evidence never appear here: the activity
rebuilds the prompt from the ``PlanRequest`` inside the worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from core.models import Model, Plan, PlanRequest

# ApplicationError types raised by ``llm.plan``; the workflow branches on these, never on text.
LLM_RATE_LIMITED = "LLMRateLimited"
LLM_TIMEOUT = "LLMTimeout"
LLM_UNREACHABLE = "LLMUnreachable"
LLM_SERVER_ERROR = "LLMServerError"
LLM_REJECTED = "LLMRejected"  # a 4xx other than 429: the request itself is refused
LLM_CONFIG = "LLMConfig"  # missing key, provider list changed under a running incident
LLM_BUDGET = "LLMBudgetExhausted"
LLM_ERROR = "LLMError"
LLM_DEADLINE = "LLMDeadline"  # the chain's deadline passed before this provider was asked
NON_RETRYABLE = [LLM_REJECTED, LLM_CONFIG, LLM_BUDGET]


class ProviderRoute(Model):
    """One provider of the chain, with the retry policy the workflow applies to its activity."""

    index: int = Field(ge=0, description="position in llm.providers")
    name: str
    model: str
    tier: Literal["cheap", "strong"]
    timeout: timedelta
    max_attempts: int
    backoff: timedelta
    max_backoff: timedelta


class LLMRoute(Model):
    configured: bool = Field(default=False, description="any LLM provider is configured")
    providers: list[ProviderRoute] = Field(default_factory=list)
    reason: str = Field(default="", description="why this order, or why no provider is asked")
    budget_exhausted: bool = False
    allowed_tools: list[str] = Field(
        default_factory=list, description="the tools offered (checked again by the workflow)"
    )
    max_actions: int = 0
    deadline: timedelta | None = Field(
        default=None, description="how long the whole chain may take (None: histories before it)"
    )
    spent_usd: float = 0.0
    budget_usd: float = 0.0


class LLMRepair(Model):
    """The rejected answer and why, for the provider's one repair round."""

    previous_output: str
    errors: list[str]


class LLMPlanRequest(Model):
    provider: ProviderRoute
    request: PlanRequest
    repair: LLMRepair | None = None


class LLMUsage(Model):
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False


class LLMPlanOutcome(Model):
    """A validated plan, or the validator's errors and the (redacted, truncated) raw answer."""

    plan: Plan | None = None
    errors: list[str] = Field(default_factory=list)
    raw_output: str = ""
    usage: LLMUsage = Field(default_factory=LLMUsage)
