"""The daily backup sweep, as the activity the schedule runs, over real restic and borg
repositories, the PBS fake and the PVE fake: exactly the expected findings, each an alert a
runbook answers with the target and resource labelled and the evidence annotated, and the same
fingerprints on a second run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.catalog import TargetClients
from activities.incident import resolve_target
from activities.runbooks import load_runbooks, match
from activities.sweeps import SweepActivities
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.models import Alert, Outcome
from core.schedules import SweepInput
from tests.conftest import make_settings
from tests.fakes.pbs import FakePBS
from tests.fakes.pve import FakePVE
from tests.fakes.tls import make_certs
from tests.integration.proxmox_lab import (
    PBS_TOKEN_ID,
    PBS_TOKEN_SECRET,
    TOKEN_ID,
    TOKEN_SECRET,
    build_lab,
)
from tests.schedules import settings_on, sweep_twice
from tests.toolsets.backups.conftest import Repos, repo_config, target

CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)
SWEEP = SweepInput(schedule="backup-sweep", sweep="backups")


@pytest.fixture
def proxmox(tmp_path: Path) -> Iterator[tuple[FakePVE, FakePBS]]:
    """The Proxmox lab's node and PBS: guests in and out of the backup job, a stale backup,
    a snapshot that failed verification."""
    certs = make_certs(tmp_path / "certs")
    pve = FakePVE(certs, {TOKEN_ID: TOKEN_SECRET}, task_delay=0.1, state_dir=tmp_path / "node")
    pbs = FakePBS(certs, {PBS_TOKEN_ID: PBS_TOKEN_SECRET})
    build_lab(pve, pbs)
    pve.start()
    pbs.start()
    yield pve, pbs
    pve.stop()
    pbs.stop()


def proxmox_sections(pve: FakePVE, pbs: FakePBS) -> dict[str, Any]:
    ca = str(pve.certs.ca_file)
    return {
        "proxmox": [
            {"name": "pve", "host": "127.0.0.1", "port": pve.port, "token_id": TOKEN_ID,
             "token_secret": TOKEN_SECRET, "verify_ssl": ca, "timeout": 5}
        ],
        "pbs": [
            {"name": "backup", "host": "127.0.0.1", "port": pbs.port, "token_id": PBS_TOKEN_ID,
             "token_secret": PBS_TOKEN_SECRET, "verify_ssl": ca, "timeout": 5}
        ],
    }  # fmt: skip


async def test_backup_sweep_finds_exactly_the_problems(
    repos: Repos, proxmox: tuple[FakePVE, FakePBS], tmp_path: Path
) -> None:
    locked = repos.copy(repos.home, "sweep-locked")
    locked.leave_stale_lock()
    (tmp_path / "wrong").write_text("wrong password\n")
    settings = make_settings(
        tmp_path,
        backups=[
            target(
                repo_config(repos.home, "home"),
                repo_config(repos.old, "old"),
                repo_config(repos.broken, "broken"),
                repo_config(locked, "locked"),
                repo_config(repos.media, "wrongpw", password_file=str(tmp_path / "wrong")),
            )
        ],
        **proxmox_sections(*proxmox),
    )
    activities = SweepActivities(settings, ToolRunner(CATALOG, TargetClients(settings)))
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    first: list[Alert] = (await env.run(activities.backups, SWEEP)).alerts

    found = {(a.name, a.labels["homelab_target"], _resource(a)) for a in first}
    assert found == {
        ("BackupTooOld", "nas", "old"),
        ("BackupCheckFailed", "nas", "broken"),
        ("BackupStaleLock", "nas", "locked"),
        ("BackupRepositoryUnreadable", "nas", "wrongpw"),
        ("PveGuestNotBackedUp", "pve", "lxc/202"),
        ("PveGuestNotBackedUp", "pve", "lxc/203"),
        ("PveGuestBackupTooOld", "pve", "lxc/201"),
        ("PveGuestBackupTooOld", "pve", "qemu/100"),
        ("ProxmoxBackupSnapshotVerifyFailed", "backup", "store1"),
    }
    assert len(first) == len(found) and len(beats) == 7  # one heartbeat per repository and API

    by_name = {(a.name, _resource(a)): a for a in first}
    old = by_name[("BackupTooOld", "old")]
    assert old.labels["severity"] == "warning" and old.labels["kind"] == "restic"
    assert old.labels["homelab_source"] == "sweep" and old.fingerprint.startswith("sweep-")
    assert all(a.source == "sweep" for a in first)
    assert old.annotations["summary"].startswith("restic repository old: newest snapshot 10d")
    assert int(old.annotations["newest_age_seconds"]) > 9 * 86400
    broken = by_name[("BackupCheckFailed", "broken")]
    assert (
        broken.labels["severity"] == "critical"
        and "Segment entry checksum mismatch" in broken.annotations["errors"]
    )
    wrong = by_name[("BackupRepositoryUnreadable", "wrongpw")]
    assert wrong.annotations["kind"] == "unauthorized" and "wrong password" not in str(wrong.labels)
    verify = by_name[("ProxmoxBackupSnapshotVerifyFailed", "store1")]
    assert verify.labels["vm_id"] == "100" and verify.labels["backup_type"] == "vm"

    # every finding reaches its runbook and names a configured target and resource
    for alert in first:
        runbook = match(RUNBOOKS, alert)
        assert runbook is not None, alert.name
        ref, notes = resolve_target(settings, runbook, alert)
        assert ref is not None, (alert.name, notes)
        assert ref.target == alert.labels["homelab_target"] and ref.resource == _resource(alert)

    second: list[Alert] = (await env.run(activities.backups, SWEEP)).alerts
    assert sorted(a.fingerprint for a in second) == sorted(a.fingerprint for a in first)


def _resource(alert: Alert) -> str:
    for label in ("repository", "certificate", "datastore", "id"):
        if label in alert.labels:
            return alert.labels[label]
    raise AssertionError(f"{alert.name} names no resource")


async def test_backup_sweep_schedule_opens_exactly_the_expected_incidents(
    dev_env: WorkflowEnvironment, repos: Repos, tmp_path: Path, task_queue: str
) -> None:
    """The sweep as a user schedules it: applied and listed; a triggered run opens exactly the
    incidents of the stale and the unreadable repository (the healthy one none), each diagnosed
    by its runbook on its repository; a target at a site whose worker is down is noted as not
    swept, the rest routed; a second run opens none."""
    (tmp_path / "wrong").write_text("wrong password\n")
    repositories = [  # no `check` (the sweep's own test runs it): three sweeps run here
        repo_config(repos.home, "home", sweep_check=False),
        repo_config(repos.old, "old", sweep_check=False),
        repo_config(repos.media, "wrongpw", password_file=str(tmp_path / "wrong")),
    ]
    far = target(repo_config(repos.old, "old", sweep_check=False), name="far", site="far")
    schedule = {
        "workflow": "SweepWorkflow",
        "cron": "15 5 * * *",
        "input": {"sweep": "backups", "site_wait": "2s"},
    }
    settings = settings_on(
        dev_env,
        tmp_path,
        task_queue,
        backups=[target(*repositories), far],
        schedules={"nightly-backups": schedule},
    )
    done = await sweep_twice(dev_env, settings, "nightly-backups", "backups", served=[])

    assert done.applied == {"nightly-backups": "created"}
    listed = done.listed["nightly-backups"]
    assert listed.workflow == "SweepWorkflow" and listed.spec.startswith("cron 15 5 * * *")
    assert {(a.name, a.labels["repository"]) for a in done.expected} == {
        ("BackupTooOld", "old"),
        ("BackupRepositoryUnreadable", "wrongpw"),
    }
    wanted = {f"incident-{a.fingerprint}" for a in done.expected}
    assert done.first.findings == 2 and done.first.opened == 2
    assert {r.workflow_id for r in done.first.routed} == wanted
    assert done.runs == sorted(wanted)  # exactly these on the server, each run once
    [note] = done.first.notes
    assert note.startswith("site far: not swept") and "ScheduleToStart" in note, note

    by_repo = {s.alert.labels["repository"]: s for s in done.states.values()}
    for repo, state in by_repo.items():
        assert state.alert.source == "sweep" and state.alert.labels["schedule"] == "nightly-backups"
        assert state.triage is not None and state.triage.runbook is not None, state.notes
        assert str(state.triage.target) == f"backups:nas/{repo}", state.triage.notes
        assert state.outcome is Outcome.ESCALATED and not state.actions  # nothing to fix here
    snapshots = next(e for e in by_repo["old"].evidence if e.key == "snapshots")
    assert snapshots.data["stale"] is True

    again = done.second
    assert again.findings == 2 and again.opened == 0 and not again.routed
