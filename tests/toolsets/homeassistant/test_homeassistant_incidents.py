"""Home Assistant incidents end to end on the dev server against the real Home Assistant: a
broken integration found by the unavailable-entities alert, the config checked, the integration
reloaded (SOFT, no approval) and the entities recovered; a restart whose config check fails
escalates with the check's error and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel
from tests.integration.stack import alertmanager_payload
from tests.toolsets.harness import alert, edge_stack
from tests.toolsets.homeassistant.conftest import NAS_SENSORS, Nas, break_nas, ha_target
from workers.lab.homeassistant import HomeAssistant

pytestmark = pytest.mark.integration


async def test_broken_integration_is_reloaded_and_entities_recover(
    dev_env: WorkflowEnvironment, tmp_path: Path, ha: HomeAssistant, nas: Nas
) -> None:
    break_nas(ha, nas)
    async with edge_stack(dev_env, tmp_path, homeassistant=[ha_target(ha)]) as stack:
        fired = alert("HomeAssistantEntitiesUnavailable", instance="ha.lan:8123")
        assert (await stack.post(alertmanager_payload(fired))).status_code == 202
        state = await stack.result(f"incident-{fired['fingerprint']}")

        assert state.outcome is Outcome.RESOLVED, state.notes
        evidence = {e.key: e for e in state.evidence}
        assert evidence["config"].data["ok"] is True
        assert evidence["entities"].data["top_integration"] == "rest"
        assert evidence["entities"].data["count"] == len(NAS_SENSORS)
        assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
            ("homeassistant.reload_integration", RiskLevel.SOFT, ChangeResult.APPLIED)
        ]
        assert state.actions[0].action.params == {"integration": "rest"}
        assert state.verification is not None and state.verification.passed
        (change,) = stack.store.list_changes(state.workflow_id)
        assert change.before["unavailable"] == sorted(f"sensor.nas_{k}" for k in NAS_SENSORS)
        assert change.after["unavailable"] == []
    assert all(ha.states()[f"sensor.nas_{k}"] != "unavailable" for k in NAS_SENSORS)


async def test_failed_config_check_after_a_restart_escalates_with_its_error(
    dev_env: WorkflowEnvironment, tmp_path: Path, ha: HomeAssistant
) -> None:
    config = ha.config_dir / "configuration.yaml"
    good = config.read_text()
    restarts = ha.restarts()
    config.write_text(good + "\nbroken: [unclosed\n")
    try:
        async with edge_stack(dev_env, tmp_path, homeassistant=[ha_target(ha)]) as stack:
            fired = alert("HomeAssistantRestarted", instance="ha.lan:8123")
            await stack.post(alertmanager_payload(fired))
            state = await stack.result(f"incident-{fired['fingerprint']}")
            assert state.outcome is Outcome.ESCALATED, state.notes
            check = next(e for e in state.evidence if e.key == "config")
            assert check.data["ok"] is False
            assert "while parsing a flow sequence" in str(check.data["errors"])
            assert state.actions == [] and stack.store.list_changes(state.workflow_id) == []
            assert any("result = 'invalid'" in note for note in state.notes), state.notes
    finally:
        config.write_text(good)
    assert ha.restarts() == restarts
