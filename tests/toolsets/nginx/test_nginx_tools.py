"""Every nginx tool on a real nginx proxying to a real container: the config test, upstream
health mapped to the container, stub_status, a dead upstream, and reload — refused for a broken
configuration (the running one keeps serving), done for a valid one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.models import Reversibility, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer, get, until
from tests.toolsets.nginx.conftest import nginx_target
from tests.toolsets.runner import Tools
from workers.lab.proxies import Nginx

pytestmark = pytest.mark.integration


async def test_config_test_upstreams_and_status(
    tools: Tools, nginx: Nginx, web: WebContainer
) -> None:
    test = await tools.ok("nginx.config_test")
    assert test["valid"] and test["exit_status"] == 0
    assert any("syntax is ok" in line for line in test["output"])

    ups = await tools.ok("nginx.upstreams")
    assert ups["upstream_count"] == 1 and ups["down_count"] == 0
    (only,) = ups["upstreams"]
    assert only["address"] == web.address and only["group"] == "app" and only["up"]
    assert only["backend"] == {
        "ref": "docker:lab/nginx-upstream",
        "service": "docker",
        "target": "lab",
        "resource": "nginx-upstream",
    }

    assert get(f"http://127.0.0.1:{nginx.port}/") == 200
    status = await tools.ok("nginx.status")
    assert status["active"] >= 1 and status["requests"] >= 1 and status["dropped"] == 0


async def test_dead_upstream_is_named_with_its_container(
    tools: Tools, nginx: Nginx, web: WebContainer
) -> None:
    web.stop()
    try:
        assert get(f"http://127.0.0.1:{nginx.port}/") == 502  # the real symptom
        ups = await tools.ok("nginx.upstreams")
        assert ups["down_count"] == 1
        assert ups["first_down"]["address"] == web.address
        assert "refused" in ups["first_down"]["error"].lower()
        assert ups["first_down_backend"]["ref"] == "docker:lab/nginx-upstream"
        missing = await tools.run("nginx.upstreams", {"group": "nosuch"})
        assert not missing.ok and missing.error.kind is ToolErrorKind.NOT_FOUND
    finally:
        web.start()
    until(lambda: get(f"http://127.0.0.1:{nginx.port}/") == 200, what="nginx serving again")


async def test_broken_config_is_never_reloaded(
    tools: Tools, nginx: Nginx, web: WebContainer
) -> None:
    good = nginx.conf.read_text()
    workers = nginx.worker_pids()
    assert workers
    nginx.conf.write_text(good.replace("location / {", "location / { no_such_directive on;"))
    try:
        test = await tools.ok("nginx.config_test")
        assert not test["valid"] and any("no_such_directive" in e for e in test["errors"])

        prepared = await tools.prepare("nginx.reload")
        assert prepared.preview.startswith("REFUSED: ")
        assert "no_such_directive" in prepared.preview
        result = await tools.run("nginx.reload")
        assert not result.ok and result.error.kind is ToolErrorKind.INVALID
        assert "running configuration is kept" in result.error.message
        # the running configuration kept serving, and no reload happened
        assert nginx.worker_pids() == workers
        assert get(f"http://127.0.0.1:{nginx.port}/") == 200
    finally:
        nginx.conf.write_text(good)


async def test_valid_config_is_reloaded(tools: Tools, nginx: Nginx, web: WebContainer) -> None:
    good = nginx.conf.read_text()
    workers = nginx.worker_pids()
    nginx.conf.write_text(
        good.replace("location / {", "location = /teapot { return 418; }\n    location / {")
    )
    try:
        assert get(f"http://127.0.0.1:{nginx.port}/teapot") != 418
        prepared, result = await tools.apply("nginx.reload")
        assert prepared.reversibility is Reversibility.IRREVERSIBLE
        assert prepared.compensation is None
        assert "passes; run `" in prepared.preview and "-s reload` on localhost" in prepared.preview
        assert result.ok, result.error
        assert result.data["config_sha256"] == prepared.before["config_sha256"]
        until(lambda: get(f"http://127.0.0.1:{nginx.port}/teapot") == 418, what="new config live")
        until(lambda: nginx.worker_pids() - workers == nginx.worker_pids(), what="new workers")
    finally:
        nginx.conf.write_text(good)
        await tools.run("nginx.reload")


async def test_missing_binary_and_no_status_url(
    nginx: Nginx, web: WebContainer, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        nginx=[
            {"name": "gone", "command": ["/nonexistent/nginx"]},
            {"name": "nostatus", "command": nginx.command},
        ],
    )
    tools = Tools(settings, "nginx:gone")
    try:
        result = await tools.run("nginx.config_test")
        assert not result.ok and result.error.kind is ToolErrorKind.UNSUPPORTED
        prepared = await tools.prepare("nginx.reload")
        assert prepared.error is not None and prepared.error.kind is ToolErrorKind.UNSUPPORTED
        status = await tools.run("nginx.status", target="nginx:nostatus")
        assert not status.ok and status.error.kind is ToolErrorKind.UNSUPPORTED
    finally:
        await tools.aclose()


async def test_doctor_probe(nginx: Nginx, web: WebContainer) -> None:
    from activities.toolsets.nginx import TOOLSET
    from core.targets import NginxTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(TOOLSET.probe, NginxTarget(**nginx_target(nginx, web)))
    assert "passes on localhost" in found and nginx.status_url in found
