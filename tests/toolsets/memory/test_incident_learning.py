"""Learning from real incidents on the dev server and the private dockerd, through what the
incident workflow already does (the policy is evaluated per write; records land at close):
two rollbacks make the third incident ask for approval; a lower level needs a human; and the
memory activities, fed by real incidents, order the next plan and see a flapping alert."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.memory.activities import MemoryActivities
from activities.planner import runbook_plan
from activities.toolsets import default_catalog
from core.memory import FlapRequest, recall_request
from core.models import (
    ApprovalDecision,
    ChangeResult,
    Outcome,
    PlanRequest,
    RiskLevel,
)
from tests.integration.stack import running_stack
from tests.toolsets.memory.incidents import in_activity
from tests.toolsets.memory.lab import (
    CRASH_ONCE,
    ROLLED_BACK,
    TWO_FIXES,
    approve,
    dead_container,
    kill,
    post,
    runbook_dir,
)
from workers.lab.dockerd import DockerEngine
from workers.learning import accept, level_now, suggest

pytestmark = pytest.mark.integration


async def test_two_rollbacks_make_the_third_incident_ask_for_approval(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    async with running_stack(
        dev_env, docker_engine, tmp_path, runbook_dirs=[str(runbook_dir(tmp_path, ROLLED_BACK))]
    ) as stack:
        container = dead_container(stack, "never")
        target = f"docker:lab/{container.name}"
        for _ in range(2):
            state = await stack.result(await post(stack, "NeverFixed", container))
            assert state.outcome is Outcome.ROLLED_BACK, state.notes
            assert state.actions[0].level is RiskLevel.SOFT
        changes = stack.store.list_changes(target=target)
        assert [(c.action, c.result) for c in changes if c.step != "policy"] == [
            ("docker.update_resources", ChangeResult.APPLIED),
            ("docker.update_resources", ChangeResult.APPLIED),  # the saga's undo
        ] * 2
        learned = [c for c in changes if c.step == "policy"]
        assert [(c.action, c.approver) for c in learned] == [("policy.restrict", "learning")]

        third = await post(stack, "NeverFixed", container)
        pending = await stack.wait_state(third, lambda s: s.pending_approval is not None)
        request = pending.pending_approval
        assert request is not None and request.level is RiskLevel.HARD
        assert any(
            r.startswith(
                "learned: docker.update_resources failed verification or was rolled "
                "back 2 times on " + target
            )
            for r in request.reasons
        ), request.reasons
        assert any(
            r.startswith(
                "record: docker.update_resources fixed NeverFixed on "
                f"{container.name} 0 of 2 times; 2 failed verifications"
            )
            for r in request.reasons
        ), request.reasons
        await stack.decide(third, ApprovalDecision(approve=False, approver="alice"))
        denied = await stack.result(third)
        assert denied.outcome is Outcome.ESCALATED
        container.reload()
        assert container.attrs["HostConfig"]["CpuShares"] == 1024  # nothing ran, all undone

        catalog = default_catalog()
        stack.store.clear_restriction("docker.update_resources", target, "cli:alice", "new image")
        after = level_now(stack.settings, stack.store, catalog, "docker.update_resources", target)
        assert after.level is RiskLevel.SOFT


async def test_a_lower_level_needs_a_human_and_lands_in_the_change_log(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        approval={"overrides": [{"action": "docker.start", "level": "HARD"}]},
        memory={"suggest_after": 2, "flapping": {"count": 0}},
    ) as stack:
        catalog = default_catalog()
        container = dead_container(stack, "steady", CRASH_ONCE)
        target = f"docker:lab/{container.name}"
        for _ in range(3):  # approved, verified: more than enough for a suggestion
            state = await approve(stack, await post(stack, "ContainerKilled", container))
            assert state.outcome is Outcome.RESOLVED, state.notes
            assert state.actions[0].approver == "alice"
            kill(container)
        # Approvals alone lowered nothing.
        assert level_now(stack.settings, stack.store, catalog, "docker.start", target).level is (
            RiskLevel.HARD
        )
        proposals = suggest(stack.settings, stack.store, catalog)
        assert [
            (p.suggestion.action, p.suggestion.target, p.suggestion.approvals) for p in proposals
        ] == [("docker.start", target, 3)]

        change, before, after = accept(
            stack.settings,
            stack.store,
            catalog,
            "docker.start",
            target,
            RiskLevel.SOFT,
            "cli:alice",
            "3 of 3 verified",
        )
        assert (before, after) == (RiskLevel.HARD, RiskLevel.SOFT)
        state = await stack.result(await post(stack, "ContainerKilled", container))
        assert state.outcome is Outcome.RESOLVED and not state.approvals
        assert state.actions[0].level is RiskLevel.SOFT
        assert any("accepted by cli:alice" in r for r in state.actions[0].level_reasons)
        logged = stack.store.get_change(change.change_id)
        assert logged is not None and (logged.action, logged.approver) == (
            "policy.accept",
            "cli:alice",
        )


async def test_real_incidents_teach_the_next_plan_and_the_flapping_guard(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """The memory activities on what real incidents recorded: fix A failed verification, fix B
    worked; for the next incident where both apply, the recall puts B first and cites it."""
    async with running_stack(
        dev_env, docker_engine, tmp_path, runbook_dirs=[str(runbook_dir(tmp_path, TWO_FIXES))]
    ) as stack:
        memory = MemoryActivities(stack.settings, stack.store)
        container = dead_container(stack, "flaky", CRASH_ONCE)
        target = f"docker:lab/{container.name}"

        # CRASH_ONCE has already died once: fix A (cpu shares) leaves it exited → rolled back.
        failed = await stack.result(await post(stack, "FlakyDown", container, attempt="a"))
        assert failed.outcome is Outcome.ROLLED_BACK
        fixed = await stack.result(await post(stack, "FlakyDown", container, attempt="b"))
        assert fixed.outcome is Outcome.RESOLVED
        for state in (failed, fixed):  # what memory.remember does at close
            run_id = stack.store.list_incidents(10)
            run = next(r["run_id"] for r in run_id if r["workflow_id"] == state.workflow_id)
            done = await in_activity(
                memory.remember, state, workflow_id=state.workflow_id, run_id=run
            )
            assert done.stored, done.reason

        kill(container)
        now = fixed.model_copy(
            update={
                "alert": fixed.alert.model_copy(
                    update={"labels": {**fixed.alert.labels, "attempt": "both"}}
                )
            }
        )
        recall = await in_activity(memory.recall, recall_request(now))
        assert {p.workflow_id for p in recall.incidents} == {failed.workflow_id, fixed.workflow_id}
        assert fixed.triage is not None
        plan = runbook_plan(
            PlanRequest(
                incident_id="next",
                alert=now.alert,
                triage=fixed.triage,
                evidence=failed.evidence,  # the container is down, as it was then
                recall=recall,
            ),
            default_catalog(),
        )
        assert [a.tool for a in plan.actions] == ["docker.start"]
        assert (
            f"record: docker.start fixed FlakyDown on {container.name} 1 of 1 time, last just now"
            in plan.notes
        )
        assert any(n.startswith("ordered by verified record: docker.start") for n in plan.notes)

        # One fix so far: not flapping. A second real fix of the same alert on it: flapping.
        request = FlapRequest(alert="FlakyDown", target=target)
        assert not (await in_activity(memory.flapping, request)).flapping
        again = await stack.result(await post(stack, "FlakyDown", container, attempt="b"))
        assert again.outcome is Outcome.RESOLVED
        verdict = await in_activity(memory.flapping, request)
        assert verdict.flapping and verdict.fixes == 2
        assert [h.endswith("fixed by docker.start") for h in verdict.history] == [True, True]
