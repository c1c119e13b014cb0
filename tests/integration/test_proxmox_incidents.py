"""Proxmox alerts in → fixed (or rolled back, or escalated), through the real intake, worker and
Temporal dev server, against the PVE API fake (HTTPS, CA-verified) and the lab's real sshd."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ApprovalVerdict, ChangeResult, Outcome, Phase
from tests.fakes.pve import MIB
from tests.integration.proxmox_lab import Lab, proxmox_lab
from tests.integration.stack import alertmanager_payload, running_stack
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with proxmox_lab(tmp_path / "lab", task_delay=0.1) as lab:
        yield lab


def pve_alert(name: str, resource: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "id": resource,
            "instance": "pve1.lab:9221",
            "job": "pve",
            "severity": "warning",
            **labels,
        },
        "annotations": {"summary": f"{name} on {resource}"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }


def proxmox(lab: Lab, **overrides: Any) -> list[dict[str, Any]]:
    return [lab.proxmox_target(instances=["pve1.lab"], **overrides)]


async def test_critical_container_under_memory_pressure_waits_then_snapshot_and_raise(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    guest = lab.pve.guests[201]
    guest.mem_used = 490 * MIB  # 95.7 % of 512 MiB
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        proxmox=proxmox(lab),
        pbs=[lab.pbs_target()],
        approval={"critical": ["proxmox:*/lxc/201"]},
    ) as stack:
        alert = pve_alert("PveHighMemoryUsage", "lxc/201")
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        wid = f"incident-{alert['fingerprint']}"
        snapshot = f"ha-{alert['fingerprint']}"
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        request = pending.pending_approval
        assert request is not None and request.level.value == "HARD"
        assert any("critical pattern" in r for r in request.reasons)
        assert request.preview.startswith("memory 512 MiB → 768 MiB on CT 201 (db) on node pve1")
        assert f"safety snapshot {snapshot} first" in request.preview
        assert request.rollback_plan.startswith("proxmox.snapshot_rollback")
        assert guest.config["memory"] == 512 and not guest.snapshots  # nothing before approval

        record = await stack.decide(
            wid,
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        assert record.verdict is ApprovalVerdict.APPROVED
        state = await stack.result(wid)

        assert state.outcome is Outcome.RESOLVED and state.phase is Phase.RESOLVED
        assert state.triage is not None and str(state.triage.target) == "proxmox:pve/lxc/201"
        assert guest.config["memory"] == 768 and snapshot in guest.snapshots
        assert guest.snapshots[snapshot]["config"]["memory"] == 512
        assert state.verification is not None and state.verification.passed
        changes = stack.store.list_changes(wid)
        assert [(c.action, c.result, c.approver) for c in changes] == [
            ("proxmox.update_resources", ChangeResult.APPLIED, "alice")
        ]
        change = changes[0]
        assert change.rollback_action == "proxmox.snapshot_rollback"
        assert change.rollback_params == {"snapshot": snapshot, "start": True}
        assert change.before["memory_mib"] == 512 and change.after["memory_mib"] == 768
        assert change.after["safety_snapshot"] == snapshot
        assert change.params == {"memory": 768 * MIB}


async def test_failed_verification_rolls_back_to_the_safety_snapshot(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    guest = lab.pve.guests[201]
    guest.leak = 0.95  # a leak: usage follows any limit, so more memory does not help
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        proxmox=proxmox(lab),
        approval={"critical": ["proxmox:*/lxc/201"]},
    ) as stack:
        alert = pve_alert("PveHighMemoryUsage", "lxc/201")
        await stack.post(alertmanager_payload(alert))
        wid = f"incident-{alert['fingerprint']}"
        snapshot = f"ha-{alert['fingerprint']}"
        await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        await stack.decide(
            wid,
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        # Rolling back to the snapshot discards data (HARD, critical guest): the undo is asked
        # for too, like any write, instead of running unchecked.
        undo = await stack.wait_state(
            wid,
            lambda s: (
                s.pending_approval is not None
                and s.pending_approval.action.tool == "proxmox.snapshot_rollback"
            ),
            timeout=60,
        )
        assert undo.pending_approval is not None
        assert any("undoing a change" in r for r in undo.pending_approval.reasons)
        await stack.decide(wid, ApprovalDecision(approve=True, approver="alice", via="cli"))
        state = await stack.result(wid, timeout=120)

        assert state.outcome is Outcome.ROLLED_BACK and state.phase is Phase.ESCALATED
        assert state.verification is not None and not state.verification.passed
        assert "memory_percent" in state.verification.detail
        assert guest.config["memory"] == 512 and guest.status == "running"
        assert guest.config["parent"] == snapshot  # the guest was rolled back to it
        changes = stack.store.list_changes(wid)
        assert [(c.step, c.action, c.result) for c in changes] == [
            ("remediate", "proxmox.update_resources", ChangeResult.APPLIED),
            ("rollback", "proxmox.snapshot_rollback", ChangeResult.APPLIED),
        ]
        assert changes[1].rollback_of == changes[0].change_id
        assert changes[1].params == {"snapshot": snapshot, "start": True}
        assert changes[1].after["memory_mib"] == 512
        assert state.rollbacks and state.rollbacks[0].startswith(
            "proxmox.snapshot_rollback on proxmox:pve/lxc/201: applied"
        )


async def test_a_denied_rollback_is_not_run_and_the_incident_says_so(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    guest = lab.pve.guests[201]
    guest.leak = 0.95
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        proxmox=proxmox(lab),
        approval={"critical": ["proxmox:*/lxc/201"]},
    ) as stack:
        alert = pve_alert("PveHighMemoryUsage", "lxc/201")
        await stack.post(alertmanager_payload(alert))
        wid = f"incident-{alert['fingerprint']}"
        await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        await stack.decide(wid, ApprovalDecision(approve=True, approver="alice"))
        await stack.wait_state(
            wid,
            lambda s: (
                s.pending_approval is not None
                and s.pending_approval.action.tool == "proxmox.snapshot_rollback"
            ),
            timeout=60,
        )
        await stack.decide(wid, ApprovalDecision(approve=False, approver="alice"))
        state = await stack.result(wid, timeout=120)

    assert state.outcome is Outcome.ESCALATED  # not rolled back: a human said no
    assert guest.config["memory"] != 512  # the raise stays; nothing was discarded
    results = [(c.step, c.action, c.result) for c in stack.store.list_changes(wid)]
    assert results == [
        ("remediate", "proxmox.update_resources", ChangeResult.APPLIED),
        ("rollback", "proxmox.snapshot_rollback", ChangeResult.DENIED),
    ]


async def test_normal_container_gets_memory_without_approval_or_snapshot(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    guest = lab.pve.guests[200]
    guest.mem_used = 480 * MIB
    async with running_stack(
        dev_env, docker_engine, tmp_path, proxmox=proxmox(lab), pbs=[lab.pbs_target()]
    ) as stack:
        alert = pve_alert("PveHighMemoryUsage", "lxc/200")
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.RESOLVED
        assert [(a.action.tool, a.level.value, a.result) for a in state.actions] == [
            ("proxmox.update_resources", "SOFT", ChangeResult.APPLIED)
        ]
        assert guest.config["memory"] == 768 and not guest.snapshots
        change = stack.store.list_changes(state.workflow_id)[0]
        assert change.rollback_action == "proxmox.update_resources"
        assert change.rollback_params == {"memory": 512 * MIB}
        keys = {e.key: e for e in state.evidence}
        assert keys["usage"].data["memory_percent"] == 93.75 and keys["node"].ok


async def test_stopped_guest_is_started_and_verified(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    guest = lab.pve.guests[203]
    async with running_stack(dev_env, docker_engine, tmp_path, proxmox=proxmox(lab)) as stack:
        alert = pve_alert("PveVmCtDown", "lxc/203")
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.RESOLVED and guest.status == "running"
        change = stack.store.list_changes(state.workflow_id)[0]
        assert (change.action, change.result, change.rollback_action) == (
            "proxmox.start",
            ChangeResult.APPLIED,
            "proxmox.shutdown",
        )
        assert change.after["task"]["exitstatus"] == "OK"
        assert lab.pve.count("POST", r"/lxc/203/status/start") == 1


async def test_guest_not_backed_up_is_reported_with_pbs_evidence(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    async with running_stack(
        dev_env, docker_engine, tmp_path, proxmox=proxmox(lab), pbs=[lab.pbs_target()]
    ) as stack:
        alert = pve_alert("PveGuestNotBackedUp", "lxc/202")
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.ESCALATED and not state.actions
        coverage = next(e for e in state.evidence if e.key == "coverage")
        assert coverage.ok and coverage.data["covered"] is False
        assert coverage.data["pbs_errors"] == [] and coverage.data["last_backup"] is None
        assert any("covered" in note for note in state.notes)


async def test_wrong_token_escalates_with_a_clear_error_and_no_retries(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, lab: Lab
) -> None:
    lab.pve.guests[200].mem_used = 480 * MIB
    async with running_stack(
        dev_env, docker_engine, tmp_path, proxmox=proxmox(lab, token_secret="revoked-secret")
    ) as stack:
        alert = pve_alert("PveHighMemoryUsage", "lxc/200")
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.ESCALATED and not state.actions
        failures = [e for e in state.evidence if not e.ok]
        assert len(failures) == 4  # every diagnostic failed, typed, once
        assert {e.error.kind.value for e in failures if e.error} == {"unauthorized"}
        assert all("invalid token value!" in e.error.message for e in failures if e.error)
        assert "revoked-secret" not in str(state.model_dump())
        # the triage's name lookup and one request per diagnostic; then it escalates at once
        assert lab.pve.count(status=401) == lab.pve.count() == 5
        assert state.verification is None
        assert any("refused our credentials" in n for n in state.notes)
        assert stack.store.list_changes(state.workflow_id) == []
