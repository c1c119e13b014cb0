"""Every fault scenario on a fresh lab: resolution rate, approvals, unintended actions, MTTR.

Brings the demo lab up in a temporary directory (root: it mounts a disk and runs dockerd), starts
the agents on it with a short approval timeout (so the auto-deny scenario ends in seconds), runs
each scenario (inject → incident → the scenario's human → independent check → cleanup), prints a
table and a summary, and writes bench/results/scenarios-<time>.json.

    .venv/bin/python bench/scenarios.py [--only NAME ...] [--ci]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from approval import signing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.store import Store
from bench.report import summary, write
from core.config import load_settings
from workers.demo import bring_up
from workers.lab.lab import Lab, LabState
from workers.lab.scenarios import LabHands, ScenarioResult, load_scenarios, run_scenario
from workers.temporal_client import connect

APPROVAL_TIMEOUT = "20s"


async def run_all(state: LabState, names: list[str] | None, ci_only: bool) -> list[ScenarioResult]:
    settings = load_settings(state.config)
    client = await connect(settings)
    store = Store(settings.store_url)
    hands = LabHands(state)
    scenarios = [
        s for s in load_scenarios() if (not names or s.name in names) and (not ci_only or s.ci)
    ]
    results = []
    try:
        for scenario in scenarios:
            result = await run_scenario(
                scenario, hands, client, store, key=signing.key_for(settings.keys_dir, "you")
            )
            results.append(result)
            mark = "ok " if result.passed else "FAIL"
            print(
                f"  {mark} {scenario.name:<28} expected {result.expected:<24} observed {result.observed or '-':<24} "
                f"{result.seconds:6.1f}s {result.error}",
                flush=True,
            )
    finally:
        hands.close()
        store.close()
    return results


def summarize(results: list[ScenarioResult]) -> dict[str, Any]:
    auto = [r for r in results if r.auto_eligible]
    needs_approval = [r for r in results if r.approval_required]
    restore_start = [r.restore_from_start_s for r in results if r.restore_from_start_s is not None]
    restore_intake = [
        r.restore_from_intake_s for r in results if r.restore_from_intake_s is not None
    ]
    verified_start = [
        r.verified_from_start_s for r in results if r.verified_from_start_s is not None
    ]
    verified_intake = [
        r.verified_from_intake_s for r in results if r.verified_from_intake_s is not None
    ]
    return {
        "scenarios": len(results),
        "passed": sum(r.passed for r in results),
        "autonomous_resolution_rate": round(sum(r.passed for r in auto) / len(auto), 3)
        if auto
        else None,
        "auto_eligible": len(auto),
        "approval_asked_where_required": round(
            sum(r.approval_asked for r in needs_approval) / len(needs_approval), 3
        )
        if needs_approval
        else None,
        "approval_asked_where_not_required": sum(
            r.approval_asked for r in results if not r.approval_required
        ),
        "unintended_actions": sum(len(r.unintended) for r in results),
        "time_to_restore_from_alert_start_s": summary(restore_start, mean=False),
        "time_to_restore_from_intake_s": summary(restore_intake, mean=False),
        "time_to_verified_from_alert_start_s": summary(verified_start, mean=False),
        "time_to_verified_from_intake_s": summary(verified_intake, mean=False),
        "mean_scenario_seconds": round(statistics.mean(r.seconds for r in results), 1)
        if results
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--ci", action="store_true", help="only the fast subset marked ci: true")
    args = parser.parse_args()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hl-scenarios-")) / "lab"
    state = bring_up(root, {"HOMELAB_APPROVAL__TIMEOUT": APPROVAL_TIMEOUT})
    try:
        results = asyncio.run(run_all(state, args.only, args.ci))
    finally:
        Lab(root).down()
    figures = summarize(results)
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    table = Table(
        "scenario",
        "expected",
        "observed",
        "approval",
        "writes",
        "unintended",
        "restore (intake)",
        "check",
        "pass",
    )
    for r in results:
        table.add_row(
            r.name,
            r.expected,
            r.observed or r.error[:40],
            "asked" if r.approval_asked else "-",
            ", ".join(w.split(".")[-1] for w in r.writes) or "-",
            ", ".join(r.unintended) or "0",
            f"{r.restore_from_intake_s:.2f}s" if r.restore_from_intake_s is not None else "-",
            "ok" if r.checks_passed else "FAIL",
            "yes" if r.passed else "NO",
        )
    console = Console(width=200)
    console.print(table)
    console.print_json(data=figures)
    out = write("scenarios", {"summary": figures, "results": [r.model_dump() for r in results]})
    print(f"written to {out}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
