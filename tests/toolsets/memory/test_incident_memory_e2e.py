"""Incident memory inside the incident workflow, end to end on the dev server and the private
dockerd. These need the workflow to call the memory activities (behind one patch):

* after triage: ``memory.flapping`` (escalate with the history instead of fixing again);
* before planning: ``memory.recall`` into ``PlanRequest.recall`` (the planner's order, the prompt);
* at close, after ``incidents.record``: ``memory.remember`` (never failing the close).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment

from activities.memory.activities import MemoryActivities
from core.models import ChangeResult, Outcome, Phase, RiskLevel
from tests.fakes.embeddings import FakeEmbeddings
from tests.integration.stack import running_stack, start_events
from tests.toolsets.memory.lab import (
    CRASH_ONCE,
    TWO_FIXES,
    approve,
    dead_container,
    kill,
    post,
    runbook_dir,
)
from workers.lab.dockerd import DockerEngine
from workers.learning import incident_record

pytestmark = pytest.mark.integration


async def test_the_next_incident_plans_the_fix_with_the_better_record_and_cites_it(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        runbook_dirs=[str(runbook_dir(tmp_path, TWO_FIXES))],
        approval={"overrides": [{"action": "docker.start", "level": "HARD"}]},
    ) as stack:
        container = dead_container(stack, "flaky", CRASH_ONCE)
        # A: the CPU-shares change applies, the container stays down: rolled back.
        failed = await stack.result(await post(stack, "FlakyDown", container, attempt="a"))
        assert failed.outcome is Outcome.ROLLED_BACK
        # B: a start (approved), verified.
        fixed = await approve(stack, await post(stack, "FlakyDown", container, attempt="b"))
        assert fixed.outcome is Outcome.RESOLVED
        kill(container)

        # Both apply now: the record puts B first, and the plan and the approval say why.
        wid = await post(stack, "FlakyDown", container, attempt="both")
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None, 60)
        assert pending.plan is not None
        assert [a.tool for a in pending.plan.actions] == ["docker.start"]
        notes = pending.plan.notes
        assert any(n.startswith("ordered by verified record: docker.start (0.67") for n in notes)
        cited = f"docker.start fixed FlakyDown on {container.name} 1 of 1 time"
        assert any(n.startswith(f"record: {cited}") for n in notes), notes
        assert any(n.startswith("recalled 2 similar incident(s)") for n in notes), notes
        request = pending.pending_approval
        assert request is not None and request.level is RiskLevel.HARD
        assert any(r.startswith(f"record: {cited}") for r in request.reasons), request.reasons
        assert any(
            line.startswith(cited) for line in incident_record(stack.settings, stack.store, pending)
        )

        done = await approve(stack, wid)
        assert done.outcome is Outcome.RESOLVED
        assert [(a.action.tool, a.result) for a in done.actions] == [
            ("docker.start", ChangeResult.APPLIED)
        ]


async def test_a_container_that_keeps_dying_is_escalated_on_the_third_incident(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        container = dead_container(stack, "dying", CRASH_ONCE)
        for _ in range(2):
            state = await stack.result(await post(stack, "ContainerKilled", container))
            assert state.outcome is Outcome.RESOLVED
            kill(container)
        since = time.time()
        third = await stack.result(await post(stack, "ContainerKilled", container))
        assert third.outcome is Outcome.ESCALATED and third.phase is Phase.ESCALATED
        assert third.actions == []
        assert any("keeps firing on " + container.name in n for n in third.notes), third.notes
        assert sum("fixed by docker.start" in n for n in third.notes) == 2
        container.reload()
        assert container.status == "exited"
        assert start_events(stack.docker(), container.name, since) == 0


async def test_closed_incidents_are_remembered_and_an_embedding_failure_never_blocks_a_close(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeEmbeddings(dimensions=32, api_key="sk-e2e")
    monkeypatch.setenv("E2E_EMBED_KEY", "sk-e2e")
    try:
        async with running_stack(
            dev_env,
            docker_engine,
            tmp_path,
            memory={
                "flapping": {"count": 0},
                "embedder": {
                    "model": "openai/e2e-embed",
                    "api_base": fake.api_base,
                    "api_key_env": "E2E_EMBED_KEY",
                },
            },
        ) as stack:
            memory = MemoryActivities(stack.settings, stack.store)
            container = dead_container(stack, "remembered", CRASH_ONCE)
            first = await stack.result(await post(stack, "ContainerKilled", container))
            assert first.outcome is Outcome.RESOLVED
            assert sum(memory.vectors.count().values()) == 1

            fake.behaviour = "error"
            kill(container)
            failures = (
                REGISTRY.get_sample_value(
                    "homelab_memory_embedding_failures_total",
                    {"embedder": "openai-e2e-embed-32", "stage": "remember"},
                )
                or 0.0
            )
            second = await stack.result(await post(stack, "ContainerKilled", container))
            assert second.outcome is Outcome.RESOLVED  # closed as if memory did not exist
            assert sum(memory.vectors.count().values()) == 1  # nothing bogus stored
            after = REGISTRY.get_sample_value(
                "homelab_memory_embedding_failures_total",
                {"embedder": "openai-e2e-embed-32", "stage": "remember"},
            )
            assert after is not None and after >= failures + 1
    finally:
        fake.stop()
