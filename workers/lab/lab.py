"""The demo lab: real services on loopback, recorded by pid so ``demo stop`` can clean up.

Components: a private dockerd whose data-root is a small loop-mounted ext4 disk (so a log flood
really fills a disk that node_exporter reports), a web app container with a healthcheck on a host
port, PostgreSQL, nginx serving a certificate that expires in a few days, Redis (maxmemory 8 MB,
noeviction) with redis_exporter, an nginx reverse proxy in front of a ``shop`` container,
node_exporter, postgres_exporter, blackbox_exporter (HTTP probes of the web app and of the proxied
shop, TLS probe of nginx), Prometheus with the rule files of ``deploy/prometheus`` and Alertmanager
routing to the agents' intake.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import yaml
from pydantic import BaseModel, Field

from approval import signing
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.monitoring import (
    Alertmanager,
    Prometheus,
    blackbox_exporter,
    node_exporter,
    postgres_exporter,
    redis_exporter,
)
from workers.lab.postgres import Postgres
from workers.lab.processes import Proc, free_ports
from workers.lab.proxies import Nginx
from workers.lab.redis import AGENT_USER as REDIS_AGENT
from workers.lab.redis import Redis
from workers.lab.tls import make_certificates, start_nginx

DISK_MB = 256
CERT_DAYS = 5
REDIS_MAXMEMORY = "8mb"
COMPRESSION = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "time-compression.yaml"
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"


class TimeCompression(BaseModel):
    """deploy/lab/time-compression.yaml: how the lab shortens production's waits."""

    rule_for: str = "2s"
    rules: dict[str, dict[str, str]] = Field(default_factory=dict)
    runbooks: dict[str, dict[float, float]] = Field(default_factory=dict)

    @classmethod
    def load(cls) -> TimeCompression:
        return cls.model_validate(yaml.safe_load(COMPRESSION.read_text()))

    def describe(self) -> list[str]:
        lines = [f"every alert rule's `for:` → {self.rule_for}"]
        lines += [
            f"{alert}: {old!r} → {new!r}"
            for alert, subs in self.rules.items()
            for old, new in subs.items()
        ]
        lines += [
            f"runbook {name}: {old:g} → {new:g}"
            for name, subs in self.runbooks.items()
            for old, new in subs.items()
        ]
        return lines

    def write_runbooks(self, out: Path) -> Path:
        """Copies of the named runbooks with their numbers replaced (same names: they win)."""
        out.mkdir(parents=True, exist_ok=True)
        found = set()
        for path in sorted(RUNBOOKS.rglob("*.yaml")):
            data = yaml.safe_load(path.read_text())
            subs = self.runbooks.get(str(data.get("name")))
            if subs is None:
                continue
            found.add(data["name"])
            (out / path.name).write_text(
                yaml.safe_dump(_replace_numbers(data, subs), sort_keys=False)
            )
        missing = set(self.runbooks) - found
        if missing:
            raise ValueError(f"time compression names unknown runbooks: {sorted(missing)}")
        return out


def _replace_numbers(value: Any, subs: dict[float, float]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_numbers(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_numbers(v, subs) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value) in subs:
        new = subs[float(value)]
        return int(new) if isinstance(value, int) and float(new).is_integer() else new
    return value


class ProcRecord(BaseModel):
    name: str
    pid: int
    started: str
    log: str


class LabState(BaseModel):
    root: str
    ports: dict[str, int]
    docker_url: str
    disk: str
    mounted: bool = False
    postgres_dir: str
    procs: list[ProcRecord] = Field(default_factory=list)
    config: str = ""
    agents_pid: int = 0

    def proc(self, record: ProcRecord) -> Proc:
        return Proc(name=record.name, pid=record.pid, started=record.started, log=Path(record.log))


def state_path(root: Path) -> Path:
    return root / "lab.json"


def load_state(root: Path) -> LabState | None:
    path = state_path(root)
    return LabState.model_validate_json(path.read_text()) if path.exists() else None


def mount_disk(image: Path, mountpoint: Path, size_mb: int = DISK_MB) -> bool:
    """A small loop-mounted ext4 disk (the Docker engine's, or a host's data mount in the tests);
    False (plain directory) if loop mounts fail."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True)
    return done.returncode == 0


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def up(self, intake_port: int | None = None) -> LabState:
        if load_state(self.root) is not None:
            raise RuntimeError(
                f"a lab is already recorded in {self.root}; run `homelab-agents demo stop` first"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        names = [
            "web",
            "postgres",
            "nginx",
            "node",
            "pg_exporter",
            "blackbox",
            "prometheus",
            "alertmanager",
            "temporal",
            "temporal_ui",
            "intake",
            "redis",
            "redis_exporter",
            "proxy",
            "shop",
        ]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        if intake_port:
            ports["intake"] = intake_port
        disk = self.root / "docker-disk"
        mounted = mount_disk(self.root / "docker-disk.img", disk)
        state = LabState(
            root=str(self.root),
            ports=ports,
            docker_url=f"unix://{disk / 'docker.sock'}",
            disk=str(disk),
            mounted=mounted,
            postgres_dir=str(self.root / "pg"),
        )
        self._save(state)
        compression = TimeCompression.load()
        try:
            engine = DockerEngine(disk).start()
            self._record(state, engine.proc)
            self._base_containers(engine, ports["web"], ports["shop"])
            pg = Postgres(
                Path(state.postgres_dir), ports["postgres"], {"max_connections": "60"}
            ).start()
            self._least_privilege(pg)
            ca, cert, key = make_certificates(self.root / "tls", CERT_DAYS)
            self._record(state, start_nginx(self.root / "nginx", ports["nginx"], cert, key, ca))
            redis = Redis(self.root / "redis", ports["redis"]).start(
                maxmemory=REDIS_MAXMEMORY, policy="noeviction"
            )
            self._record(state, redis.proc)
            self._record(state, redis_exporter(self.root, ports["redis_exporter"], redis.url))
            proxy = Nginx(self.root / "proxy", ports["proxy"]).start([f"127.0.0.1:{ports['shop']}"])
            self._record(state, proxy.proc)
            self._record(state, node_exporter(self.root, ports["node"]))
            self._record(
                state,
                postgres_exporter(
                    self.root,
                    ports["pg_exporter"],
                    f"postgresql://postgres@127.0.0.1:{ports['postgres']}/labdb?sslmode=disable",
                ),
            )
            self._record(state, blackbox_exporter(self.root, ports["blackbox"], ca))
            token = self.root / "intake-token"
            if not token.exists():
                token.write_text(secrets.token_urlsafe(24))
                token.chmod(0o600)
            am = Alertmanager(self.root, ports["alertmanager"])
            am.write_config(f"http://127.0.0.1:{ports['intake']}/alerts/alertmanager", token)
            self._record(state, am.start().proc)
            prom = Prometheus(self.root, ports["prometheus"])
            prom.write_config(
                scrape={
                    "node": [f"127.0.0.1:{ports['node']}"],
                    "postgres": [f"127.0.0.1:{ports['pg_exporter']}"],
                    "redis": [f"127.0.0.1:{ports['redis_exporter']}"],
                },
                alertmanager_port=ports["alertmanager"],
                probes={
                    "blackbox-http": {
                        "module": "http_2xx",
                        "targets": [f"http://127.0.0.1:{ports['web']}/"],
                        "exporter": f"127.0.0.1:{ports['blackbox']}",
                    },
                    "blackbox-proxy": {
                        "module": "http_2xx",
                        "targets": [f"http://127.0.0.1:{ports['proxy']}/"],
                        "exporter": f"127.0.0.1:{ports['blackbox']}",
                        "labels": {"proxy": "nginx", "homelab_target": "lab"},
                    },
                    "blackbox-tls": {
                        "module": "tls_connect",
                        "targets": [f"127.0.0.1:{ports['nginx']}"],
                        "exporter": f"127.0.0.1:{ports['blackbox']}",
                    },
                },
                rule_for=compression.rule_for,
                exprs=compression.rules,
            )
            self._record(state, prom.start().proc)
            runbooks = compression.write_runbooks(self.root / "runbooks")
            state.config = str(self.write_agents_config(state, token, runbooks))
            self._save(state)
        except Exception:
            self.down()
            raise
        return state

    def _least_privilege(self, pg: Postgres) -> None:
        """As in production: the workload runs as its own role, the agents as the roles of
        deploy/postgres/roles.sql (homelab_maint may act on the app's tables as its member)."""
        pg.run_sql_file(ROLES_SQL)
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone():
                conn.execute("CREATE ROLE app LOGIN")
            conn.execute("GRANT app TO homelab_maint")
        pg.createdb("labdb")
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("ALTER DATABASE labdb OWNER TO app")
        with psycopg.connect(pg.dsn("labdb"), autocommit=True) as conn:
            conn.execute("ALTER SCHEMA public OWNER TO app")

    def _base_containers(self, engine: DockerEngine, web_port: int, shop_port: int) -> None:
        with contextlib.closing(engine.client()) as client:
            client.containers.run(  # the app behind the nginx reverse proxy
                BUSYBOX_IMAGE,
                ["httpd", "-f", "-p", f"127.0.0.1:{shop_port}", "-h", "/www"],
                name="shop",
                detach=True,
                network_mode="host",
                init=True,
                labels={"homelab.lab": "base"},
            )
            client.containers.run(
                BUSYBOX_IMAGE,
                ["httpd", "-f", "-p", f"127.0.0.1:{web_port}", "-h", "/www"],
                name="web",
                detach=True,
                network_mode="host",
                init=True,
                healthcheck={
                    "test": [
                        "CMD-SHELL",
                        f"wget -q -O /dev/null http://127.0.0.1:{web_port}/ || exit 1",
                    ],
                    "interval": 1_000_000_000,
                    "retries": 2,
                },
                labels={"homelab.lab": "base"},
            )

    def write_agents_config(self, state: LabState, token: Path, runbooks: Path) -> Path:
        ports = state.ports
        signing.ensure_key(self.root / "agents" / "keys", "you")  # the lab's approver signs
        config: dict[str, Any] = {
            "temporal": {
                "port": ports["temporal"],
                "ui_port": ports["temporal_ui"],
                "state_dir": str(self.root / "agents"),
                "task_queue": "homelab-lab",
            },
            "intake": {"port": ports["intake"], "token_file": str(token)},
            "approval": {
                "approvers": ["you"],
                "cli_approver": "you",
                "critical": ["docker:lab/payments-*", "postgres:lab/payments*"],
                "timeout": "5m",
            },
            "docker": [
                {
                    "name": "lab",
                    "url": state.docker_url,
                    "instances": [f"127.0.0.1:{ports['node']}"],
                }
            ],
            "postgres": [
                {
                    "name": "lab",
                    "dsn": f"host=127.0.0.1 port={ports['postgres']} user=homelab_monitor dbname=postgres",
                    "maintenance_dsn": f"host=127.0.0.1 port={ports['postgres']} user=homelab_maint dbname=postgres",
                    "instances": [f"127.0.0.1:{ports['pg_exporter']}"],
                }
            ],
            "redis": [
                {
                    "name": "lab",
                    "url": f"redis://127.0.0.1:{ports['redis']}/0",
                    "username": REDIS_AGENT,
                    "password_file": str(self.redis_password_file()),
                    "instances": [f"127.0.0.1:{ports['redis_exporter']}"],
                    "maxmemory_ceiling": "256m",
                }
            ],
            "nginx": [
                {
                    "name": "lab",
                    "command": Nginx(self.root / "proxy", ports["proxy"]).command,
                    "status_url": f"http://127.0.0.1:{ports['proxy']}/nginx_status",
                    "backends": {f"127.0.0.1:{ports['shop']}": "docker:lab/shop"},
                }
            ],
            # nginx's short-lived certificate, which blackbox-tls probes (certs.rules.yml)
            "certs": [
                {
                    "name": "lab",
                    "endpoints": [
                        {
                            "name": "nginx",
                            "address": f"127.0.0.1:{ports['nginx']}",
                            "server_name": "lab.local",
                        }
                    ],
                    "ca_file": str(self.root / "tls" / "ca.pem"),
                    "instances": [f"127.0.0.1:{ports['nginx']}"],
                }
            ],
            "prometheus": [{"name": "lab", "url": f"http://127.0.0.1:{ports['prometheus']}"}],
            "alertmanager": [{"name": "lab", "url": f"http://127.0.0.1:{ports['alertmanager']}"}],
            "worker": {"metrics_port": 0},
            "runbook_dirs": [str(runbooks)],
        }
        path = self.root / "homelab.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def redis_password_file(self) -> Path:
        path = self.root / "redis-agent-password"
        if not path.exists():
            path.write_text(Redis(self.root / "redis", 0).password)
            path.chmod(0o600)
        return path

    def _record(self, state: LabState, proc: Proc | None) -> None:
        if proc is not None:
            state.procs.append(
                ProcRecord(name=proc.name, pid=proc.pid, started=proc.started, log=str(proc.log))
            )
            self._save(state)

    def _save(self, state: LabState) -> None:
        state_path(self.root).write_text(state.model_dump_json(indent=2))

    def down(self, remove: bool = True) -> list[str]:
        """Stop every recorded process (newest first), PostgreSQL, the engine; unmount; clean up."""
        state = load_state(self.root)
        stopped: list[str] = []
        if state is None:
            return stopped
        if state.agents_pid:
            agents = Proc(
                name="agents",
                pid=state.agents_pid,
                started=_start_of(state.agents_pid),
                log=Path(""),
            )
            agents.stop(grace=20)
            stopped.append("agents")
        docker_proc = next((p for p in state.procs if p.name == "dockerd"), None)
        if docker_proc is not None and state.proc(docker_proc).alive():
            with contextlib.suppress(Exception):
                DockerEngine(Path(state.disk)).remove_all_containers()
        for record in reversed(state.procs):
            state.proc(record).stop()
            stopped.append(record.name)
        Postgres(Path(state.postgres_dir), state.ports["postgres"]).stop()
        stopped.append("postgres")
        for mountpoint in mounts_under(self.root):  # dockerd's netns bind mount, then the disk
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            state_path(self.root).unlink(missing_ok=True)
        return stopped


def mounts_under(root: Path) -> list[str]:
    """Mount points inside ``root``, deepest first (from /proc/self/mounts)."""
    prefix = str(root.resolve())
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mountpoint = line.split()[1].replace("\\040", " ")
        if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
            found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


def _start_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def describe(state: LabState) -> dict[str, Any]:
    ports = state.ports
    return {
        "web app": f"http://127.0.0.1:{ports['web']}/",
        "nginx (TLS)": f"https://127.0.0.1:{ports['nginx']}/",
        "postgres": f"postgresql://postgres@127.0.0.1:{ports['postgres']}/labdb",
        "redis": f"redis://127.0.0.1:{ports['redis']}/0 (maxmemory {REDIS_MAXMEMORY}, noeviction)",
        "nginx (proxy)": f"http://127.0.0.1:{ports['proxy']}/ → container shop",
        "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
        "alertmanager": f"http://127.0.0.1:{ports['alertmanager']}",
        "temporal web ui": f"http://127.0.0.1:{ports['temporal_ui']}",
        "intake": f"http://127.0.0.1:{ports['intake']}/alerts/alertmanager",
        "docker": state.docker_url,
        "config": state.config,
        "time compression": "; ".join(TimeCompression.load().describe()),
    }


def dump_json(state: LabState) -> str:
    return json.dumps(describe(state), indent=2)
