"""Runbooks cite metrics: a diagnostic of another service (``prometheus.query`` in a container's
runbook) runs on that service's target, resolved at triage, with its query built from the
incident's target and escaped; without a Prometheus it is left out, and the incident goes on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.planner import render_template
from activities.runbooks import RunbookError, load_runbooks
from activities.toolsets import default_catalog
from core.models import Evidence, Outcome
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    wait_exited,
)
from tests.toolsets.prometheus.conftest import PromLab, prom_target
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


async def test_a_container_incident_reads_its_metrics_from_prometheus(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, prom_lab: PromLab, tmp_path: Path
) -> None:
    name = f"metered-{uuid.uuid4().hex[:6]}"
    async with running_stack(
        dev_env, docker_engine, tmp_path, prometheus=[prom_target(prom_lab)]
    ) as stack:
        wait_exited(run_container(stack.docker(), name, CRASH_ONCE))
        alert = am_alert("ContainerKilled", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")

    assert state.outcome is Outcome.RESOLVED
    assert state.triage is not None and state.triage.runbook is not None
    (step,) = [s for s in state.triage.runbook.diagnostics if s.key == "starts_1h"]
    assert str(step.target) == "prometheus:lab"
    assert step.params["query"] == f'changes(container_start_time_seconds{{name="{name}"}}[1h])'
    (metric,) = [e for e in state.evidence if e.key == "starts_1h"]
    assert metric.ok and metric.tool == "prometheus.query" and metric.target == "prometheus:lab"


async def test_without_a_prometheus_the_metric_step_is_left_out(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    name = f"unmetered-{uuid.uuid4().hex[:6]}"
    async with running_stack(dev_env, docker_engine, tmp_path) as stack:
        wait_exited(run_container(stack.docker(), name, CRASH_ONCE))
        alert = am_alert("ContainerKilled", name)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
    assert state.outcome is Outcome.RESOLVED
    assert [e.key for e in state.evidence] == ["inspect", "logs"]
    assert any(
        "diagnostic 'starts_1h' (prometheus.query) left out: no prometheus target" in n
        for n in state.notes
    ), state.notes


def test_a_label_cannot_break_out_of_the_query() -> None:
    hostile = 'web"} or vector(1) # \\'
    evidence = {
        "target": Evidence(
            key="target", tool="triage", target="x", ok=True, data={"resource": hostile}
        )
    }
    query = render_template('up{name="{target.resource}"}', evidence)
    assert query == 'up{name="web\\"} or vector(1) # \\\\"}'


def test_a_diagnostic_template_may_only_read_the_alert_and_the_target(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        """name: bad-template
service: docker
alerts: [ContainerKilled]
incident_type: container_exited
diagnostics:
  - {key: inspect, tool: docker.inspect}
  - key: m
    tool: prometheus.query
    params: {query: {template: 'up{name="{inspect.name}"}'}}
"""
    )
    with pytest.raises(
        RunbookError, match=r"only \{alert\.\*\} or \{target\.\*\}.*\{inspect\.name\}"
    ):
        load_runbooks(default_catalog(), [tmp_path])
