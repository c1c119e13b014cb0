"""The SQL store: change log, approval records, incident records, kill switch.

SQLAlchemy Core over SQLite (default) or PostgreSQL (psycopg 3), with the same schema and queries.
The change log and approval records are append-only, enforced by triggers in the database itself;
a rollback is a new change that names the one it undoes (``rollback_of``).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from core.models import ApprovalRecord, ChangeRecord, ChangeResult, IncidentState

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite has no timezone type)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("change_id", sa.String(64), primary_key=True),
    sa.Column("incident_id", sa.String(200), nullable=False, index=True),
    sa.Column("workflow_id", sa.String(200), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("step", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=False, index=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("level_reasons", sa.JSON, nullable=False),
    sa.Column("approval", sa.String(16), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("before_state", sa.JSON, nullable=False),
    sa.Column("after_state", sa.JSON, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("preview", sa.Text, nullable=False),
    sa.Column("reversibility", sa.String(16), nullable=False),
    sa.Column("rollback_action", sa.String(100), nullable=False),
    sa.Column("rollback_params", sa.JSON, nullable=False),
    sa.Column("rollback_of", sa.String(64), nullable=False, index=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_key", sa.String(300), nullable=False, unique=True),
    sa.Column("workflow_id", sa.String(200), nullable=False, index=True),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("via", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("alert", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("service", sa.String(50), nullable=False),
    sa.Column("target", sa.String(300), nullable=False, index=True),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("phase", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("state", sa.JSON, nullable=False),
)

control = sa.Table(
    "control",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

control_events = sa.Table(
    "control_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workflow_id", sa.String(200), nullable=False, index=True),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

# --- Telegram (migration 3): callback tokens, sent approval messages, refused presses ---------

telegram_callbacks = sa.Table(
    "telegram_callbacks",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("message_key", sa.String(100), nullable=False, index=True),
    sa.Column("verb", sa.String(16), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

telegram_messages = sa.Table(
    "telegram_messages",
    metadata,
    sa.Column("message_key", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False, index=True),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.BigInteger, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(300), nullable=False),
    sa.Column("edited", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
)

telegram_refusals = sa.Table(
    "telegram_refusals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=True),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=True),
    sa.Column("data", sa.String(300), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("action_id", sa.String(64), nullable=False),
)

# --- LLM planner (migration 4): per-call usage ledger (monthly budget) and response cache ------

llm_usage = sa.Table(
    "llm_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("month", sa.String(7), nullable=False, index=True),
    sa.Column("incident_id", sa.String(200), nullable=False, index=True),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("tokens_in", sa.Integer, nullable=False),
    sa.Column("tokens_out", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("cached", sa.Boolean, nullable=False),
)

llm_cache = sa.Table(
    "llm_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

APPEND_ONLY = ("changes", "approvals", "control_events")


def _append_only_sqlite(conn: Connection) -> None:
    for table in APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _append_only_postgres(conn: Connection) -> None:
    conn.exec_driver_sql(
        "CREATE OR REPLACE FUNCTION homelab_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION homelab_append_only()"
        )


def _m1_initial(conn: Connection) -> None:
    metadata.create_all(
        conn,
        tables=[changes, approvals, incidents, control, control_events, feedback],
    )


def _m2_append_only(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        _append_only_sqlite(conn)
    else:
        _append_only_postgres(conn)


def _m3_telegram(conn: Connection) -> None:
    """Telegram bot state; refused presses are an audit trail, so append-only like approvals."""
    metadata.create_all(conn, tables=[telegram_callbacks, telegram_messages, telegram_refusals])
    if conn.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS telegram_refusals_no_{op.lower()} BEFORE {op} "
                "ON telegram_refusals BEGIN SELECT RAISE(ABORT, "
                "'telegram_refusals is append-only'); END"
            )
    else:  # homelab_append_only() exists since migration 2
        conn.exec_driver_sql(
            "CREATE TRIGGER telegram_refusals_append_only BEFORE UPDATE OR DELETE "
            "ON telegram_refusals FOR EACH ROW EXECUTE FUNCTION homelab_append_only()"
        )


def _m4_llm(conn: Connection) -> None:
    metadata.create_all(conn, tables=[llm_usage, llm_cache])


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m1_initial),
    (2, "append-only triggers", _m2_append_only),
    (3, "telegram bot state", _m3_telegram),
    (4, "llm usage ledger and response cache", _m4_llm),
]


def engine_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _row_change(row: sa.Row[Any], rolled_back_by: str = "") -> ChangeRecord:
    m = row._mapping
    return ChangeRecord(
        change_id=m["change_id"],
        incident_id=m["incident_id"],
        workflow_id=m["workflow_id"],
        run_id=m["run_id"],
        at=m["at"],
        step=m["step"],
        action=m["action"],
        target=m["target"],
        params=m["params"],
        level=m["level"],
        level_reasons=m["level_reasons"],
        approval=m["approval"],
        approver=m["approver"],
        dry_run=m["dry_run"],
        before=m["before_state"],
        after=m["after_state"],
        result=m["result"],
        error=m["error"],
        preview=m["preview"],
        reversibility=m["reversibility"],
        rollback_action=m["rollback_action"],
        rollback_params=m["rollback_params"],
        rollback_of=m["rollback_of"],
        rolled_back_by=rolled_back_by,
        started_at=m["started_at"],
        finished_at=m["finished_at"],
    )


class Store:
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
        """Apply pending migrations in order; safe to call from several processes."""
        if self._migrated:
            return []
        with self._lock:
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
            self._migrated = True
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

    # --- change log ------------------------------------------------------------------------

    def record_change(self, record: ChangeRecord) -> bool:
        values = {
            "change_id": record.change_id,
            "incident_id": record.incident_id,
            "workflow_id": record.workflow_id,
            "run_id": record.run_id,
            "at": record.at,
            "step": record.step,
            "action": record.action,
            "target": record.target,
            "params": _json(record.params),
            "level": record.level.value,
            "level_reasons": record.level_reasons,
            "approval": record.approval.value,
            "approver": record.approver,
            "dry_run": record.dry_run,
            "before_state": _json(record.before),
            "after_state": _json(record.after),
            "result": record.result.value,
            "error": record.error,
            "preview": record.preview,
            "reversibility": record.reversibility.value,
            "rollback_action": record.rollback_action,
            "rollback_params": _json(record.rollback_params),
            "rollback_of": record.rollback_of,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
        }
        with self._tx() as conn:
            return self._insert_ignore(conn, changes, values)

    def _rollback_map(self, conn: Connection, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = conn.execute(
            sa.select(changes.c.rollback_of, changes.c.change_id)
            .where(changes.c.rollback_of.in_(list(ids)))
            .where(changes.c.result == ChangeResult.APPLIED.value)
            .order_by(changes.c.at)
        )
        return {r.rollback_of: r.change_id for r in rows}

    def list_changes(
        self, incident: str | None = None, limit: int = 200, target: str | None = None
    ) -> list[ChangeRecord]:
        query = sa.select(changes).order_by(changes.c.at, changes.c.change_id).limit(limit)
        if incident:
            query = query.where(
                sa.or_(changes.c.workflow_id == incident, changes.c.incident_id == incident)
            )
        if target:
            query = query.where(changes.c.target == target)
        with self._tx() as conn:
            rows = list(conn.execute(query))
            links = self._rollback_map(conn, [r.change_id for r in rows])
        return [_row_change(r, links.get(r.change_id, "")) for r in rows]

    def get_change(self, change_id: str) -> ChangeRecord | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(changes).where(changes.c.change_id == change_id)).first()
            if row is None:
                return None
            links = self._rollback_map(conn, [change_id])
        return _row_change(row, links.get(change_id, ""))

    def count_recent_writes(self, target: str, window: timedelta = timedelta(hours=1)) -> int:
        since = datetime.now(UTC) - window
        query = (
            sa.select(sa.func.count())
            .select_from(changes)
            .where(changes.c.target == target)
            .where(changes.c.at >= since)
            .where(changes.c.result == ChangeResult.APPLIED.value)
            .where(changes.c.dry_run.is_(False))
        )
        with self._tx() as conn:
            return int(conn.execute(query).scalar() or 0)

    # --- approvals -------------------------------------------------------------------------

    def record_approval(self, workflow_id: str, record: ApprovalRecord) -> bool:
        key = f"{workflow_id}|{record.action_id}|{record.verdict.value}|{record.approver}|{record.at.isoformat()}"
        values = {
            "record_key": key[:300],
            "workflow_id": workflow_id,
            "action_id": record.action_id,
            "verdict": record.verdict.value,
            "approver": record.approver,
            "via": record.via,
            "reason": record.reason,
            "accepted": record.accepted,
            "at": record.at,
        }
        with self._tx() as conn:
            return self._insert_ignore(conn, approvals, values)

    def list_approvals(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(approvals).order_by(approvals.c.at, approvals.c.id)
        if workflow_id:
            query = query.where(approvals.c.workflow_id == workflow_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- incidents -------------------------------------------------------------------------

    def record_incident(self, state: IncidentState, run_id: str) -> None:
        triage = state.triage
        values = {
            "workflow_id": state.workflow_id,
            "run_id": run_id,
            "alert": state.alert.name,
            "fingerprint": state.alert.fingerprint,
            "service": triage.service if triage else "",
            "target": str(triage.target) if triage and triage.target else "",
            "severity": state.alert.severity,
            "phase": state.phase.value,
            "outcome": state.outcome.value if state.outcome else "",
            "opened_at": state.opened_at,
            "closed_at": state.closed_at,
            "state": json.loads(state.model_dump_json()),
        }
        with self._tx() as conn:
            key = (incidents.c.workflow_id == state.workflow_id) & (incidents.c.run_id == run_id)
            if conn.execute(sa.select(incidents.c.run_id).where(key)).first():
                conn.execute(incidents.update().where(key).values(**values))
            else:
                conn.execute(incidents.insert().values(**values))

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(incidents).order_by(incidents.c.opened_at.desc()).limit(limit)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_incident(self, workflow_id: str) -> IncidentState | None:
        query = (
            sa.select(incidents.c.state)
            .where(incidents.c.workflow_id == workflow_id)
            .order_by(incidents.c.opened_at.desc())
            .limit(1)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return IncidentState.model_validate(row.state) if row else None

    # --- kill switch -----------------------------------------------------------------------

    def set_paused(self, paused: bool, actor: str, reason: str = "") -> None:
        now = datetime.now(UTC)
        value = "paused" if paused else "running"
        with self._tx() as conn:
            exists = conn.execute(sa.select(control.c.key).where(control.c.key == "writes")).first()
            row = {"value": value, "updated_by": actor, "updated_at": now}
            if exists:
                conn.execute(control.update().where(control.c.key == "writes").values(**row))
            else:
                conn.execute(control.insert().values(key="writes", **row))
            conn.execute(
                control_events.insert().values(
                    key="writes", value=value, actor=actor, reason=reason, at=now
                )
            )

    def paused(self) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(sa.select(control).where(control.c.key == "writes")).first()
        if row is None:
            return {"paused": False, "by": "", "at": None}
        return {"paused": row.value == "paused", "by": row.updated_by, "at": row.updated_at}

    # --- feedback --------------------------------------------------------------------------

    def record_feedback(self, workflow_id: str, action_id: str, rating: int, user: str) -> None:
        with self._tx() as conn:
            conn.execute(
                feedback.insert().values(
                    workflow_id=workflow_id,
                    action_id=action_id,
                    rating=rating,
                    user=user,
                    at=datetime.now(UTC),
                )
            )

    def list_feedback(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(feedback).order_by(feedback.c.at, feedback.c.id)
        if workflow_id:
            query = query.where(feedback.c.workflow_id == workflow_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- telegram --------------------------------------------------------------------------

    def telegram_tokens(
        self, message_key: str, workflow_id: str, action_id: str, chat_id: int, verbs: list[str]
    ) -> dict[str, str]:
        """One opaque random callback token per button of a message (reused on a resend)."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(telegram_callbacks.c.verb, telegram_callbacks.c.token).where(
                    telegram_callbacks.c.message_key == message_key
                )
            ).all()
            tokens = {r.verb: r.token for r in rows}
            for verb in verbs:
                if verb not in tokens:
                    tokens[verb] = secrets.token_urlsafe(16)
                    conn.execute(
                        telegram_callbacks.insert().values(
                            token=tokens[verb],
                            message_key=message_key,
                            verb=verb,
                            workflow_id=workflow_id,
                            action_id=action_id,
                            chat_id=chat_id,
                            created_at=datetime.now(UTC),
                        )
                    )
        return {verb: tokens[verb] for verb in verbs}

    def telegram_token(self, token: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(telegram_callbacks).where(telegram_callbacks.c.token == token)
            ).first()
        return dict(row._mapping) if row else None

    def telegram_save_message(
        self,
        message_key: str,
        kind: str,
        workflow_id: str,
        action_id: str,
        chat_id: int,
        message_id: int | None,
        payload: dict[str, Any],
    ) -> None:
        """Remember a sent message (insert, or fill in the message id of an earlier attempt)."""
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(telegram_messages.c.message_key).where(
                    telegram_messages.c.message_key == message_key
                )
            ).first()
            if exists:
                conn.execute(
                    telegram_messages.update()
                    .where(telegram_messages.c.message_key == message_key)
                    .values(message_id=message_id, payload=_json(payload))
                )
                return
            conn.execute(
                telegram_messages.insert().values(
                    message_key=message_key,
                    kind=kind,
                    workflow_id=workflow_id,
                    action_id=action_id,
                    chat_id=chat_id,
                    message_id=message_id,
                    payload=_json(payload),
                    status="open",
                    verdict="",
                    decided_by="",
                    edited=False,
                    created_at=datetime.now(UTC),
                )
            )

    def telegram_message(self, message_key: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(telegram_messages).where(telegram_messages.c.message_key == message_key)
            ).first()
        return dict(row._mapping) if row else None

    def telegram_open_messages(self, workflow_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(telegram_messages)
            .where(telegram_messages.c.workflow_id == workflow_id)
            .where(telegram_messages.c.status == "open")
            .order_by(telegram_messages.c.created_at)
        )
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def telegram_close_message(self, message_key: str, verdict: str, decided_by: str) -> bool:
        """Mark an approval message decided; False if it already was (first writer wins)."""
        with self._tx() as conn:
            result = conn.execute(
                telegram_messages.update()
                .where(telegram_messages.c.message_key == message_key)
                .where(telegram_messages.c.status == "open")
                .values(
                    status="closed",
                    verdict=verdict,
                    decided_by=decided_by,
                    closed_at=datetime.now(UTC),
                )
            )
            return bool(result.rowcount)

    def telegram_claim_edit(self, message_key: str) -> bool:
        """Take the one edit of a decided approval message; False if another process has it (the
        bot and the notifier both finish a message, and Telegram refuses an identical re-edit)."""
        with self._tx() as conn:
            result = conn.execute(
                telegram_messages.update()
                .where(telegram_messages.c.message_key == message_key)
                .where(telegram_messages.c.edited.is_(False))
                .values(edited=True)
            )
            return bool(result.rowcount)

    def telegram_release_edit(self, message_key: str) -> None:
        """Give the edit back after it failed, so a retry (or the other process) can make it."""
        with self._tx() as conn:
            conn.execute(
                telegram_messages.update()
                .where(telegram_messages.c.message_key == message_key)
                .values(edited=False)
            )

    def telegram_refusal(
        self,
        *,
        kind: str,
        user_id: int | None,
        username: str,
        chat_id: int | None,
        data: str,
        reason: str,
        workflow_id: str = "",
        action_id: str = "",
    ) -> None:
        """Audit a refused press or command (append-only)."""
        with self._tx() as conn:
            conn.execute(
                telegram_refusals.insert().values(
                    at=datetime.now(UTC),
                    kind=kind,
                    user_id=user_id,
                    username=username[:200],
                    chat_id=chat_id,
                    data=data[:300],
                    reason=reason,
                    workflow_id=workflow_id[:200],
                    action_id=action_id[:64],
                )
            )

    def telegram_refusals(self, limit: int = 1000) -> list[dict[str, Any]]:
        query = (
            sa.select(telegram_refusals)
            .order_by(telegram_refusals.c.at, telegram_refusals.c.id)
            .limit(limit)
        )
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- LLM planner: usage ledger (monthly budget) and response cache ------------------------

    def record_llm_usage(
        self,
        *,
        incident_id: str,
        provider: str,
        model: str,
        outcome: str,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
        latency_s: float = 0.0,
        cached: bool = False,
        at: datetime | None = None,
    ) -> None:
        """One LLM call (or cache hit); every real call counts, failed ones included."""
        when = at or datetime.now(UTC)
        with self._tx() as conn:
            conn.execute(
                llm_usage.insert().values(
                    at=when,
                    month=when.astimezone(UTC).strftime("%Y-%m"),
                    incident_id=incident_id,
                    provider=provider,
                    model=model,
                    outcome=outcome,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cost_usd=cost_usd,
                    latency_s=latency_s,
                    cached=cached,
                )
            )

    def llm_month_spend(self, month: str | None = None) -> float:
        """USD recorded in a calendar month (UTC, ``YYYY-MM``; default the current one)."""
        month = month or datetime.now(UTC).strftime("%Y-%m")
        query = sa.select(sa.func.coalesce(sa.func.sum(llm_usage.c.cost_usd), 0.0)).where(
            llm_usage.c.month == month
        )
        with self._tx() as conn:
            return float(conn.execute(query).scalar() or 0.0)

    def list_llm_usage(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(llm_usage).order_by(llm_usage.c.at, llm_usage.c.id)
        if incident_id:
            query = query.where(llm_usage.c.incident_id == incident_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def llm_cache_get(self, key: str) -> str | None:
        query = (
            sa.select(llm_cache.c.response)
            .where(llm_cache.c.key == key)
            .where(llm_cache.c.expires_at > datetime.now(UTC))
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return str(row.response) if row else None

    def llm_cache_put(self, key: str, model: str, response: str, ttl: timedelta) -> None:
        now = datetime.now(UTC)
        values = {
            "key": key,
            "model": model,
            "response": response,
            "created_at": now,
            "expires_at": now + ttl,
        }
        with self._tx() as conn:
            conn.execute(llm_cache.delete().where(llm_cache.c.expires_at <= now))
            stmt: Any
            if conn.dialect.name == "postgresql":
                stmt = pg_insert(llm_cache).values(**values)
            else:
                stmt = sqlite_insert(llm_cache).values(**values)
            update = {
                k: stmt.excluded[k] for k in ("model", "response", "created_at", "expires_at")
            }
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=update))


def _json(value: Any) -> Any:
    """Round-trip through JSON so datetimes and other objects are stored as plain values."""
    return json.loads(json.dumps(value, default=str))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
