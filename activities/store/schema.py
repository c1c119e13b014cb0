"""The store's tables and its versioned migrations (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from activities.store.chain import GENESIS, link_hash

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
    # the hash chain (migration 8; activities/store/chain.py): position, link, own hash
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=True),
    sa.Column("row_hash", sa.String(64), nullable=True),
    sa.Index("changes_seq", "seq", unique=True),
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

# --- learning (migration 9): verified outcomes per action, learned restrictions, accepted
# overrides. Outcomes are derived from each closed incident's record (rewritten if the record is);
# restrictions and overrides are policy state whose every change is also in the change log.

action_outcomes = sa.Table(
    "action_outcomes",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("action_id", sa.String(64), primary_key=True),
    sa.Column("change_id", sa.String(64), nullable=False, index=True),
    sa.Column("alert", sa.String(200), nullable=False),
    sa.Column("service", sa.String(50), nullable=False),
    sa.Column("target_kind", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("approval", sa.String(16), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("verified", sa.Boolean, nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_action_outcomes_group", "alert", "target_kind", "at"),
    sa.Index("ix_action_outcomes_target", "action", "target"),
)

learned_restrictions = sa.Table(
    "learned_restrictions",
    metadata,
    sa.Column("action", sa.String(100), primary_key=True),
    sa.Column("target", sa.String(300), primary_key=True),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("cleared_by", sa.String(200), nullable=False),
    sa.Column("cleared_at", UTCDateTime, nullable=True),
)

policy_overrides = sa.Table(
    "policy_overrides",
    metadata,
    sa.Column("action", sa.String(100), primary_key=True),
    sa.Column("target", sa.String(300), primary_key=True),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("accepted_by", sa.String(200), nullable=False),
    sa.Column("accepted_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("change_id", sa.String(64), nullable=False),
)

# --- intake outbox (migration 10): alerts accepted by the intake, until Temporal has them -------

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

# --- problems (migration 11): one incident per problem, and which alerts joined it ------------

problems = sa.Table(
    "problems",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("target", sa.String(300), nullable=False, index=True),
    sa.Column("incident_type", sa.String(100), nullable=False),
    sa.Column("owner_workflow_id", sa.String(200), nullable=False),
    sa.Column("owner_run_id", sa.String(64), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("open", sa.Boolean, nullable=False),
)

problem_alerts = sa.Table(
    "problem_alerts",
    metadata,
    sa.Column("fingerprint", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(400), nullable=False, index=True),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("joined_at", UTCDateTime, nullable=False),
)

APPEND_ONLY = ("changes", "approvals", "control_events")
AUDIT_TABLES = (*APPEND_ONLY, "telegram_refusals")
"""Append-only, by triggers on UPDATE, DELETE and (PostgreSQL) TRUNCATE; the run-time role may
only SELECT and INSERT them."""


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


def _m7_no_truncate(conn: Connection) -> None:
    """TRUNCATE skips row triggers: a statement trigger refuses it (PostgreSQL). SQLite has no
    TRUNCATE; its ``DELETE FROM t`` fires the row triggers (the truncate optimisation is off
    whenever a table has triggers)."""
    if conn.dialect.name != "postgresql":
        return
    for table in AUDIT_TABLES:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION homelab_append_only()"
        )


def _m8_change_chain(conn: Connection) -> None:
    """Hash-chain the change log: add the columns, then chain the rows already there in the
    order they were recorded (the one UPDATE the change log ever sees, by its owner)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("changes")}
    for name, kind in (
        ("seq", "BIGINT"),
        ("prev_hash", "VARCHAR(64)"),
        ("row_hash", "VARCHAR(64)"),
    ):
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE changes ADD COLUMN {name} {kind}")
    conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS changes_seq ON changes (seq)")
    rows = list(
        conn.execute(
            sa.select(changes)
            .where(changes.c.seq.is_(None))
            .order_by(changes.c.at, changes.c.change_id)
        )
    )
    if not rows:
        return
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.exec_driver_sql("ALTER TABLE changes DISABLE TRIGGER changes_append_only")
    else:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS changes_no_update")
    prev = GENESIS
    for seq, row in enumerate(rows, start=1):
        values = {**row._mapping, "seq": seq}
        digest = link_hash(prev, values)
        conn.execute(
            changes.update()
            .where(changes.c.change_id == row.change_id)
            .values(seq=seq, prev_hash=prev, row_hash=digest)
        )
        prev = digest
    if postgres:
        conn.exec_driver_sql("ALTER TABLE changes ENABLE TRIGGER changes_append_only")
    else:
        _append_only_sqlite(conn)


def grant_runtime(conn: Connection, role: str) -> None:
    """PostgreSQL: what the run-time role may do, re-stated after every migration by the owner.
    The audit tables: SELECT and INSERT only (no UPDATE, DELETE, TRUNCATE, no DDL); the other
    tables: reads and writes of rows; the migrations table: read."""
    quoted = conn.dialect.identifier_preparer.quote(role)
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    for table in metadata.sorted_tables:
        name = table.name
        conn.exec_driver_sql(f"REVOKE ALL ON {name} FROM {quoted}")
        if name == schema_migrations.name:
            rights = "SELECT"
        elif name in AUDIT_TABLES:
            rights = "SELECT, INSERT"
        else:
            rights = "SELECT, INSERT, UPDATE, DELETE"
        conn.exec_driver_sql(f"GRANT {rights} ON {name} TO {quoted}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}")
    conn.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {quoted}")


def _m9_learning(conn: Connection) -> None:
    metadata.create_all(conn, tables=[action_outcomes, learned_restrictions, policy_overrides])
    # Flapping looks up recent fixes of one alert on one target.
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_incidents_alert_target ON incidents (alert, target)"
    )


def _m10_alert_outbox(conn: Connection) -> None:
    metadata.create_all(conn, tables=[alert_outbox])


def _m11_problems(conn: Connection) -> None:
    metadata.create_all(conn, tables=[problems, problem_alerts])


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m1_initial),
    (2, "append-only triggers", _m2_append_only),
    (3, "telegram bot state", _m3_telegram),
    (4, "llm usage ledger and response cache", _m4_llm),
    (5, "target locks and their waiters", _m5_target_locks),
    (6, "scheduled findings", _m6_findings),
    (7, "no TRUNCATE of the audit tables", _m7_no_truncate),
    (8, "change log hash chain", _m8_change_chain),
    (9, "learning: action outcomes, learned restrictions, accepted overrides", _m9_learning),
    (10, "intake outbox", _m10_alert_outbox),
    (11, "problems and the alerts that joined them", _m11_problems),
]


def as_json(value: Any) -> Any:
    """Round-trip through JSON so datetimes and other objects are stored as plain values."""
    return json.loads(json.dumps(value, default=str))
