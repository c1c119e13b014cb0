"""``systemctl`` and ``journalctl`` for a host without systemd (this test machine), on the test sshd.

They follow the documented CLI output of systemd 252 for what the hosts toolset runs: ``systemctl
show --property=...``, ``is-active``, ``start|stop|restart``, ``list-units --failed --no-legend
--plain``; ``journalctl -u UNIT -n N``, ``--disk-usage`` ("Archived and active journals take up
24.0M in the file system.") and ``--vacuum-size=N`` (deletes the oldest archived files, never the
active one, and reports "Vacuuming done, freed ... of archived journals from DIR." on stderr).
Units are real processes, as in tests/fakes/pct.py (whose ``Unit`` they reuse, container "host");
journal files are real files of real sizes under ``<state>/journal``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.fakes.pct import Unit, journalctl, systemctl

HOST = "host"


def format_bytes(size: int) -> str:
    """systemd's format_bytes: 1024-based, one decimal, B/K/M/G/T."""
    value = float(size)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def journal_files(state: Path) -> list[Path]:
    """Archived files (``system@<seqnum>.journal``) oldest first, then the active ``system.journal``."""
    folder = state / "journal"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.journal"), key=lambda p: ("@" not in p.name, p.name))


def _size_arg(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if text and text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def host_journalctl(state: Path, args: list[str]) -> int:
    if "--disk-usage" in args:
        total = sum(p.stat().st_size for p in journal_files(state))
        print(f"Archived and active journals take up {format_bytes(total)} in the file system.")
        return 0
    vacuum = next((a.split("=", 1)[1] for a in args if a.startswith("--vacuum-size=")), None)
    if vacuum is not None:
        limit = _size_arg(vacuum)
        files = journal_files(state)
        total = sum(p.stat().st_size for p in files)
        freed = 0
        for path in files[:-1]:  # the active file is never deleted
            if total - freed <= limit:
                break
            size = path.stat().st_size
            path.unlink()
            freed += size
            print(f"Deleted archived journal {path} ({format_bytes(size)}).", file=sys.stderr)
        print(
            f"Vacuuming done, freed {format_bytes(freed)} of archived journals from "
            f"{state / 'journal'}.",
            file=sys.stderr,
        )
        return 0
    return journalctl(state, HOST, args)


def host_systemctl(state: Path, args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    if words[:1] == ["list-units"]:
        failed_only = "--failed" in args or "--state=failed" in args
        base = state / "ct" / HOST
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            values = Unit(state, HOST, folder.name).show()
            if failed_only and values["ActiveState"] != "failed":
                continue
            print(
                f"{values['Id']} {values['LoadState']} {values['ActiveState']} "
                f"{values['SubState']} {folder.name.split('.')[0]} service"
            )
        return 0
    return systemctl(state, HOST, args)


def install(bin_dir: Path, state: Path) -> None:
    """Write executable ``systemctl`` and ``journalctl`` into ``bin_dir`` (first on the sshd's PATH)."""
    repo = Path(__file__).resolve().parents[2]
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, fn in (("systemctl", "host_systemctl"), ("journalctl", "host_journalctl")):
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(repo)!r})\n"
            "from pathlib import Path\n"
            f"from tests.fakes.systemd import {fn}\n"
            f"sys.exit({fn}(Path({str(state)!r}), sys.argv[1:]))\n"
        )
        script.chmod(0o755)


def add_unit(state: Path, name: str, *, start: bool = True) -> Unit:
    unit = Unit(state, HOST, name)
    unit.dir.mkdir(parents=True, exist_ok=True)
    if start:
        unit.start()
    return unit


def add_journal_file(state: Path, name: str, size: int) -> Path:
    folder = state / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.journal"
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.write(b"LPKSHHRH")  # the journal file signature, so it is not an empty file
    return path


def crash(unit: Unit) -> None:
    """The unit's main process dies by a signal: systemd marks it failed (Result=signal)."""
    import os
    import signal
    import time

    pid = unit.pid
    if pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            state = (
                Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if Path(f"/proc/{pid}/stat").exists()
                else "X"
            )
            if state in ("Z", "X"):
                break
            time.sleep(0.02)
    (unit.dir / "result").write_text("signal")
    (unit.dir / "pid").write_text("0")
    unit.journal(f"systemd[1]: {unit.name}: Main process exited, code=killed, status=9/KILL")
    unit.journal(f"systemd[1]: {unit.name}: Failed with result 'signal'.")
