"""The outbox in the store (SQLite and PostgreSQL) and the forwarder on the dev server: one row per
notification, acceptance order per fingerprint, a refused alert closed rather than retried, the
dedup window, and a schema that two processes migrate at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from activities.store.outbox import delivery_id
from activities.store.schema import MIGRATIONS
from core.models import Alert, AlertStatus
from tests.integration.test_outbox import alert_signals
from workers.forwarder import Forwarder
from workers.lab.postgres import Postgres
from workers.routing import AlertRouter

pytestmark = pytest.mark.integration


def alert(
    fp: str, status: AlertStatus = AlertStatus.FIRING, starts: datetime | None = None
) -> Alert:
    return Alert(
        name="OutboxTest",
        status=status,
        fingerprint=fp,
        labels={"alertname": "OutboxTest", "instance": fp},
        starts_at=starts or datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
    )


def exercise_outbox(store: Store) -> None:
    a, b = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    first = store.outbox_accept([alert(a), alert(b), alert(a)])
    assert [x.new for x in first] == [True, True, False]  # a repeat in the same post
    assert first[0].delivery_id == first[2].delivery_id == delivery_id(alert(a))
    later = store.outbox_accept(
        [
            alert(a),
            alert(a, AlertStatus.RESOLVED),
            alert(a, starts=datetime(2026, 12, 2, tzinfo=UTC)),
        ]
    )
    assert [x.new for x in later] == [False, True, True]  # another status or startsAt is new
    pending = [p for p in store.outbox_pending() if p.fingerprint in (a, b)]
    assert [(p.fingerprint, p.alert.status) for p in pending] == [
        (a, AlertStatus.FIRING),
        (b, AlertStatus.FIRING),
        (a, AlertStatus.RESOLVED),
        (a, AlertStatus.FIRING),
    ]
    assert pending[0].alert == alert(a)  # the alert round-trips whole
    count, oldest = store.outbox_backlog()
    assert count >= 4 and oldest is not None and oldest.tzinfo is not None
    store.outbox_attempt(pending[0].seq, "Temporal is down")
    store.outbox_done(pending[0].seq, "delivered", "signal-with-start", "run-1")
    store.outbox_done(pending[1].seq, "refused", error="INVALID_ARGUMENT")
    rows = {r["seq"]: r for r in store.outbox_rows()}
    assert rows[pending[0].seq]["attempts"] == 2 and rows[pending[0].seq]["state"] == "delivered"
    assert rows[pending[1].seq]["last_error"] == "INVALID_ARGUMENT"
    # A delivered notification is remembered for the dedup window, then forgotten.
    assert store.outbox_accept([alert(a)])[0].new is False
    assert store.outbox_prune(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert store.outbox_prune(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert store.outbox_accept([alert(a)])[0].new is True
    assert len([p for p in store.outbox_pending() if p.fingerprint == a]) == 3  # pending stay


def test_outbox_rows_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    exercise_outbox(store)
    store.close()


def test_outbox_rows_on_postgres(postgres: Postgres) -> None:
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    postgres.createdb(name)
    store = Store(postgres.url(name))
    exercise_outbox(store)
    store.close()


MIGRATE = (
    "import os, sys, time\n"
    "from activities.store import Store\n"
    "store = Store(sys.argv[1])\n"
    "open(sys.argv[2] + str(os.getpid()), 'w').close()\n"  # ready
    "while not os.path.exists(sys.argv[2] + 'go'):\n"  # all four start migrating together
    "    time.sleep(0.001)\n"
    "print(store.schema_version())\n"
)


def test_four_processes_migrate_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """`homelab-agents worker` and `intake` started together on one SQLite store."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    barrier = tmp_path / "barrier-"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("barrier-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(f"{barrier}go").touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-800:] for _, err in outputs]
    assert [int(out) for out, _ in outputs] == [MIGRATIONS[-1][0]] * 4


async def test_forwarder_keeps_order_and_closes_refused_alerts(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    client = dev_env.client
    fp = uuid.uuid4().hex[:12]
    forwarder = Forwarder(store, AlertRouter(client, f"fw-{uuid.uuid4().hex[:8]}").route)
    running = asyncio.create_task(forwarder.run())
    try:
        # firing then resolved of one fingerprint, accepted together: never reordered
        await forwarder.accept([alert(fp), alert(fp, AlertStatus.RESOLVED)])
        for _ in range(100):
            if {r["state"] for r in store.outbox_rows(fp)} == {"delivered"}:
                break
            await asyncio.sleep(0.1)
        assert [r["action"] for r in store.outbox_rows(fp)] == ["signal-with-start", "signalled"]
        assert await alert_signals(client, fp) == ["firing", "resolved"]
        # a resolved alert with no incident is acknowledged and closed
        gone = uuid.uuid4().hex[:12]
        await forwarder.accept([alert(gone, AlertStatus.RESOLVED)])
        for _ in range(100):
            rows = store.outbox_rows(gone)
            if rows and rows[0]["state"] == "delivered":
                break
            await asyncio.sleep(0.1)
        assert store.outbox_rows(gone)[0]["action"] == "no-open-incident"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    refusing = Forwarder(store, AlertRouter(client, "q" * 2000).route)  # a queue Temporal refuses
    running = asyncio.create_task(refusing.run())
    try:
        bad = uuid.uuid4().hex[:12]
        await refusing.accept([alert(bad)])
        for _ in range(100):
            rows = store.outbox_rows(bad)
            if rows and rows[0]["state"] != "pending":
                break
            await asyncio.sleep(0.1)
        row = store.outbox_rows(bad)[0]
        assert row["state"] == "refused" and "INVALID_ARGUMENT" in row["last_error"]
        assert row["attempts"] == 1  # closed at once, not retried
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        store.close()
