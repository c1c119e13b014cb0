"""Inject one scenario and keep its sessions open (``demo inject`` of a PostgreSQL fault).

A held transaction or a running query only exists while its connection does, so the CLI hands
these injections to this small process, recorded in the lab's state and stopped by `demo stop`.

    python -m workers.lab.hold LAB_DIR SCENARIO
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from workers.lab.lab import load_state
from workers.lab.scenarios import LabHands, Scenario, load_scenarios

MAX_HOLD_SECONDS = 2 * 3600


def holds_sessions(scenario: Scenario) -> bool:
    return any(
        s.sql_hold is not None or s.sql_background is not None or s.idle_in_transaction is not None
        for s in scenario.inject
    )


def main(lab_dir: str, name: str) -> int:
    state = load_state(Path(lab_dir).resolve())
    if state is None:
        print(f"no lab in {lab_dir}", file=sys.stderr)
        return 2
    scenario = next((s for s in load_scenarios() if s.name == name), None)
    if scenario is None:
        print(f"no scenario {name}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hands = LabHands(state)
    try:
        for step in scenario.inject:
            hands.run_step(step)
        stop.wait(MAX_HOLD_SECONDS)  # the fault persists until the agents fix it or `demo stop`
    finally:
        hands.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
