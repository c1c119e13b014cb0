"""`homelab-agents demo`: a lab of real services with injectable faults, and the agents on it.

`demo` brings the lab up, starts the agents' stack (`up` with the lab's config) as a background
process recorded by pid, optionally injects a first fault, and shows incidents live. Ctrl-C leaves
the live view only; everything stays inspectable until `demo stop`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.config import load_settings
from workers.lab.hold import holds_sessions
from workers.lab.lab import Lab, LabState, ProcRecord, describe, load_state, state_path
from workers.lab.processes import Proc, wait_for
from workers.lab.scenarios import LabHands, load_scenarios

DEFAULT_LAB = Path(".homelab") / "lab"
demo_app = typer.Typer(
    help="A lab of real services with injectable faults.", invoke_without_command=True
)
console = Console()

LabDir = typer.Option(DEFAULT_LAB, "--lab-dir", help="Where the lab keeps its state.")


def _state(lab_dir: Path) -> LabState:
    state = load_state(lab_dir.resolve())
    if state is None:
        raise typer.BadParameter(f"no lab in {lab_dir}; start one with `homelab-agents demo`")
    return state


def start_agents(state: LabState, extra_env: dict[str, str] | None = None) -> int:
    """Run `homelab-agents up` on the lab's config in its own session; returns its pid."""
    log = open(Path(state.root) / "agents.log", "ab")
    env = {**os.environ, "HOMELAB_CONFIG": state.config, **(extra_env or {})}
    env.pop("HOMELAB_APPROVER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "--config", state.config, "up"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    log.close()
    url = f"http://127.0.0.1:{state.ports['intake']}/healthz"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the agents' stack exited; see {Path(state.root) / 'agents.log'}")
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200

    wait_for(healthy, 90, "the agents' intake")
    return proc.pid


def bring_up(lab_dir: Path, extra_env: dict[str, str] | None = None) -> LabState:
    lab = Lab(lab_dir)
    console.print(f"starting the lab in {lab.root} …")
    state = lab.up()
    try:
        state.agents_pid = start_agents(state, extra_env)
    except Exception:
        lab.down()
        raise
    state_path(lab.root).write_text(state.model_dump_json(indent=2))
    return state


@demo_app.callback()
def demo(
    ctx: typer.Context,
    lab_dir: Path = LabDir,
    inject: str = typer.Option(None, "--inject", help="Inject this scenario once the lab is up."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Show incidents live."),
) -> None:
    """Start the lab and the agents on it (then see `demo inject`, `demo watch`, `demo stop`)."""
    if ctx.invoked_subcommand is not None:
        return
    if load_state(lab_dir.resolve()) is not None:
        console.print("a lab is already running here; showing it (use `demo stop` to start afresh)")
        state = _state(lab_dir)
    else:
        state = bring_up(lab_dir)
    table = Table("component", "where", show_header=False, box=None)
    for name, where in describe(state).items():
        table.add_row(Text(name), Text(str(where)))
    console.print(table)
    if inject:
        _inject(state, inject)
    if watch:
        _watch(state)
    console.print("the lab keeps running; `homelab-agents demo stop` stops and removes it")


def _inject(state: LabState, name: str) -> None:
    scenarios = {s.name: s for s in load_scenarios()}
    if name not in scenarios:
        raise typer.BadParameter(f"no scenario {name!r}; `homelab-agents demo list` shows them")
    scenario = scenarios[name]
    if holds_sessions(scenario):
        # The fault lives in open sessions: a recorded holder process keeps them open.
        log = Path(state.root) / f"hold-{name}.log"
        proc = Proc.spawn(
            f"hold-{name}",
            [sys.executable, "-m", "workers.lab.hold", state.root, name],
            log,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        state.procs.append(
            ProcRecord(name=proc.name, pid=proc.pid, started=proc.started, log=str(log))
        )
        state_path(Path(state.root)).write_text(state.model_dump_json(indent=2))
    else:
        hands = LabHands(state)
        try:
            for step in scenario.inject:
                hands.run_step(step)
        finally:
            hands.close()
    console.print(f"injected {name}: expect {scenario.alert} → {scenario.expect.outcome}")


@demo_app.command("inject")
def inject_cmd(name: str, lab_dir: Path = LabDir) -> None:
    """Inject one fault scenario into the running lab."""
    _inject(_state(lab_dir), name)


@demo_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """The fault scenarios."""
    scenarios = load_scenarios()
    if as_json:
        console.print_json(
            data=[
                s.model_dump(mode="json", include={"name", "description", "alert", "expect"})
                for s in scenarios
            ]
        )
        return
    table = Table("scenario", "alert", "expected", "description")
    for s in scenarios:
        table.add_row(*(Text(x) for x in (s.name, s.alert, s.expect.outcome, s.description)))
    console.print(table)


@demo_app.command("watch")
def watch_cmd(lab_dir: Path = LabDir) -> None:
    """Show the lab's incidents live."""
    _watch(_state(lab_dir))


@demo_app.command("stop")
def stop_cmd(lab_dir: Path = LabDir) -> None:
    """Stop every process the lab started (by pid), unmount its disk and remove it."""
    stopped = Lab(lab_dir).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _watch(state: LabState) -> None:
    settings = load_settings(state.config)
    ui = settings.temporal.web_ui()

    async def view() -> None:
        from workers.operations import list_incidents
        from workers.temporal_client import connect
        from workflows.incident import IncidentWorkflow

        client = await connect(settings)
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while True:
                rows = await list_incidents(client, limit=15)
                table = Table(
                    "incident", "alert", "target", "phase", "approval", "last action", "Web UI"
                )
                for row in rows:
                    action = ""
                    if row.status == "running" or row.phase in ("Resolved", "Escalated"):
                        try:
                            state_ = await asyncio.wait_for(
                                client.get_workflow_handle(row.workflow_id).query(
                                    IncidentWorkflow.get_state
                                ),
                                2,
                            )
                            if state_.actions:
                                last = state_.actions[-1]
                                action = f"{last.action.tool}: {last.result.value}"
                            elif state_.pending_approval:
                                action = f"waiting: {state_.pending_approval.preview}"
                        except Exception:
                            action = ""
                    style = {
                        "Resolved": "green",
                        "Escalated": "red",
                        "AwaitingApproval": "yellow",
                    }.get(row.phase, "")
                    table.add_row(
                        Text(row.workflow_id),
                        Text(row.alert),
                        Text(row.target),
                        Text(row.phase, style=style),
                        Text(row.approval),
                        Text(action[:60]),
                        Text(
                            f"{ui}/namespaces/{settings.temporal.namespace}/workflows/{row.workflow_id}"
                        ),
                    )
                live.update(
                    Group(
                        Text(
                            f"incidents (Ctrl-C leaves this view; the lab keeps running) — {time.strftime('%H:%M:%S')}"
                        ),
                        table,
                    )
                )
                await asyncio.sleep(1)

    try:
        asyncio.run(view())
    except KeyboardInterrupt:
        pass


def run_blocking(coro: Any) -> Any:
    return asyncio.run(coro)
