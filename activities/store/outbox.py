"""The intake's outbox: alerts it accepted, kept until Temporal has them.

The intake answers 202 only after the alert's row is committed here, so an accepted alert
survives a crash of the intake; the forwarder delivers pending rows in order and marks them.
A row's ``delivery_id`` is a hash of (fingerprint, status, startsAt): the same notification
posted again (Alertmanager's retry after a lost answer, a re-notification, another intake) is the
same row, and the forwarder sends it to Temporal as the request id, so a re-send after a crash
between sending and marking is dropped by Temporal. Delivered rows are kept for the dedup window,
then pruned.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import alert_outbox
from core.models import Alert


def delivery_id(alert: Alert) -> str:
    """The notification's identity: uuid-shaped, as Temporal's request ids are."""
    key = f"{alert.fingerprint}|{alert.status.value}|{alert.starts_at.isoformat()}"
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))


@dataclass(frozen=True)
class Accepted:
    delivery_id: str
    new: bool
    """False: this notification was already accepted (a duplicate)."""


@dataclass(frozen=True)
class Pending:
    seq: int
    delivery_id: str
    fingerprint: str
    accepted_at: datetime
    attempts: int
    alert: Alert


class AlertOutbox(StoreBase):
    def outbox_accept(self, alerts: list[Alert]) -> list[Accepted]:
        """Commit the alerts (one transaction); duplicates of rows still kept are not added."""
        now = datetime.now(UTC)
        out: list[Accepted] = []
        with self._tx() as conn:
            for alert in alerts:
                did = delivery_id(alert)
                new = self._insert_ignore(
                    conn,
                    alert_outbox,
                    {
                        "delivery_id": did,
                        "fingerprint": alert.fingerprint,
                        "status": alert.status.value,
                        "source": alert.source,
                        "alert": alert.model_dump(mode="json"),
                        "accepted_at": now,
                        "state": "pending",
                        "attempts": 0,
                        "last_error": "",
                        "action": "",
                        "run_id": "",
                    },
                )
                out.append(Accepted(did, new))
        return out

    def outbox_pending(self, limit: int = 500) -> list[Pending]:
        """The oldest undelivered rows, in acceptance order."""
        query = (
            sa.select(alert_outbox)
            .where(alert_outbox.c.state == "pending")
            .order_by(alert_outbox.c.seq)
            .limit(limit)
        )
        with self._tx() as conn:
            return [
                Pending(
                    seq=r.seq,
                    delivery_id=r.delivery_id,
                    fingerprint=r.fingerprint,
                    accepted_at=r.accepted_at,
                    attempts=r.attempts,
                    alert=Alert.model_validate(r.alert),
                )
                for r in conn.execute(query)
            ]

    def outbox_attempt(self, seq: int, error: str) -> None:
        """A delivery that Temporal did not confirm (it stays pending)."""
        with self._tx() as conn:
            conn.execute(
                alert_outbox.update()
                .where(alert_outbox.c.seq == seq)
                .values(attempts=alert_outbox.c.attempts + 1, last_error=error[:2000])
            )

    def outbox_done(
        self, seq: int, state: str, action: str = "", run_id: str = "", error: str = ""
    ) -> None:
        """``delivered`` (Temporal has it) or ``refused`` (Temporal will never take it)."""
        values: dict[str, Any] = {
            "state": state,
            "action": action,
            "run_id": run_id,
            "done_at": datetime.now(UTC),
            "attempts": alert_outbox.c.attempts + 1,
        }
        if error:
            values["last_error"] = error[:2000]
        with self._tx() as conn:
            conn.execute(alert_outbox.update().where(alert_outbox.c.seq == seq).values(**values))

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        """Pending rows and the oldest one's acceptance time."""
        query = sa.select(sa.func.count(), sa.func.min(alert_outbox.c.accepted_at)).where(
            alert_outbox.c.state == "pending"
        )
        with self._tx() as conn:
            count, oldest = conn.execute(query).one()
        if isinstance(oldest, str):  # SQLite returns aggregates of a decorated type raw
            oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
        elif oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(count), oldest

    def outbox_rows(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        """Every kept row (oldest first), for `doctor`, tests and benchmarks."""
        query = sa.select(alert_outbox).order_by(alert_outbox.c.seq)
        if fingerprint is not None:
            query = query.where(alert_outbox.c.fingerprint == fingerprint)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def outbox_prune(self, before: datetime) -> int:
        """Forget delivered and refused rows done before ``before`` (the dedup window)."""
        with self._tx() as conn:
            result = conn.execute(
                alert_outbox.delete().where(
                    (alert_outbox.c.state != "pending") & (alert_outbox.c.done_at < before)
                )
            )
        return int(result.rowcount or 0)
