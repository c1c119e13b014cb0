"""End to end on the real stack: a broken rule file makes the real Prometheus fire
PrometheusConfigurationReloadFailure through the real Alertmanager into the intake; the incident's
diagnosis names the file and line and escalates. Once the file is fixed, the runbook reloads and
verifies. A runbook with bad PromQL escalates with a typed error instead of crashing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel, ToolErrorKind
from tests.integration.stack import alertmanager_payload, running_stack, target_host
from tests.toolsets.incidents import Monitoring, incident_settings, start_monitoring
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port, wait_for

pytestmark = pytest.mark.integration
NO_ENGINE = cast(DockerEngine, None)  # these incidents touch no Docker engine

BROKEN = """groups:
  - name: disk
    rules:
      - alert: DiskAlmostFull
        expr: node_filesystem_avail_bytes / node_filesystem_size_bytes <
        for: 5m
"""


@pytest.fixture(scope="module")
def monitoring(session_root: Path) -> Iterator[Monitoring]:
    stack = start_monitoring(session_root / "prom-incidents")
    yield stack
    stack.stop()


def prom_targets(monitoring: Monitoring) -> list[dict[str, Any]]:
    return [
        {
            "name": "main",
            "url": monitoring.prom.url,
            "instances": [f"127.0.0.1:{monitoring.prom.port}"],
        }
    ]


async def test_broken_rule_file_is_named_by_file_and_line_then_reloaded_once_fixed(
    dev_env: WorkflowEnvironment, monitoring: Monitoring, tmp_path: Path
) -> None:
    settings = incident_settings(
        target_host(dev_env), tmp_path, monitoring, prometheus=prom_targets(monitoring)
    )
    broken = monitoring.prom.root / "rules" / "team-disk.rules.yml"
    async with running_stack(dev_env, NO_ENGINE, tmp_path, settings=settings) as stack:
        broken.write_text(BROKEN)
        try:
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                reload = await http.post(f"{monitoring.prom.url}/-/reload")
            assert reload.status_code == 500  # the real Prometheus refuses it
            fingerprint = await monitoring.fingerprint(
                "PrometheusConfigurationReloadFailure", job="prometheus"
            )
            state = await stack.result(f"incident-{fingerprint}", timeout=90)

            assert state.outcome is Outcome.ESCALATED, state.notes
            assert state.triage is not None and state.triage.runbook is not None
            assert state.triage.runbook.name == "prometheus-config-reload-failure"
            assert str(state.triage.target) == "prometheus:main"
            evidence = {e.key: e for e in state.evidence}
            assert evidence["status"].data["reload_successful"] is False
            check = evidence["check"].data
            assert check["ok"] is False and check["files"] == [str(broken)]
            assert check["errors"][0]["line"] == 5 and check["errors"][0]["column"] == 15
            assert check["first_error"].startswith(f"{broken}:5: ")
            assert state.actions == []  # nothing to reload while the file is broken
        finally:
            broken.unlink()

        # fixed on disk, not yet reloaded: the runbook reloads and verifies the gauge
        alert = {
            "status": "firing",
            "labels": {
                "alertname": "PrometheusConfigurationReloadFailure",
                "instance": f"127.0.0.1:{monitoring.prom.port}",
                "job": "prometheus",
                "severity": "warning",
            },
            "annotations": {},
            "startsAt": "2026-12-02T04:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "fixedreload0001",
        }
        response = await stack.post(
            alertmanager_payload(alert),
            headers={"authorization": f"Bearer {monitoring.token.read_text()}"},
        )
        assert response.status_code == 202, response.text
        fixed = await stack.result("incident-fixedreload0001", timeout=90)
        assert fixed.outcome is Outcome.RESOLVED, fixed.notes
        assert [(a.action.tool, a.level, a.result) for a in fixed.actions] == [
            ("prometheus.reload", RiskLevel.SOFT, ChangeResult.APPLIED)
        ]
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            runtime = (await http.get(f"{monitoring.prom.url}/api/v1/status/runtimeinfo")).json()
        assert runtime["data"]["reloadConfigSuccess"] is True


async def test_bad_promql_in_a_runbook_escalates_with_a_typed_error(
    dev_env: WorkflowEnvironment, monitoring: Monitoring, tmp_path: Path
) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "target-missing.yaml").write_text(
        "name: prometheus-target-missing\n"
        "service: prometheus\n"
        "alerts: [PrometheusTargetMissing]\n"
        "incident_type: target_missing\n"
        "escalate_if_no_action: true\n"
        "diagnostics:\n"
        "  - {key: down, tool: prometheus.query, params: {query: 'up{job=\"node\" =='}}\n"
        "remediations: []\n"
    )
    settings = incident_settings(
        target_host(dev_env),
        tmp_path,
        monitoring,
        prometheus=prom_targets(monitoring),
        runbook_dirs=[str(runbooks)],
    )
    async with running_stack(dev_env, NO_ENGINE, tmp_path, settings=settings) as stack:
        alert = {
            "status": "firing",
            "labels": {
                "alertname": "PrometheusTargetMissing",
                "job": "node",
                "instance": "nas.lan:9100",
                "severity": "critical",
            },
            "annotations": {},
            "startsAt": "2026-12-02T04:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "badpromql000001",
        }
        response = await stack.post(
            alertmanager_payload(alert),
            headers={"authorization": f"Bearer {monitoring.token.read_text()}"},
        )
        assert response.status_code == 202, response.text
        state = await stack.result("incident-badpromql000001", timeout=90)
        assert state.outcome is Outcome.ESCALATED
        (down,) = state.evidence
        assert not down.ok and down.error is not None
        assert down.error.kind is ToolErrorKind.INVALID and "parse error" in down.error.message
    wait_for(lambda: monitoring.prom.proc is not None and monitoring.prom.proc.alive(), 1, "prom")


async def test_unreachable_prometheus_escalates_with_a_typed_error(
    dev_env: WorkflowEnvironment, monitoring: Monitoring, tmp_path: Path
) -> None:
    settings = incident_settings(
        target_host(dev_env),
        tmp_path,
        monitoring,
        prometheus=[{"name": "main", "url": f"http://127.0.0.1:{free_port()}", "timeout": 1}],
    )
    async with running_stack(dev_env, NO_ENGINE, tmp_path, settings=settings) as stack:
        alert = {
            "status": "firing",
            "labels": {
                "alertname": "PrometheusTargetMissing",
                "job": "node",
                "instance": "nas.lan:9100",
                "severity": "critical",
            },
            "annotations": {},
            "startsAt": "2026-12-02T04:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "promunreachable1",
        }
        response = await stack.post(
            alertmanager_payload(alert),
            headers={"authorization": f"Bearer {monitoring.token.read_text()}"},
        )
        assert response.status_code == 202, response.text
        state = await stack.result("incident-promunreachable1", timeout=90)
        assert state.outcome is Outcome.ESCALATED
        assert {e.key for e in state.evidence} == {"targets", "down"}
        for evidence in state.evidence:
            assert not evidence.ok and evidence.error is not None
            assert evidence.error.kind is ToolErrorKind.UNREACHABLE
