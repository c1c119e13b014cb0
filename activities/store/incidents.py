"""Closed incidents' final state, for `incident show` after Temporal forgets them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.learning import write_outcomes
from activities.store.schema import incidents
from core.models import IncidentState
from core.redact import redact


class Incidents(StoreBase):
    def record_incident(self, state: IncidentState, run_id: str) -> None:
        triage = state.triage
        values = {
            "workflow_id": state.workflow_id,
            "run_id": run_id,
            "alert": state.alert.name,
            "fingerprint": state.alert.fingerprint,
            "service": triage.service if triage else "",
            "target": str(triage.target) if triage and triage.target else "",
            "severity": state.alert.severity,
            "phase": state.phase.value,
            "outcome": state.outcome.value if state.outcome else "",
            "opened_at": state.opened_at,
            "closed_at": state.closed_at,
            # text only: the state must validate again (incident show), so types are kept
            "state": redact(json.loads(state.model_dump_json()), mask_secret_keys=False),
        }
        with self._tx() as conn:
            key = (incidents.c.workflow_id == state.workflow_id) & (incidents.c.run_id == run_id)
            if conn.execute(sa.select(incidents.c.run_id).where(key)).first():
                conn.execute(incidents.update().where(key).values(**values))
            else:
                conn.execute(incidents.insert().values(**values))
            write_outcomes(conn, state, run_id)  # what learning reads: verified outcomes only

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(incidents).order_by(incidents.c.opened_at.desc()).limit(limit)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_incident(self, workflow_id: str) -> IncidentState | None:
        query = (
            sa.select(incidents.c.state)
            .where(incidents.c.workflow_id == workflow_id)
            .order_by(incidents.c.opened_at.desc())
            .limit(1)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return IncidentState.model_validate(row.state) if row else None

    def incidents_between(self, since: Any, until: Any) -> list[dict[str, Any]]:
        """Closed incidents opened in [since, until): what the pattern report counts."""
        cols = [
            incidents.c.workflow_id,
            incidents.c.alert,
            incidents.c.fingerprint,
            incidents.c.service,
            incidents.c.target,
            incidents.c.outcome,
            incidents.c.opened_at,
            incidents.c.closed_at,
        ]
        query = (
            sa.select(*cols)
            .where((incidents.c.opened_at >= since) & (incidents.c.opened_at < until))
            .order_by(incidents.c.opened_at)
        )
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def iter_incidents(self, batch: int = 500) -> Iterator[tuple[IncidentState, str]]:
        """Every recorded incident's final state and run id, oldest first (`memory reindex`)."""
        offset = 0
        while True:
            query = (
                sa.select(incidents.c.state, incidents.c.run_id)
                .order_by(incidents.c.opened_at, incidents.c.workflow_id, incidents.c.run_id)
                .offset(offset)
                .limit(batch)
            )
            with self._tx() as conn:
                rows = list(conn.execute(query))
            for row in rows:
                yield IncidentState.model_validate(row.state), row.run_id
            if len(rows) < batch:
                return
            offset += batch
