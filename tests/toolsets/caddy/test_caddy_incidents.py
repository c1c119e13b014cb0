"""A Caddy reload failure in → fixed, on the Temporal dev server with the real worker and intake:
while the Caddyfile is broken nothing is loaded and the incident escalates with Caddy's error;
once it validates, the incident loads it through the admin API and verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident
from tests.toolsets.backends import WebContainer, get, until
from workers.lab.dockerd import DockerEngine
from workers.lab.proxies import Caddy

pytestmark = pytest.mark.integration


def target(caddy: Caddy, web: WebContainer) -> dict[str, Any]:
    return {
        "name": "edge",
        "admin_url": caddy.admin_url,
        "config_file": str(caddy.file),
        "backends": {web.address: f"docker:lab/{web.name}"},
    }


async def test_reload_refused_while_broken_then_loaded(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    caddy: Caddy,
    web: WebContainer,
    tmp_path: Path,
) -> None:
    good = caddy.file.read_text()
    fixed = good.replace("\tbind 127.0.0.1", "\tbind 127.0.0.1\n\trespond /teapot 418")
    caddy.file.write_text(
        fixed.replace("respond /teapot 418", "respond /teapot 418 {\n\t\tbogus\n\t}")
    )
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, caddy=[target(caddy, web)]
        ) as stack:
            labels = {"proxy": "caddy", "homelab_target": "edge"}
            broken = await incident(stack, "ProxyConfigReloadFailed", **labels)
            assert broken.outcome is Outcome.ESCALATED and broken.actions == []
            assert not evidence(broken, "config")["valid"]
            running = evidence(broken, "running")["config_sha256"]
            assert get(f"http://127.0.0.1:{caddy.port}/teapot") != 418

            caddy.file.write_text(fixed)
            state = await incident(stack, "ProxyConfigReloadFailed", **labels)
            assert state.outcome is Outcome.RESOLVED, state.notes
            (done,) = state.actions
            assert (done.action.tool, done.result) == ("caddy.reload", ChangeResult.APPLIED)
            (change,) = stack.store.list_changes(state.workflow_id)
            assert change.before["running_sha256"] == running
            assert change.after["running_sha256"] != running
        until(lambda: get(f"http://127.0.0.1:{caddy.port}/teapot") == 418, what="fixed config live")
    finally:
        caddy.file.write_text(good)
        async with httpx.AsyncClient() as http:
            loaded = await http.post(
                f"{caddy.admin_url}/load", content=good, headers={"Content-Type": "text/caddyfile"}
            )
            loaded.raise_for_status()
