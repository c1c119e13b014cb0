"""A real Unbound on loopback: a resolver with remote control (TLS keys from
``unbound-control-setup``), forwarding zones to upstreams, or serving local data as an upstream.

Names under ``.test``, ``.local`` and ``home.arpa`` are Unbound's built-in local zones; the lab
uses ``.lan`` names so forwarding really happens.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from workers.lab.processes import Proc, free_ports, wait_for

KEY_FILES = (
    "unbound_server.key",
    "unbound_server.pem",
    "unbound_control.key",
    "unbound_control.pem",
)


def make_keys(directory: Path) -> Path:
    """One set of remote-control keys (unbound-control-setup) for several servers."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "unbound_control.key").exists():
        subprocess.run(
            [_require("unbound-control-setup"), "-d", str(directory)],
            check=True,
            capture_output=True,
        )
    return directory


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{binary} is not installed (apt-get install unbound)")
    return found


class Unbound:
    """``forwards``: zone → upstream addresses (``127.0.0.1@5353``); ``local_data``: records this
    server answers itself (``app.lab.lan. 60 IN A 10.0.0.5``) in static ``local_zones``."""

    def __init__(
        self,
        root: Path,
        *,
        forwards: dict[str, list[str]] | None = None,
        local_zones: list[str] | None = None,
        local_data: list[str] | None = None,
        keys: Path | None = None,
    ) -> None:
        self.root = root
        self.port, self.control_port = free_ports(2)
        self.forwards = dict(forwards or {})
        self.local_zones = list(local_zones or [])
        self.local_data = list(local_data or [])
        self.keys = keys
        self.proc: Proc | None = None

    @property
    def config(self) -> Path:
        return self.root / "unbound.conf"

    @property
    def address(self) -> str:
        return f"127.0.0.1@{self.port}"

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def render(self) -> str:
        root = self.root
        lines = [
            "server:",
            f"    interface: 127.0.0.1@{self.port}",
            f"    port: {self.port}",
            "    do-ip6: no",
            "    access-control: 127.0.0.0/8 allow",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{root}"',
            f'    pidfile: "{root / "unbound.pid"}"',
            '    logfile: ""',
            "    use-syslog: no",
            "    num-threads: 1",
            '    auto-trust-anchor-file: ""',
            '    module-config: "iterator"',
            "    do-not-query-localhost: no",
            "    extended-statistics: yes",
        ]
        lines += [f'    local-zone: "{zone}" static' for zone in self.local_zones]
        lines += [f'    local-data: "{data}"' for data in self.local_data]
        for zone, upstreams in self.forwards.items():
            lines += ["forward-zone:", f'    name: "{zone}"']
            lines += [f"    forward-addr: {address}" for address in upstreams]
        lines += [
            "remote-control:",
            "    control-enable: yes",
            "    control-interface: 127.0.0.1",
            f"    control-port: {self.control_port}",
            f'    server-key-file: "{root / "unbound_server.key"}"',
            f'    server-cert-file: "{root / "unbound_server.pem"}"',
            f'    control-key-file: "{root / "unbound_control.key"}"',
            f'    control-cert-file: "{root / "unbound_control.pem"}"',
        ]
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.config.write_text(self.render())

    def start(self) -> Unbound:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "unbound_control.key").exists():
            if self.keys is not None:  # key generation takes seconds: share one set in a lab
                for name in KEY_FILES:
                    shutil.copy2(self.keys / name, self.root / name)
            else:
                subprocess.run(
                    [_require("unbound-control-setup"), "-d", str(self.root)],
                    check=True,
                    capture_output=True,
                )
        self.write_config()
        subprocess.run(
            [_require("unbound-checkconf"), str(self.config)], check=True, capture_output=True
        )
        self.proc = Proc.spawn(
            "unbound",
            [_require("unbound"), "-d", "-c", str(self.config)],
            self.root / "unbound.log",
        )
        wait_for(self._ready, 10, f"unbound on port {self.port}", interval=0.05)
        return self

    def control(self, *args: str) -> str:
        done = subprocess.run(
            [_require("unbound-control"), "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise RuntimeError(f"unbound-control {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def _ready(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise RuntimeError(f"unbound exited: {self.proc.tail()}")
        return "is running" in self.control("status")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
