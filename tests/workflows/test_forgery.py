"""Forged decisions, tried on every path: a name proves nothing, a signature only what it signed.

The time-skipping server runs the real workflow, gate, verifier (``approvals.verify``), policy,
lock and store; the Docker tools are faked. Each forgery is refused and recorded; the write never
runs; only a proper signature from a listed approver counts.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from approval import signing
from core.config import Settings
from core.models import (
    ApprovalDecision,
    ApprovalSignal,
    ApprovalVerdict,
    ChangeResult,
    IncidentState,
    Outcome,
)
from tests import approvals
from tests.workflows.fakes import FakeDocker
from tests.workflows.test_incident_gate import exited_alert, running, start, wait_pending
from workflows.incident import IncidentWorkflow


def critical(settings_factory: Any, **approval: Any) -> Settings:
    return settings_factory(
        docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}],
        approval={"approvers": ["alice", "bob"], "critical": ["docker:lab/*"], **approval},
    )


async def refused_then_timeout(
    handle: WorkflowHandle[Any, IncidentState], fake: FakeDocker
) -> IncidentState:
    state = await handle.result()
    assert fake.writes == [], "a forged decision made the write run"
    assert state.actions[0].approval is ApprovalVerdict.TIMEOUT
    assert state.actions[0].result is ChangeResult.TIMEOUT
    return state


async def test_a_claimed_name_is_not_an_approval(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    """`temporal workflow signal --name approve --input '{"approver":"alice"}'`."""
    settings = critical(settings_factory)
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake) as parts:
        handle = await start(ts_env, settings, exited_alert())
        await wait_pending(handle)
        await handle.signal(IncidentWorkflow.approve, ApprovalSignal(approver="alice"))
        state = await refused_then_timeout(handle, fake)
    refused = [a for a in state.approvals if not a.accepted]
    assert len(refused) == 1 and refused[0].approver == "alice"
    assert "unsigned decision" in refused[0].reason
    stored = [r for r in parts.store.list_approvals(handle.id) if not r["accepted"]]
    assert len(stored) == 1 and "unsigned" in stored[0]["reason"]


async def test_forged_signatures_are_refused_on_every_path(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = critical(settings_factory)
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, exited_alert())
        pending = await wait_pending(handle)
        request = pending.pending_approval
        assert request is not None
        wid = handle.id
        bob = approvals.key(settings, "bob")
        approvals.key(settings, "alice")
        mallory_private, _ = signing.generate()  # a key nobody trusts
        forgeries: list[tuple[str, dict[str, str]]] = [
            ("bob's key, alice's name", signing.sign_decision(bob, wid, request, True, "alice")),
            (
                "alice's name, bob as signer",
                signing.sign_decision(bob, wid, request, True, "alice", signer="bob"),
            ),
            (
                "an untrusted key",
                signing.sign_decision(mallory_private, wid, request, True, "alice"),
            ),
            (
                "another incident",
                signing.sign_decision(
                    approvals.key(settings, "alice"), "incident-other", request, True, "alice"
                ),
            ),
            (
                "another run",
                signing.sign_decision(
                    approvals.key(settings, "alice"),
                    wid,
                    request.model_copy(update={"run_id": "another-run"}),
                    True,
                    "alice",
                ),
            ),
            (
                "another preview",
                signing.sign_decision(
                    approvals.key(settings, "alice"),
                    wid,
                    request.model_copy(update={"binding": "0" * 64}),
                    True,
                    "alice",
                ),
            ),
            (
                "a denial's signature used to approve",
                signing.sign_decision(
                    approvals.key(settings, "alice"), wid, request, False, "alice"
                ),
            ),
            (
                "the bot's name for a CLI approver",
                signing.sign_decision(bob, wid, request, True, "alice", signer="telegram-bot"),
            ),
        ]
        for label, proof in forgeries:
            signal = ApprovalSignal(approver="alice", action_id=request.id, **proof)
            await handle.signal(IncidentWorkflow.approve, signal)
            decision = ApprovalDecision(
                approve=True, approver="alice", action_id=request.id, **proof
            )
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(IncidentWorkflow.decide, decision)
            assert fake.writes == [], label
        state = await refused_then_timeout(handle, fake)
    refused = [a for a in state.approvals if not a.accepted]
    assert len(refused) >= len(forgeries)  # every signal refused (updates too, when they got in)
    assert not any(a.accepted and a.verdict is ApprovalVerdict.APPROVED for a in state.approvals)


async def test_a_proper_signature_counts_once_and_says_how(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = critical(settings_factory)
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, exited_alert())
        pending = await wait_pending(handle)
        assert pending.pending_approval is not None
        good = approvals.signal(settings, handle.id, pending.pending_approval, "alice")
        await handle.signal(IncidentWorkflow.approve, good)
        await handle.signal(IncidentWorkflow.approve, good)  # the same button pressed again
        state = await handle.result()
    assert [w.tool for w in fake.writes] == ["docker.start"]
    assert state.outcome is Outcome.RESOLVED
    accepted = [a for a in state.approvals if a.accepted and a.verdict is ApprovalVerdict.APPROVED]
    assert len(accepted) == 1 and accepted[0].via == "signed:alice"
    replayed = [a for a in state.approvals if not a.accepted]
    assert len(replayed) == 1 and "already decided" in replayed[0].reason


async def test_unsigned_counts_only_where_the_lab_allows_it(
    ts_env: WorkflowEnvironment, settings_factory: Any
) -> None:
    settings = critical(settings_factory, allow_unsigned=True)
    fake = FakeDocker(running=False)
    async with running(ts_env, settings, fake):
        handle = await start(ts_env, settings, exited_alert())
        await wait_pending(handle)
        await handle.signal(IncidentWorkflow.approve, ApprovalSignal(approver="alice"))
        state = await handle.result()
    assert [w.tool for w in fake.writes] == ["docker.start"]
    accepted = [a for a in state.approvals if a.accepted]
    assert accepted[0].via == "unsigned"  # said, not hidden
