"""Approval decision attempts, accepted or refused (append-only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import approvals
from core.models import ApprovalRecord


class Approvals(StoreBase):
    def record_approval(self, workflow_id: str, record: ApprovalRecord) -> bool:
        key = f"{workflow_id}|{record.action_id}|{record.verdict.value}|{record.approver}|{record.at.isoformat()}"
        values = {
            "record_key": key[:300],
            "workflow_id": workflow_id,
            "action_id": record.action_id,
            "verdict": record.verdict.value,
            "approver": record.approver,
            "via": record.via,
            "reason": record.reason,
            "accepted": record.accepted,
            "at": record.at,
        }
        with self._tx() as conn:
            return self._insert_ignore(conn, approvals, values)

    def list_approvals(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(approvals).order_by(approvals.c.at, approvals.c.id)
        if workflow_id:
            query = query.where(approvals.c.workflow_id == workflow_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
