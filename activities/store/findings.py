"""Scheduled findings: which are firing, since when and when last routed.

A finding keeps its row across runs, so a rerun knows a finding's first sighting (the alert's
``startsAt``), whether its incident was opened recently (repeats wait ``repeat_interval``, like
Alertmanager's), and which findings to resolve when a run no longer sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import findings


@dataclass(frozen=True)
class FindingRow:
    fingerprint: str
    schedule: str
    alert: str
    key: dict[str, str]
    labels: dict[str, str]
    status: str
    first_seen: datetime
    last_seen: datetime
    last_routed: datetime | None
    resolved_at: datetime | None


def _row(r: Any) -> FindingRow:
    return FindingRow(**{c.name: getattr(r, c.name) for c in findings.columns})


class Findings(StoreBase):
    def finding(self, fingerprint: str) -> FindingRow | None:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(findings).where(findings.c.fingerprint == fingerprint)
            ).first()
        return _row(row) if row else None

    def firing_findings(self, schedule: str) -> list[FindingRow]:
        query = sa.select(findings).where(
            (findings.c.schedule == schedule) & (findings.c.status == "firing")
        )
        with self._tx() as conn:
            return [_row(r) for r in conn.execute(query)]

    def save_finding(self, row: FindingRow) -> None:
        values = {c.name: getattr(row, c.name) for c in findings.columns}
        with self._tx() as conn:
            key = findings.c.fingerprint == row.fingerprint
            if conn.execute(sa.select(findings.c.fingerprint).where(key)).first():
                conn.execute(findings.update().where(key).values(**values))
            else:
                conn.execute(findings.insert().values(**values))
