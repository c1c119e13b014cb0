"""End to end: a real incident (an exited container on the private dockerd, fixed by the real
worker on the dev server) leaves its steps as annotations in Grafana, in order, tagged."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import Outcome
from tests.fakes.grafana import FakeGrafana
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    wait_exited,
)
from tests.toolsets.grafana.test_tools import grafana_target
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


async def test_an_incident_annotates_grafana_from_opened_to_resolved(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    grafana: FakeGrafana,
    tmp_path: Path,
) -> None:
    name = f"web-{uuid.uuid4().hex[:6]}"
    target = grafana_target(grafana, tmp_path)
    async with running_stack(dev_env, docker_engine, tmp_path, grafana=[target]) as stack:
        container = run_container(stack.docker(), name, CRASH_ONCE)
        wait_exited(container)
        alert = am_alert("ContainerKilled", name)
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        workflow_id = f"incident-{alert['fingerprint']}"
        state = await stack.result(workflow_id)
    assert state.outcome is Outcome.RESOLVED

    posts = [r for r in grafana.requests if r.method == "POST"]
    assert {r.path for r in posts} == {"/api/annotations"}
    assert all(r.headers["authorization"] == f"Bearer {grafana.token}" for r in posts)
    mine = sorted(
        (a for a in grafana.annotations if f"incident:{workflow_id}" in a["tags"]),
        key=lambda a: a["time"],
    )
    assert len(mine) == len(grafana.annotations) == len(posts)  # one write per step, no retries
    kinds = [next(t for t in a["tags"] if t.startswith("kind:")) for a in mine]
    assert kinds == ["kind:opened", "kind:action", "kind:verification", "kind:resolved"]
    assert [a["id"] for a in mine] == sorted(a["id"] for a in mine)  # written in that order
    for annotation in mine:
        assert annotation["dashboardUID"] == ""  # org-wide
        assert {"homelab-agents", "alert:ContainerKilled", "severity:warning"} <= set(
            annotation["tags"]
        )
    texts = [a["text"] for a in mine]
    assert texts[0].startswith(f"<b>Incident opened: ContainerKilled on docker:lab/{name}</b>")
    assert texts[1].startswith(f"<b>Applied docker.start on docker:lab/{name}</b>")
    assert texts[2].startswith("<b>Verification passed</b>")
    assert texts[3].startswith("<b>resolved: ContainerKilled</b><br>docker.start: applied")
    assert all(grafana.token not in t for t in texts)
    assert state.closed_at is not None  # each annotation at its step's time, within the incident
    opened, closed = state.opened_at.timestamp() * 1000, state.closed_at.timestamp() * 1000
    assert opened <= mine[0]["time"] < mine[-1]["time"] <= closed + 1000
