"""``llm.route`` and ``llm.plan`` against the fake OpenAI-compatible server over real HTTP.

Each failure form of the API must become the retry semantics the workflow relies on: 429 →
retryable after Retry-After; 5xx, timeouts, garbage → retryable; other 4xx and a missing key →
non-retryable; an invalid plan → returned with the validator's errors (for the repair round).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm import LLMActivities
from activities.store import Store
from activities.toolsets import default_catalog
from core.config import Settings
from core.metrics import LLM_COST, LLM_REQUESTS, LLM_TOKENS
from core.planning import (
    LLM_BUDGET,
    LLM_CONFIG,
    LLM_RATE_LIMITED,
    LLM_REJECTED,
    LLM_SERVER_ERROR,
    LLM_TIMEOUT,
    LLMPlanOutcome,
    LLMPlanRequest,
    LLMRoute,
)
from tests.fakes.openai_compat import FakeLLM, fake_llm
from tests.unit.test_llm_prompt import request

GPT4O_MINI_IN = 0.15 / 1_000_000
GPT4O_MINI_OUT = 0.60 / 1_000_000
GOOD_PLAN = {
    "hypotheses": [{"statement": "the process exited", "evidence": ["inspect"], "confidence": 0.8}],
    "actions": [{"tool": "docker.start", "target": "docker:lab/web", "params": {}}],
    "confidence": 0.8,
}


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with fake_llm() as server:
        yield server


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TEST_KEY", "sk-test-primary-000000")


def make(
    tmp_path: Path, providers: list[dict[str, Any]], **llm: Any
) -> tuple[LLMActivities, Store]:
    settings = Settings(
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}],
        llm={"providers": providers, **llm},
    )
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    return LLMActivities(settings, default_catalog(), store), store


def provider(base: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": base,
        "api_key_env": "LLM_TEST_KEY",
        "timeout": "2s",
        **extra,
    }


async def route_and_plan(acts: LLMActivities, index: int = 0, **req: Any) -> LLMPlanOutcome:
    env = ActivityEnvironment()
    route: LLMRoute = await env.run(acts.route, request(**req))
    chosen = next(p for p in route.providers if p.index == index)
    return await env.run(acts.plan, LLMPlanRequest(provider=chosen, request=request(**req)))


async def failure(acts: LLMActivities) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await route_and_plan(acts)
    return info.value


async def test_valid_answer_is_a_plan_with_usage_cost_ledger_and_cache(
    fake: FakeLLM, tmp_path: Path
) -> None:
    base = fake.route("ok", plan=GOOD_PLAN, api_key="sk-test-primary-000000")
    acts, store = make(tmp_path, [provider(base, name="primary")])
    before = LLM_REQUESTS.labels("primary", "openai/gpt-4o-mini", "ok")._value.get()
    outcome = await route_and_plan(acts)
    assert outcome.errors == [] and outcome.plan is not None
    assert outcome.plan.source == "llm:primary"
    assert [a.tool for a in outcome.plan.actions] == ["docker.start"]
    usage = outcome.usage
    assert usage.tokens_in > 500 and usage.tokens_out > 10 and not usage.cached
    expected = usage.tokens_in * GPT4O_MINI_IN + usage.tokens_out * GPT4O_MINI_OUT
    assert usage.cost_usd == pytest.approx(expected)
    (call,) = fake.calls("ok")
    assert call.headers["authorization"] == "Bearer sk-test-primary-000000"
    assert call.body["response_format"] == {"type": "json_object"}
    assert call.body["model"] == "gpt-4o-mini"
    rows = store.list_llm_usage("incident-abc123")
    assert [(r["provider"], r["outcome"]) for r in rows] == [("primary", "ok")]
    assert store.llm_month_spend() == pytest.approx(expected)
    assert LLM_REQUESTS.labels("primary", "openai/gpt-4o-mini", "ok")._value.get() == before + 1
    assert LLM_TOKENS.labels("primary", "openai/gpt-4o-mini", "in")._value.get() >= usage.tokens_in
    assert LLM_COST.labels("primary", "openai/gpt-4o-mini")._value.get() >= expected

    again = await route_and_plan(acts)
    assert again.usage.cached and again.usage.cost_usd == 0
    assert again.plan is not None and again.plan.actions == outcome.plan.actions
    assert len(fake.calls("ok")) == 1  # served from the cache, no second request
    assert [r["outcome"] for r in store.list_llm_usage()] == ["ok", "cached"]


async def test_tool_call_answers_and_price_overrides(fake: FakeLLM, tmp_path: Path) -> None:
    base = fake.route("tools", plan=GOOD_PLAN)
    acts, _ = make(
        tmp_path,
        [provider(base, output="tools", input_cost_per_token=1e-6, output_cost_per_token=2e-6)],
        cache_ttl="0s",
    )
    outcome = await route_and_plan(acts)
    assert outcome.plan is not None and outcome.plan.actions[0].tool == "docker.start"
    (call,) = fake.calls("tools")
    assert call.body["tool_choice"]["function"]["name"] == "submit_plan"
    assert "actions" in call.body["tools"][0]["function"]["parameters"]["properties"]
    assert outcome.usage.cost_usd == pytest.approx(
        outcome.usage.tokens_in * 1e-6 + outcome.usage.tokens_out * 2e-6
    )


async def test_rate_limit_honours_retry_after(fake: FakeLLM, tmp_path: Path) -> None:
    acts, store = make(tmp_path, [provider(fake.route("rl", "rate_limit", retry_after=7))])
    err = await failure(acts)
    assert err.type == LLM_RATE_LIMITED and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7)
    assert [r["outcome"] for r in store.list_llm_usage()] == ["rate_limited"]


async def test_rate_limit_longer_than_allowed_fails_over_at_once(
    fake: FakeLLM, tmp_path: Path
) -> None:
    base = fake.route("rl", "rate_limit", retry_after=600)
    acts, _ = make(tmp_path, [provider(base, max_retry_after="60s")])
    err = await failure(acts)
    assert err.type == LLM_RATE_LIMITED and err.non_retryable
    assert "longer than max_retry_after" in err.message


@pytest.mark.parametrize(
    ("behaviour", "options", "kind", "retryable"),
    [
        ("error", {"status": 500}, LLM_SERVER_ERROR, True),
        ("error", {"status": 503}, LLM_SERVER_ERROR, True),
        ("garbage", {}, LLM_SERVER_ERROR, True),
        ("error", {"status": 400}, LLM_REJECTED, False),
        ("error", {"status": 404}, LLM_REJECTED, False),
        ("ok", {"api_key": "sk-some-other-key-0000"}, LLM_REJECTED, False),  # 401
        ("hang", {"hang_seconds": 5}, LLM_TIMEOUT, True),
    ],
)
async def test_failures_are_typed_for_the_retry_policy(
    fake: FakeLLM,
    tmp_path: Path,
    behaviour: str,
    options: dict[str, Any],
    kind: str,
    retryable: bool,
) -> None:
    base = fake.route("r", behaviour, plan=GOOD_PLAN, **options)
    acts, _ = make(tmp_path, [provider(base, timeout="0.5s")])
    err = await failure(acts)
    assert err.type == kind, err.message
    assert err.non_retryable is (not retryable)
    assert "sk-test-primary" not in err.message  # keys never reach history


async def test_missing_key_is_a_config_error_without_a_request(
    fake: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_TEST_KEY")
    acts, _ = make(tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN))])
    err = await failure(acts)
    assert err.type == LLM_CONFIG and err.non_retryable
    assert "LLM_TEST_KEY is not set" in err.message
    assert fake.calls() == []


async def test_invalid_answer_returns_errors_and_is_not_cached(
    fake: FakeLLM, tmp_path: Path
) -> None:
    bad = {"actions": [{"tool": "docker.explode", "target": "docker:lab/web"}]}
    acts, store = make(tmp_path, [provider(fake.route("bad", plan=bad))])
    outcome = await route_and_plan(acts)
    assert outcome.plan is None
    assert any("'docker.explode' is not a tool in the catalog" in e for e in outcome.errors)
    assert json.loads(outcome.raw_output) == bad
    await route_and_plan(acts)
    assert len(fake.calls("bad")) == 2  # never served from the cache
    assert [r["outcome"] for r in store.list_llm_usage()] == ["invalid", "invalid"]


async def test_budget_reached_routes_nothing_and_refuses_calls(
    fake: FakeLLM, tmp_path: Path
) -> None:
    acts, store = make(
        tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN))], monthly_budget_usd=0.01
    )
    store.record_llm_usage(
        incident_id="earlier", provider="p", model="m", outcome="ok", cost_usd=0.0100001
    )
    last_month = datetime.now(UTC).replace(day=1) - timedelta(days=3)
    store.record_llm_usage(
        incident_id="old", provider="p", model="m", outcome="ok", cost_usd=5.0, at=last_month
    )
    env = ActivityEnvironment()
    route = await env.run(acts.route, request())
    assert route.providers == [] and route.budget_exhausted
    assert "monthly LLM budget reached: $0.0100 of $0.01" in route.reason
    # A plan request routed earlier is refused before any call.
    provider_route = await env.run(make(tmp_path, [provider("http://x")])[0].route, request())
    with pytest.raises(ApplicationError) as info:
        await env.run(
            acts.plan, LLMPlanRequest(provider=provider_route.providers[0], request=request())
        )
    assert info.value.type == LLM_BUDGET and info.value.non_retryable
    assert fake.calls() == []


async def test_diagnosis_only_runbooks_ask_no_llm(fake: FakeLLM, tmp_path: Path) -> None:
    acts, _ = make(tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN))])
    req = request()
    assert req.triage.runbook is not None
    diagnosis_only = req.model_copy(
        update={
            "triage": req.triage.model_copy(
                update={"runbook": req.triage.runbook.model_copy(update={"max_actions": 0})}
            )
        }
    )
    route = await ActivityEnvironment().run(acts.route, diagnosis_only)
    assert route.configured and route.providers == []
    assert "allows no actions here (diagnosis only)" in route.reason
    unconfigured, _ = make(tmp_path, [])
    route = await ActivityEnvironment().run(unconfigured.route, request())
    assert not route.configured and route.providers == []


async def test_provider_list_changed_under_a_routed_incident(fake: FakeLLM, tmp_path: Path) -> None:
    old, _ = make(tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN), name="old")])
    new, _ = make(tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN), name="new")])
    env = ActivityEnvironment()
    route = await env.run(old.route, request())
    with pytest.raises(ApplicationError) as info:
        await env.run(new.plan, LLMPlanRequest(provider=route.providers[0], request=request()))
    assert info.value.type == LLM_CONFIG and "changed" in info.value.message


def test_litellm_is_never_imported_by_the_cli_workflows_or_worker_wiring() -> None:
    code = (
        "import sys\n"
        "import workers.cli, workers.stack, workers.worker, workflows.incident, workflows.planning\n"
        "import activities.llm, activities.llm.client\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


async def test_first_call_imports_litellm_with_the_local_price_map(
    fake: FakeLLM, tmp_path: Path
) -> None:
    import os

    acts, _ = make(tmp_path, [provider(fake.route("ok", plan=GOOD_PLAN))], cache_ttl="0s")
    await route_and_plan(acts)
    assert "litellm" in sys.modules
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
