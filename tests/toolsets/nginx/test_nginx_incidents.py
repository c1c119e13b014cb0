"""nginx alerts in → diagnosed or fixed, on the Temporal dev server with the real worker and
intake: an upstream container stopped (the probe sees 502; the incident names the container on
the configured Docker engine and hands over), a reload that failed on a broken config (never
reloaded, escalated with nginx's error) and, once the file is fixed, reloaded and verified."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident
from tests.toolsets.backends import WebContainer, get, until
from tests.toolsets.nginx.conftest import nginx_target
from workers.lab.dockerd import DockerEngine
from workers.lab.proxies import Nginx

pytestmark = pytest.mark.integration

PROBE = {"proxy": "nginx", "homelab_target": "edge", "job": "blackbox-http"}


async def test_dead_upstream_names_the_container_and_escalates(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    nginx: Nginx,
    web: WebContainer,
    tmp_path: Path,
) -> None:
    web.stop()
    try:
        assert get(f"http://127.0.0.1:{nginx.port}/") == 502
        async with running_stack(
            dev_env, docker_engine, tmp_path, nginx=[nginx_target(nginx, web)]
        ) as stack:
            state = await incident(
                stack,
                "BlackboxProbeHttpFailure",
                instance=f"http://127.0.0.1:{nginx.port}/",
                **PROBE,
            )
            assert state.triage is not None and str(state.triage.target) == "nginx:edge"
            assert state.outcome is Outcome.ESCALATED and state.actions == []
            ups = evidence(state, "upstreams")
            assert ups["down_count"] == 1
            assert ups["first_down_backend"] == {
                "ref": f"docker:lab/{web.name}",
                "service": "docker",
                "target": "lab",
                "resource": web.name,
            }
            assert evidence(state, "config")["valid"] and evidence(state, "status")["active"] >= 1
        assert web.status() == "exited"  # nothing was done to it from the proxy side
    finally:
        web.start()


async def test_failed_reload_is_escalated_then_reloaded_once_fixed(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    nginx: Nginx,
    web: WebContainer,
    tmp_path: Path,
) -> None:
    good = nginx.conf.read_text()
    workers = nginx.worker_pids()
    fixed = good.replace("location / {", "location = /teapot { return 418; }\n    location / {")
    nginx.conf.write_text(fixed.replace("return 418;", "return 418 oops extra;"))
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, nginx=[nginx_target(nginx, web)]
        ) as stack:
            broken = await incident(
                stack, "ProxyConfigReloadFailed", proxy="nginx", homelab_target="edge"
            )
            assert broken.outcome is Outcome.ESCALATED and broken.actions == []
            config = evidence(broken, "config")
            assert not config["valid"] and config["errors"]
            assert nginx.worker_pids() == workers  # never reloaded: the running config serves
            assert get(f"http://127.0.0.1:{nginx.port}/") == 200

            nginx.conf.write_text(fixed)
            state = await incident(
                stack, "ProxyConfigReloadFailed", proxy="nginx", homelab_target="edge"
            )
            assert state.outcome is Outcome.RESOLVED, state.notes
            (done,) = state.actions
            assert (done.action.tool, done.level, done.result) == (
                "nginx.reload",
                RiskLevel.SOFT,
                ChangeResult.APPLIED,
            )
            assert "passes; run `" in done.preview
            (change,) = stack.store.list_changes(state.workflow_id)
            assert change.reversibility.value == "irreversible"
        until(lambda: get(f"http://127.0.0.1:{nginx.port}/teapot") == 418, what="fixed config live")
        assert nginx.worker_pids().isdisjoint(workers)
    finally:
        nginx.conf.write_text(good)
        subprocess.run([*nginx.command, "-s", "reload"], check=True, capture_output=True)
