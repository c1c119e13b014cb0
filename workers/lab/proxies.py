"""Real reverse proxies on loopback for the tests and the demo lab: nginx, Caddy, HAProxy.

Each writes its configuration into its own directory, runs in the foreground (recorded by pid),
and exposes what a target needs (the argv prefix, the admin address, the stats socket).
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.request
from pathlib import Path

from workers.lab.processes import Proc, wait_for


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )
    if found is None:
        raise RuntimeError(
            f"{name} is not installed (deploy/scripts/install-system-deps.sh installs it)"
        )
    return found


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Nginx:
    """nginx as a reverse proxy: ``upstream app`` over ``upstreams``, stub_status on /nginx_status."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.conf = root / "nginx.conf"
        self.proc: Proc | None = None

    @property
    def command(self) -> list[str]:
        """The argv prefix every nginx call of this instance starts with (a target's `command`)."""
        return [
            _binary("nginx"),
            "-p",
            str(self.root),
            "-e",
            str(self.root / "error.log"),
            "-c",
            str(self.conf),
        ]

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/nginx_status"

    def config_text(self, upstreams: list[str], extra: str = "") -> str:
        servers = "\n".join(f"    server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)
        temp = "\n".join(
            f"  {kind}_temp_path {self.root / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""worker_processes 1;
pid {self.root / "nginx.pid"};
error_log {self.root / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temp}
  upstream app {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location /nginx_status {{ stub_status; }}
    location / {{ proxy_pass http://app; proxy_connect_timeout 2s; }}
  }}
{extra}
}}
"""

    def write_config(self, upstreams: list[str], extra: str = "") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / kind).mkdir(exist_ok=True)
        self.conf.write_text(self.config_text(upstreams, extra))

    def start(self, upstreams: list[str]) -> Nginx:
        self.write_config(upstreams)
        self.proc = Proc.spawn(
            "nginx", [*self.command, "-g", "daemon off;"], self.root / "nginx.log"
        )
        wait_for(lambda: _listening(self.port), 10, f"nginx on port {self.port}")
        return self

    def worker_pids(self) -> set[int]:
        """The master's children: new ones after every reload (the observable proof of one)."""
        if self.proc is None:
            return set()
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(p) for p in children.read_text().split()}
        except OSError:
            return set()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Caddy:
    """Caddy with its admin API on loopback and one reverse-proxied site with health checks."""

    def __init__(self, root: Path, port: int, admin_port: int) -> None:
        self.root = root
        self.port = port
        self.admin_port = admin_port
        self.file = root / "Caddyfile"
        self.proc: Proc | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def caddyfile(self, upstreams: list[str], extra: str = "") -> str:
        return f"""{{
	admin 127.0.0.1:{self.admin_port}
	auto_https off
	storage file_system {{
		root {self.root / "data"}
	}}
}}
http://127.0.0.1:{self.port} {{
	bind 127.0.0.1
	reverse_proxy {" ".join(upstreams)} {{
		lb_policy first
		health_uri /
		health_interval 1s
	}}
	{extra}
}}
"""

    def write_config(self, upstreams: list[str], extra: str = "") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.file.write_text(self.caddyfile(upstreams, extra))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "XDG_DATA_HOME": str(self.root / "data"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "HOME": str(self.root),
        }

    def start(self, upstreams: list[str]) -> Caddy:
        self.write_config(upstreams)
        self.proc = Proc.spawn(
            "caddy",
            [_binary("caddy"), "run", "--config", str(self.file), "--adapter", "caddyfile"],
            self.root / "caddy.log",
            env=self.env(),
        )
        wait_for(
            lambda: urllib.request.urlopen(f"{self.admin_url}/config/", timeout=1).status == 200,
            15,
            f"caddy admin on port {self.admin_port}",
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Haproxy:
    """HAProxy in master-worker mode (reload: SIGUSR2 to the master), an admin stats socket,
    one HTTP frontend and backend ``be_app`` with health-checked servers."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.cfg = root / "haproxy.cfg"
        self.socket = root / "admin.sock"
        self.proc: Proc | None = None

    @property
    def command(self) -> list[str]:
        return [_binary("haproxy")]

    @property
    def reload_command(self) -> list[str]:
        assert self.proc is not None
        return ["kill", "-USR2", str(self.proc.pid)]

    def config_text(self, servers: dict[str, str], extra: str = "") -> str:
        lines = "\n".join(
            f"    server {name} {address} check inter 500 fall 2 rise 2"
            for name, address in servers.items()
        )
        return f"""global
    stats socket {self.socket} mode 600 level admin
    maxconn 200
defaults
    mode http
    timeout connect 1s
    timeout check 2s
    timeout client 5s
    timeout server 5s
frontend fe_app
    bind 127.0.0.1:{self.port}
    default_backend be_app
backend be_app
    option httpchk GET /
{lines}
{extra}
"""

    def write_config(self, servers: dict[str, str], extra: str = "") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cfg.write_text(self.config_text(servers, extra))

    def start(self, servers: dict[str, str]) -> Haproxy:
        self.write_config(servers)
        self.proc = Proc.spawn(
            "haproxy", [*self.command, "-W", "-db", "-f", str(self.cfg)], self.root / "haproxy.log"
        )
        wait_for(lambda: self.socket.exists() and _listening(self.port), 10, "haproxy")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
