"""The store's engine, transactions and migrations; each job's methods live in their own module."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from activities.store.schema import MIGRATIONS, grant_runtime, schema_migrations


def engine_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class StoreError(Exception):
    """The store cannot be used as configured (phrased for the user)."""


def _engine(url: str) -> Engine:
    full = engine_url(url)
    kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
    if full.startswith("sqlite"):
        path = full.split("///", 1)[1] if "///" in full else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = sa.create_engine(full, **kwargs)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class StoreBase:
    """Synchronous store; activities call it through ``asyncio.to_thread``.

    ``url`` is the run-time role. ``owner_url``, when given, is the role that owns the schema:
    migrations run as it, then it grants the run-time role what it needs and no more (PostgreSQL).
    Without it, the run-time role migrates (SQLite, or a single PostgreSQL role).
    """

    def __init__(self, url: str, owner_url: str | None = None) -> None:
        self.url = url
        self.owner_url = owner_url
        self.engine: Engine = _engine(url)
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self, *, exclusive: bool = False) -> Iterator[Connection]:
        """A transaction; ``exclusive`` on SQLite takes the database's write lock at once
        (BEGIN IMMEDIATE), so what it reads cannot change before it writes."""
        self.migrate()
        with self.engine.begin() as conn:
            if exclusive and conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def _applied(self, conn: Connection) -> set[int]:
        if not sa.inspect(conn).has_table(schema_migrations.name):
            return set()
        return set(conn.execute(sa.select(schema_migrations.c.version)).scalars())

    def pending(self) -> list[int]:
        """Migrations this code has that the database has not (read-only)."""
        with self.engine.connect() as conn:
            done = self._applied(conn)
        return [version for version, _, _ in MIGRATIONS if version not in done]

    def migrate(self) -> list[int]:
        """Apply pending migrations in order (as the owner when there is one, then re-grant the
        run-time role); safe to call from several processes. Returns the versions applied."""
        if self._migrated:
            return []
        with self._lock:
            if self._migrated:
                return []
            if self.owner_url is None and not self.pending():
                self._migrated = True
                return []
            owner = _engine(self.owner_url) if self.owner_url else self.engine
            try:
                applied = self._apply_retrying(owner)
            except sa.exc.ProgrammingError as exc:
                if self.owner_url is None and "permission denied" in str(exc).lower():
                    raise StoreError(
                        f"the store needs migrations {self.pending()} and its role may not "
                        "change the schema: run `homelab-agents migrate` with store.owner_url"
                    ) from exc
                raise
            finally:
                if owner is not self.engine:
                    owner.dispose()
            self._migrated = True
            return applied

    def _apply_retrying(self, owner: Engine) -> list[int]:
        """SQLite: a process that loses the race for the write lock retries, then reads what the
        winner applied (PostgreSQL waits on the advisory lock instead)."""
        for attempt in range(10):
            try:
                return self._apply(owner)
            except (sa.exc.IntegrityError, sa.exc.OperationalError):
                if owner.dialect.name != "sqlite" or attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _apply(self, owner: Engine) -> list[int]:
        applied: list[int] = []
        with owner.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724201)")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            schema_migrations.create(conn, checkfirst=True)
            done = self._applied(conn)
            for version, name, step in MIGRATIONS:
                if version in done:
                    continue
                step(conn)
                conn.execute(
                    schema_migrations.insert().values(
                        version=version, name=name, applied_at=datetime.now(UTC)
                    )
                )
                applied.append(version)
            if postgres and owner is not self.engine:
                role = self._runtime_role()
                if role != conn.exec_driver_sql("SELECT current_user").scalar():
                    grant_runtime(conn, role)
        return applied

    def _runtime_role(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT current_user").scalar())

    def schema_version(self) -> int:
        self.migrate()
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0
            )

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert unless the key exists (idempotent activity retries); True if inserted."""
        stmt: Any
        if conn.dialect.name == "postgresql":
            stmt = pg_insert(table).values(**values).on_conflict_do_nothing()
        else:
            stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing()
        stmt = stmt.returning(*table.primary_key.columns)
        return conn.execute(stmt).first() is not None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """The busy timeout first, so what follows waits for another process's lock; switching a new
    file to WAL can still be refused at once while another process does it: retried."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
