"""Real message brokers on loopback for the tests and the demo lab: RabbitMQ (with the
management plugin), NATS (with JetStream), Mosquitto.

RabbitMQ runs as its Erlang node under a private epmd and environment (nothing on the default
ports, no global epmd left behind); it takes several seconds to start, so callers start it once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from workers.lab.processes import Proc, free_ports, wait_for

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
AGENT_USER = "homelab"


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class RabbitMQ:
    """``start()`` → a node ``lab@localhost`` with AMQP, dist, management and epmd on free ports;
    an admin user for the workload and a ``monitoring`` user with read rights for the agents."""

    def __init__(self, root: Path, password: str = "agents-secret") -> None:
        self.root = root
        self.password = password
        self.amqp, self.dist, self.http, self.epmd_port = free_ports(4)
        self.procs: list[Proc] = []
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def env(self) -> dict[str, str]:
        d = self.root
        return {
            **os.environ,
            "HOME": str(d),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": "lab@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, tool: str = "rabbitmqctl") -> str:
        done = subprocess.run(
            [str(RABBIT_BIN / tool), "-q", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def start(self) -> RabbitMQ:
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise RuntimeError(
                "rabbitmq-server is not installed (deploy/scripts/install-system-deps.sh)"
            )
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.amqp}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {self.http}",
                    "log.console = true",
                    "log.file = false",
                    "collect_statistics_interval = 1000",
                    "",
                ]
            )
        )
        self.ctl("enable", "--offline", "rabbitmq_management", tool="rabbitmq-plugins")
        self.procs.append(
            Proc.spawn(
                "epmd",
                ["epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
                self.root / "epmd.log",
            )
        )
        self.procs.append(
            Proc.spawn(
                "rabbitmq",
                [str(RABBIT_BIN / "rabbitmq-server")],
                self.root / "rabbitmq.log",
                env=self.env(),
            )
        )
        wait_for(self._management_up, 60, "RabbitMQ management API", interval=0.25)
        self.ctl("add_user", "admin", "admin-secret")
        self.ctl("set_user_tags", "admin", "administrator")
        self.ctl("set_permissions", "-p", "/", "admin", ".*", ".*", ".*")
        # least privilege for the agents: see queues and nodes, purge (a read operation), no more
        self.ctl("add_user", AGENT_USER, self.password)
        self.ctl("set_user_tags", AGENT_USER, "monitoring")
        self.ctl("set_permissions", "-p", "/", AGENT_USER, "^$", "^$", ".*")
        self.started_in = time.monotonic() - started
        return self

    def _management_up(self) -> bool:
        request = urllib.request.Request(f"{self.url}/api/overview")
        request.add_header("Authorization", "Basic " + b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.name == "rabbitmq":
                pid_file = self.root / "rabbit.pid"
                if pid_file.exists():  # the beam process, which the wrapper script started
                    beam = Proc(
                        name="beam", pid=int(pid_file.read_text().strip()), started="", log=proc.log
                    )
                    try:
                        os.kill(beam.pid, 15)
                    except (ProcessLookupError, ValueError):
                        pass
            proc.stop(grace=15)


class Nats:
    """nats-server with JetStream and monitoring on loopback; small ``max_pending`` and
    ``write_deadline`` so a client that stops reading becomes a slow consumer in seconds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, self.http = free_ports(2)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self, max_pending: int = 1024 * 1024, write_deadline: str = "1s") -> Nats:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.write_text(
            f"""server_name: lab
host: 127.0.0.1
port: {self.port}
http: 127.0.0.1:{self.http}
max_pending: {max_pending}
write_deadline: "{write_deadline}"
jetstream {{ store_dir: "{self.root / "js"}" }}
"""
        )
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.proc = Proc.spawn("nats", [binary, "-c", str(conf)], self.root / "nats.log")
        wait_for(
            lambda: urllib.request.urlopen(f"{self.url}/healthz", timeout=1).status == 200,
            10,
            "nats-server",
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Mosquitto:
    """Mosquitto with password auth: ``homelab`` may only read ``$SYS/#``; ``app`` may do anything
    else. ``sys_interval 1`` so $SYS figures refresh every second; ``max_queued_messages 10``
    so an offline persistent subscriber makes the broker drop messages."""

    def __init__(self, root: Path, password: str = "agents-secret") -> None:
        self.root = root
        (self.port,) = free_ports(1)
        self.password = password
        self.proc: Proc | None = None

    def start(self) -> Mosquitto:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if os.geteuid() == 0:  # started as root, mosquitto drops to user mosquitto: let it in
            for parent in self.root.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        passwd, acl = self.root / "passwd", self.root / "acl"
        passwd.write_text("")
        for user, secret in ((AGENT_USER, self.password), ("app", "app-secret")):
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, secret], check=True)
        acl.write_text(f"user {AGENT_USER}\ntopic read $SYS/#\n\nuser app\ntopic readwrite #\n")
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            f"""listener {self.port} 127.0.0.1
allow_anonymous false
password_file {passwd}
acl_file {acl}
persistence false
log_dest stdout
sys_interval 1
max_queued_messages 10
"""
        )
        for path in (passwd, acl, conf):
            path.chmod(0o644)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = Proc.spawn("mosquitto", [binary, "-c", str(conf)], self.root / "mosquitto.log")
        wait_for(lambda: _listening(self.port), 10, "mosquitto")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
