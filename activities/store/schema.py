"""The store's tables and its versioned migrations (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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

# --- target locks (migration 5): one writer per target, held while its incident runs ----------

target_locks = sa.Table(
    "target_locks",
    metadata,
    sa.Column("target", sa.String(300), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("holder_workflow_id", sa.String(200), nullable=False),
    sa.Column("holder_run_id", sa.String(64), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
)

lock_waiters = sa.Table(
    "lock_waiters",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(300), nullable=False, index=True),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
)

# --- scheduled findings (migration 6): which findings are firing, since when, last routed ------

findings = sa.Table(
    "findings",
    metadata,
    sa.Column("fingerprint", sa.String(128), primary_key=True),
    sa.Column("schedule", sa.String(64), nullable=False, index=True),
    sa.Column("alert", sa.String(200), nullable=False),
    sa.Column("key", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("last_routed", UTCDateTime, nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
)

# --- intake outbox (migration 7): alerts accepted by the intake, until Temporal has them -------

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    # uuid-shaped hash of (fingerprint, status, startsAt): the dedup key and Temporal's request id
    sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("alert", sa.JSON, nullable=False),
    sa.Column("accepted_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # pending, delivered, refused
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("done_at", UTCDateTime, nullable=True, index=True),
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


def _m5_target_locks(conn: Connection) -> None:
    metadata.create_all(conn, tables=[target_locks, lock_waiters])


def _m6_findings(conn: Connection) -> None:
    metadata.create_all(conn, tables=[findings])


def _m7_alert_outbox(conn: Connection) -> None:
    metadata.create_all(conn, tables=[alert_outbox])


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m1_initial),
    (2, "append-only triggers", _m2_append_only),
    (3, "telegram bot state", _m3_telegram),
    (4, "llm usage ledger and response cache", _m4_llm),
    (5, "target locks and their waiters", _m5_target_locks),
    (6, "scheduled findings", _m6_findings),
    (7, "intake outbox", _m7_alert_outbox),
]


def as_json(value: Any) -> Any:
    """Round-trip through JSON so datetimes and other objects are stored as plain values."""
    return json.loads(json.dumps(value, default=str))
