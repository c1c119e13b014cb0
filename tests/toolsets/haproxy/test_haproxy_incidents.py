"""HAProxy alerts in → fixed, on the Temporal dev server with the real worker and intake: one
server answers 500 while its health check passes; the incident samples the runtime API, takes
exactly that server out of rotation (SOFT, enabling it again registered as compensation) and
verifies the 5xx stopped — with real traffic flowing through HAProxy the whole time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident
from tests.toolsets.backends import Traffic, WebContainer
from tests.toolsets.haproxy.conftest import haproxy_target
from tests.toolsets.runner import Tools
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port
from workers.lab.proxies import Haproxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def haproxy(
    tmp_path_factory: pytest.TempPathFactory, web: WebContainer, flaky: str
) -> Iterator[Haproxy]:
    """Two servers that pass their checks; one of them answers 500 on /fail."""
    servers = {"web1": web.address, "flaky": flaky}
    server = Haproxy(tmp_path_factory.mktemp("haproxy"), free_port()).start(servers)
    yield server
    server.stop()


@pytest.fixture
def traffic(haproxy: Haproxy, tmp_path: Path) -> Iterator[Traffic]:
    """Requests through HAProxy, from their own process, until the test ends."""
    load = Traffic(f"http://127.0.0.1:{haproxy.port}/fail", tmp_path)
    yield load
    load.stop()


async def test_server_answering_5xx_is_taken_out_of_rotation(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    haproxy: Haproxy,
    web: WebContainer,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    async with running_stack(
        dev_env, docker_engine, tmp_path, haproxy=[haproxy_target(haproxy, web)]
    ) as stack:
        try:
            state = await incident(
                stack, "HaproxyHighHttp5xxErrorRateServer", proxy="be_app", server="flaky"
            )
            assert state.outcome is Outcome.RESOLVED, state.notes
            worst = evidence(state, "servers")["worst_5xx"]
            assert worst["server"] == "flaky" and worst["share_5xx"] == 1.0
            (done,) = state.actions
            assert (done.action.tool, done.level, done.result) == (
                "haproxy.disable_server",
                RiskLevel.SOFT,
                ChangeResult.APPLIED,
            )
            assert done.action.params == {"backend": "be_app", "server": "flaky"}
            assert done.compensation is not None
            assert done.compensation.tool == "haproxy.enable_server"
            assert state.verification is not None and state.verification.passed
            (change,) = stack.store.list_changes(state.workflow_id)
            assert change.before["status"] == "UP" and change.after["status"] == "MAINT"
            served = len(traffic.statuses())
            for _ in range(100):
                if len(traffic.statuses()) >= served + 20:
                    break
                await asyncio.sleep(0.05)
            after = traffic.statuses()[served:]
            assert len(after) >= 20 and 500 not in after  # the real symptom is gone
        finally:
            tools = Tools(stack.settings, "haproxy:lb")
            await tools.run("haproxy.enable_server", {"backend": "be_app", "server": "flaky"})
            await tools.aclose()
