"""Target locks: one incident writes to a target at a time, for as long as its workflow runs.

A lock row names its holder's workflow run; a request for a held target queues the requester.
There is no lease to outlive: a holder whose workflow has closed (completed, terminated, timed
out) loses the lock to the next requester (``take_over``), and a live holder keeps it however long
its writes take. The token (the holder's request id) fences every write: ``holds`` is checked
right before each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import lock_waiters, target_locks
from core.models import LockRequest


@dataclass(frozen=True)
class Holder:
    token: str
    workflow_id: str
    run_id: str


class TargetLocks(StoreBase):
    def lock_take(self, request: LockRequest) -> Holder | None:
        """Take the lock (None: taken, or already ours) or get its holder (and join the queue)."""
        now = datetime.now(UTC)
        with self._tx() as conn:
            mine = {
                "target": request.target,
                "token": request.request_id,
                "holder_workflow_id": request.holder_workflow_id,
                "holder_run_id": request.holder_run_id,
                "acquired_at": now,
            }
            if self._insert_ignore(conn, target_locks, mine):
                conn.execute(
                    lock_waiters.delete().where(lock_waiters.c.request_id == mine["token"])
                )
                return None
            row = conn.execute(
                sa.select(target_locks).where(target_locks.c.target == request.target)
            ).one()
            if row.token == request.request_id:
                return None  # a retried activity: it is ours already
            self._insert_ignore(
                conn,
                lock_waiters,
                {
                    "request_id": request.request_id,
                    "target": request.target,
                    "workflow_id": request.holder_workflow_id,
                    "run_id": request.holder_run_id,
                    "queued_at": now,
                },
            )
            return Holder(row.token, row.holder_workflow_id, row.holder_run_id)

    def lock_take_over(self, request: LockRequest, gone: Holder) -> bool:
        """Replace a holder whose workflow has closed; False if the lock changed meanwhile."""
        with self._tx() as conn:
            result = conn.execute(
                target_locks.update()
                .where(target_locks.c.target == request.target)
                .where(target_locks.c.token == gone.token)
                .values(
                    token=request.request_id,
                    holder_workflow_id=request.holder_workflow_id,
                    holder_run_id=request.holder_run_id,
                    acquired_at=datetime.now(UTC),
                )
            )
            if result.rowcount != 1:
                return False
            conn.execute(
                lock_waiters.delete().where(lock_waiters.c.request_id == request.request_id)
            )
            return True

    def lock_release(self, target: str, token: str) -> list[tuple[str, str, str]]:
        """Release (if ours) and leave the queue; the waiters to wake, oldest first."""
        with self._tx() as conn:
            conn.execute(
                target_locks.delete()
                .where(target_locks.c.target == target)
                .where(target_locks.c.token == token)
            )
            conn.execute(lock_waiters.delete().where(lock_waiters.c.request_id == token))
            rows = conn.execute(
                sa.select(
                    lock_waiters.c.request_id, lock_waiters.c.workflow_id, lock_waiters.c.run_id
                )
                .where(lock_waiters.c.target == target)
                .order_by(lock_waiters.c.queued_at, lock_waiters.c.request_id)
            )
            return [(r.request_id, r.workflow_id, r.run_id) for r in rows]

    def lock_forget_waiter(self, request_id: str) -> None:
        with self._tx() as conn:
            conn.execute(lock_waiters.delete().where(lock_waiters.c.request_id == request_id))

    def lock_holds(self, target: str, token: str) -> bool:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(target_locks.c.token).where(target_locks.c.target == target)
            ).first()
        return row is not None and row.token == token

    def lock_holder(self, target: str) -> Holder | None:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(target_locks).where(target_locks.c.target == target)
            ).first()
        return Holder(row.token, row.holder_workflow_id, row.holder_run_id) if row else None
