"""The durable kill switch and its audit trail, and 👍/👎 feedback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import control, control_events, feedback


class Control(StoreBase):
    def set_paused(self, paused: bool, actor: str, reason: str = "") -> None:
        now = datetime.now(UTC)
        value = "paused" if paused else "running"
        with self._tx() as conn:
            exists = conn.execute(sa.select(control.c.key).where(control.c.key == "writes")).first()
            row = {"value": value, "updated_by": actor, "updated_at": now}
            if exists:
                conn.execute(control.update().where(control.c.key == "writes").values(**row))
            else:
                conn.execute(control.insert().values(key="writes", **row))
            conn.execute(
                control_events.insert().values(
                    key="writes", value=value, actor=actor, reason=reason, at=now
                )
            )

    def paused(self) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(sa.select(control).where(control.c.key == "writes")).first()
        if row is None:
            return {"paused": False, "by": "", "at": None}
        return {"paused": row.value == "paused", "by": row.updated_by, "at": row.updated_at}

    def record_feedback(self, workflow_id: str, action_id: str, rating: int, user: str) -> None:
        with self._tx() as conn:
            conn.execute(
                feedback.insert().values(
                    workflow_id=workflow_id,
                    action_id=action_id,
                    rating=rating,
                    user=user,
                    at=datetime.now(UTC),
                )
            )

    def list_feedback(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(feedback).order_by(feedback.c.at, feedback.c.id)
        if workflow_id:
            query = query.where(feedback.c.workflow_id == workflow_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
