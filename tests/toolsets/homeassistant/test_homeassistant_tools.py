"""Every Home Assistant tool against a real Home Assistant core: state, config check (passing and
failing), unavailable entities by integration, the error log, config entries, a reload that brings
a broken integration's entities back, a restart through the supervisor loop (refused while the
config check fails), and typed errors for a bad token and an unreachable server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from core.models import Reversibility, RiskLevel, ToolErrorKind
from tests.toolsets.harness import Tools
from tests.toolsets.homeassistant.conftest import NAS_SENSORS, Nas, break_nas, ha_target
from workers.lab.homeassistant import HomeAssistant
from workers.lab.processes import free_port


@pytest_asyncio.fixture
async def tools(ha: HomeAssistant) -> AsyncIterator[Tools]:
    tools = Tools(homeassistant=[ha_target(ha)])
    yield tools
    await tools.aclose()


async def test_reads_on_a_healthy_house(tools: Tools, ha: HomeAssistant) -> None:
    status = await tools.run("homeassistant.status")
    assert status.ok, status.error
    assert status.data["running"] and status.data["version"] == ha.version
    check = await tools.run("homeassistant.config_check")
    assert check.data["ok"] and check.data["result"] == "valid"
    unavailable = await tools.run("homeassistant.entities_unavailable")
    assert unavailable.data["count"] == 0 and not unavailable.data["over_threshold"]
    integrations = await tools.run("homeassistant.integrations")
    assert {"rest", "template", "input_boolean"} <= set(integrations.data["loaded"])
    assert integrations.data["failed_count"] == 0
    log = await tools.run("homeassistant.error_log", lines=20)
    assert log.ok and isinstance(log.data["lines"], list)
    assert ha.token not in str(log.data)


async def test_a_broken_integration_is_found_and_reloaded(
    tools: Tools, ha: HomeAssistant, nas: Nas
) -> None:
    break_nas(ha, nas)
    found = await tools.run("homeassistant.entities_unavailable")
    assert found.ok, found.error
    assert found.data["count"] == len(NAS_SENSORS) and found.data["over_threshold"]
    assert found.data["top_integration"] == "rest"
    assert found.data["by_integration"] == {"rest": 6} and found.data["by_domain"] == {"sensor": 6}
    log = await tools.run("homeassistant.error_log", contains="rest")
    assert log.data["errors"] >= 1 and "homeassistant.components.rest.data" in log.data["by_logger"]

    prepared = await tools.prepare("homeassistant.reload_integration", integration="rest")
    assert prepared.error is None and prepared.default_level is RiskLevel.SOFT
    assert prepared.reversibility is Reversibility.STATELESS and not prepared.noop
    assert prepared.preview == (
        "reload YAML integration rest (service rest.reload): 6 of its 6 entities unavailable"
    )
    _, result = await tools.apply("homeassistant.reload_integration", integration="rest")
    assert result.ok, result.error
    assert result.data["unavailable"] == [] and len(result.data["recovered"]) == 6
    assert all(ha.states()[f"sensor.nas_{k}"] != "unavailable" for k in NAS_SENSORS)
    assert (await tools.prepare("homeassistant.reload_integration", integration="rest")).noop

    none = await tools.prepare("homeassistant.reload_integration", integration="http")
    assert none.error is not None and none.error.kind is ToolErrorKind.UNSUPPORTED


async def test_failing_config_check_blocks_a_restart(tools: Tools, ha: HomeAssistant) -> None:
    restarts = ha.restarts()
    config = ha.config_dir / "configuration.yaml"
    good = config.read_text()
    config.write_text(good + "\nbroken: [unclosed\n")
    try:
        check = await tools.run("homeassistant.config_check")
        assert check.ok and check.data["ok"] is False and check.data["result"] == "invalid"
        prepared = await tools.prepare("homeassistant.restart")
        assert prepared.error is not None and prepared.error.kind is ToolErrorKind.CONFLICT
        assert "config check does not pass" in prepared.error.message
    finally:
        config.write_text(good)
    assert ha.restarts() == restarts


async def test_restart_waits_for_the_api_to_come_back(tools: Tools, ha: HomeAssistant) -> None:
    restarts = ha.restarts()
    prepared = await tools.prepare("homeassistant.restart")
    assert prepared.error is None and prepared.default_level is RiskLevel.HARD
    assert prepared.preview.startswith(
        f"restart Home Assistant {ha.version} at {ha.url} (now RUNNING"
    )
    # states change while a human decides; the oldest one too: still not "already restarted"
    for service in ("turn_on", "turn_off"):
        ha.api(
            "POST",
            f"/api/services/input_boolean/{service}",
            {"entity_id": "input_boolean.lab_switch"},
        )
    result = await tools.runner.run(
        tools.call("homeassistant.restart").model_copy(update={"before": prepared.before})
    )
    assert result.ok, result.error
    assert result.data["restarted"] and result.data["state"] == "RUNNING"
    assert ha.restarts() == restarts + 1
    assert result.data["started_at"] != prepared.before["started_at"]
    # the same change retried: already restarted, not again
    again = await tools.runner.run(
        tools.call("homeassistant.restart").model_copy(update={"before": prepared.before})
    )
    assert again.ok and again.data["restarted"] is False and ha.restarts() == restarts + 1


async def test_bad_token_and_unreachable_server_are_typed(ha: HomeAssistant) -> None:
    bad = Tools(homeassistant=[ha_target(ha, token="not-the-token-3f9a")])
    gone = Tools(homeassistant=[ha_target(ha, url=f"http://127.0.0.1:{free_port()}")])
    try:
        refused = await bad.run("homeassistant.status")
        missing = await gone.run("homeassistant.entities_unavailable")
    finally:
        await bad.aclose()
        await gone.aclose()
    assert refused.error is not None and refused.error.kind is ToolErrorKind.UNAUTHORIZED
    assert "not-the-token" not in refused.error.message
    assert missing.error is not None and missing.error.kind is ToolErrorKind.UNREACHABLE
