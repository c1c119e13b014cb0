"""Backup incidents end to end on the Temporal dev server, through the real intake and worker,
from the sweep's findings and from Prometheus-style alerts: a stale restic repository opens an
incident with the evidence and escalates; a damaged borg repository escalates with the check's
errors; a stale lock is removed and the incident resolves; a wrong password and a missing
repository escalate with typed errors and never show the password."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.catalog import TargetClients
from activities.sweeps import Sweeper
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.models import Alert, ChangeResult, IncidentState, Outcome
from tests.integration.stack import Stack, alertmanager_payload, as_webhook, running_stack
from tests.toolsets.backups.conftest import PASSWORD, Repos, repo_config, target

pytestmark = pytest.mark.integration


async def sweep_and_post(
    stack: Stack, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], IncidentState]:
    """Run the backup sweep, post the wanted findings to the intake, wait for their incidents."""
    sweeper = Sweeper(stack.settings, ToolRunner(default_catalog(), TargetClients(stack.settings)))
    findings: list[Alert] = await sweeper.backups()
    chosen = {(a.name, a.labels["repository"]): a for a in findings}
    assert wanted <= set(chosen), set(chosen)
    response = await stack.post(alertmanager_payload(*(as_webhook(chosen[k]) for k in wanted)))
    assert response.status_code == 202, response.text
    return {k: await stack.result(f"incident-{chosen[k].fingerprint}") for k in wanted}


async def test_stale_damaged_and_locked_repositories(
    dev_env: WorkflowEnvironment, repos: Repos, tmp_path: Path
) -> None:
    log = tmp_path / "backup-old.log"
    log.write_text("01:00:02 restic backup: Fatal: unable to open repository: connection refused\n")
    locked = repos.copy(repos.home, "e2e-locked")
    dead_pid = locked.leave_stale_lock()
    backups = [
        target(
            repo_config(repos.old, "old", job={"log_file": str(log)}),
            repo_config(repos.broken, "broken"),
            repo_config(locked, "locked"),
        )
    ]
    async with running_stack(dev_env, None, tmp_path, backups=backups) as stack:
        states = await sweep_and_post(
            stack,
            {
                ("BackupTooOld", "old"),
                ("BackupCheckFailed", "broken"),
                ("BackupStaleLock", "locked"),
            },
        )
        stale = states[("BackupTooOld", "old")]
        assert stale.outcome is Outcome.ESCALATED and not stale.actions
        evidence = {e.key: e for e in stale.evidence}
        assert (
            evidence["snapshots"].data["stale"] is True and evidence["snapshots"].data["count"] == 1
        )
        assert evidence["snapshots"].data["newest_age_seconds"] > 9 * 86400
        assert evidence["locks"].data["stale_count"] == 0
        assert evidence["job"].data["errors"] == [log.read_text().strip()]

        damaged = states[("BackupCheckFailed", "broken")]
        assert damaged.outcome is Outcome.ESCALATED and not damaged.actions
        assert damaged.triage is not None and damaged.triage.severity == "critical"
        check = next(e for e in damaged.evidence if e.key == "check")
        assert check.data["ok"] is False
        assert any("Segment entry checksum mismatch" in line for line in check.data["errors"])

        unlocked = states[("BackupStaleLock", "locked")]
        assert unlocked.outcome is Outcome.RESOLVED, unlocked.notes
        [change] = stack.store.list_changes(unlocked.workflow_id)
        assert change.action == "backups.unlock" and change.result is ChangeResult.APPLIED
        assert change.before["locks"][0]["pid"] == dead_pid and change.after["count"] == 0
    assert not any((locked.path / "locks").iterdir())  # restic's own view: no lock left


def prometheus_alert(name: str, repository: str, kind: str) -> dict[str, Any]:
    """What backups.rules.yml sends: no homelab_target, the node_exporter instance instead."""
    return {
        "status": "firing",
        "labels": {"alertname": name, "instance": "nas:9100", "job": "node", "kind": kind,
                   "repository": repository, "severity": "warning"},
        "annotations": {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": uuid.uuid4().hex[:16],
    }  # fmt: skip


async def test_wrong_password_and_missing_repository_escalate_typed(
    dev_env: WorkflowEnvironment, repos: Repos, tmp_path: Path
) -> None:
    wrong = "definitely-not-" + PASSWORD.replace(" ", "-")
    backups = [
        target(
            repo_config(repos.home, "wrongpw", password=wrong, password_file=None),
            repo_config(repos.media, "gone", repository=str(tmp_path / "no-such-repo")),
            instances=["nas:9100"],
        )
    ]
    async with running_stack(dev_env, None, tmp_path, backups=backups) as stack:
        unreadable = prometheus_alert("BackupRepositoryUnreadable", "wrongpw", "restic")
        missing = prometheus_alert("BackupTooOld", "gone", "borg")
        response = await stack.post(alertmanager_payload(unreadable, missing))
        assert response.status_code == 202, response.text
        denied = await stack.result(f"incident-{unreadable['fingerprint']}")
        gone = await stack.result(f"incident-{missing['fingerprint']}")
    assert denied.outcome is Outcome.ESCALATED and not denied.actions
    kinds = {e.key: e.error.kind.value for e in denied.evidence if e.error}
    assert kinds["snapshots"] == kinds["check"] == kinds["locks"] == "unauthorized"
    assert wrong not in denied.model_dump_json()
    assert gone.outcome is Outcome.ESCALATED and not gone.actions
    snapshots = next(e for e in gone.evidence if e.key == "snapshots")
    assert snapshots.error is not None and snapshots.error.kind.value == "not_found"
    assert "does not exist" in snapshots.error.message
