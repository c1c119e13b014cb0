"""The verified action record as Prometheus metrics, read from the store at each scrape.

A collector rather than gauges set on events: 👍/👎 arrive through the bot (another process) and
rollbacks through later workflows, so only the store knows the record now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from activities.memory.record import records
from core.config import MemorySettings

log = logging.getLogger(__name__)

OUTCOMES = (
    "verified",
    "failed_verification",
    "rolled_back",
    "write_failed",
    "thumbs_up",
    "thumbs_down",
)


class RecordCollector(Collector):
    def __init__(self) -> None:
        self.store: Any = None
        self.memory = MemorySettings()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["alert", "target_kind", "action"]
        score = GaugeMetricFamily(
            "homelab_action_record_score",
            "Decayed success rate of an action for an alert on a kind of target (0.5: no record).",
            labels=labels,
        )
        outcomes = GaugeMetricFamily(
            "homelab_action_record_outcomes",
            "Outcomes of an action for an alert on a kind of target, by outcome (verified, "
            "failed_verification, rolled_back, write_failed, thumbs_up, thumbs_down).",
            labels=[*labels, "outcome"],
        )
        if self.store is not None:
            try:
                rows = self.store.outcomes(limit=50_000)
            except Exception as exc:  # a scrape never fails because the store does
                log.warning("action record metrics unavailable: %s", exc)
                rows = []
            for r in records(rows, datetime.now(UTC), self.memory.half_life):
                key = [r.alert, r.target_kind, r.action]
                score.add_metric(key, r.score)
                for name in OUTCOMES:
                    outcomes.add_metric([*key, name], float(getattr(r, name)))
        yield score
        yield outcomes


COLLECTOR = RecordCollector()
_registered = False


def publish_records(store: Any, memory: MemorySettings) -> None:
    """Export the record of ``store`` from this process's /metrics (once per process)."""
    global _registered
    COLLECTOR.store, COLLECTOR.memory = store, memory
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True
