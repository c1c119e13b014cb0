"""End-to-end plumbing for the monitoring and hosts incidents: the real Prometheus and
Alertmanager of the demo lab's launchers, Alertmanager posting to the real intake with its bearer
token, and the agents' settings for that stack (no Docker engine needed)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.config import Settings
from tests.conftest import make_settings
from workers.lab.monitoring import Alertmanager, Prometheus
from workers.lab.processes import free_ports


@dataclass
class Monitoring:
    prom: Prometheus
    am: Alertmanager
    intake_port: int
    token: Path

    def stop(self) -> None:
        for proc in (self.prom.proc, self.am.proc):
            if proc is not None:
                proc.stop()

    async def fingerprint(self, alertname: str, timeout: float = 60, **labels: str) -> str:
        """The fingerprint Alertmanager gives the alert once it holds it (the incident's id)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            while time.monotonic() < deadline:
                alerts = (await http.get(f"{self.am.url}/api/v2/alerts")).json()
                for alert in alerts:
                    found = alert["labels"]
                    if found.get("alertname") == alertname and all(
                        found.get(k) == v for k, v in labels.items()
                    ):
                        return str(alert["fingerprint"])
                await asyncio.sleep(0.5)
        raise AssertionError(f"Alertmanager never received {alertname} {labels}")


def start_monitoring(
    root: Path,
    scrape: dict[str, list[str]] | None = None,
    relabels: dict[str, list[dict[str, Any]]] | None = None,
) -> Monitoring:
    """Prometheus (scraping itself, Alertmanager and ``scrape``) → Alertmanager → the intake port."""
    root.mkdir(parents=True, exist_ok=True)
    prom_port, am_port, intake_port = free_ports(3)
    token = root / "intake-token"
    token.write_text(uuid.uuid4().hex)
    token.chmod(0o600)
    am = Alertmanager(root, am_port)
    am.write_config(f"http://127.0.0.1:{intake_port}/alerts/alertmanager", token)
    am.start()
    prom = Prometheus(root, prom_port)
    prom.write_config(
        scrape={
            "prometheus": [f"127.0.0.1:{prom_port}"],
            "alertmanager": [f"127.0.0.1:{am_port}"],
            **(scrape or {}),
        },
        alertmanager_port=am_port,
        probes={},
        relabels=relabels,
    )
    try:
        prom.start()
    except BaseException:
        if am.proc is not None:
            am.proc.stop()
        raise
    return Monitoring(prom, am, intake_port, token)


def incident_settings(env_host: str, tmp: Path, monitoring: Monitoring, **targets: Any) -> Settings:
    return make_settings(
        tmp,
        f"tq-{uuid.uuid4().hex[:10]}",
        temporal={"address": env_host, "state_dir": str(tmp / "state")},
        intake={"port": monitoring.intake_port, "token_file": str(monitoring.token)},
        approval={"approvers": ["alice"]},
        worker={"metrics_port": 0},
        **targets,
    )
