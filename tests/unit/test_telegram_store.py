"""Telegram bot state in the SQL store (migration 3) on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from activities.store import Store
from workers.lab.postgres import Postgres


def exercise_telegram(store: Store) -> None:
    tokens = store.telegram_tokens("ap:1", "incident-a", "a1", -100, ["approve", "deny", "info"])
    assert len(set(tokens.values())) == 3
    assert all(len(t) == 22 and len(t.encode()) <= 64 for t in tokens.values())
    # A resend of the same message reuses its tokens; another message gets its own.
    assert store.telegram_tokens("ap:1", "incident-a", "a1", -100, ["approve", "deny", "info"]) == (
        tokens
    )
    assert (
        store.telegram_tokens("ap:2", "incident-a", "a1", -100, ["approve"])["approve"]
        != (tokens["approve"])
    )
    row = store.telegram_token(tokens["deny"])
    assert row is not None
    assert (row["verb"], row["workflow_id"], row["action_id"], row["chat_id"]) == (
        "deny",
        "incident-a",
        "a1",
        -100,
    )
    assert store.telegram_token("no-such-token") is None

    big_chat = -1001234567890123  # supergroup ids exceed 32 bits
    store.telegram_save_message("ap:1", "approval", "incident-a", "a1", big_chat, None, {"k": 1})
    store.telegram_save_message("ap:1", "approval", "incident-a", "a1", big_chat, 42, {"k": 2})
    message = store.telegram_message("ap:1")
    assert message is not None
    assert (message["message_id"], message["chat_id"], message["payload"]) == (
        42,
        big_chat,
        {"k": 2},
    )
    assert [m["message_key"] for m in store.telegram_open_messages("incident-a")] == ["ap:1"]
    assert store.telegram_close_message("ap:1", "approved", "Alice (telegram:1)")
    assert not store.telegram_close_message("ap:1", "timeout", "")  # the first decision stands
    closed = store.telegram_message("ap:1")
    assert closed is not None and (closed["verdict"], closed["decided_by"]) == (
        "approved",
        "Alice (telegram:1)",
    )
    assert store.telegram_open_messages("incident-a") == []
    assert store.telegram_claim_edit("ap:1") is True
    assert store.telegram_claim_edit("ap:1") is False  # one edit per message, whoever comes first
    assert store.telegram_message("ap:1")["edited"] is True  # type: ignore[index]
    store.telegram_release_edit("ap:1")  # the edit failed: the next caller may make it
    assert store.telegram_claim_edit("ap:1") is True

    store.telegram_refusal(
        kind="callback",
        user_id=666,
        username="mallory",
        chat_id=big_chat,
        data="x" * 500,
        reason="not an approver",
        workflow_id="incident-a",
        action_id="a1",
    )
    [refusal] = store.telegram_refusals()
    assert (refusal["user_id"], refusal["reason"], len(refusal["data"])) == (
        666,
        "not an approver",
        300,
    )
    for statement in (
        "UPDATE telegram_refusals SET reason = 'ok'",
        "DELETE FROM telegram_refusals",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(sa.text(statement))

    store.record_feedback("incident-a", "a1", 1, "telegram:1")
    assert [(f["action_id"], f["rating"]) for f in store.list_feedback("incident-a")] == [("a1", 1)]


def test_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    exercise_telegram(store)
    store.close()


@pytest.mark.integration
def test_postgres(postgres: Postgres) -> None:
    name = f"tg_{uuid.uuid4().hex[:8]}"
    postgres.createdb(name)
    store = Store(postgres.url(name))
    exercise_telegram(store)
    store.close()
