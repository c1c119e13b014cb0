"""The store's engine, transactions and migrations; each job's methods live in their own module."""

from __future__ import annotations

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

from activities.store.schema import MIGRATIONS, schema_migrations


def engine_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class StoreBase:
    """Synchronous store; activities call it through ``asyncio.to_thread``."""

    def __init__(self, url: str) -> None:
        self.url = url
        full = engine_url(url)
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if full.startswith("sqlite"):
            path = full.split("///", 1)[1] if "///" in full else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = sa.create_engine(full, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        self.migrate()
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> list[int]:
        """Apply pending migrations in order; safe to call from several processes (PostgreSQL:
        an advisory lock; SQLite: a process that loses the race to write rolls back and reads
        what the winner applied)."""
        if self._migrated:
            return []
        with self._lock:
            for attempt in range(10):
                try:
                    applied = self._migrate_once()
                    break
                except (sa.exc.IntegrityError, sa.exc.OperationalError):
                    if self.engine.dialect.name != "sqlite" or attempt == 9:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self._migrated = True
            return applied

    def _migrate_once(self) -> list[int]:
        applied: list[int] = []
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724201)")
            schema_migrations.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(schema_migrations.c.version)).scalars())
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
        return applied

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
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
