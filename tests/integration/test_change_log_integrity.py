"""The change log on PostgreSQL as deploy/compose/initdb.sql sets it up: an owner that migrates,
a run-time role that may only read and insert the audit trail, triggers that refuse UPDATE,
DELETE and TRUNCATE even to the owner, and a hash chain that shows what a superuser bypassing
all of it rewrote, deleted or reordered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from activities.store import MIGRATIONS, Store, StoreError
from activities.store.schema import AUDIT_TABLES, schema_migrations
from tests.unit.test_store import change
from workers.lab.postgres import Postgres, pg_bin

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INITDB = ROOT / "deploy" / "compose" / "initdb.sql"
CLI = str(Path(sys.prefix) / "bin" / "homelab-agents")
T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
OWNER_PW, APP_PW = "owner-pw-c0ffee01", "app-pw-c0ffee02"
LATEST = max(v for v, _, _ in MIGRATIONS)


def psql_initdb(server: Postgres, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [pg_bin("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U"]
    argv += ["postgres", "-d", "postgres", "-f", str(INITDB)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB_STORE_")}
    return subprocess.run(argv, capture_output=True, text=True, env={**clean, **env}, timeout=60)


@pytest.fixture(scope="module")
def roles(postgres: Postgres) -> Postgres:
    done = psql_initdb(
        postgres,
        {"HOMELAB_STORE_OWNER_PASSWORD": OWNER_PW, "HOMELAB_STORE_APP_PASSWORD": APP_PW},
    )
    assert done.returncode == 0, done.stderr
    return postgres


def url(server: Postgres, role: str, db: str) -> str:
    password = OWNER_PW if role == "homelab_owner" else APP_PW
    return f"postgresql://{role}:{password}@127.0.0.1:{server.port}/{db}"


def store_database(server: Postgres) -> str:
    """A fresh database shaped like initdb.sql's ``homelab`` (owned by the owner role)."""
    name = f"store_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER homelab_owner").format(sql.Identifier(name)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO homelab_app").format(sql.Identifier(name))
        )
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        conn.execute("ALTER SCHEMA public OWNER TO homelab_owner")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    return name


@pytest.fixture
def database(roles: Postgres) -> str:
    return store_database(roles)


def as_role(server: Postgres, role: str, db: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.dsn(db, user=role), autocommit=True)


def filled(server: Postgres, db: str, count: int) -> Store:
    Store(url(server, "homelab_app", db), owner_url=url(server, "homelab_owner", db)).migrate()
    store = Store(url(server, "homelab_app", db))
    for i in range(count):
        assert store.record_change(change(f"c{i}", at=T0 + timedelta(seconds=i)))
    return store


def superuser(server: Postgres, db: str, *statements: str) -> None:
    """A superuser who switches the triggers off for the session (replica role), then writes."""
    with psycopg.connect(server.dsn(db), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def test_initdb_makes_the_two_roles_with_their_own_passwords(roles: Postgres) -> None:
    with psycopg.connect(roles.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolpassword FROM pg_authid "
            "WHERE rolname IN ('homelab_owner', 'homelab_app') ORDER BY rolname"
        ).fetchall()
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'homelab'"
        ).fetchone()
    assert [r[0] for r in rows] == ["homelab_app", "homelab_owner"]
    for _, superuser_, createrole, createdb, password in rows:
        assert not (superuser_ or createrole or createdb)
        assert str(password).startswith("SCRAM-SHA-256$")  # hashed, and one per role
    assert rows[0][4] != rows[1][4] and owner == ("homelab_owner",)
    with as_role(roles, "homelab_app", "homelab") as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("CREATE TABLE sneaky (x int)")
    again = psql_initdb(
        roles, {"HOMELAB_STORE_OWNER_PASSWORD": OWNER_PW, "HOMELAB_STORE_APP_PASSWORD": APP_PW}
    )
    assert again.returncode == 0, again.stderr  # re-running is safe
    missing = psql_initdb(roles, {"HOMELAB_STORE_OWNER_PASSWORD": OWNER_PW})
    assert missing.returncode != 0 and "set HOMELAB_STORE_APP_PASSWORD" in missing.stderr


def test_the_runtime_role_reads_and_inserts_the_audit_trail_and_nothing_more(
    roles: Postgres, database: str
) -> None:
    owner = Store(
        url(roles, "homelab_app", database), owner_url=url(roles, "homelab_owner", database)
    )
    assert owner.migrate() == [v for v, _, _ in MIGRATIONS]
    owner.close()
    store = Store(url(roles, "homelab_app", database))
    assert store.migrate() == [] and store.schema_version() == LATEST
    # everything the worker does, as the run-time role
    assert store.record_change(change("c1"))
    assert not store.record_change(change("c1"))
    store.set_paused(True, "cli:alice", "maintenance")
    store.set_paused(False, "cli:alice")
    assert [c.change_id for c in store.list_changes("incident-a")] == ["c1"]
    assert store.verify_chain().ok
    with as_role(roles, "homelab_app", database) as app:
        for table in AUDIT_TABLES:
            name = sql.Identifier(table)
            for statement in (
                sql.SQL("UPDATE {} SET at = at").format(name),
                sql.SQL("DELETE FROM {}").format(name),
                sql.SQL("TRUNCATE {}").format(name),
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(statement)
        for ddl in (
            "CREATE TABLE sneaky (x int)",
            "ALTER TABLE changes DISABLE TRIGGER changes_append_only",
            "DROP TABLE changes",
            "DROP TRIGGER changes_no_truncate ON changes",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(ddl)  # type: ignore[arg-type]
    with as_role(roles, "homelab_owner", database) as own:  # the owner meets the triggers
        for statement in (
            "UPDATE changes SET preview = 'x'",
            "DELETE FROM changes",
            "TRUNCATE changes",
            "TRUNCATE approvals",
            "TRUNCATE control_events",
            "TRUNCATE telegram_refusals",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                own.execute(statement)  # type: ignore[arg-type]
    assert [c.change_id for c in store.list_changes("incident-a")] == ["c1"]
    store.close()


def test_the_runtime_role_cannot_migrate_and_says_so(roles: Postgres, database: str) -> None:
    store = Store(url(roles, "homelab_app", database))
    with pytest.raises(StoreError, match="run `homelab-agents migrate` with store.owner_url"):
        store.record_change(change("c1"))
    store.close()


def test_a_superusers_rewrite_deletion_and_reordering_are_found(
    roles: Postgres, database: str
) -> None:
    store = filled(roles, database, 6)
    head = store.verify_chain()
    assert head.ok and head.head_seq == 6
    superuser(roles, database, "UPDATE changes SET result = 'failed' WHERE seq = 2")
    assert [(p.kind, p.seq) for p in store.verify_chain().problems] == [("altered", 2)]
    superuser(roles, database, "DELETE FROM changes WHERE seq = 4")
    assert [(p.kind, p.seq) for p in store.verify_chain().problems] == [
        ("altered", 2),
        ("missing", 5),
    ]
    superuser(roles, database, "DELETE FROM changes WHERE seq = 6")  # the newest row
    assert [(p.kind, p.seq) for p in store.verify_chain().problems] == [
        ("altered", 2),
        ("missing", 5),
    ]
    assert [(p.kind, p.seq) for p in store.verify_chain((6, head.head_hash)).problems][-1] == (
        "anchor",
        6,
    )
    store.close()


def test_a_superusers_reordering_is_found(roles: Postgres, database: str) -> None:
    store = filled(roles, database, 5)
    superuser(
        roles,
        database,
        "UPDATE changes SET seq = -1 WHERE seq = 3",
        "UPDATE changes SET seq = 3 WHERE seq = 4",
        "UPDATE changes SET seq = 4 WHERE seq = -1",
    )
    assert [(p.kind, p.seq) for p in store.verify_chain().problems] == [
        ("altered", 3),
        ("reordered", 3),
        ("altered", 4),
        ("reordered", 4),
        ("reordered", 5),
    ]
    store.close()


def test_rows_recorded_before_the_chain_are_chained_by_its_migration(
    roles: Postgres, database: str
) -> None:
    engine = sa.create_engine(
        "postgresql+psycopg://" + url(roles, "homelab_owner", database).split("://", 1)[1]
    )
    with engine.begin() as conn:  # version 7's schema: no chain columns
        schema_migrations.create(conn)
        for version, name, step in MIGRATIONS[:7]:
            step(conn)
            conn.execute(
                schema_migrations.insert().values(version=version, name=name, applied_at=T0)
            )
        conn.exec_driver_sql("DROP INDEX changes_seq")
        conn.exec_driver_sql(
            "ALTER TABLE changes DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN row_hash"
        )
        for i in (1, 0):
            conn.execute(
                sa.text(
                    "INSERT INTO changes (change_id, incident_id, workflow_id, run_id, at, step, "
                    "action, target, params, level, level_reasons, approval, approver, dry_run, "
                    "before_state, after_state, result, error, preview, reversibility, "
                    "rollback_action, rollback_params, rollback_of) VALUES (:id, 'i', 'i', 'r', "
                    ":at, 'remediate', 'docker.start', 'docker:lab/web', '{\"n\": 1.5}', 'NONE', "
                    "'[]', 'not_required', '', false, '{}', '{}', 'applied', '', 'start web', "
                    "'compensated', '', '{}', '')"
                ),
                {"id": f"old{i}", "at": T0 + timedelta(minutes=i)},
            )
    engine.dispose()
    owner = Store(
        url(roles, "homelab_app", database), owner_url=url(roles, "homelab_owner", database)
    )
    assert owner.migrate()[0] == 8  # and any later ones
    owner.close()
    store = Store(url(roles, "homelab_app", database))
    assert store.record_change(change("new", at=T0 + timedelta(hours=1)))
    report = store.verify_chain()
    assert report.ok and report.rows == 3 and report.head_seq == 3, report.lines()
    with as_role(roles, "homelab_owner", database) as own:  # the UPDATE guard is back on
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            own.execute("UPDATE changes SET preview = 'x'")
        order = own.execute("SELECT change_id FROM changes ORDER BY seq").fetchall()
    assert [r[0] for r in order] == ["old0", "old1", "new"]
    store.close()


def test_concurrent_writers_never_fork_the_chain(roles: Postgres, database: str) -> None:
    filled(roles, database, 0).close()
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        store = Store(url(roles, "homelab_app", database))
        try:
            for i in range(20):
                store.record_change(change(f"{prefix}-{i}", at=T0 + timedelta(seconds=i)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(f"w{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    store = Store(url(roles, "homelab_app", database))
    report = store.verify_chain()
    assert report.ok and report.rows == 80 and report.head_seq == 80, report.lines()
    store.close()


def test_migrate_and_verify_on_the_command_line(roles: Postgres, database: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOMELAB_STORE__URL": url(roles, "homelab_app", database),
        "HOMELAB_STORE__OWNER_URL": url(roles, "homelab_owner", database),
    }

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], capture_output=True, text=True, timeout=60, env={**env, **extra}
        )

    done = cli("migrate", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "applied": [v for v, _, _ in MIGRATIONS],
        "version": LATEST,
        "as_owner": True,
    }
    verified = cli("changes", "--verify")
    assert verified.returncode == 0 and "0 row(s), chain intact" in verified.stdout
    refused = cli(
        "changes",
        "--verify",
        HOMELAB_STORE__URL=f"postgresql://homelab_app:planted-pw-9931@127.0.0.1:1/{database}",
        HOMELAB_STORE__OWNER_URL="",
    )
    assert refused.returncode == 1
    assert "planted-pw-9931" not in refused.stdout + refused.stderr
    assert "Connection refused" in refused.stderr  # said why, without the password
