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
