from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from activities.planner import ParamError, resolve_param, runbook_plan
from activities.runbooks import RunbookError, load_runbooks, match
from activities.toolsets import default_catalog
from core.models import Alert, AlertStatus, Evidence, Plan, PlanRequest, TargetRef, Triage

CATALOG = default_catalog()


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="f1",
        labels={"alertname": name, **labels},
        starts_at=datetime.now(UTC),
    )


def test_builtin_runbooks_load_and_match() -> None:
    runbooks = load_runbooks(CATALOG)
    names = {rb.name for rb in runbooks}
    assert {
        "docker-container-exited",
        "docker-container-oom",
        "docker-container-unhealthy",
        "docker-container-high-memory",
    } <= names
    assert match(runbooks, alert("ContainerOOMKilled")).name == "docker-container-oom"  # type: ignore[union-attr]
    assert match(runbooks, alert("SomethingElse")) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("diagnostics: [{key: a, tool: docker.nope}]", "unknown tool 'docker.nope'"),
        ("diagnostics: [{key: a, tool: docker.restart}]", "is a write tool"),
        ("remediations: [{tool: docker.inspect}]", "is a read tool"),
        (
            "remediations: [{tool: docker.start, when: [{evidence: zz, path: x, equals: 1}]}]",
            "'zz' is not a diagnostics key",
        ),
        ("verification: {timeout: soon}", "verification.timeout"),
    ],
)
def test_invalid_runbooks_are_rejected_with_file_and_key(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nservice: docker\nalerts: [X]\nincident_type: x\n{body}\n")
    with pytest.raises(RunbookError) as err:
        load_runbooks(CATALOG, [tmp_path])
    assert problem in str(err.value) and str(path) in str(err.value)


def test_user_runbook_replaces_builtin(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "name: docker-container-exited\nservice: docker\nalerts: [ContainerKilled]\nincident_type: mine\n"
    )
    runbooks = load_runbooks(CATALOG, [tmp_path])
    assert match(runbooks, alert("ContainerKilled")).incident_type == "mine"  # type: ignore[union-attr]


def evidence(**data: object) -> dict[str, Evidence]:
    return {
        "inspect": Evidence(key="inspect", tool="docker.inspect", target="t", ok=True, data=data)
    }


def test_param_resolution_scales_and_bounds() -> None:
    ev = evidence(memory_limit=16 * 1024**2)
    assert (
        resolve_param({"from": "inspect.memory_limit", "scale": 2, "max": "2g"}, ev) == 32 * 1024**2
    )
    big = evidence(memory_limit=1536 * 1024**2)
    assert (
        resolve_param({"from": "inspect.memory_limit", "scale": 2, "max": "2g"}, big) == 2 * 1024**3
    )
    assert resolve_param(7, ev) == 7
    with pytest.raises(ParamError):
        resolve_param({"from": "stats.memory"}, ev)


def test_oom_plan_raises_memory_then_starts() -> None:
    runbooks = load_runbooks(CATALOG)
    rb = match(runbooks, alert("ContainerOOMKilled"))
    target = TargetRef(service="docker", target="lab", resource="web")
    triage = Triage(
        incident_type="oom",
        service="docker",
        target=target,
        severity="warning",
        critical=False,
        runbook=rb,
        approval_timeout=300,
        approvers=[],
    )

    def plan_for(inspect: dict[str, Any]) -> Plan:
        evidence = Evidence(
            key="inspect", tool="docker.inspect", target=str(target), ok=True, data=inspect
        )
        request = PlanRequest(
            incident_id="i", alert=alert("ContainerOOMKilled"), triage=triage, evidence=[evidence]
        )
        return runbook_plan(request, CATALOG)

    inspect = {"state": {"running": False, "oom_killed": True}, "memory_limit": 64 * 1024**2}
    plan = plan_for(inspect)
    assert [(a.tool, a.params) for a in plan.actions] == [
        ("docker.update_resources", {"memory": 128 * 1024**2}),
        ("docker.start", {}),
    ]
    inspect["state"]["running"] = True  # type: ignore[index]
    inspect["memory_limit"] = 4 * 1024**3
    plan = plan_for(inspect)
    assert plan.actions == [] and any("no remediation applies" in n for n in plan.notes)


def test_disk_runbook_acts_on_the_container_named_by_the_evidence() -> None:
    runbooks = load_runbooks(CATALOG)
    alert_ = alert("HostOutOfDiskSpace", mountpoint="/srv/docker", instance="nas:9100")
    rb = match(runbooks, alert_)
    assert rb is not None and rb.name == "docker-disk-full"
    engine = TargetRef(service="docker", target="lab")
    triage = Triage(
        incident_type="disk_full",
        service="docker",
        target=engine,
        severity="critical",
        critical=False,
        runbook=rb,
        approval_timeout=300,
        approvers=[],
    )
    disk = {
        "on_mountpoint": True,
        "largest_log": {"container": "chatty", "size": 200 * 1024**2},
        "dangling_size": 0,
        "free_percent": 3.0,
    }
    plan = runbook_plan(
        PlanRequest(
            incident_id="i",
            alert=alert_,
            triage=triage,
            evidence=[
                Evidence(
                    key="disk", tool="docker.disk_usage", target="docker:lab", ok=True, data=disk
                )
            ],
        ),
        CATALOG,
    )
    assert [(a.tool, str(a.target)) for a in plan.actions] == [
        ("docker.clear_logs", "docker:lab/chatty")
    ]
    disk["on_mountpoint"] = False  # the full disk is not the engine's: a human decides
    plan = runbook_plan(
        PlanRequest(
            incident_id="i",
            alert=alert_,
            triage=triage,
            evidence=[
                Evidence(
                    key="disk", tool="docker.disk_usage", target="docker:lab", ok=True, data=disk
                )
            ],
        ),
        CATALOG,
    )
    assert plan.actions == [] and plan.escalate


def test_remediation_resource_must_come_from_gathered_evidence(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nservice: docker\nalerts: [X]\nincident_type: x\n"
        "diagnostics: [{key: disk, tool: docker.disk_usage}]\n"
        "remediations: [{tool: docker.clear_logs, resource: {from: nowhere.container}}]\n"
    )
    with pytest.raises(RunbookError, match="resource.from: 'nowhere' is not a diagnostics key"):
        load_runbooks(CATALOG, [tmp_path])
