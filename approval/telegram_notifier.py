"""The Telegram notification channel: incident events, approval requests with buttons, feedback.

Runs inside the ``notify.event`` activity, which the workflow treats as best-effort: a failure here
is raised (so Temporal retries it a few times) and never fails the incident. Flood control is
honoured: a 429 makes this process wait the ``retry_after`` Telegram asked for, inside the
activity's time budget; past the budget it raises without calling Telegram again, and later calls
in the process keep waiting out the same ban instead of hammering the API.

Callback data are opaque random tokens (22 characters) stored server-side with the incident,
action and verb they stand for, so a button cannot be forged or edited into another incident's
decision, and every button fits Telegram's 64-byte limit. The approval message's id is stored too,
so whichever process sees the decision first (the bot after a press, or this channel on
``approval_closed``, e.g. after a CLI decision or the auto-deny timer) edits it to the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from approval.telegram_format import Doc, approval_text, clip, note_text, verdict_doc
from core.config import TelegramSettings
from core.models import ApprovalRequest, IncidentState, Notification

log = logging.getLogger(__name__)

T = TypeVar("T")

APPROVAL_VERBS = ["approve", "deny", "info"]
FEEDBACK_BUTTONS = 4  # actions offered for 👍/👎 on a resolution message
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class TelegramStore(Protocol):
    """The store methods the Telegram code uses (activities.store.Store provides them)."""

    def telegram_tokens(
        self, message_key: str, workflow_id: str, action_id: str, chat_id: int, verbs: list[str]
    ) -> dict[str, str]: ...

    def telegram_token(self, token: str) -> dict[str, Any] | None: ...

    def telegram_save_message(
        self,
        message_key: str,
        kind: str,
        workflow_id: str,
        action_id: str,
        chat_id: int,
        message_id: int | None,
        payload: dict[str, Any],
    ) -> None: ...

    def telegram_message(self, message_key: str) -> dict[str, Any] | None: ...

    def telegram_open_messages(self, workflow_id: str) -> list[dict[str, Any]]: ...

    def telegram_close_message(self, message_key: str, verdict: str, decided_by: str) -> bool: ...

    def telegram_claim_edit(self, message_key: str) -> bool: ...

    def telegram_release_edit(self, message_key: str) -> None: ...

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
    ) -> None: ...

    def list_approvals(self, workflow_id: str | None = None) -> list[dict[str, Any]]: ...

    def get_incident(self, workflow_id: str) -> IncidentState | None: ...

    def record_feedback(self, workflow_id: str, action_id: str, rating: int, user: str) -> None: ...

    def paused(self) -> dict[str, Any]: ...


class DeliveryError(Exception):
    """A Telegram call that failed; the message never contains the bot token."""


def make_bot(settings: TelegramSettings) -> Bot:
    """A PTB Bot for ``telegram.base_url`` (PTB appends the token) with bounded timeouts."""
    if settings.token is None:
        raise ValueError("telegram.token is not set")
    return Bot(
        settings.token.get_secret_value(),
        base_url=settings.base_url,
        request=HTTPXRequest(
            connect_timeout=5.0, read_timeout=10.0, write_timeout=10.0, pool_timeout=5.0
        ),
    )


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in str(exc).lower()


class FloodGate:
    """Calls to the Bot API from one process, honouring 429 ``retry_after`` across calls."""

    def __init__(self, token: str = "") -> None:
        self.blocked_until = 0.0
        self.token = token

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "<token>") if self.token else text

    async def call(self, what: str, make: Callable[[], Awaitable[T]], budget: float = 12.0) -> T:
        deadline = time.monotonic() + budget
        while True:
            wait = self.blocked_until - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait > deadline:
                    raise DeliveryError(
                        f"{what}: Telegram flood control, retry in {wait:.0f}s "
                        "(beyond this attempt's budget)"
                    )
                await asyncio.sleep(wait)
            try:
                return await make()
            except RetryAfter as exc:
                seconds = max(retry_after_seconds(exc), 0.5)
                self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)
                log.warning("telegram %s: 429, retry after %.0fs", what, seconds)
            except BadRequest:
                raise
            except TelegramError as exc:
                raise DeliveryError(
                    f"{what}: {type(exc).__name__}: {self.scrub(str(exc))}"
                ) from None


def approval_key(req: ApprovalRequest) -> str:
    """One approval message per gate: the deadline tells runs of the same workflow id apart."""
    raw = f"{req.workflow_id}|{req.action.id}|{req.deadline.isoformat()}"
    return "ap:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def approval_keyboard(tokens: dict[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("✅ Approve", callback_data=tokens["approve"]),
                InlineKeyboardButton("❌ Deny", callback_data=tokens["deny"]),
            ],
            [InlineKeyboardButton("🔍 More info", callback_data=tokens["info"])],
        ]
    )


async def finish_approval_message(
    bot: Bot,
    gate: FloodGate,
    store: TelegramStore,
    message_key: str,
    verdict: str,
    decided_by: str,
) -> bool:
    """Record the outcome on the stored approval message and edit it (buttons removed).

    The first process to close the row decides the wording; later callers edit with the stored
    verdict, so the bot and the notifier converge on the same text. False if there is no message.
    """
    await asyncio.to_thread(store.telegram_close_message, message_key, verdict, decided_by)
    row = await asyncio.to_thread(store.telegram_message, message_key)
    if row is None or row["message_id"] is None:
        return False
    if not await asyncio.to_thread(store.telegram_claim_edit, message_key):
        return True  # edited already, or being edited by the other process
    req = ApprovalRequest.model_validate(row["payload"]["request"])
    text = approval_text(req, row["payload"].get("ui_url", ""), row["verdict"], row["decided_by"])
    try:
        await gate.call(
            "editMessageText",
            lambda: bot.edit_message_text(
                text,
                chat_id=row["chat_id"],
                message_id=row["message_id"],
                parse_mode=ParseMode.HTML,
                link_preview_options=NO_PREVIEW,
            ),
        )
    except BadRequest as exc:
        if not_modified(exc):
            return True
        if "not found" not in str(exc).lower():
            await asyncio.to_thread(store.telegram_release_edit, message_key)
            raise DeliveryError(f"editMessageText: {exc}") from None
        log.warning("approval message %s is gone: %s", row["message_id"], exc)
    except BaseException:
        await asyncio.to_thread(store.telegram_release_edit, message_key)
        raise
    return True


class TelegramNotifier:
    """`activities.notify.Notifier` for the configured chat."""

    name = "telegram"

    def __init__(self, settings: TelegramSettings, store: TelegramStore) -> None:
        if not settings.enabled or settings.chat_id is None or settings.token is None:
            raise ValueError("telegram needs token and chat_id")
        self.settings = settings
        self.chat_id: int = settings.chat_id
        self.store = store
        self.gate = FloodGate(settings.token.get_secret_value())
        self._bot: Bot | None = None

    async def bot(self) -> Bot:
        if self._bot is None:
            bot = make_bot(self.settings)
            await self.gate.call("getMe", bot.initialize)
            self._bot = bot
        return self._bot

    async def aclose(self) -> None:
        if self._bot is not None:
            await self._bot.shutdown()
            self._bot = None

    async def send(self, note: Notification) -> None:
        try:
            if note.kind == "approval" and note.approval is not None:
                await self._approval(note, note.approval)
            elif note.kind == "approval_closed" and note.approval is not None:
                await self._approval_closed(note, note.approval)
            elif note.kind == "resolved":
                await self._resolved(note)
            else:
                await self._send(note_text(note))
        except BadRequest as exc:
            raise DeliveryError(f"Telegram refused the {note.kind} message: {exc}") from None

    async def _send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> int:
        bot = await self.bot()
        message = await self.gate.call(
            "sendMessage",
            lambda: bot.send_message(
                self.chat_id,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                link_preview_options=NO_PREVIEW,
            ),
        )
        return int(message.message_id)

    async def _approval(self, note: Notification, req: ApprovalRequest) -> None:
        key = approval_key(req)
        row = await asyncio.to_thread(self.store.telegram_message, key)
        if row is not None and row["message_id"] is not None:
            return  # a retry after the message went out
        tokens = await asyncio.to_thread(
            self.store.telegram_tokens,
            key,
            req.workflow_id,
            req.action.id,
            self.chat_id,
            APPROVAL_VERBS,
        )
        message_id = await self._send(approval_text(req, note.ui_url), approval_keyboard(tokens))
        payload = {"request": req.model_dump(mode="json"), "ui_url": note.ui_url}
        await asyncio.to_thread(
            self.store.telegram_save_message,
            key,
            "approval",
            req.workflow_id,
            req.action.id,
            self.chat_id,
            message_id,
            payload,
        )

    async def _decided_by(self, workflow_id: str, action_id: str, verdict: str) -> str:
        if verdict in ("timeout", "not_required", "cancelled"):
            return ""
        records = await asyncio.to_thread(self.store.list_approvals, workflow_id)
        for record in reversed(records):
            if record["accepted"] and record["action_id"] == action_id:
                return f"{record['approver']} (via {record['via']})"
        return ""

    async def _approval_closed(self, note: Notification, req: ApprovalRequest) -> None:
        key = approval_key(req)
        verdict = note.verdict or "closed"
        decided_by = await self._decided_by(req.workflow_id, req.action.id, verdict)
        bot = await self.bot()
        if await finish_approval_message(bot, self.gate, self.store, key, verdict, decided_by):
            return
        # The request never reached the chat (e.g. Telegram was down): say how it ended.
        doc = Doc().add("🔏 ").b(f"Approval of {req.action.tool}").add(" on ")
        doc.code(str(req.action.target)).nl()
        doc.line("Incident ", (req.workflow_id, "code"), " · action ", (req.action.id, "code"))
        doc.extend(verdict_doc(verdict, decided_by, req))
        await self._send(doc.render())

    async def _resolved(self, note: Notification) -> None:
        state = await asyncio.to_thread(self.store.get_incident, note.workflow_id)
        actions = [
            (a.action.id, a.action.tool)
            for a in (state.actions if state else [])
            if a.result.value == "applied"
        ][:FEEDBACK_BUTTONS]
        key = f"fb:{uuid.uuid4().hex}"
        rows = []
        for action_id, tool in actions or [("", "")]:
            tokens = await asyncio.to_thread(
                self.store.telegram_tokens,
                f"{key}:{action_id}",
                note.workflow_id,
                action_id,
                self.chat_id,
                ["up", "down"],
            )
            label = clip(f" {action_id} {tool}", 40) if action_id else ""
            rows.append(
                [
                    InlineKeyboardButton(f"👍{label}", callback_data=tokens["up"]),
                    InlineKeyboardButton(f"👎{label}", callback_data=tokens["down"]),
                ]
            )
        await self._send(note_text(note), InlineKeyboardMarkup(rows))
