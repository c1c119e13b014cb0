"""Every Caddy tool on a real Caddy through its admin API: the running config, upstreams with
Caddy's counters and the container behind them, a dead upstream, caddy validate, and reload —
refused for a broken Caddyfile (the running config unchanged), done for a valid one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.models import Reversibility, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer, get, until
from tests.toolsets.runner import Tools
from workers.lab.processes import free_port
from workers.lab.proxies import Caddy

pytestmark = pytest.mark.integration


async def test_config_and_upstreams(tools: Tools, caddy: Caddy, web: WebContainer) -> None:
    assert get(f"http://127.0.0.1:{caddy.port}/") == 200
    config = await tools.ok("caddy.config")
    assert config["upstreams"] == [web.address]
    assert any(f"127.0.0.1:{caddy.port}" in s["listen"] for s in config["servers"].values())
    assert len(config["config_sha256"]) == 64
    ups = await tools.ok("caddy.upstreams")
    (only,) = ups["upstreams"]
    assert only["up"] and only["num_requests"] >= 0 and only["fails"] >= 0
    assert only["backend"]["ref"] == "docker:lab/caddy-upstream"


async def test_dead_upstream(tools: Tools, caddy: Caddy, web: WebContainer) -> None:
    web.stop()
    try:
        until(lambda: get(f"http://127.0.0.1:{caddy.port}/") >= 500, what="caddy answering 5xx")
        ups = await tools.ok("caddy.upstreams")
        assert ups["down_count"] == 1 and ups["first_down_backend"]["resource"] == web.name
    finally:
        web.start()


async def test_broken_caddyfile_is_never_loaded(tools: Tools, caddy: Caddy) -> None:
    good = caddy.file.read_text()
    running = (await tools.ok("caddy.config"))["config_sha256"]
    caddy.file.write_text(good.replace("lb_policy first", "lb_policy first\n\t\tno_such_option 1"))
    try:
        test = await tools.ok("caddy.config_test")
        assert not test["valid"] and test["errors"]
        prepared = await tools.prepare("caddy.reload")
        assert prepared.preview.startswith("REFUSED: ")
        result = await tools.run("caddy.reload")
        assert not result.ok and result.error.kind is ToolErrorKind.INVALID
        assert (await tools.ok("caddy.config"))["config_sha256"] == running
        assert get(f"http://127.0.0.1:{caddy.port}/") == 200
    finally:
        caddy.file.write_text(good)


async def test_valid_caddyfile_is_loaded(tools: Tools, caddy: Caddy) -> None:
    good = caddy.file.read_text()
    running = (await tools.ok("caddy.config"))["config_sha256"]
    caddy.file.write_text(
        good.replace("\tbind 127.0.0.1", "\tbind 127.0.0.1\n\trespond /teapot 418")
    )
    try:
        prepared, result = await tools.apply("caddy.reload")
        assert prepared.reversibility is Reversibility.IRREVERSIBLE
        assert "passes; POST " in prepared.preview and "/load" in prepared.preview
        assert prepared.before["running_sha256"] == running
        assert result.ok, result.error
        assert result.data["running_sha256"] != running
        until(lambda: get(f"http://127.0.0.1:{caddy.port}/teapot") == 418, what="new config live")
    finally:
        caddy.file.write_text(good)
        assert (await tools.run("caddy.reload")).ok


async def test_typed_failures(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        caddy=[
            {"name": "down", "admin_url": f"http://127.0.0.1:{free_port()}", "timeout": 1},
            {"name": "nofile", "admin_url": "http://127.0.0.1:1"},
        ],
    )
    tools = Tools(settings, "caddy:down")
    try:
        result = await tools.run("caddy.config")
        assert not result.ok and result.error.kind is ToolErrorKind.UNREACHABLE
        test = await tools.run("caddy.config_test", target="caddy:nofile")
        assert not test.ok and test.error.kind is ToolErrorKind.UNSUPPORTED
    finally:
        await tools.aclose()


async def test_doctor_probe(caddy: Caddy) -> None:
    from activities.toolsets.caddy import TOOLSET
    from core.targets import CaddyTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(
        TOOLSET.probe, CaddyTarget(name="edge", admin_url=caddy.admin_url)
    )
    assert "1 server(s), 1 upstream(s)" in found
