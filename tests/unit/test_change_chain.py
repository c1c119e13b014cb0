"""The change log's hash chain on SQLite: every row linked, concurrent writers in one chain, and a
rewrite, deletion, reordering or row written around the store found by ``changes --verify``
(tests/integration/test_change_log_integrity.py runs the same on PostgreSQL, with its roles)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from activities.store import MIGRATIONS, Store
from activities.store.chain import CHAINED_COLUMNS, GENESIS, canonical, link_hash
from activities.store.schema import schema_migrations
from tests.unit.test_store import change

CLI = str(Path(sys.prefix) / "bin" / "homelab-agents")
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def filled(path: Path, count: int = 5) -> Store:
    store = Store(f"sqlite:///{path}")
    for i in range(count):
        assert store.record_change(
            change(
                f"c{i}",
                at=T0 + timedelta(seconds=i),
                params={"memory": i, "nested": {"f": 1.5, "list": [1, "x"]}},
                before={"status": "exited", "ünïcode": "✓"},
                started_at=T0,
            )
        )
    return store


def tamper(path: Path, *statements: str) -> None:
    """What a root user with the database file can do: drop the triggers, then write."""
    db = sqlite3.connect(path)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        db.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def kinds(store: Store, anchor: tuple[int, str] | None = None) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in store.verify_chain(anchor).problems]


def test_every_row_is_linked_to_the_one_before(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    assert not store.record_change(change("c1"))  # a retry neither inserts nor moves the chain
    with store.engine.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM changes ORDER BY seq"))
        ]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == GENESIS
    for before, row in zip(rows, rows[1:], strict=False):
        assert row["prev_hash"] == before["row_hash"]
    report = store.verify_chain()
    assert report.ok and report.rows == 5
    assert (report.head_seq, report.head_hash) == (5, rows[-1]["row_hash"])
    assert store.verify_chain((3, rows[2]["row_hash"])).ok
    store.close()


def test_the_canonical_content_is_every_column_but_the_hashes() -> None:
    record = {name: None for name in CHAINED_COLUMNS} | {"seq": 1, "at": T0.replace(tzinfo=None)}
    text = json.loads(canonical(record))
    assert sorted(text) == sorted(CHAINED_COLUMNS)
    assert text["at"] == "2026-01-02T03:04:05.123456Z"  # naive means UTC, as the store binds it
    changed = record | {"preview": "x"}
    assert link_hash(GENESIS, changed) != link_hash(GENESIS, record)
    assert link_hash("1" * 64, record) != link_hash(GENESIS, record)


def test_a_rewrite_a_deletion_and_a_reordering_are_found(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, 6)
    tamper(path, "UPDATE changes SET preview = 'nothing happened' WHERE seq = 2")
    assert kinds(store) == [("altered", 2)]
    tamper(path, "DELETE FROM changes WHERE seq = 4")
    assert kinds(store) == [("altered", 2), ("missing", 5)]
    store.close()

    path = tmp_path / "r.db"
    store = filled(path, 5)
    tamper(
        path,
        "UPDATE changes SET seq = -1 WHERE seq = 2",
        "UPDATE changes SET seq = 2 WHERE seq = 3",
        "UPDATE changes SET seq = 3 WHERE seq = -1",
    )
    assert kinds(store) == [
        ("altered", 2),
        ("reordered", 2),
        ("altered", 3),
        ("reordered", 3),
        ("reordered", 4),
    ]
    store.close()


def test_rows_written_around_the_store_and_a_cut_tail(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, 4)
    head = store.verify_chain()
    tamper(
        path,
        "INSERT INTO changes (change_id, incident_id, workflow_id, run_id, at, step, action, "
        "target, params, level, level_reasons, approval, approver, dry_run, before_state, "
        "after_state, result, error, preview, reversibility, rollback_action, rollback_params, "
        "rollback_of) SELECT 'forged', incident_id, workflow_id, run_id, at, step, action, "
        "target, params, level, level_reasons, approval, approver, dry_run, before_state, "
        "after_state, result, error, preview, reversibility, rollback_action, rollback_params, "
        "rollback_of FROM changes WHERE seq = 1",
    )
    assert kinds(store) == [("unchained", None)]
    tamper(
        path, "DELETE FROM changes WHERE change_id = 'forged'", "DELETE FROM changes WHERE seq = 4"
    )
    assert kinds(store) == []  # the newest row gone: only a kept head shows it
    assert kinds(store, (head.head_seq, head.head_hash)) == [("anchor", 4)]
    rewritten = link_hash(GENESIS, {c: None for c in CHAINED_COLUMNS})
    assert kinds(store, (3, rewritten)) == [("anchor", 3)]
    store.close()


def test_rows_recorded_before_the_chain_are_chained_by_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # the store as version 7 left it: no chain columns
        schema_migrations.create(conn)
        for version, name, step in MIGRATIONS[:7]:
            step(conn)
            conn.execute(
                schema_migrations.insert().values(version=version, name=name, applied_at=T0)
            )
        conn.exec_driver_sql("DROP INDEX changes_seq")
        for column in ("seq", "prev_hash", "row_hash"):
            conn.exec_driver_sql(f"ALTER TABLE changes DROP COLUMN {column}")
    engine.dispose()
    old = Store(f"sqlite:///{path}")
    old._migrated = True  # write the way version 7 did, without the chain
    with old.engine.begin() as conn:
        for i in (2, 0, 1):  # inserted out of time order: the chain follows the time recorded
            conn.execute(
                sa.text(
                    "INSERT INTO changes (change_id, incident_id, workflow_id, run_id, at, step, "
                    "action, target, params, level, level_reasons, approval, approver, dry_run, "
                    "before_state, after_state, result, error, preview, reversibility, "
                    "rollback_action, rollback_params, rollback_of) VALUES (:id, 'i', 'i', 'r', "
                    ":at, 'remediate', 'docker.start', 'docker:lab/web', '{}', 'NONE', '[]', "
                    "'not_required', '', 0, '{}', '{}', 'applied', '', 'start web', "
                    "'compensated', '', '{}', '')"
                ),
                {"id": f"old{i}", "at": (T0 + timedelta(minutes=i)).replace(tzinfo=None)},
            )
    old.close()

    store = Store(f"sqlite:///{path}")
    assert store.migrate()[0] == 8  # and any later ones
    assert store.record_change(change("new", at=T0 + timedelta(hours=1)))
    with store.engine.connect() as conn:
        order = conn.execute(sa.text("SELECT change_id FROM changes ORDER BY seq")).scalars().all()
    assert order == ["old0", "old1", "old2", "new"]
    assert store.verify_chain().ok
    with sqlite3.connect(path) as db:  # the migration put the UPDATE guard back
        try:
            db.execute("UPDATE changes SET preview = 'x'")
            raise AssertionError("the change log took an UPDATE")
        except sqlite3.IntegrityError as exc:
            assert "append-only" in str(exc)
    store.close()


def _writer(url: str, prefix: str, count: int) -> None:
    store = Store(url)
    for i in range(count):
        store.record_change(change(f"{prefix}-{i}", at=T0 + timedelta(seconds=i)))
    store.close()


def test_concurrent_writers_never_fork_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).migrate()
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_writer, args=(url, f"w{k}", 25)) for k in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    store = Store(url)
    report = store.verify_chain()
    assert report.ok and report.rows == 100 and report.head_seq == 100, report.lines()
    store.close()


def cli(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOMELAB_STORE__URL": f"sqlite:///{store}", "PATH": "/usr/bin:/bin"},
    )


def test_changes_verify_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, 3)
    head = store.verify_chain()
    store.close()
    done = cli("changes", "--verify", store=path)
    assert done.returncode == 0, done.stderr
    assert f"3 row(s), chain intact; head 3:{head.head_hash}" in done.stdout
    tamper(path, "UPDATE changes SET params = '{\"memory\": 9}' WHERE seq = 1")
    done = cli("changes", "--verify", "--json", "--anchor", f"3:{head.head_hash}", store=path)
    assert done.returncode == 1
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["ok"] is False and [p["kind"] for p in report["problems"]] == ["altered"]
    bad = cli("changes", "--verify", "--anchor", "three", store=path)
    assert bad.returncode == 2 and "SEQ:HASH" in bad.stderr
    migrated = cli("migrate", "--json", store=tmp_path / "fresh.db")
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout) == {
        "applied": [v for v, _, _ in MIGRATIONS],
        "version": max(v for v, _, _ in MIGRATIONS),
        "as_owner": False,
    }
