"""A real Prometheus 2.42 (Debian package) scraping itself, a real node_exporter and a target that
is down, with the shipped rule files (lab-compressed), started once for these tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workers.lab.monitoring import Prometheus, metric, node_exporter
from workers.lab.processes import Proc, free_ports, wait_for


@dataclass
class PromLab:
    prom: Prometheus
    node: Proc
    dead_port: int

    @property
    def rules(self) -> Path:
        return self.prom.root / "rules"

    @property
    def config(self) -> Path:
        return self.prom.root / "prometheus.yml"


@pytest.fixture(scope="session")
def prom_lab(session_root: Path) -> Iterator[PromLab]:
    root = session_root / "prometheus"
    prom_port, node_port, dead_port, am_port = free_ports(4)
    node = node_exporter(root, node_port)
    prom = Prometheus(root, prom_port)
    prom.write_config(
        scrape={
            "prometheus": [f"127.0.0.1:{prom_port}"],
            "node": [f"127.0.0.1:{node_port}"],
            "missing": [f"127.0.0.1:{dead_port}"],
        },
        alertmanager_port=am_port,
        probes={},
    )
    try:
        prom.start()
        wait_for(lambda: len(metric(prom, "up")) == 3, 20, "first scrapes")
        yield PromLab(prom, node, dead_port)
    finally:
        if prom.proc is not None:
            prom.proc.stop()
        node.stop()


def prom_target(lab: PromLab, **extra: object) -> dict[str, object]:
    return {"name": "lab", "url": lab.prom.url, **extra}
