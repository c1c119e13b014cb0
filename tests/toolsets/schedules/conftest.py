"""A real Prometheus on backfilled history: the synthetic cases of workers/lab/series.py written
as node_exporter filesystem metrics, turned into TSDB blocks by promtool, served as they are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workers.lab.monitoring import Prometheus
from workers.lab.processes import free_port
from workers.lab.series import Case, backfill, cases, openmetrics

DAYS = 14


@dataclass
class History:
    prometheus: Prometheus
    end: float
    cases: list[Case]

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)


@pytest.fixture(scope="session")
def history(session_root: Path) -> Iterator[History]:
    # Whole 2-hour blocks, ending well before the head block Prometheus keeps in memory.
    end = (time.time() // 7200) * 7200 - 4 * 3600
    series = cases(end, DAYS)
    root = session_root / "prometheus-history"
    backfill(openmetrics(series), root / "tsdb")
    prometheus = Prometheus(root, free_port())
    prometheus.write_bare_config()
    prometheus.start(tsdb=root / "tsdb", retention="3650d")
    yield History(prometheus, end, series)
    if prometheus.proc is not None:
        prometheus.proc.stop()
