"""Shared pieces of the PostgreSQL tests: the least-privilege roles from deploy/, application
sessions that hold locks or sit idle in a transaction, and targets that use the roles."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from workers.lab.postgres import Postgres

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"
APP = "app"  # the application role: owns the test tables, never a superuser


def superuser(server: Postgres, db: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(server.dsn(db), autocommit=True)


def apply_roles(server: Postgres) -> None:
    """deploy/postgres/roles.sql exactly as shipped, plus the application role it documents."""
    with superuser(server) as conn:
        conn.execute(ROLES_SQL.read_text())
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN"
            " CREATE ROLE app LOGIN; END IF; END $$"
        )
        conn.execute("GRANT app TO homelab_maint")  # step 3 of roles.sql for PostgreSQL 13–16


def target(server: Postgres, name: str = "lab", **extra: Any) -> dict[str, Any]:
    """A target as a user configures it: monitor role for reads, maintenance role for writes."""
    return {
        "name": name,
        "dsn": server.dsn("postgres", user="homelab_monitor"),
        "maintenance_dsn": server.dsn("postgres", user="homelab_maint"),
        "connect_timeout": 3,
        "statement_timeout_ms": 5000,
        **extra,
    }


def new_database(server: Postgres, prefix: str = "t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with superuser(server) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(name)),
        )
    return name


def app_session(
    server: Postgres, db: str, *, autocommit: bool = False, application: str = "shop"
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        server.dsn(db, user=APP), autocommit=autocommit, application_name=application
    )


def pid_of(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.backend_pid)


def wait_until(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def is_waiting_on_lock(server: Postgres, pid: int) -> bool:
    with superuser(server) as conn:
        row = conn.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return bool(row and row[0])


def backend_exists(server: Postgres, pid: int) -> bool:
    with superuser(server) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            is not None
        )


class Background:
    """A statement run on its own connection in a thread (it blocks: a lock wait, a pg_sleep)."""

    def __init__(self, conn: psycopg.Connection[Any], statement: str) -> None:
        self.conn = conn
        self.pid = pid_of(conn)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(statement,), daemon=True)
        self.thread.start()

    def _run(self, statement: str) -> None:
        try:
            self.conn.execute(statement)
            self.conn.commit()
        except BaseException as exc:  # the test inspects it
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 15) -> bool:
        return self.done.wait(timeout)


def table_exists(server: Postgres, db: str, schema: str, table: str) -> bool:
    with superuser(server, db) as conn:
        row = conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
            (schema, table),
        ).fetchone()
    return bool(row and row[0])


def make_bloat(server: Postgres, db: str, table: str = "items", rows: int = 20000) -> None:
    """Mass UPDATEs with autovacuum off: dead tuples pile up (the stats flush on disconnect)."""
    with app_session(server, db, autocommit=True) as conn:
        ident = sql.Identifier(table)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)"
            ).format(ident)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, 0 FROM generate_series(1, %s) g").format(ident),
            (rows,),
        )
        conn.execute(sql.SQL("UPDATE {} SET v = v + 1").format(ident))
        conn.execute(sql.SQL("UPDATE {} SET v = v + 1").format(ident))
