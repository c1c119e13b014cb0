"""PostgreSQL alerts in → fixed, through the real intake, worker and Temporal dev server against a
real PostgreSQL 15: a lock held by an idle transaction (autonomous on a normal database, approved
by a human on a critical one), a bloated table vacuumed and verified, an alert for no target."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ApprovalVerdict, ChangeResult, Outcome, RiskLevel
from tests.integration.pg_helpers import (
    Background,
    app_session,
    apply_roles,
    backend_exists,
    is_waiting_on_lock,
    make_bloat,
    new_database,
    pid_of,
    superuser,
    target,
    wait_until,
)
from tests.integration.stack import alertmanager_payload, running_stack
from workers.lab.dockerd import DockerEngine
from workers.lab.postgres import Postgres

pytestmark = pytest.mark.integration

EXPORTER = "pg-exporter:9187"


@pytest.fixture(scope="module")
def lab(postgres: Postgres) -> Postgres:
    apply_roles(postgres)
    return postgres


def pg_alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "instance": EXPORTER,
            "job": "postgres",
            "severity": "warning",
            **labels,
        },
        "annotations": {"summary": f"{name} on {labels.get('datname', '')}"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }


def lab_targets(server: Postgres) -> list[dict[str, Any]]:
    return [target(server, "lab", instances=[EXPORTER])]


class Blocked:
    """An idle-in-transaction session holding a row lock, and a victim waiting for it."""

    def __init__(self, server: Postgres, db: str) -> None:
        with app_session(server, db, autocommit=True) as setup:
            setup.execute("CREATE TABLE stock (sku int PRIMARY KEY, qty int)")
            setup.execute("INSERT INTO stock VALUES (1, 10)")
        self.server = server
        self.blocker = app_session(server, db, application="forgotten-tx")
        self.blocker.execute("UPDATE stock SET qty = qty - 1 WHERE sku = 1")
        self.victim = Background(
            app_session(server, db, application="checkout"),
            "UPDATE stock SET qty = 0 WHERE sku = 1",
        )
        wait_until(lambda: is_waiting_on_lock(server, self.victim.pid), what="victim blocked")
        self.blocker_pid = pid_of(self.blocker)

    def close(self) -> None:
        self.blocker.close()
        self.victim.conn.close()


async def test_lock_blocking_on_a_normal_database_resolves_autonomously(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, lab: Postgres, tmp_path: Path
) -> None:
    db = new_database(lab, "shop")
    scene = Blocked(lab, db)
    try:
        async with running_stack(
            dev_env, docker_engine, tmp_path, postgres=lab_targets(lab)
        ) as stack:
            alert = pg_alert("PostgresqlLockBlocking", datname=db)
            response = await stack.post(alertmanager_payload(alert))
            assert response.status_code == 202, response.text
            state = await stack.result(f"incident-{alert['fingerprint']}")

            assert state.outcome is Outcome.RESOLVED, state.notes
            assert state.triage is not None and str(state.triage.target) == f"postgres:lab/{db}"
            assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
                ("postgres.terminate_backend", RiskLevel.SOFT, ChangeResult.APPLIED)
            ]
            assert state.actions[0].action.params["pid"] == scene.blocker_pid
            assert state.verification is not None and state.verification.passed
            assert scene.victim.wait(10) and scene.victim.error is None
            assert not backend_exists(lab, scene.blocker_pid)

            (change,) = stack.store.list_changes(state.workflow_id)
            assert change.result is ChangeResult.APPLIED and change.rollback_action == ""
            assert change.reversibility.value == "irreversible"
            assert f"pg_terminate_backend({scene.blocker_pid})" in change.preview
            (ended,) = change.after["terminated"]
            assert ended["pid"] == scene.blocker_pid and ended["user"] == "app"
            assert ended["application"] == "forgotten-tx"
            assert ended["state"] == "idle in transaction"
            assert ended["query"].startswith("UPDATE stock SET qty = qty - 1")
            assert change.before["pid"] == scene.blocker_pid
        with app_session(lab, db) as check:
            assert check.execute("SELECT qty FROM stock").fetchone() == (0,)
    finally:
        scene.close()


async def test_lock_blocking_on_a_critical_database_waits_for_approval(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, lab: Postgres, tmp_path: Path
) -> None:
    db = new_database(lab, "payments")
    scene = Blocked(lab, db)
    try:
        async with running_stack(
            dev_env,
            docker_engine,
            tmp_path,
            postgres=lab_targets(lab),
            approval={"critical": ["postgres:lab/payments_*"]},
        ) as stack:
            alert = pg_alert("PostgresqlLockBlocking", datname=db)
            await stack.post(alertmanager_payload(alert))
            wid = f"incident-{alert['fingerprint']}"
            pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
            request = pending.pending_approval
            assert request is not None and request.level is RiskLevel.HARD
            assert request.action.tool == "postgres.terminate_backend"
            assert any("critical pattern" in r for r in request.reasons)
            assert f"pg_terminate_backend({scene.blocker_pid})" in request.preview
            assert request.rollback_plan == "irreversible: no rollback possible"
            # nothing ran before the approval: the blocker holds, the victim waits
            assert backend_exists(lab, scene.blocker_pid)
            assert is_waiting_on_lock(lab, scene.victim.pid)

            record = await stack.decide(
                wid,
                ApprovalDecision(approve=True, approver="alice", via="cli"),
            )
            assert record.verdict is ApprovalVerdict.APPROVED
            state = await stack.result(wid)
            assert state.outcome is Outcome.RESOLVED, state.notes
            assert state.actions[0].approver == "alice"
            assert state.actions[0].result is ChangeResult.APPLIED
            assert scene.victim.wait(10) and scene.victim.error is None
            assert not backend_exists(lab, scene.blocker_pid)
    finally:
        scene.close()


async def test_bloat_incident_vacuums_and_verifies(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, lab: Postgres, tmp_path: Path
) -> None:
    db = new_database(lab, "bloat")
    make_bloat(lab, db)

    def dead() -> int:
        with superuser(lab, db) as conn:
            row = conn.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'items'"
            ).fetchone()
        return int(row[0]) if row else -1

    assert dead() >= 20000
    async with running_stack(dev_env, docker_engine, tmp_path, postgres=lab_targets(lab)) as stack:
        alert = pg_alert(
            "PostgresqlTooManyDeadTuples", datname=db, schemaname="public", relname="items"
        )
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
            ("postgres.vacuum", RiskLevel.SOFT, ChangeResult.APPLIED)
        ]
        assert state.actions[0].action.params == {
            "table": "items",
            "schema": "public",
            "analyze": True,
        }
        bloat = next(e for e in state.evidence if e.key == "bloat")
        assert bloat.ok and bloat.data["table"]["n_dead_tup"] >= 20000
        assert state.verification is not None and state.verification.passed
        (change,) = stack.store.list_changes(state.workflow_id)
        assert change.before["n_dead_tup"] >= 20000 and change.after["n_dead_tup"] == 0
        assert change.preview.startswith('VACUUM (ANALYZE) "public"."items"')
    assert dead() == 0


async def test_alert_for_an_unconfigured_server_is_escalated_with_a_note(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, lab: Postgres, tmp_path: Path
) -> None:
    targets = [*lab_targets(lab), target(lab, "other", instances=["other:9187"])]
    async with running_stack(dev_env, docker_engine, tmp_path, postgres=targets) as stack:
        alert = pg_alert("PostgresqlLockBlocking", datname="shop")
        alert["labels"]["instance"] = "unknown-host:9187"
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.ESCALATED and state.actions == []
        assert any("no such target" in n and "unknown-host:9187" in n for n in state.notes), (
            state.notes
        )


async def test_long_transaction_ended_by_its_cancel_resolves(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, lab: Postgres, tmp_path: Path
) -> None:
    """psql -c exits when its query is cancelled, so the session is gone before the runbook's
    second step: terminate is a recorded no-op, not a failure that rolls back and escalates."""
    import shutil
    import subprocess

    import yaml

    from activities.runbooks import BUILTIN_DIR

    db = new_database(lab, "reports")
    # The built-in runbook, with its 10-minute thresholds at 2 s (a user runbook replaces a
    # built-in of the same name): the same two steps, the same tools.
    book = yaml.safe_load((BUILTIN_DIR / "postgres" / "long-running-transaction.yaml").read_text())
    text = yaml.safe_dump(book).replace("600", "2")
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "long-running-transaction.yaml").write_text(text)

    psql = shutil.which("psql") or "/usr/bin/psql"
    client = subprocess.Popen(
        [psql, lab.dsn(db, user="app"), "-X", "-c", "BEGIN; SELECT pg_sleep(600)"],
        env={"PGAPPNAME": "nightly-report", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def in_transaction() -> bool:
            with superuser(lab) as conn:
                row = conn.execute(
                    "SELECT now() - xact_start > interval '2.5 seconds' FROM pg_stat_activity"
                    " WHERE application_name = 'nightly-report' AND state = 'active'"
                ).fetchone()
            return bool(row and row[0])

        wait_until(in_transaction, what="a transaction open for 2.5 s")
        async with running_stack(
            dev_env, docker_engine, tmp_path, postgres=lab_targets(lab), runbook_dirs=[books]
        ) as stack:
            alert = pg_alert("PostgresqlLongRunningTransaction", datname=db)
            assert (await stack.post(alertmanager_payload(alert))).status_code == 202
            state = await stack.result(f"incident-{alert['fingerprint']}")

            assert client.wait(10) != 0  # psql saw the cancel and closed its connection
            assert state.outcome is Outcome.RESOLVED, state.notes
            assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
                ("postgres.cancel_query", RiskLevel.SOFT, ChangeResult.APPLIED),
                ("postgres.terminate_backend", RiskLevel.SOFT, ChangeResult.SKIPPED),
            ]
            skipped = state.actions[1]
            assert "no longer exists" in skipped.preview and skipped.error
            changes = {c.action: c for c in stack.store.list_changes(state.workflow_id)}
            terminate = changes["postgres.terminate_backend"]
            assert terminate.result is ChangeResult.SKIPPED and terminate.level is RiskLevel.SOFT
            assert "no longer exists" in terminate.preview
            assert state.verification is not None and state.verification.passed
    finally:
        client.kill()
