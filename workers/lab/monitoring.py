"""Prometheus, Alertmanager and the exporters of the demo lab, as real processes on loopback.

The Debian binaries are used as they are; only their configuration is generated: Prometheus
scrapes every second and evaluates the rule files of ``deploy/prometheus`` with their ``for:``
durations compressed (the lab's one concession to wall time), and Alertmanager sends every alert,
ungrouped and with resolved notifications, to the intake with its bearer token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from workers.lab.processes import Proc, wait_for

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    raise RuntimeError(
        f"{names[0]} is not installed (deploy/scripts/install-system-deps.sh installs the lab's packages)"
    )


def _ready(url: str) -> bool:
    return httpx.get(url, timeout=1, trust_env=False).status_code == 200


def compress_rules(
    rules: dict[str, Any], longest: str, exprs: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """The same rules with every ``for:`` set to ``longest`` and the listed expression
    substitutions applied (deploy/lab/time-compression.yaml: lab time runs fast)."""
    for group in rules.get("groups", []):
        group["interval"] = "1s"
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            if rule.get("for") not in (None, "0m", "0s"):
                rule["for"] = longest
            for old, new in exprs.get(rule["alert"], {}).items():
                if old not in rule["expr"]:
                    raise ValueError(f"time compression: {old!r} is not in {rule['alert']}'s expr")
                rule["expr"] = rule["expr"].replace(old, new)
    return rules


class Prometheus:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Proc | None = None

    def write_config(
        self,
        scrape: dict[str, list[str]],
        alertmanager_port: int,
        probes: dict[str, Any],
        rule_for: str = "2s",
        exprs: dict[str, dict[str, str]] | None = None,
        relabels: dict[str, list[dict[str, Any]]] | None = None,
    ) -> Path:
        """``relabels``: metric_relabel_configs per scrape job (e.g. the label that sends a
        host's non-Docker mounts to the hosts runbooks)."""
        rules_out = self.root / "rules"
        rules_out.mkdir(parents=True, exist_ok=True)
        for source in sorted(RULES_DIR.glob("*.rules.yml")):
            rules = compress_rules(yaml.safe_load(source.read_text()), rule_for, exprs or {})
            (rules_out / source.name).write_text(yaml.safe_dump(rules, sort_keys=False))
        jobs: list[dict[str, Any]] = [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            | ({"metric_relabel_configs": relabels[job]} if relabels and job in relabels else {})
            for job, targets in scrape.items()
        ]
        for job, probe in probes.items():
            jobs.append(
                {
                    "job_name": job,
                    "metrics_path": "/probe",
                    "params": {"module": [probe["module"]]},
                    "static_configs": [
                        {"targets": probe["targets"], "labels": probe.get("labels", {})}
                    ],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {"target_label": "__address__", "replacement": probe["exporter"]},
                    ],
                }
            )
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "900ms",
            },
            "rule_files": [str(rules_out / "*.rules.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": jobs,
        }
        path = self.root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run(
            [binary("promtool"), "check", "config", str(path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(
                f"promtool rejected the lab's Prometheus config:\n{check.stdout}{check.stderr}"
            )
        return path

    def write_bare_config(self) -> Path:
        """No scrapes, no rules: a Prometheus that only answers queries on its TSDB."""
        path = self.root / "prometheus.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"global": {"evaluation_interval": "1m"}}))
        return path

    def start(self, tsdb: Path | None = None, retention: str = "2h") -> Prometheus:
        """On a fresh TSDB, or on ``tsdb`` as it is (e.g. backfilled blocks: give a
        ``retention`` that reaches back past them, or Prometheus deletes them at start)."""
        data = tsdb or self.root / "tsdb"
        if tsdb is None:
            shutil.rmtree(data, ignore_errors=True)  # a fresh TSDB: no stale alert state
        self.proc = Proc.spawn(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                f"--storage.tsdb.retention.time={retention}",
            ],
            self.root / "prometheus.log",
        )
        wait_for(lambda: _ready(f"{self.url}/-/ready"), 30, "prometheus")
        return self

    def reload(self) -> None:
        httpx.post(f"{self.url}/-/reload", timeout=10, trust_env=False).raise_for_status()

    def firing(self) -> list[dict[str, Any]]:
        data = httpx.get(f"{self.url}/api/v1/alerts", timeout=5, trust_env=False).json()
        return [a for a in data["data"]["alerts"] if a["state"] == "firing"]


class Alertmanager:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Proc | None = None

    def write_config(self, webhook: str, token_file: Path) -> Path:
        config = {
            "route": {
                "receiver": "homelab-agents",
                "group_by": ["..."],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "homelab-agents",
                    "webhook_configs": [
                        {
                            "url": webhook,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(token_file),
                                }
                            },
                        }
                    ],
                }
            ],
        }
        path = self.root / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> Alertmanager:
        storage = self.root / "am-data"
        shutil.rmtree(storage, ignore_errors=True)  # no notification log: alerts notify again
        self.proc = Proc.spawn(
            "alertmanager",
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.root / 'alertmanager.yml'}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            self.root / "alertmanager.log",
        )
        wait_for(lambda: _ready(f"{self.url}/-/ready"), 30, "alertmanager")
        return self


def node_exporter(root: Path, port: int) -> Proc:
    proc = Proc.spawn(
        "node-exporter",
        [
            binary("prometheus-node-exporter", "node_exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
            "--no-collector.systemd",
            "--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys)($|/)",
        ],
        root / "node-exporter.log",
    )
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}/metrics"), 20, "node-exporter")
    return proc


EXPORTER_QUERIES = (
    Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "exporter-queries.yml"
)


def postgres_exporter(root: Path, port: int, dsn_url: str) -> Proc:
    """postgres_exporter with deploy/postgres/exporter-queries.yml (Debian's 0.11 lacks what the
    shipped rules read)."""
    env = {
        **os.environ,
        "DATA_SOURCE_NAME": dsn_url,
        "PG_EXPORTER_EXTEND_QUERY_PATH": str(EXPORTER_QUERIES),
    }
    proc = Proc.spawn(
        "postgres-exporter",
        [
            binary("prometheus-postgres-exporter", "postgres_exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        root / "postgres-exporter.log",
        env=env,
    )
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}/metrics"), 20, "postgres-exporter")
    return proc


def blackbox_exporter(root: Path, port: int, ca_file: Path, server_name: str = "") -> Proc:
    """tls_connect verifies against ``ca_file`` (and ``server_name``, when the probed address is
    an IP the certificate does not name)."""
    config = {
        "modules": {
            "http_2xx": {
                "prober": "http",
                "timeout": "2s",
                "http": {"preferred_ip_protocol": "ip4"},
            },
            "tls_connect": {
                "prober": "tcp",
                "timeout": "2s",
                "tcp": {
                    "tls": True,
                    "tls_config": {"ca_file": str(ca_file)}
                    | ({"server_name": server_name} if server_name else {}),
                    "preferred_ip_protocol": "ip4",
                },
            },
        }
    }
    path = root / "blackbox.yml"
    path.write_text(yaml.safe_dump(config))
    proc = Proc.spawn(
        "blackbox-exporter",
        [
            binary("prometheus-blackbox-exporter", "blackbox_exporter"),
            f"--config.file={path}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        root / "blackbox-exporter.log",
    )
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}/metrics"), 20, "blackbox-exporter")
    return proc


def redis_exporter(root: Path, port: int, redis_url: str) -> Proc:
    """oliver006/redis_exporter (Debian's prometheus-redis-exporter) for the lab's Redis."""
    proc = Proc.spawn(
        "redis-exporter",
        [
            binary("prometheus-redis-exporter", "redis_exporter"),
            f"-redis.addr={redis_url}",
            f"-web.listen-address=127.0.0.1:{port}",
        ],
        root / "redis-exporter.log",
    )
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}/metrics"), 20, "redis-exporter")
    return proc


def metric(prometheus: Prometheus, query: str) -> list[dict[str, Any]]:
    data = httpx.get(
        f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5, trust_env=False
    ).json()
    return list(data["data"]["result"])
