"""restic and borg repositories for the tests and the demo lab: real repositories with snapshots
dated in the past (restic ``--time``, borg ``--timestamp``), damaged data, and the stale lock a
killed backup leaves behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(
            f"{name} is not installed ({package}; deploy/scripts/install-system-deps.sh)"
        )
    return found


@dataclass
class LabRepo:
    """A repository on this machine: ``kind`` restic or borg, its password in ``password_file``."""

    kind: str
    path: Path
    password_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        extra = (
            {"RESTIC_PASSWORD_FILE": str(self.password_file)}
            if self.kind == "restic"
            else {"BORG_PASSCOMMAND": f"cat {self.password_file}", "TZ": "UTC"}
        )
        return {**os.environ, **self.env, **extra}

    def run(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        if self.kind == "restic":
            argv = [_binary("restic", "restic"), "-r", str(self.path), *args]
        else:
            argv = [
                _binary("borg", "borgbackup"),
                *(a.replace("{repo}", str(self.path)) for a in args),
            ]
        done = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=timeout, env=self._env()
        )
        if done.returncode not in (0, 1 if self.kind == "borg" else 0):
            raise RuntimeError(
                f"{argv[0]} {args[0]} failed: {done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode(errors="replace")

    def backup(
        self, source: Path, when: str | None = None, host: str = "labhost", tag: str = "lab"
    ) -> None:
        """A snapshot of ``source``; ``when`` (``2026-11-20 10:00:00``, UTC) dates it in the past."""
        if self.kind == "restic":
            args = ["backup", "--host", host, "--tag", tag, "-q", str(source)]
            if when:
                args += ["--time", when]
        else:
            stamp = (when or time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())).replace(" ", "T")
            args = ["create", "--timestamp", stamp, f"{{repo}}::{host}-{stamp}", str(source)]
        self.run(*args)

    def clone(self, path: Path) -> LabRepo:
        """A copy under ``path`` with its own cache (restic's ``init`` costs seconds of key
        derivation; a copy is instant). Copies share the repository id: never mix their caches."""
        shutil.copytree(self.path, path)
        password_file = path.parent / f"{path.name}.password"
        shutil.copy(self.password_file, password_file)
        env = dict(self.env)
        if self.kind == "restic":
            env["RESTIC_CACHE_DIR"] = str(path.parent / f"{path.name}.cache")
        else:
            env["BORG_BASE_DIR"] = str(path.parent / f"{path.name}.borg")
        return LabRepo(self.kind, path, password_file, env)

    def corrupt(self) -> Path:
        """Overwrite bytes inside the largest data file (a restic pack, a borg segment)."""
        files = [p for p in (self.path / "data").rglob("*") if p.is_file()]
        target = max(files, key=lambda p: p.stat().st_size)
        target.chmod(0o600)
        with open(target, "r+b") as handle:
            handle.seek(min(1000, target.stat().st_size // 2))
            handle.write(b"X" * 24)
        return target

    def _lock_taken(self, locks: Path) -> bool:
        """The lock exists as restic itself lists it (a file appearing in ``locks/`` may still be
        half written: killed then, restic would find no lock at all)."""
        if not (locks.is_dir() and any(locks.iterdir())):
            return False
        if self.kind != "restic":
            return True
        return bool(self.run("list", "locks", "--no-lock").strip())

    def leave_stale_lock(self) -> int:
        """Start a backup that holds the repository's lock, kill it with SIGKILL and reap it:
        the lock stays behind with a pid that no longer runs. Returns that pid."""
        if self.kind == "restic":
            argv = [
                _binary("restic", "restic"),
                "-r",
                str(self.path),
                "backup",
                "--stdin",
                "--stdin-filename",
                "x",
            ]
        else:
            argv = [
                _binary("borg", "borgbackup"),
                "create",
                f"{self.path}::killed-{time.time_ns()}",
                "-",
            ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self._env(),
        )
        locks = self.path / ("locks" if self.kind == "restic" else "lock.exclusive")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._lock_taken(locks):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()  # reaped: the pid is gone, not a zombie
        if not (locks.is_dir() and any(locks.iterdir())):
            raise RuntimeError(f"{self.kind} never took its lock in {self.path}")
        return proc.pid


def make_repo(kind: str, path: Path, password: str, encryption: str = "repokey") -> LabRepo:
    """A new repository (restic init; borg init -e ``encryption``), with its own cache directory
    (restic) or borg base directory next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    password_file = path.parent / f"{path.name}.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    env = (
        {"RESTIC_CACHE_DIR": str(path.parent / f"{path.name}.cache")}
        if kind == "restic"
        else {"BORG_BASE_DIR": str(path.parent / f"{path.name}.borg")}
    )
    repo = LabRepo(kind, path, password_file, env)
    if kind == "restic":
        repo.run("init")
    else:
        repo.run("init", "-e", encryption, "{repo}")
    return repo
