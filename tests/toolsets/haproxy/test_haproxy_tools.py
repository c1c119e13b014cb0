"""Every HAProxy tool through the real runtime API: servers with check status and the container
behind each, 5xx rates per server, disable/enable/set_weight with their compensations, refusing
the last server up, and reload — refused for a broken config, done after haproxy -c passes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from core.models import Reversibility, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.backends import WebContainer, get, until
from tests.toolsets.haproxy.conftest import haproxy_target
from tests.toolsets.runner import Tools
from workers.lab.processes import free_port
from workers.lab.proxies import Haproxy

pytestmark = pytest.mark.integration


async def settled(tools: Tools) -> dict:
    """Servers once the health checks have judged everyone (rise/fall 2 × 500 ms)."""
    for _ in range(50):
        data = await tools.ok("haproxy.servers")
        if (
            all(s["check_status"] not in ("", "INI") for s in data["servers"])
            and data["failing_count"] == 1
        ):
            return data
        await asyncio.sleep(0.2)
    raise AssertionError(f"checks never settled: {data['_summary'] if data else ''}")


def by_name(data: dict, name: str) -> dict:
    return next(s for s in data["servers"] if s["server"] == name)


async def test_servers_states_checks_and_backends(
    tools: Tools, web: WebContainer, dead: str
) -> None:
    data = await settled(tools)
    web1, web2 = by_name(data, "web1"), by_name(data, "web2")
    assert web1["status"] == "UP" and web1["check_status"] == "L7OK"
    assert web1["backend_target"]["ref"] == "docker:lab/haproxy-web1"
    assert web2["status"] == "DOWN" and web2["check_status"] == "L4CON" and web2["address"] == dead
    assert data["first_down"]["server"] == "web2" and data["backends"]["be_app"]["up"] == 2
    info = await tools.ok("haproxy.info")
    assert info["version"] and info["maxconn"] == 200


async def test_5xx_rate_names_the_failing_server(tools: Tools, haproxy: Haproxy) -> None:
    await settled(tools)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            get(f"http://127.0.0.1:{haproxy.port}/fail")

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        data = await tools.ok("haproxy.servers", {"sample_seconds": 1.5})
    finally:
        stop.set()
        thread.join(5)
    worst = data["worst_5xx"]
    assert worst is not None and worst["server"] == "flaky"
    assert worst["rate_5xx"] > 0 and worst["share_5xx"] == 1.0
    assert by_name(data, "web1")["rate_5xx"] == 0


async def test_disable_enable_and_compensation(tools: Tools) -> None:
    await settled(tools)
    params = {"backend": "be_app", "server": "flaky"}
    prepared, result = await tools.apply("haproxy.disable_server", params)
    assert prepared.preview.startswith("set server be_app/flaky state maint on haproxy:lb")
    assert prepared.reversibility is Reversibility.COMPENSATED
    assert prepared.compensation.tool == "haproxy.enable_server"
    assert result.ok, result.error
    assert by_name(await tools.ok("haproxy.servers"), "flaky")["status"] == "MAINT"
    again = await tools.prepare("haproxy.disable_server", params)
    assert again.noop  # idempotent
    undo = await tools.compensate(prepared)
    assert undo.ok, undo.error
    until_up = by_name(await tools.ok("haproxy.servers"), "flaky")
    assert not until_up["maintenance"]


async def test_last_server_up_is_never_disabled(tools: Tools) -> None:
    await settled(tools)
    first = await tools.run("haproxy.disable_server", {"backend": "be_app", "server": "flaky"})
    assert first.ok
    try:
        prepared = await tools.prepare(
            "haproxy.disable_server", {"backend": "be_app", "server": "web1"}
        )
        assert "[REFUSED: it is the last server up in its backend]" in prepared.preview
        refused = await tools.run("haproxy.disable_server", {"backend": "be_app", "server": "web1"})
        assert not refused.ok and refused.error.kind is ToolErrorKind.INVALID
        drain = await tools.run(
            "haproxy.set_weight", {"backend": "be_app", "server": "web1", "weight": 0}
        )
        assert not drain.ok and drain.error.kind is ToolErrorKind.INVALID
        assert by_name(await tools.ok("haproxy.servers"), "web1")["status"] == "UP"
    finally:
        await tools.run("haproxy.enable_server", {"backend": "be_app", "server": "flaky"})


async def test_set_weight_and_compensation(tools: Tools) -> None:
    params = {"backend": "be_app", "server": "web1", "weight": 50}
    prepared, result = await tools.apply("haproxy.set_weight", params)
    assert "weight 1 → 50" in prepared.preview
    assert prepared.compensation.params == {"backend": "be_app", "server": "web1", "weight": 1}
    assert result.ok and by_name(await tools.ok("haproxy.servers"), "web1")["weight"] == 50
    assert (await tools.compensate(prepared)).ok
    assert by_name(await tools.ok("haproxy.servers"), "web1")["weight"] == 1
    unknown = await tools.run(
        "haproxy.set_weight", {"backend": "be_app", "server": "nosuch", "weight": 2}
    )
    assert not unknown.ok and unknown.error.kind is ToolErrorKind.NOT_FOUND
    bad = await tools.run(
        "haproxy.set_weight", {"backend": "be_app; shutdown", "server": "x", "weight": 2}
    )
    assert not bad.ok and bad.error.kind is ToolErrorKind.INVALID


async def test_reload_refused_for_broken_config_then_done(tools: Tools, haproxy: Haproxy) -> None:
    good = haproxy.cfg.read_text()
    pid_before = (await tools.ok("haproxy.info"))["pid"]
    haproxy.cfg.write_text(good + "\nbackend broken\n    server x 127.0.0.1:1 bogus_keyword\n")
    try:
        test = await tools.ok("haproxy.config_test")
        assert not test["valid"]
        prepared = await tools.prepare("haproxy.reload")
        assert prepared.preview.startswith("REFUSED: ")
        result = await tools.run("haproxy.reload")
        assert not result.ok and result.error.kind is ToolErrorKind.INVALID
        assert (await tools.ok("haproxy.info"))["pid"] == pid_before
        assert get(f"http://127.0.0.1:{haproxy.port}/") == 200
    finally:
        haproxy.cfg.write_text(good)
    prepared, result = await tools.apply("haproxy.reload")
    assert prepared.reversibility is Reversibility.IRREVERSIBLE
    assert f"run `kill -USR2 {haproxy.proc.pid}` on localhost" in prepared.preview
    assert result.ok, result.error
    for _ in range(50):  # a new worker process answers on the socket
        info = await tools.run("haproxy.info")
        if info.ok and info.data["pid"] != pid_before:
            break
        await asyncio.sleep(0.1)
    assert info.ok and info.data["pid"] != pid_before
    until(lambda: get(f"http://127.0.0.1:{haproxy.port}/") == 200, what="serving after reload")


async def test_typed_failures(tmp_path: Path, haproxy: Haproxy) -> None:
    settings = make_settings(
        tmp_path,
        haproxy=[
            {"name": "down", "socket": str(tmp_path / "nosuch.sock")},
            {"name": "tcp", "socket": f"127.0.0.1:{free_port()}", "timeout": 1},
            {"name": "noreload", "socket": str(haproxy.socket)},
        ],
    )
    tools = Tools(settings, "haproxy:down")
    try:
        for target in ("haproxy:down", "haproxy:tcp"):
            result = await tools.run("haproxy.servers", target=target)
            assert not result.ok and result.error.kind is ToolErrorKind.UNREACHABLE
        prepared = await tools.prepare("haproxy.reload", target="haproxy:noreload")
        assert prepared.error is not None and prepared.error.kind is ToolErrorKind.UNSUPPORTED
    finally:
        await tools.aclose()


async def test_doctor_probe(haproxy: Haproxy, web: WebContainer) -> None:
    from activities.toolsets.haproxy import TOOLSET
    from core.targets import HaproxyTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(TOOLSET.probe, HaproxyTarget(**haproxy_target(haproxy, web)))
    assert found.startswith("HAProxy ") and "admin" in found
