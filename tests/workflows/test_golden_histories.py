"""Every committed golden history replays against today's workflow code.

The histories under tests/histories/ were recorded from released code (tests/histories/record.py).
A change to workflow code that would make one of them take another path fails here: guard it with
``workflow.patched`` (see docs/architecture.md, "Changing workflow code").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def test_there_are_golden_histories_for_each_case() -> None:
    names = {p.stem.split("-", 1)[1] for p in HISTORIES}
    for case in [
        "approved",
        "timeout",
        "rollback",
        "llm-chain",
        "pause",
        "manual-rollback",
        "lock",
        "forecast",
        "forecast-failed",
        "anomalies",
        "patterns",
        "sweep",
    ]:
        assert case in names, f"no golden history for {case}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_golden_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
