"""The Telegram bot's state: callback tokens, sent messages, refused presses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from activities.store.base import StoreBase
from activities.store.schema import (
    as_json,
    telegram_callbacks,
    telegram_messages,
    telegram_refusals,
)


class TelegramState(StoreBase):
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
                    .values(message_id=message_id, payload=as_json(payload))
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
                    payload=as_json(payload),
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
