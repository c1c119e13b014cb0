"""The backup alert rules and the textfile recipe that feeds them: promtool checks and unit-tests
deploy/prometheus/backups.rules.yml and pbs.rules.yml, the recipe writes valid metrics for real
repositories, and the runbooks plan the right (or no) action from the evidence."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from activities.planner import runbook_plan
from activities.runbooks import load_runbooks, match
from activities.toolsets import default_catalog
from core.models import Alert, AlertStatus, Evidence, PlanRequest, TargetRef, Triage
from tests.toolsets.backups.conftest import Repos
from tests.toolsets.helpers import promtool, promtool_check, promtool_test

ROOT = Path(__file__).resolve().parents[3]
BACKUP_RULES = ROOT / "deploy" / "prometheus" / "backups.rules.yml"
PBS_RULES = ROOT / "deploy" / "prometheus" / "pbs.rules.yml"
RECIPE = ROOT / "deploy" / "backups" / "backup-textfile.py"
CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)
NOW = 1_800_000_000  # promtool's clock starts at 0: series values are times relative to it


def test_rules_pass_promtool_check() -> None:
    assert "SUCCESS: 4 rules found" in promtool_check(BACKUP_RULES)
    assert "SUCCESS: 2 rules found" in promtool_check(PBS_RULES)


def test_backup_rules_fire_with_the_labels_the_runbooks_need(tmp_path: Path) -> None:
    labels = 'instance="nas:9100",job="node",kind="restic",repository="home"'
    other = 'instance="nas:9100",job="node",kind="borg",repository="media"'
    hour = 3600
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            # evaluated at 30h: home's newest snapshot is from 1h (29h old), media's from 28h (2h old)
            "input_series": [
                {
                    "series": f"backup_last_snapshot_timestamp_seconds{{{labels}}}",
                    "values": f"{hour}x1900",
                },
                {
                    "series": f"backup_last_snapshot_timestamp_seconds{{{other}}}",
                    "values": f"{28 * hour}x1900",
                },
                {"series": f"backup_collector_success{{{labels}}}", "values": "1x1900"},
                {"series": f"backup_collector_success{{{other}}}", "values": "0x1900"},
                {"series": f"backup_check_success{{{labels}}}", "values": "1x1900"},
                {"series": f"backup_check_success{{{other}}}", "values": "0x1900"},
                {
                    "series": f"backup_oldest_lock_timestamp_seconds{{{other}}}",
                    "values": f"{25 * hour}x1900",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "30h",
                    "alertname": "BackupTooOld",
                    "exp_alerts": [{"exp_labels": {**_labels(labels), "severity": "warning"}}],
                },
                {
                    "eval_time": "30h",
                    "alertname": "BackupRepositoryUnreadable",
                    "exp_alerts": [{"exp_labels": {**_labels(other), "severity": "critical"}}],
                },
                {
                    "eval_time": "30h",
                    "alertname": "BackupCheckFailed",
                    "exp_alerts": [{"exp_labels": {**_labels(other), "severity": "critical"}}],
                },
                {
                    "eval_time": "30h",
                    "alertname": "BackupStaleLock",
                    "exp_alerts": [{"exp_labels": {**_labels(other), "severity": "warning"}}],
                },
            ],
        }
    ]
    promtool_test(BACKUP_RULES, tests, tmp_path)


def test_pbs_rules_fire_per_datastore_and_backup(tmp_path: Path) -> None:
    bad = 'instance="pbs:10019",job="pbs",datastore="store1",namespace="",vm_id="100",vm_name="app"'
    good = 'instance="pbs:10019",job="pbs",datastore="store1",namespace="",vm_id="200",vm_name="db"'
    store = 'instance="pbs:10019",job="pbs",datastore="store1"'
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f"pbs_snapshot_vm_last_verify{{{bad}}}", "values": "0x10"},
                {"series": f"pbs_snapshot_vm_last_verify{{{good}}}", "values": "1x10"},
                {"series": f"pbs_snapshot_vm_count{{{bad}}}", "values": "3x10"},
                {"series": f"pbs_snapshot_vm_count{{{good}}}", "values": "3x10"},
                {"series": f"pbs_used{{{store}}}", "values": "95x10"},
                {"series": f"pbs_size{{{store}}}", "values": "100x10"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "ProxmoxBackupSnapshotVerifyFailed",
                    "exp_alerts": [{"exp_labels": {**_labels(bad), "severity": "warning"}}],
                },
                {
                    "eval_time": "5m",
                    "alertname": "ProxmoxBackupPoolDiskOutOfSpace",
                    "exp_alerts": [{"exp_labels": {**_labels(store), "severity": "warning"}}],
                },
            ],
        }
    ]
    promtool_test(PBS_RULES, tests, tmp_path)


def _labels(text: str) -> dict[str, str]:
    """Label pairs of a series selector; an empty value is no label at all."""
    pairs = (pair.split("=", 1) for pair in text.split(","))
    return {k: v.strip('"') for k, v in pairs if v.strip('"')}


def test_the_textfile_recipe_writes_valid_metrics_for_real_repositories(
    repos: Repos, tmp_path: Path
) -> None:
    started = time.time()
    for repo, name in ((repos.old, "old"), (repos.media, "media"), (repos.broken, "broken")):
        done = subprocess.run(
            [
                sys.executable, str(RECIPE), "--kind", repo.kind, "--name", name, "--repo", str(repo.path),
                "--password-file", str(repo.password_file), "--dir", str(tmp_path), "--check",
                "--label", "homelab_target=nas",
            ],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **repo.env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    text = {p.name: p.read_text() for p in tmp_path.glob("backup_*.prom")}
    assert set(text) == {
        "backup_restic_old.prom",
        "backup_borg_media.prom",
        "backup_borg_broken.prom",
    }
    for body in text.values():
        check = subprocess.run(
            [promtool(), "check", "metrics"], input=body, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    values = {
        line.split("{")[0] + "/" + line.split('repository="')[1].split('"')[0]: float(
            line.rsplit(" ", 1)[1]
        )
        for body in text.values()
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert abs((started - values["backup_last_snapshot_timestamp_seconds/old"]) / 86400 - 10) < 0.1
    assert values["backup_snapshots/media"] == 2 and values["backup_collector_success/old"] == 1
    assert values["backup_check_success/old"] == 1 and values["backup_check_success/broken"] == 0
    assert 'homelab_target="nas"' in text["backup_restic_old.prom"]


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="fp",
        labels={"alertname": name, **labels},
        starts_at="2026-12-01T00:00:00Z",  # type: ignore[arg-type]
    )


def plan(
    runbook_name: str, a: Alert, service: str, resource: str, **evidence: dict[str, Any]
) -> Any:
    runbook = next(r for r in RUNBOOKS if r.name == runbook_name)
    target = TargetRef(service=service, target="nas", resource=resource)
    triage = Triage(
        incident_type=runbook.incident_type, service=service, target=target, severity="warning",
        critical=False, runbook=runbook, approval_timeout="5m", approvers=[],
    )  # fmt: skip
    ev = [
        Evidence(key=k, tool="t", target=str(target), ok=True, data=v) for k, v in evidence.items()
    ]
    return runbook_plan(PlanRequest(incident_id="i", alert=a, triage=triage, evidence=ev), CATALOG)


def test_each_backup_alert_has_its_runbook() -> None:
    expected = {
        "BackupTooOld": "backup-stale",
        "BackupStaleLock": "backup-stale-lock",
        "BackupCheckFailed": "backup-check-failed",
        "BackupRepositoryUnreadable": "backup-check-failed",
        "ProxmoxBackupSnapshotVerifyFailed": "pbs-verify-failed",
        "ProxmoxBackupPoolDiskOutOfSpace": "pbs-datastore-gc",
        "PbsGarbageCollectionFailed": "pbs-datastore-gc",
        "PveGuestBackupTooOld": "pve-guest-not-backed-up",
    }
    for name, runbook in expected.items():
        found = match(RUNBOOKS, alert(name))
        assert found is not None and found.name == runbook, name


def test_backup_runbooks_plan_from_the_evidence() -> None:
    stale = alert("BackupTooOld", repository="home")
    locked = plan(
        "backup-stale",
        stale,
        "backups",
        "home",
        snapshots={"stale": True},
        locks={"stale_count": 1},
        job={},
    )
    assert [a.tool for a in locked.actions] == ["backups.unlock"]
    nothing = plan(
        "backup-stale",
        stale,
        "backups",
        "home",
        snapshots={"stale": True},
        locks={"stale_count": 0},
        job={},
    )
    assert nothing.actions == [] and nothing.escalate

    failed = alert("BackupCheckFailed", repository="home")
    damaged = plan(
        "backup-check-failed",
        failed,
        "backups",
        "home",
        check={"ok": False},
        snapshots={},
        locks={},
        encryption={},
    )
    assert damaged.actions == [] and damaged.escalate
    reread = plan(
        "backup-check-failed",
        failed,
        "backups",
        "home",
        check={"ok": True},
        snapshots={},
        locks={},
        encryption={},
    )
    assert [a.tool for a in reread.actions] == ["backups.check_read_data"]
    unreadable = alert("BackupRepositoryUnreadable", repository="home")
    assert plan(
        "backup-check-failed",
        unreadable,
        "backups",
        "home",
        check={"ok": True},
        snapshots={},
        locks={},
        encryption={},
    ).escalate

    verify = alert("ProxmoxBackupSnapshotVerifyFailed", datastore="store1", vm_id="100")
    again = plan("pbs-verify-failed", verify, "pbs", "store1", verify={"ok": False}, store={})
    assert [(a.tool, a.params) for a in again.actions] == [
        ("pbs.start_verify", {"backup_id": "100", "backup_type": None})
    ]
    gc = alert("PbsGarbageCollectionFailed", datastore="store1")
    failed_gc = plan(
        "pbs-datastore-gc",
        gc,
        "pbs",
        "store1",
        store={"datastores": [{"gc": {"ok": False, "pending_bytes": 0}}]},
        jobs={},
    )
    assert [a.tool for a in failed_gc.actions] == ["pbs.start_gc"]
    full = alert("ProxmoxBackupPoolDiskOutOfSpace", datastore="store1")
    no_garbage = plan(
        "pbs-datastore-gc",
        full,
        "pbs",
        "store1",
        store={"datastores": [{"gc": {"ok": True, "pending_bytes": 0}}]},
        jobs={},
    )
    assert no_garbage.actions == [] and no_garbage.escalate
