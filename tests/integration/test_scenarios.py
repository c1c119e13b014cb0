"""The fast subset of the demo scenarios, end to end on the real lab (what bench/scenarios.py runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from activities.store import Store
from approval import signing
from core.config import load_settings
from workers.demo import bring_up
from workers.lab.lab import Lab, LabState
from workers.lab.scenarios import LabHands, load_scenarios, run_scenario
from workers.temporal_client import connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    root = tmp_path_factory.mktemp("lab") / "lab"
    state = bring_up(root, {"HOMELAB_APPROVAL__TIMEOUT": "20s"})
    yield state
    stopped = Lab(root).down()
    assert {"prometheus", "alertmanager", "dockerd", "postgres", "agents"} <= set(stopped)
    assert not root.exists()


def test_scenarios_are_valid_data() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 7 and any(s.ci for s in scenarios)
    assert {s.expect.outcome for s in scenarios} >= {
        "resolved",
        "approval_then_resolved",
        "auto_denied",
        "rolled_back",
    }


@pytest.mark.parametrize("name", [s.name for s in load_scenarios() if s.ci])
async def test_ci_scenario(lab: LabState, name: str) -> None:
    scenario = next(s for s in load_scenarios() if s.name == name)
    settings = load_settings(lab.config)
    client = await connect(settings)
    store = Store(settings.store_url)
    hands = LabHands(lab)
    try:
        result = await run_scenario(
            scenario, hands, client, store, key=signing.key_for(settings.keys_dir, "you")
        )
    finally:
        hands.close()
        store.close()
    assert result.error == "", result.error
    assert result.observed == scenario.expect.outcome
    assert result.checks_passed, result.check_notes
    assert result.unintended == []
    assert result.approval_asked == scenario.expect.approval
    assert result.passed
