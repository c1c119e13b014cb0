"""Every UniFi tool against the controller fake (session cookie, CSRF, expired sessions, login
rate limit), and the AP-offline incident end to end: a hung AP's PoE port is power-cycled after
approval and the AP reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ChangeResult, Outcome, RiskLevel, ToolErrorKind
from tests.fakes.unifi import FakeUnifi
from tests.integration.stack import alertmanager_payload
from tests.toolsets.harness import Tools, alert, edge_stack
from tests.toolsets.unifi.conftest import AP_LIVING, PASSWORD, SWITCH, unifi_target


@pytest_asyncio.fixture
async def tools(controller: FakeUnifi) -> AsyncIterator[Tools]:
    tools = Tools(unifi=[unifi_target(controller)])
    yield tools
    await tools.aclose()


async def test_reads(tools: Tools, controller: FakeUnifi) -> None:
    sites = await tools.run("unifi.sites")
    assert sites.ok, sites.error
    assert [s["name"] for s in sites.data["sites"]] == ["default"]
    devices = await tools.run("unifi.devices")
    assert devices.data["count"] == 4 and devices.data["not_connected"] == []
    assert devices.data["upgradable"] == ["AP Living"]
    ap = await tools.run("unifi.devices", "AP Living")
    assert ap.data["device"]["uplink"] == {
        "switch_mac": SWITCH,
        "switch_name": "Switch Office",
        "switch_connected": True,
        "port": 5,
        "poe": True,
        "poe_power_w": 3.92,
    }
    by_mac = await tools.run("unifi.devices", AP_LIVING.upper())
    assert by_mac.data["device"]["name"] == "AP Living"
    clients = await tools.run("unifi.clients", "AP Living")
    assert clients.data["count"] == 9 and clients.data["wireless"] == 9
    controller.hang(AP_LIVING)
    alarms = await tools.run("unifi.alarms")
    assert alarms.data["alarms"][0]["key"] == "EVT_AP_Lost_Contact"
    assert alarms.data["alarms"][0]["device"] == "AP Living"
    assert [r.path for r in controller.requests if r.method == "POST"] == ["/api/login"]


async def test_power_cycle_previews_exactly_and_reboots_the_ap(
    tools: Tools, controller: FakeUnifi
) -> None:
    controller.hang(AP_LIVING)
    prepared = await tools.prepare("unifi.power_cycle_port", "Switch Office", port_idx=5)
    assert prepared.error is None and prepared.default_level is RiskLevel.HARD
    assert prepared.preview == (
        "power-cycle PoE port 5 ('AP Living', 3.92 W) of switch 'Switch Office' (USW-Lite-8-PoE, "
        f"{SWITCH}) on site default: AP 'AP Living' (U6-Lite, {AP_LIVING}, now disconnected) loses "
        "power for a few seconds and boots again"
    )
    assert controller.commands == []  # a preview changes nothing
    _, result = await tools.apply("unifi.power_cycle_port", "Switch Office", port_idx=5)
    assert result.ok, result.error
    assert controller.commands == [{"cmd": "power-cycle", "mac": SWITCH, "port_idx": 5}]
    posted = [r for r in controller.requests if r.path.endswith("/cmd/devmgr")][-1]
    assert posted.header("x-csrf-token") and str(posted.header("cookie")).startswith("unifises=")
    await asyncio.sleep(0.8)
    assert controller.devices[AP_LIVING].state == 1 and not controller.devices[AP_LIVING].hung

    no_poe = await tools.prepare("unifi.power_cycle_port", "Switch Office", port_idx=7)
    assert no_poe.error is not None and no_poe.error.kind is ToolErrorKind.INVALID
    refused = await tools.prepare("unifi.restart_device", "AP Living")  # booted again: allowed
    assert refused.error is None
    controller.hang(AP_LIVING)
    unreachable = await tools.prepare("unifi.restart_device", "AP Living")
    assert unreachable.error is not None and unreachable.error.kind is ToolErrorKind.CONFLICT
    assert "power-cycle its PoE port instead" in unreachable.error.message


async def test_restart_device_acts_once(tools: Tools, controller: FakeUnifi) -> None:
    prepared, result = await tools.apply("unifi.restart_device", "AP Garden")
    assert result.ok, result.error
    assert prepared.preview == (
        "restart UniFi AP 'AP Garden' (U6-Mesh, 74:ac:b9:00:00:0b) on site default: up 14d0h, "
        "2 clients lose their connection for the reboot (about 2 minutes)"
    )
    await asyncio.sleep(0.8)
    again = await tools.runner.run(
        tools.call("unifi.restart_device", "AP Garden").model_copy(
            update={"before": prepared.before}
        )
    )
    assert again.ok and "already restarted" in again.summary
    assert [c["cmd"] for c in controller.commands] == ["restart"]


async def test_sessions_credentials_and_rate_limits(controller: FakeUnifi) -> None:
    good = Tools(unifi=[unifi_target(controller)])
    wrong = Tools(unifi=[unifi_target(controller, password="not-it-123")])
    try:
        assert (await good.run("unifi.devices")).ok
        controller.expire_sessions()  # the controller restarted: log in again, once
        assert (await good.run("unifi.devices")).ok
        assert [r.path for r in controller.requests].count("/api/login") == 2

        refused = await wrong.run("unifi.devices")
        assert refused.error is not None and refused.error.kind is ToolErrorKind.UNAUTHORIZED
        assert "api.err.Invalid" in refused.error.message and "not-it" not in refused.error.message
        for _ in range(5):
            await wrong.run("unifi.devices")
        limited = await wrong.run("unifi.devices")
        assert limited.error is not None and limited.error.kind is ToolErrorKind.RATE_LIMITED
        assert PASSWORD not in limited.error.message
    finally:
        await good.aclose()
        await wrong.aclose()


@pytest.mark.integration
async def test_hung_ap_is_power_cycled_after_approval(
    dev_env: WorkflowEnvironment, tmp_path: Path, controller: FakeUnifi
) -> None:
    controller.hang(AP_LIVING)
    async with edge_stack(dev_env, tmp_path, unifi=[unifi_target(controller)]) as stack:
        fired = alert("UnifiApOffline", instance="192.168.1.10", device="AP Living")
        await stack.post(alertmanager_payload(fired))
        wid = f"incident-{fired['fingerprint']}"
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        request = pending.pending_approval
        assert request is not None and request.level is RiskLevel.HARD
        assert request.action.tool == "unifi.power_cycle_port"
        assert str(request.action.target) == f"unifi:home/{SWITCH}"
        assert request.preview.startswith("power-cycle PoE port 5 ('AP Living'")
        assert controller.commands == []
        await stack.decide(wid, ApprovalDecision(approve=True, approver="alice"))
        state = await stack.result(wid)
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert controller.devices[AP_LIVING].state == 1
        (change,) = stack.store.list_changes(wid)
        assert change.result is ChangeResult.APPLIED and change.params == {"port_idx": 5}
