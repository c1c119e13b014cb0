"""The append-only change log: every write attempt, and which change undid which, hash-chained
(activities/store/chain.py) so a rewrite, a deletion or a reordering shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from activities.store.base import StoreBase
from activities.store.chain import GENESIS, ChainReport, link_hash, verify
from activities.store.schema import as_json, changes
from core.learning import POLICY_WORKFLOW as POLICY_STEP
from core.models import ChangeRecord, ChangeResult


def _row_change(row: sa.Row[Any], rolled_back_by: str = "") -> ChangeRecord:
    m = row._mapping
    return ChangeRecord(
        change_id=m["change_id"],
        incident_id=m["incident_id"],
        workflow_id=m["workflow_id"],
        run_id=m["run_id"],
        at=m["at"],
        step=m["step"],
        action=m["action"],
        target=m["target"],
        params=m["params"],
        level=m["level"],
        level_reasons=m["level_reasons"],
        approval=m["approval"],
        approver=m["approver"],
        dry_run=m["dry_run"],
        before=m["before_state"],
        after=m["after_state"],
        result=m["result"],
        error=m["error"],
        preview=m["preview"],
        reversibility=m["reversibility"],
        rollback_action=m["rollback_action"],
        rollback_params=m["rollback_params"],
        rollback_of=m["rollback_of"],
        rolled_back_by=rolled_back_by,
        started_at=m["started_at"],
        finished_at=m["finished_at"],
    )


def change_values(record: ChangeRecord) -> dict[str, Any]:
    """A change record as a row of the change log."""
    return {
        "change_id": record.change_id,
        "incident_id": record.incident_id,
        "workflow_id": record.workflow_id,
        "run_id": record.run_id,
        "at": record.at,
        "step": record.step,
        "action": record.action,
        "target": record.target,
        "params": as_json(record.params),
        "level": record.level.value,
        "level_reasons": record.level_reasons,
        "approval": record.approval.value,
        "approver": record.approver,
        "dry_run": record.dry_run,
        "before_state": as_json(record.before),
        "after_state": as_json(record.after),
        "result": record.result.value,
        "error": record.error,
        "preview": record.preview,
        "reversibility": record.reversibility.value,
        "rollback_action": record.rollback_action,
        "rollback_params": as_json(record.rollback_params),
        "rollback_of": record.rollback_of,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


def append_change(conn: Connection, record: ChangeRecord) -> bool:
    """Append one record to the hash-chained change log inside the caller's transaction, which
    must hold the write lock (``_tx(exclusive=True)`` on SQLite; an advisory lock is taken here on
    PostgreSQL, which any role may take). False if the change is there already (a retry)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724202)")
    seen = conn.execute(
        sa.select(changes.c.change_id).where(changes.c.change_id == record.change_id)
    ).first()
    if seen is not None:
        return False
    values = change_values(record)
    head = conn.execute(
        sa.select(changes.c.seq, changes.c.row_hash)
        .where(changes.c.seq.is_not(None))
        .order_by(changes.c.seq.desc())
        .limit(1)
    ).first()
    values["seq"] = head.seq + 1 if head else 1
    values["prev_hash"] = head.row_hash if head else GENESIS
    values["row_hash"] = link_hash(values["prev_hash"], values)
    conn.execute(changes.insert().values(**values))
    return True


class ChangeLog(StoreBase):
    def record_change(self, record: ChangeRecord) -> bool:
        # One writer at a time extends the chain, so concurrent workers never fork it.
        with self._tx(exclusive=True) as conn:
            return append_change(conn, record)

    def verify_chain(self, anchor: tuple[int, str] | None = None) -> ChainReport:
        """Recompute every row's hash and link (``homelab-agents changes --verify``)."""
        with self._tx() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(changes))]
        return verify(rows, anchor)

    def _rollback_map(self, conn: Connection, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = conn.execute(
            sa.select(changes.c.rollback_of, changes.c.change_id)
            .where(changes.c.rollback_of.in_(list(ids)))
            .where(changes.c.result == ChangeResult.APPLIED.value)
            .order_by(changes.c.at)
        )
        return {r.rollback_of: r.change_id for r in rows}

    def list_changes(
        self, incident: str | None = None, limit: int = 200, target: str | None = None
    ) -> list[ChangeRecord]:
        query = sa.select(changes).order_by(changes.c.at, changes.c.change_id).limit(limit)
        if incident:
            query = query.where(
                sa.or_(changes.c.workflow_id == incident, changes.c.incident_id == incident)
            )
        if target:
            query = query.where(changes.c.target == target)
        with self._tx() as conn:
            rows = list(conn.execute(query))
            links = self._rollback_map(conn, [r.change_id for r in rows])
        return [_row_change(r, links.get(r.change_id, "")) for r in rows]

    def get_change(self, change_id: str) -> ChangeRecord | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(changes).where(changes.c.change_id == change_id)).first()
            if row is None:
                return None
            links = self._rollback_map(conn, [change_id])
        return _row_change(row, links.get(change_id, ""))

    def count_recent_writes(self, target: str, window: timedelta = timedelta(hours=1)) -> int:
        since = datetime.now(UTC) - window
        query = (
            sa.select(sa.func.count())
            .select_from(changes)
            .where(changes.c.target == target)
            .where(changes.c.at >= since)
            .where(changes.c.result == ChangeResult.APPLIED.value)
            .where(changes.c.dry_run.is_(False))
            .where(changes.c.step != POLICY_STEP)  # a policy change is not a write on the target
        )
        with self._tx() as conn:
            return int(conn.execute(query).scalar() or 0)
