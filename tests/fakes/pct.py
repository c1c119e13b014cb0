"""The ``pct`` a test node runs: ``pct exec <vmid> -- systemctl|journalctl ...`` on real processes.

Installed on the PATH of the test sshd (tests/fakes/sshd.py) by ``install_pct``. Each container's
services live under ``<state>/ct/<vmid>/<unit>/``: a real process (``sleep``) started in its own
session, its pid file, a journal, and a ``fail`` flag that makes the next start fail the way
systemd reports it. The container's own state (running or not, on which node) comes from the fake
PVE's mirror (``<state>/ct-<vmid>.json``), so the API and the node agree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FAILED_JOB = (
    "Job for {unit} failed because the control process exited with error code.\n"
    'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n'
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Unit:
    def __init__(self, state: Path, vmid: str, name: str) -> None:
        self.name = name if "." in name else f"{name}.service"
        self.dir = state / "ct" / vmid / self.name

    @property
    def exists(self) -> bool:
        return self.dir.is_dir()

    def _read(self, name: str, default: str = "") -> str:
        try:
            return (self.dir / name).read_text().strip()
        except OSError:
            return default

    def _write(self, name: str, value: str) -> None:
        (self.dir / name).write_text(value)

    def journal(self, line: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        with open(self.dir / "journal", "a") as handle:
            handle.write(f"{stamp} {line}\n")

    @property
    def pid(self) -> int:
        text = self._read("pid", "0")
        return int(text) if text.isdigit() else 0

    def show(self) -> dict[str, str]:
        if not self.exists:
            return {
                "Id": self.name,
                "LoadState": "not-found",
                "ActiveState": "inactive",
                "SubState": "dead",
                "MainPID": "0",
                "ExecMainStartTimestampMonotonic": "0",
                "NRestarts": "0",
                "Result": "success",
            }
        pid = self.pid
        running = bool(pid) and _alive(pid)
        result = self._read("result", "success")
        active = "active" if running else ("failed" if result != "success" else "inactive")
        sub = "running" if running else ("failed" if result != "success" else "dead")
        return {
            "Id": self.name,
            "LoadState": "loaded",
            "ActiveState": active,
            "SubState": sub,
            "MainPID": str(pid if running else 0),
            "ExecMainStartTimestampMonotonic": self._read("started", "0"),
            "NRestarts": self._read("restarts", "0"),
            "Result": result,
        }

    def stop(self) -> None:
        pid = self.pid
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self.journal(f"systemd[1]: Stopped {self.name}.")
        self._write("pid", "0")

    def start(self) -> bool:
        if (self.dir / "fail").exists():
            self._write("result", "exit-code")
            self._write("pid", "0")
            self.journal(
                f"{self.name.split('.')[0]}[{os.getpid()}]: bind() to 0.0.0.0:80 failed (98: Address already in use)"
            )
            self.journal(
                f"systemd[1]: {self.name}: Main process exited, code=exited, status=1/FAILURE"
            )
            self.journal(f"systemd[1]: Failed to start {self.name}.")
            return False
        proc = subprocess.Popen(
            ["sleep", "100000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._write("pid", str(proc.pid))
        self._write("started", str(time.monotonic_ns() // 1000))
        self._write("result", "success")
        self.journal(f"systemd[1]: Started {self.name}.")
        return True


def systemctl(state: Path, vmid: str, args: list[str]) -> int:
    props: list[str] = []
    rest: list[str] = []
    for arg in args:
        if arg.startswith("--property="):
            props += arg.split("=", 1)[1].split(",")
        elif arg.startswith("-"):
            continue
        else:
            rest.append(arg)
    if not rest:
        print("Too few arguments.", file=sys.stderr)
        return 1
    verb, names = rest[0], rest[1:]
    if verb == "show":
        for name in names:
            values = Unit(state, vmid, name).show()
            for key in props or list(values):
                print(f"{key}={values.get(key, '')}")
        return 0
    if verb == "is-active":
        values = Unit(state, vmid, names[0]).show()
        print(values["ActiveState"])
        return 0 if values["ActiveState"] == "active" else 3
    if verb in ("start", "stop", "restart"):
        unit = Unit(state, vmid, names[0])
        if not unit.exists:
            print(f"Failed to {verb} {unit.name}: Unit {unit.name} not found.", file=sys.stderr)
            return 5
        if verb in ("stop", "restart"):
            unit.stop()
        if verb in ("start", "restart") and not unit.start():
            print(FAILED_JOB.format(unit=unit.name), end="", file=sys.stderr)
            return 1
        return 0
    print(f"Unknown command verb {verb}.", file=sys.stderr)
    return 1


def journalctl(state: Path, vmid: str, args: list[str]) -> int:
    unit_name, lines = "", 10
    it = iter(args)
    for arg in it:
        if arg == "-u":
            unit_name = next(it, "")
        elif arg == "-n":
            lines = int(next(it, "10"))
    unit = Unit(state, vmid, unit_name)
    try:
        text = (unit.dir / "journal").read_text().splitlines()
    except OSError:
        text = []
    for line in text[-lines:]:
        print(line.split(" ", 3)[-1] if "-o" in args else line)
    return 0


def main(argv: list[str], state: Path, node: str) -> int:
    if len(argv) < 4 or argv[0] != "exec" or "--" not in argv:
        print("usage: pct exec <vmid> -- <command> [args]", file=sys.stderr)
        return 255
    vmid = argv[1]
    command = argv[argv.index("--") + 1 :]
    try:
        ct = json.loads((state / f"ct-{vmid}.json").read_text())
    except (OSError, ValueError):
        ct = None
    if ct is None or ct.get("node") != node:
        print(f"Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist", file=sys.stderr)
        return 255
    if ct.get("status") != "running":
        print(f"CT {vmid} not running", file=sys.stderr)
        return 255
    if not command:
        return 0
    if command[0] == "systemctl":
        return systemctl(state, vmid, command[1:])
    if command[0] == "journalctl":
        return journalctl(state, vmid, command[1:])
    print(f"{command[0]}: command not found", file=sys.stderr)
    return 127


def install_pct(bin_dir: Path, state: Path, node: str) -> Path:
    """Write an executable ``pct`` that runs ``main`` with this interpreter and repository."""
    repo = Path(__file__).resolve().parents[2]
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "pct"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(repo)!r})\n"
        "from pathlib import Path\n"
        "from tests.fakes.pct import main\n"
        f"sys.exit(main(sys.argv[1:], Path({str(state)!r}), {node!r}))\n"
    )
    script.chmod(0o755)
    return script


def add_service(state: Path, vmid: int, unit: str, *, start: bool = True) -> Unit:
    """Define a unit in a container (and start it, as systemd would at boot)."""
    service = Unit(state, str(vmid), unit)
    service.dir.mkdir(parents=True, exist_ok=True)
    if start:
        service.start()
    return service


def stop_all(state: Path) -> None:
    for pid_file in (state / "ct").glob("*/*/pid"):
        text = pid_file.read_text().strip()
        if text.isdigit() and int(text) and _alive(int(text)):
            os.kill(int(text), signal.SIGKILL)
