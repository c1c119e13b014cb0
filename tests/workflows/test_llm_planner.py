"""The LLM planner chain inside IncidentWorkflow, on the time-skipping server.

The providers are routes of a fake OpenAI-compatible server over real HTTP; the planner activities
(route, plan, validation, ledger, cache) and the gate, policy and change log are the real ones; the
Docker tools are the in-memory fakes. Time skipping makes retry backoff and Retry-After waits
instant, so a chain of failing providers runs in seconds while its history is the real one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from core.config import Settings
from core.models import (
    Alert,
    AlertStatus,
    ApprovalVerdict,
    ChangeResult,
    IncidentInput,
    IncidentState,
    Outcome,
    RiskLevel,
    ToolCall,
    ToolResult,
)
from tests.fakes.openai_compat import INJECTED_TEXT, FakeLLM, fake_llm
from tests.workflows.fakes import FakeDocker, merge
from workers.worker import WORKFLOWS, Components, activities_for, build_components
from workflows.incident import IncidentWorkflow

TARGET = "docker:lab/web"
START_PLAN = {
    "hypotheses": [
        {"statement": "the main process exited", "evidence": ["inspect", "logs"], "confidence": 0.9}
    ],
    "actions": [
        {
            "tool": "docker.start",
            "target": TARGET,
            "params": {},
            "rationale": "exited with code 3",
            "expected_effect": "running again",
        }
    ],
    "confidence": 0.9,
}


def plan_with(**action: Any) -> dict[str, Any]:
    return {"actions": [{"tool": "docker.start", "target": TARGET, "params": {}, **action}]}


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with fake_llm() as server:
        yield server


def provider(base: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": "openai/gpt-4o-mini",
        "api_base": base,
        "api_key_env": "LLM_WF_KEY",
        "timeout": "1s",
        "max_attempts": 1,
        **extra,
    }


def settings_with(settings_factory: Any, providers: list[dict[str, Any]], **llm: Any) -> Settings:
    return settings_factory(
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}],
        approval={"approvers": ["alice"]},
        # The runbook offers docker.start; the user lets the LLM also propose these two.
        llm={"providers": providers, "offer": ["docker.restart", "docker.stop"], **llm},
    )


def alert(name: str = "ContainerKilled", severity: str = "warning") -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint=uuid.uuid4().hex[:16],
        labels={"alertname": name, "container": "web", "engine": "lab", "severity": severity},
        annotations={"summary": f"{name} on web"},
        starts_at=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
    )


def logs_saying(*lines: str) -> Any:
    @activity.defn(name="docker.logs")
    async def logs(call: ToolCall) -> ToolResult:
        return ToolResult(
            tool=call.tool, target=str(call.target), ok=True, data={"lines": list(lines)}
        )

    return logs


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, settings: Settings, docker: FakeDocker, *extra: Any
) -> AsyncIterator[Components]:
    parts = build_components(settings)
    activities = merge(merge(activities_for(env.client, parts), docker.activities()), list(extra))
    async with Worker(
        env.client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        workflow_failure_exception_types=[Exception],
    ):
        yield parts
    parts.close()


async def run_incident(
    env: WorkflowEnvironment, settings: Settings, the_alert: Alert
) -> tuple[IncidentState, WorkflowHandle[Any, IncidentState]]:
    handle = await env.client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(alert=the_alert),
        id=f"incident-{the_alert.fingerprint}",
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(hours=1),
    )
    return await handle.result(), handle


async def scheduled(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(activity type, summary, input) of every activity the workflow scheduled, in order."""
    out = []
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attrs = event.activity_task_scheduled_event_attributes
        payloads = attrs.input.payloads
        data = json.loads(payloads[0].data) if payloads else {}
        summary = ""
        if event.user_metadata.HasField("summary"):
            summary = json.loads(event.user_metadata.summary.data)
        out.append((attrs.activity_type.name, summary, data))
    return out


def tools_touched(events: list[tuple[str, str, dict[str, Any]]]) -> set[str]:
    """Every tool the workflow ran or prepared (the write path starts at tool.prepare)."""
    names = set()
    for kind, _summary, data in events:
        if kind == "tool.prepare":
            names.add(data["tool"])
        elif kind.startswith("docker."):
            names.add(kind)
    return names


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_WF_KEY", "sk-wf-test-0000000000")


async def test_failover_path_follows_the_chain_in_order(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("down", "error", status=500), "down", max_attempts=2, backoff="2s"),
            provider(llm.route("busy", "rate_limit", retry_after=45), "busy", max_attempts=2),
            provider(llm.route("slow", "hang", hang_seconds=5), "slow", timeout="0.5s"),
            provider(llm.route("good", plan=START_PLAN), "good"),
        ],
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker) as parts:
        state, handle = await run_incident(ts_env, settings, alert())

    assert llm.order() == ["down", "down", "busy", "busy", "slow", "good"]
    plan = state.plan
    assert plan is not None and plan.source == "llm:good"
    assert [(a.provider, a.outcome, a.error_type) for a in plan.attempts] == [
        ("down", "failed", "LLMServerError"),
        ("busy", "failed", "LLMRateLimited"),
        ("slow", "failed", "LLMTimeout"),
        ("good", "ok", ""),
    ]
    assert "maximum attempts reached" in plan.attempts[0].reason
    busy = plan.attempts[1]
    assert busy.finished_at and busy.started_at
    assert busy.finished_at - busy.started_at >= timedelta(seconds=45)  # Retry-After honoured
    good = plan.attempts[3]
    assert good.tokens_in > 0 and good.cost_usd > 0
    events = await scheduled(handle)
    llm_calls = [summary for kind, summary, _ in events if kind == "llm.plan"]
    assert llm_calls == [f"LLM {n} (openai/gpt-4o-mini)" for n in ("down", "busy", "slow", "good")]
    assert [kind for kind, _, _ in events if kind.startswith(("llm.", "plan."))] == [
        "llm.route",
        *["llm.plan"] * 4,
    ]
    assert [w.tool for w in docker.writes] == ["docker.start"]
    assert state.outcome is Outcome.RESOLVED
    replay = await Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter
    ).replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    assert replay.replay_failure is None  # the chain is deterministic
    stored = parts.store.get_incident(handle.id)
    assert stored is not None and stored.plan is not None
    assert [a.provider for a in stored.plan.attempts] == ["down", "busy", "slow", "good"]
    ledger = parts.store.list_llm_usage(handle.id)
    assert [(r["provider"], r["outcome"]) for r in ledger] == [
        ("down", "server_error"),
        ("down", "server_error"),
        ("busy", "rate_limited"),
        ("busy", "rate_limited"),
        ("slow", "timeout"),
        ("good", "ok"),
    ]


async def test_invalid_plans_get_one_repair_and_never_reach_the_gate(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("unknown", plan=plan_with(tool="docker.explode")), "unknown"),
            provider(
                llm.route("params", plan=plan_with(tool="docker.restart", params={"timeout": -1})),
                "params",
            ),
            provider(llm.route("elsewhere", plan=plan_with(target="docker:lab/db")), "elsewhere"),
            provider(llm.route("prose", content="Sure! I would restart it."), "prose"),
            provider(llm.route("good", plan=START_PLAN), "good"),
        ],
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker) as parts:
        state, handle = await run_incident(ts_env, settings, alert())

    pairs = ["unknown", "params", "elsewhere", "prose"]
    assert llm.order() == [n for n in pairs for _ in range(2)] + ["good"]
    for name, expected in [
        ("unknown", "'docker.explode' is not a tool in the catalog"),
        ("params", "invalid parameters for docker.restart"),
        ("elsewhere", "'docker:lab/db' is not the incident target"),
        ("prose", "not valid JSON"),
    ]:
        first, repair = llm.calls(name)
        assert len(first.body["messages"]) == 2
        assert repair.body["messages"][-1]["role"] == "user"
        assert expected in repair.body["messages"][-1]["content"]  # the validator's errors
    plan = state.plan
    assert plan is not None and plan.source == "llm:good"
    assert [(a.provider, a.round, a.outcome) for a in plan.attempts] == [
        *[(n, r, "invalid") for n in pairs for r in ("plan", "repair")],
        ("good", "plan", "ok"),
    ]
    events = await scheduled(handle)
    assert tools_touched(events) == {"docker.inspect", "docker.logs", "docker.start"}
    assert [s for k, s, _ in events if k == "llm.plan"][:2] == [
        "LLM unknown (openai/gpt-4o-mini)",
        "LLM unknown (openai/gpt-4o-mini) repair",
    ]
    assert [c.action for c in parts.store.list_changes(handle.id)] == ["docker.start"]
    assert [w.tool for w in docker.writes] == ["docker.start"]


async def test_injected_instruction_in_logs_never_runs(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    prune = {
        "actions": [
            {"tool": "docker.prune_unused_images", "target": "docker:lab", "level": "NONE"},
            {"tool": "docker.prune_unused_images", "target": TARGET},
        ]
    }
    settings = settings_with(
        settings_factory,
        [
            provider(
                llm.route("gullible", "obey", plan=START_PLAN, injected_plan=prune), "gullible"
            ),
            provider(llm.route("careful", plan=START_PLAN), "careful"),
        ],
    )
    docker = FakeDocker(running=False)
    logs = logs_saying("starting web", INJECTED_TEXT, "exit 3")
    async with running(ts_env, settings, docker, logs) as parts:
        state, handle = await run_incident(ts_env, settings, alert())

    gullible = llm.calls("gullible")
    assert len(gullible) == 2  # the plan and its repair, both refused
    user = gullible[0].body["messages"][1]["content"]
    block = user.split('<data key="logs" tool="docker.logs" ok="true">', 1)[1].split("</data>")[0]
    assert INJECTED_TEXT in block  # the instruction only ever travels as quoted data
    plan = state.plan
    assert plan is not None and plan.source == "llm:careful"
    refused = plan.attempts[0]
    assert refused.outcome == "invalid" and "prune_unused_images" in refused.reason
    events = await scheduled(handle)
    touched = tools_touched(events)
    assert not {t for t in touched if "prune" in t}
    assert touched == {"docker.inspect", "docker.logs", "docker.start"}
    assert [w.tool for w in docker.writes] == ["docker.start"]
    assert all("prune" not in c.action for c in parts.store.list_changes(handle.id))


async def test_the_llm_can_never_lower_a_level(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    stop = plan_with(tool="docker.stop", params={"timeout": 1}, level="NONE", approved=True)
    settings = settings_with(settings_factory, [provider(llm.route("pushy", plan=stop), "pushy")])
    docker = FakeDocker(running=True)  # a stop that would do something
    async with running(ts_env, settings, docker) as parts:
        state, handle = await run_incident(ts_env, settings, alert())

    assert state.plan is not None and state.plan.source == "llm:pushy"
    (outcome,) = state.actions
    assert outcome.action.tool == "docker.stop"
    assert outcome.level is RiskLevel.HARD  # the tool's level, whatever the model claimed
    assert outcome.approval is ApprovalVerdict.TIMEOUT and outcome.result is ChangeResult.TIMEOUT
    assert docker.writes == []
    assert state.outcome is Outcome.ESCALATED
    assert [c.result for c in parts.store.list_changes(handle.id)] == [ChangeResult.TIMEOUT]


async def test_every_provider_failing_falls_back_to_the_runbook_plan(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("down", "error", status=502), "down", max_attempts=3),
            provider(llm.route("refused", "error", status=400), "refused", max_attempts=3),
            provider(llm.route("slow", "hang", hang_seconds=5), "slow", timeout="0.3s"),
        ],
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker):
        state, handle = await run_incident(ts_env, settings, alert())

    assert llm.order() == ["down"] * 3 + ["refused"] + ["slow"]  # 4xx: no retry
    plan = state.plan
    assert plan is not None and plan.source == "runbook:docker-container-exited"
    assert [(a.provider, a.error_type) for a in plan.attempts] == [
        ("down", "LLMServerError"),
        ("refused", "LLMRejected"),
        ("slow", "LLMTimeout"),
    ]
    assert "non retryable failure" in plan.attempts[1].reason
    assert any("runbook planner used" in n for n in plan.notes)
    assert [w.tool for w in docker.writes] == ["docker.start"]
    assert state.outcome is Outcome.RESOLVED
    kinds = [k for k, _, _ in await scheduled(handle)]
    assert kinds.index("plan.runbook") > max(i for i, k in enumerate(kinds) if k == "llm.plan")


async def test_the_deadline_cuts_a_providers_retries_short_and_the_next_one_plans(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    """A provider that keeps asking to come back later cannot retry past the chain's deadline."""
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("busy", "rate_limit", retry_after=45), "busy", max_attempts=5),
            provider(llm.route("good", plan=START_PLAN), "good"),
        ],
        deadline="60s",
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker):
        state, _ = await run_incident(ts_env, settings, alert())

    # busy's third try would come at 90 s, past the deadline: it is given up at 45 s, not retried
    assert llm.order() == ["busy", "busy", "good"]
    plan = state.plan
    assert plan is not None and plan.source == "llm:good"
    assert [(a.provider, a.outcome, a.error_type) for a in plan.attempts] == [
        ("busy", "failed", "LLMRateLimited"),
        ("good", "ok", ""),
    ]
    assert "(timeout)" in plan.attempts[0].reason
    assert state.outcome is Outcome.RESOLVED


async def test_past_the_deadline_the_runbook_planner_plans(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    """A hanging provider is cut off at the deadline and the providers after it are skipped."""
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("slow", "hang", hang_seconds=5), "slow", timeout="3s"),
            provider(llm.route("good", plan=START_PLAN), "good"),
        ],
        deadline="500ms",
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker):
        state, handle = await run_incident(ts_env, settings, alert())

    assert llm.order() == ["slow"]
    plan = state.plan
    assert plan is not None and plan.source == "runbook:docker-container-exited"
    assert [(a.provider, a.outcome, a.error_type) for a in plan.attempts] == [
        ("slow", "failed", "ActivityTimeout"),
        ("good", "skipped", "LLMDeadline"),
    ]
    slow = plan.attempts[0]
    assert slow.started_at and slow.finished_at and "timed out" in slow.reason
    assert slow.finished_at - slow.started_at < timedelta(seconds=3)  # not its own 3 s timeout
    assert any("LLM deadline of 0.5s passed: 1 provider(s) not asked" in n for n in plan.notes)
    assert [w.tool for w in docker.writes] == ["docker.start"]
    assert state.outcome is Outcome.RESOLVED
    replay = await Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter
    ).replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    assert replay.replay_failure is None


async def test_month_budget_reached_skips_to_the_runbook_and_says_why(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory,
        [provider(llm.route("good", plan=START_PLAN), "good")],
        monthly_budget_usd=0.5,
    )
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker) as parts:
        parts.store.record_llm_usage(
            incident_id="earlier", provider="good", model="m", outcome="ok", cost_usd=0.5
        )
        state, _ = await run_incident(ts_env, settings, alert())

    assert llm.calls() == []
    plan = state.plan
    assert plan is not None and plan.source.startswith("runbook:")
    assert [(a.outcome, a.error_type) for a in plan.attempts] == [("skipped", "LLMBudgetExhausted")]
    assert any("monthly LLM budget reached: $0.5000 of $0.50" in n for n in plan.notes)
    assert [w.tool for w in docker.writes] == ["docker.start"]


async def test_critical_complex_incident_asks_the_strong_model_first(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory,
        [
            provider(llm.route("mini", plan=START_PLAN), "mini"),
            {
                **provider(llm.route("big", plan=START_PLAN), "big"),
                "model": "openai/gpt-4o",
                "tier": "strong",
            },
        ],
    )
    docker = FakeDocker(running=False)
    # One worker for both incidents: the test server never moves a stopped worker's sticky
    # tasks (the target lock's) to a new worker.
    async with running(ts_env, settings, docker):
        critical, _ = await run_incident(ts_env, settings, alert("ContainerOOMKilled", "critical"))
        docker.running = False
        warning, _ = await run_incident(ts_env, settings, alert("ContainerOOMKilled", "warning"))

    assert llm.order() == ["big", "mini"]
    assert critical.plan is not None and critical.plan.source == "llm:big"
    assert any("strong tier first" in n for n in critical.plan.notes)
    assert warning.plan is not None and warning.plan.source == "llm:mini"


async def test_identical_incident_is_answered_from_the_cache(
    ts_env: WorkflowEnvironment, settings_factory: Any, llm: FakeLLM
) -> None:
    settings = settings_with(
        settings_factory, [provider(llm.route("good", plan=START_PLAN), "good")]
    )
    # With memory on, the second incident recalls the first: another prompt, rightly not cached.
    settings.memory.enabled = False
    docker = FakeDocker(running=False)
    async with running(ts_env, settings, docker) as parts:
        first, _ = await run_incident(ts_env, settings, alert())
        docker.running = False  # the same evidence again
        second, handle = await run_incident(ts_env, settings, alert())

    assert len(llm.calls("good")) == 1
    assert first.plan is not None and not first.plan.attempts[0].cached
    assert second.plan is not None and second.plan.attempts[0].cached
    assert second.plan.attempts[0].cost_usd == 0
    assert second.plan.actions == first.plan.actions
    assert [r["outcome"] for r in parts.store.list_llm_usage(handle.id)] == ["cached"]
