"""A private Redis (or Valkey) server on loopback: no persistence file outside its directory,
an ACL user for the agents with only the commands the toolset uses."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from workers.lab.processes import Proc, wait_for

AGENT_USER = "homelab"
AGENT_ACL = (
    "on >{password} ~* resetchannels -@all +info +ping +client|list +client|kill +client|setname "
    "+client|getname +client|id +slowlog|get +slowlog|len +config|get +config|set +bgsave +lastsave "
    "+scan +type +memory|usage +memory|purge +dbsize +acl|whoami +select +hello"
)
"""The least privilege the redis toolset needs (README, "Redis / Valkey")."""


def redis_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    raise RuntimeError(
        "redis-server is not installed (deploy/scripts/install-system-deps.sh installs it)"
    )


class Redis:
    """``start()`` writes redis.conf (loopback, RDB in its dir, an ACL user) and runs it."""

    def __init__(self, root: Path, port: int, password: str = "agents-secret") -> None:
        self.root = root
        self.port = port
        self.password = password
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, maxmemory: str = "0", policy: str = "noeviction", save: str = "") -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f"dir {self.root}",
                    "dbfilename dump.rdb",
                    f'save "{save}"',
                    "appendonly no",
                    "daemonize no",
                    f"maxmemory {maxmemory}",
                    f"maxmemory-policy {policy}",
                    "maxclients 64",
                    f"user {AGENT_USER} " + AGENT_ACL.format(password=self.password),
                    "",
                ]
            )
        )
        self.proc = Proc.spawn("redis", [redis_binary(), str(conf)], self.root / "redis.log")
        wait_for(self._ready, 10, f"redis on port {self.port}")
        return self

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
