"""Problems: one open incident per (target, incident type), and which alerts joined it.

A problem is claimed by the first incident that triages to it; others that triage to the same
key join it instead of acting. A claim whose owner's workflow has closed is taken over (the
liveness check is the caller's, as for locks). The fingerprint → problem map lets a resolved
notification for any joined alert reach the incident that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import problem_alerts, problems


@dataclass(frozen=True)
class Owner:
    key: str
    workflow_id: str
    run_id: str


class Problems(StoreBase):
    def problem_claim(
        self, key: str, target: str, incident_type: str, workflow_id: str, run_id: str
    ) -> Owner | None:
        """Own the problem (None), or learn who does (an open one; liveness is checked by the
        caller, who may then take it over)."""
        now = datetime.now(UTC)
        with self._tx(exclusive=True) as conn:  # two alerts of one problem at once: one owner
            row = conn.execute(sa.select(problems).where(problems.c.key == key)).first()
            if row is None:
                conn.execute(
                    problems.insert().values(
                        key=key,
                        target=target,
                        incident_type=incident_type,
                        owner_workflow_id=workflow_id,
                        owner_run_id=run_id,
                        opened_at=now,
                        open=True,
                    )
                )
                return None
            if not row.open or (row.owner_workflow_id, row.owner_run_id) == (workflow_id, run_id):
                conn.execute(
                    problems.update()
                    .where(problems.c.key == key)
                    .values(
                        owner_workflow_id=workflow_id, owner_run_id=run_id, opened_at=now, open=True
                    )
                )
                return None
            return Owner(key, row.owner_workflow_id, row.owner_run_id)

    def problem_take_over(self, key: str, gone: Owner, workflow_id: str, run_id: str) -> bool:
        with self._tx() as conn:
            result = conn.execute(
                problems.update()
                .where(problems.c.key == key)
                .where(problems.c.owner_workflow_id == gone.workflow_id)
                .where(problems.c.owner_run_id == gone.run_id)
                .values(
                    owner_workflow_id=workflow_id,
                    owner_run_id=run_id,
                    opened_at=datetime.now(UTC),
                    open=True,
                )
            )
            return result.rowcount == 1

    def problem_close(self, key: str, workflow_id: str) -> None:
        with self._tx() as conn:
            conn.execute(
                problems.update()
                .where(problems.c.key == key)
                .where(problems.c.owner_workflow_id == workflow_id)
                .values(open=False)
            )

    def problems_open_on(self, target: str) -> list[Owner]:
        """Open problems of a target (any incident type): a child's parent in trouble."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(problems).where(problems.c.target == target).where(problems.c.open)
            )
            return [Owner(r.key, r.owner_workflow_id, r.owner_run_id) for r in rows]

    def problem_alert(self, fingerprint: str, key: str, workflow_id: str) -> None:
        """Remember which problem an alert belongs to (the latest wins)."""
        now = datetime.now(UTC)
        with self._tx() as conn:
            updated = conn.execute(
                problem_alerts.update()
                .where(problem_alerts.c.fingerprint == fingerprint)
                .values(key=key, workflow_id=workflow_id, joined_at=now)
            )
            if updated.rowcount == 0:
                self._insert_ignore(
                    conn,
                    problem_alerts,
                    {
                        "fingerprint": fingerprint,
                        "key": key,
                        "workflow_id": workflow_id,
                        "joined_at": now,
                    },
                )

    def owner_of_alert(self, fingerprint: str) -> Owner | None:
        """The open problem an alert joined, and its owner (for resolved notifications)."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(problems)
                .join(problem_alerts, problem_alerts.c.key == problems.c.key)
                .where(problem_alerts.c.fingerprint == fingerprint)
                .where(problems.c.open)
            ).first()
        return Owner(row.key, row.owner_workflow_id, row.owner_run_id) if row else None
