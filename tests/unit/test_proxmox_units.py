"""Proxmox pieces that need no server: config validation, resource ids, snapshot names, error
mapping, and the runbooks' matching and planning."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from proxmoxer.core import ResourceException

from activities.catalog import ToolFailure
from activities.incident import resolve_target
from activities.planner import runbook_plan
from activities.runbooks import load_runbooks, match
from activities.toolsets import default_catalog, pbs, proxmox
from core.config import ConfigError, Settings, load_settings
from core.models import (
    Alert,
    AlertStatus,
    Evidence,
    PlanRequest,
    TargetRef,
    ToolErrorKind,
    Triage,
)
from core.redact import redact_text

CATALOG = default_catalog()
BASE = {"name": "pve", "host": "pve.lan", "token_id": "root@pam!homelab", "token_secret": "s"}


def test_proxmox_target_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    target = Settings(
        docker=[], proxmox=[{**BASE, "token_secret": None, "token_secret_file": str(secret)}]
    ).proxmox[0]
    assert target.token_secret is not None and target.token_secret.get_secret_value() == "from-file"
    assert (target.token_user, target.token_name, target.port) == ("root@pam", "homelab", 8006)
    assert target.verify_ssl is True and target.snapshots.keep == 3
    assert target.memory_reserve == 512 * 1024 * 1024
    assert (
        Settings(docker=[], proxmox=[{**BASE, "memory_reserve": "1g"}]).proxmox[0].memory_reserve
        == 1024**3
    )
    assert "pve" not in repr(target.token_secret) and "from-file" not in repr(target)

    config = tmp_path / "homelab.yaml"
    config.write_text(
        "docker: []\nproxmox:\n  - {name: pve, host: pve.lan, token_id: 'root@pam', token_secret: x}\n"
    )
    with pytest.raises(ConfigError, match=r"proxmox\.0\.token_id"):
        load_settings(config)
    config.write_text(
        "docker: []\nproxmox:\n  - {name: pve, host: pve.lan, token_id: 'root@pam!a', "
        "token_secret: x, verify_ssl: /nonexistent/ca.pem}\n"
    )
    with pytest.raises(ConfigError, match="CA file /nonexistent/ca.pem does not exist"):
        load_settings(config)
    config.write_text(
        "docker: []\nproxmox:\n  - {name: pve, host: pve.lan, token_id: 'root@pam!a'}\n"
    )
    with pytest.raises(ConfigError, match="token_secret or token_secret_file is required"):
        load_settings(config)
    monkeypatch.setenv(
        "HOMELAB_PBS",
        '[{"name": "backup", "host": "pbs.lan", "token_id": "backup@pbs!ha", '
        '"token_secret": "env-secret", "datastores": ["store1"]}]',
    )
    config.write_text("docker: []\n")
    settings = load_settings(config)
    assert settings.pbs[0].port == 8007 and settings.pbs[0].datastores == ["store1"]
    assert "proxmox" in settings.services and "pbs" in settings.services


def test_resource_ids_follow_the_exporter() -> None:
    assert proxmox.parse_resource("lxc/200") == proxmox.Resource(kind="lxc", vmid=200)
    assert proxmox.parse_resource("qemu/100").vmid == 100
    assert proxmox.parse_resource("200") == proxmox.Resource(kind="guest", vmid=200)
    assert proxmox.parse_resource("node/pve1") == proxmox.Resource(kind="node", node="pve1")
    assert proxmox.parse_resource("storage/pve1/local-lvm") == proxmox.Resource(
        kind="storage", node="pve1", storage="local-lvm"
    )
    assert proxmox.parse_resource("cluster/lab").name == "lab"
    for bad in ("lxc/abc", "vm/100", "storage/pve1", "node/"):
        with pytest.raises(ToolFailure) as err:
            proxmox.parse_resource(bad)
        assert err.value.kind is ToolErrorKind.INVALID
    ref = TargetRef.parse("proxmox:pve/storage/pve1/local")
    assert (ref.target, ref.resource) == ("pve", "storage/pve1/local")


def test_safety_snapshot_names_are_valid_and_unique() -> None:
    valid = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,39}$")
    assert proxmox.safety_snapshot_name("incident-0123456789abcdef", set()) == "ha-0123456789abcdef"
    assert proxmox.safety_snapshot_name("incident-0123456789abcdef", {"ha-0123456789abcdef"}) == (
        "ha-0123456789abcdef-2"
    )
    long = proxmox.safety_snapshot_name("incident-" + "x.y" * 40, set())
    assert valid.match(long) and len(long) <= 40
    assert long != proxmox.safety_snapshot_name("incident-" + "x.y" * 41, set())
    manual = proxmox.safety_snapshot_name("", set())
    assert manual.startswith("ha-manual-") and valid.match(manual)


@pytest.mark.parametrize(
    ("status", "reason", "errors", "kind", "text"),
    [
        (401, "invalid token value!", None, ToolErrorKind.UNAUTHORIZED, "invalid token value!"),
        (
            403,
            "Permission check failed (/vms/1, VM.Audit)",
            None,
            ToolErrorKind.UNAUTHORIZED,
            "VM.Audit",
        ),
        (595, "No route to host", None, ToolErrorKind.UNREACHABLE, "No route to host"),
        (
            500,
            "Configuration file 'nodes/pve1/lxc/9.conf' does not exist",
            None,
            ToolErrorKind.NOT_FOUND,
            "9.conf",
        ),
        (500, "CT 200 already running", None, ToolErrorKind.CONFLICT, "already running"),
        (500, "CT is locked (backup)", None, ToolErrorKind.CONFLICT, "locked (backup)"),
        (
            400,
            "Parameter verification failed.",
            {"memory": "value must have a minimum value of 16"},
            ToolErrorKind.INVALID,
            "memory: value must have a minimum value of 16",
        ),
        (
            501,
            "Method 'GET /x' not implemented",
            None,
            ToolErrorKind.UNSUPPORTED,
            "not implemented",
        ),
    ],
)
def test_pve_errors_map_to_typed_failures(
    status: int, reason: str, errors: dict[str, str] | None, kind: ToolErrorKind, text: str
) -> None:
    failure = proxmox.translate(ResourceException(status, "x", reason, errors=errors))
    assert failure is not None and failure.kind is kind and text in failure.message
    assert failure.transient is (kind is ToolErrorKind.UNREACHABLE)


def test_pbs_errors_come_from_the_body() -> None:
    exc = ResourceException(
        400, "Bad Request", "Bad Request", errors={"errors": b"datastore 'x' does not exist"}
    )
    failure = pbs.translate(exc)
    assert failure is not None and failure.kind is ToolErrorKind.NOT_FOUND
    assert failure.message == "datastore 'x' does not exist"


def test_api_tokens_are_redacted() -> None:
    assert "s3cret" not in redact_text("Authorization: PBSAPIToken=backup@pbs!ha:s3cret-1234")
    assert "s3cret" not in redact_text("PVEAPIToken=root@pam!ha=s3cret-1234")


def _alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="f1",
        labels={"alertname": name, **labels},
        starts_at=datetime.now(UTC),
    )


def test_runbooks_match_the_exporter_alerts() -> None:
    runbooks = load_runbooks(CATALOG)
    expected = {
        "PveHighMemoryUsage": "pve-guest-high-memory",
        "PveVmCtDown": "pve-guest-down",
        "PveGuestDown": "pve-guest-down",
        "PveStorageAlmostFull": "pve-storage-full",
        "PveStorageFillingUp": "pve-storage-full",
        "PveNodeDown": "pve-node-down",
        "PveClusterNotQuorate": "pve-cluster-not-quorate",
        "PveGuestNotBackedUp": "pve-guest-not-backed-up",
    }
    for alert_name, runbook in expected.items():
        found = match(runbooks, _alert(alert_name, id="lxc/200"))
        assert found is not None and found.name == runbook
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "pve.rules.yml"
    text = rules.read_text()
    assert all(f"alert: {name}" in text for name in expected if name != "PveGuestDown")

    settings = Settings(docker=[], proxmox=[{**BASE, "instances": ["pve1.lan"]}])
    runbook = match(runbooks, _alert("PveStorageFillingUp"))
    assert runbook is not None
    target, notes = resolve_target(
        settings,
        runbook,
        _alert("PveStorageFillingUp", id="storage/pve1/local", instance="pve1.lan:9221"),
    )
    assert str(target) == "proxmox:pve/storage/pve1/local" and notes == []


def test_memory_runbook_plans_half_again_within_a_cap() -> None:
    runbooks = load_runbooks(CATALOG)
    runbook = next(r for r in runbooks if r.name == "pve-guest-high-memory")
    target = TargetRef(service="proxmox", target="pve", resource="lxc/201")
    triage = Triage(
        incident_type=runbook.incident_type,
        service="proxmox",
        target=target,
        severity="warning",
        critical=False,
        runbook=runbook,
        approval_timeout="5m",  # type: ignore[arg-type]
        approvers=[],
    )

    def plan(maxmem: int, percent: float, kind: str = "lxc") -> list[dict[str, object]]:
        evidence = [
            Evidence(
                key="guest",
                tool="proxmox.guest_status",
                target=str(target),
                ok=True,
                data={"type": kind, "running": True, "maxmem": maxmem},
            ),
            Evidence(
                key="usage",
                tool="proxmox.resource_usage",
                target=str(target),
                ok=True,
                data={"memory_percent": percent},
            ),
            Evidence(key="node", tool="proxmox.node_status", target=str(target), ok=True, data={}),
            Evidence(
                key="config", tool="proxmox.guest_config", target=str(target), ok=True, data={}
            ),
        ]
        request = PlanRequest(
            incident_id="i", alert=_alert("PveHighMemoryUsage"), triage=triage, evidence=evidence
        )
        return [a.params for a in runbook_plan(request, CATALOG).actions]

    mib = 1024 * 1024
    assert plan(512 * mib, 95) == [{"memory": 768 * mib}]
    assert plan(12 * 1024 * mib, 95) == [{"memory": 16 * 1024 * mib}]
    assert plan(512 * mib, 80) == []
    assert plan(512 * mib, 95, kind="qemu") == []
