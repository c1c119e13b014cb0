"""A private PostgreSQL server (initdb in its own directory, loopback only, trust auth)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from workers.lab.processes import wait_for


def pg_bin(name: str) -> str:
    for version in ("17", "16", "15", "14", "13"):
        path = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")


class Postgres:
    """``start()`` runs initdb once and pg_ctl start; as root, the server runs as ``postgres``.

    ``replica_of(primary)`` makes a streaming replica instead: pg_basebackup -R from the primary
    (optionally creating and using a physical replication slot), then a hot standby.
    """

    def __init__(self, root: Path, port: int, options: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.options = {"fsync": "off", "autovacuum": "off", **(options or {})}
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.primary: Postgres | None = None
        self.slot: str | None = None

    @classmethod
    def replica_of(
        cls,
        primary: Postgres,
        root: Path,
        port: int,
        slot: str | None = None,
        options: dict[str, str] | None = None,
    ) -> Postgres:
        replica = cls(root, port, {**primary.options, **(options or {})})
        replica.primary = primary
        replica.slot = slot
        return replica

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            detail = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {detail}")
        return done

    def start(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user, self.user)
            # the server user must be able to reach its directory
            for parent in self.root.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o011)
        if not (self.data / "PG_VERSION").exists() and self.primary is not None:
            slot = ["-C", "-S", self.slot] if self.slot else []
            self._run(
                pg_bin("pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-X",
                "stream",
                "-R",
                "--no-sync",
                *slot,
            )
        if not (self.data / "PG_VERSION").exists():
            self._run(
                pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {k}={v}" for k, v in self.options.items()
        )
        self._run(
            pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "-o",
            opts,
            "start",
        )
        wait_for(self._ready, 15, f"postgres on port {self.port}")
        return self

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn(), connect_timeout=2):
            return True

    def run_sql_file(self, path: Path, dbname: str = "postgres") -> None:
        """Run a SQL script with psql as the superuser (multi-statement, ON_ERROR_STOP)."""
        self._run(
            pg_bin("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            dbname,
            "-f",
            str(path),
        )

    def createdb(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass
