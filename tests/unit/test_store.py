"""The store on SQLite (PostgreSQL runs the same checks in tests/integration/test_store_postgres.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from activities.store import MIGRATIONS, Store
from core.models import ApprovalVerdict, ChangeRecord, ChangeResult, Reversibility, RiskLevel


def change(change_id: str, **kw: object) -> ChangeRecord:
    base: dict[str, object] = dict(
        change_id=change_id,
        incident_id="incident-a",
        workflow_id="incident-a",
        run_id="r1",
        at=datetime.now(UTC),
        step="remediate",
        action="docker.update_resources",
        target="docker:lab/web",
        params={"memory": 1},
        level=RiskLevel.SOFT,
        approval=ApprovalVerdict.NOT_REQUIRED,
        result=ChangeResult.APPLIED,
        reversibility=Reversibility.COMPENSATED,
        rollback_action="docker.update_resources",
        rollback_params={"memory": 0},
    )
    base.update(kw)
    return ChangeRecord.model_validate(base)


def exercise(store: Store) -> None:
    """Behaviour every backend must show."""
    assert store.record_change(change("c1"))
    assert not store.record_change(change("c1"))  # idempotent retry
    assert store.record_change(change("c2", rollback_of="c1", step="rollback"))
    assert store.record_change(
        change("c3", result=ChangeResult.DENIED, approval=ApprovalVerdict.DENIED)
    )
    records = {r.change_id: r for r in store.list_changes("incident-a")}
    assert records["c1"].rolled_back_by == "c2"
    assert records["c2"].rollback_of == "c1"
    assert records["c1"].at.tzinfo is not None
    assert store.count_recent_writes("docker:lab/web") == 2  # applied only, not denied
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE changes SET result = 'failed' WHERE change_id = 'c1'"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM changes"))
    assert len(store.list_changes("incident-a")) == 3
    store.set_paused(True, "cli:alice", "maintenance")
    assert store.paused()["paused"] is True and store.paused()["by"] == "cli:alice"
    store.set_paused(False, "cli:alice")
    assert store.paused()["paused"] is False
    assert store.schema_version() == max(v for v, _, _ in MIGRATIONS)


def test_sqlite_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    exercise(store)
    assert store.migrate() == []  # already applied
    store.close()


async def test_records_are_redacted_on_the_way_into_the_store(tmp_path: Path) -> None:
    """A preview or error that still carries a secret (a tool's own text) is masked by the
    change-log activity; an incident's state keeps its types (it must validate again)."""
    from activities.records import RecordActivities
    from core.models import (
        Action,
        ActionOutcome,
        Alert,
        AlertStatus,
        IncidentState,
        Phase,
        Plan,
        PlannerAttempt,
        TargetRef,
    )

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    leaky = change(
        "c1",
        preview="run with PGPASSWORD=preview-pw",
        error="failed: postgresql://u:error-pw@db/x",
        before={"env": ["A=1"], "token": "before-tok"},
    )
    assert await RecordActivities(store).record_change(leaky)
    (stored,) = store.list_changes("incident-a")
    assert stored.preview == "run with PGPASSWORD=***"
    assert stored.error == "failed: postgresql://u:***@db/x"
    assert stored.before == {"env": ["A=1"], "token": "***"}

    now = datetime.now(UTC)
    action = Action(id="a1", tool="docker.start", target=TargetRef.parse("docker:lab/web"))
    state = IncidentState(
        incident_id="incident-b",
        workflow_id="incident-b",
        alert=Alert(
            name="ContainerKilled", status=AlertStatus.FIRING, fingerprint="b", starts_at=now
        ),
        phase=Phase.RESOLVED,
        opened_at=now,
        plan=Plan(
            source="llm:x",
            actions=[action],
            attempts=[
                PlannerAttempt(provider="x", model="m", round="plan", outcome="ok", tokens_in=7)
            ],
        ),
        actions=[
            ActionOutcome(
                action=action,
                level=RiskLevel.NONE,
                approval=ApprovalVerdict.NOT_REQUIRED,
                preview="start web, GITHUB_TOKEN=state-tok",
                result=ChangeResult.APPLIED,
            )
        ],
    )
    store.record_incident(state, "run-1")
    again = store.get_incident("incident-b")
    assert again is not None and again.actions[0].preview == "start web, GITHUB_TOKEN=***"
    assert again.plan is not None and again.plan.attempts[0].tokens_in == 7
    store.close()
