"""The Telegram approval bot: button presses and commands become validated workflow operations.

Every press and every state-changing command is checked twice: here (the chat must be
``telegram.chat_id``, the user ``telegram:<user id>`` must be in ``approval.approvers``, the
callback token must exist server-side) and again by the workflow's ``decide`` validator. Refusals
are answered and recorded in the store. The bot holds no incident state of its own: it reads
Temporal and the store, so a crashed or restarted bot loses nothing (Telegram keeps unconfirmed
updates for 24 hours and redelivers them).

The Temporal side is injected (`BotOps`): this layer knows the operations, not how the worker
process reaches Temporal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from telegram import Bot, BotCommand, CallbackQuery, Message, ReplyParameters, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from approval import signing
from approval.telegram_format import Doc, answer, approval_doc, clip
from approval.telegram_notifier import (
    NO_PREVIEW,
    DeliveryError,
    FloodGate,
    TelegramStore,
    finish_approval_message,
)
from core.config import Settings
from core.models import ApprovalDecision, ApprovalRecord, ApprovalRequest, IncidentState

log = logging.getLogger(__name__)

STATE_CHANGING = {"approve", "deny", "pause", "resume"}
COMMANDS = [
    ("status", "kill switch, open incidents, pending approvals"),
    ("incidents", "recent incidents"),
    ("incident", "ID: one incident in detail"),
    ("approve", "ID [ACTION]: approve the pending action"),
    ("deny", "ID [ACTION]: deny the pending action"),
    ("pause", "[REASON]: kill switch, no writes until /resume"),
    ("resume", "[REASON]: lift the kill switch"),
    ("help", "this list"),
]


class Refused(Exception):
    """An operation Temporal or the workflow refused, phrased for the user."""


@dataclass
class IncidentLine:
    workflow_id: str
    alert: str
    target: str
    phase: str
    approval: str
    status: str
    started: datetime | None


class BotOps(Protocol):
    """What the bot may do to incidents (wired to workers.operations by the bot runner)."""

    async def decide(self, ident: str, decision: ApprovalDecision) -> ApprovalRecord: ...

    async def set_paused(self, paused: bool, actor: str, reason: str) -> int: ...

    async def incidents(self, open_only: bool, limit: int) -> list[IncidentLine]: ...

    async def incident(self, ident: str) -> IncidentState: ...


def identity(user: User) -> str:
    return f"telegram:{user.id}"


def display(user: User) -> str:
    name = user.full_name or (f"@{user.username}" if user.username else "")
    return f"{name} ({identity(user)})" if name else identity(user)


class ApprovalBot:
    def __init__(self, settings: Settings, ops: BotOps, store: TelegramStore) -> None:
        if settings.telegram.chat_id is None or settings.telegram.token is None:
            raise ValueError("telegram needs token and chat_id")
        self.settings = settings
        self.chat_id: int = settings.telegram.chat_id
        self.ops = ops
        self.store = store
        # The bot signs for the Telegram users it authenticated (chat, approver list, token).
        self.signing_key = signing.ensure_key(
            settings.keys_dir, signing.TELEGRAM_SIGNER, settings.telegram.signing_key_file
        )
        self.gate = FloodGate(settings.telegram.token.get_secret_value())
        self.commands: dict[str, Callable[[Message, User, list[str]], Awaitable[str]]] = {
            "start": self.cmd_help,
            "help": self.cmd_help,
            "status": self.cmd_status,
            "incidents": self.cmd_incidents,
            "incident": self.cmd_incident,
            "approve": self.cmd_approve,
            "deny": self.cmd_deny,
            "pause": self.cmd_pause,
            "resume": self.cmd_resume,
        }

    # --- application -----------------------------------------------------------------------------

    def build(self, *, webhook: bool = False) -> Application[Any, Any, Any, Any, Any, Any]:
        tg = self.settings.telegram
        assert tg.token is not None
        builder = (
            ApplicationBuilder()
            .token(tg.token.get_secret_value())
            .base_url(tg.base_url)
            .request(
                HTTPXRequest(
                    connect_timeout=5.0, read_timeout=10.0, write_timeout=10.0, pool_timeout=5.0
                )
            )
            .get_updates_request(
                HTTPXRequest(connect_timeout=5.0, read_timeout=10.0, pool_timeout=5.0)
            )
            .concurrent_updates(True)
        )
        if webhook:
            builder = builder.updater(None)
        app = builder.build()
        app.add_handler(CallbackQueryHandler(self.on_press))
        app.add_handler(MessageHandler(filters.COMMAND, self.on_command))
        app.add_error_handler(self.on_error)
        return app

    async def register_commands(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """The command menu Telegram clients show (best-effort)."""
        try:
            await app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as exc:
            log.warning("could not register bot commands: %s", self.gate.scrub(str(exc)))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error(
            "telegram handler failed: %s",
            self.gate.scrub(f"{type(context.error).__name__}: {context.error}"),
        )

    # --- helpers ---------------------------------------------------------------------------------

    def is_approver(self, user: User) -> bool:
        return identity(user) in self.settings.approval.approvers

    async def refuse(
        self,
        kind: str,
        user: User | None,
        chat_id: int | None,
        data: str,
        reason: str,
        token: dict[str, Any] | None = None,
    ) -> None:
        log.warning(
            "telegram %s refused (user %s, chat %s): %s",
            kind,
            user.id if user else "?",
            chat_id,
            reason,
        )
        await asyncio.to_thread(
            self.store.telegram_refusal,
            kind=kind,
            user_id=user.id if user else None,
            username=(user.username or user.full_name) if user else "",
            chat_id=chat_id,
            data=data,
            reason=reason,
            workflow_id=token["workflow_id"] if token else "",
            action_id=token["action_id"] if token else "",
        )

    async def reply(self, message: Message, html: str) -> None:
        await self.say(message.get_bot(), message.chat.id, html, message.message_id)

    async def say(self, bot: Bot, chat_id: int, html: str, reply_to: int | None = None) -> None:
        await self.gate.call(
            "sendMessage",
            lambda: bot.send_message(
                chat_id,
                html,
                parse_mode=ParseMode.HTML,
                link_preview_options=NO_PREVIEW,
                reply_parameters=(
                    ReplyParameters(reply_to, allow_sending_without_reply=True)
                    if reply_to
                    else None
                ),
            ),
        )

    async def answer(self, query: CallbackQuery, text: str, alert: bool = False) -> None:
        try:
            await self.gate.call(
                "answerCallbackQuery", lambda: query.answer(answer(text), show_alert=alert)
            )
        except (BadRequest, DeliveryError) as exc:  # too old: the user sees nothing, we log
            log.warning("could not answer a callback query: %s", exc)

    # --- button presses --------------------------------------------------------------------------

    async def on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        user = query.from_user
        chat_id = query.message.chat.id if query.message is not None else None
        data = query.data or ""
        if chat_id != self.chat_id:
            await self.refuse(
                "callback", user, chat_id, data, "press from a chat that is not allowed"
            )
            await self.answer(query, "⛔ Refused: this chat cannot decide anything.", alert=True)
            return
        token = (
            await asyncio.to_thread(self.store.telegram_token, data)
            if 0 < len(data) <= 64
            else None
        )
        if token is None or token["chat_id"] != chat_id:
            await self.refuse("callback", user, chat_id, data, "unknown or tampered callback data")
            await self.answer(query, "⛔ Refused: this button is not valid.", alert=True)
            return
        verb = token["verb"]
        if verb == "info":
            await self.answer(query, "🔍 Details sent below.")
            reply_to = query.message.message_id if query.message is not None else None
            await self.say(context.bot, chat_id, await self.details(token["workflow_id"]), reply_to)
            return
        if not self.is_approver(user):
            await self.refuse(
                "callback", user, chat_id, data, f"{identity(user)} is not an approver", token
            )
            await self.answer(
                query, f"⛔ Refused: {identity(user)} is not an approver.", alert=True
            )
            return
        if verb in ("up", "down"):
            rating = 1 if verb == "up" else -1
            await asyncio.to_thread(
                self.store.record_feedback,
                token["workflow_id"],
                token["action_id"],
                rating,
                identity(user),
            )
            what = f" for {token['action_id']}" if token["action_id"] else ""
            await self.answer(query, f"Thanks: {'👍' if rating > 0 else '👎'} recorded{what}.")
            return
        await self.decide_press(context.bot, query, user, token, approve=verb == "approve")

    async def decide_press(
        self, bot: Bot, query: CallbackQuery, user: User, token: dict[str, Any], approve: bool
    ) -> None:
        key = token["message_key"]
        row = await asyncio.to_thread(self.store.telegram_message, key)
        if row is not None and row["status"] == "closed":
            by = f" by {row['decided_by']}" if row["decided_by"] else ""
            await self.refuse(
                "callback",
                user,
                self.chat_id,
                query.data or "",
                f"already decided ({row['verdict']})",
                token,
            )
            await self.answer(query, f"Already decided: {row['verdict']}{by}. Nothing changed.")
            return
        decision = ApprovalDecision(
            action_id=token["action_id"],
            approve=approve,
            approver=identity(user),
            via="telegram",
            reason=f"button pressed by {display(user)}",
        )
        if row is not None:  # bound to the approval this message showed, nothing newer
            decision = self.sign(token["workflow_id"], row, decision)
        try:
            record = await self.ops.decide(token["workflow_id"], decision)
        except Refused as exc:
            text = str(exc)
            await self.refuse("callback", user, self.chat_id, query.data or "", text, token)
            if any(s in text for s in ("already decided", "already completed", "no action is")):
                await self.answer(query, "Already decided; nothing changed.")
            else:
                await self.answer(query, f"⛔ Not accepted: {text}", alert=True)
            return
        # Close the stored message before answering: a second press must find it decided.
        await asyncio.to_thread(
            self.store.telegram_close_message, key, record.verdict.value, display(user)
        )
        await self.answer(query, f"{'✅ Approved' if approve else '❌ Denied'}: {record.action_id}")
        await self._finish(bot, key, record.verdict.value, display(user))

    def sign(
        self, workflow_id: str, message: dict[str, Any], decision: ApprovalDecision
    ) -> ApprovalDecision:
        """Sign ``decision`` over the approval request the message showed."""
        request = ApprovalRequest.model_validate(message["payload"]["request"])
        proof = signing.sign_decision(
            self.signing_key,
            workflow_id,
            request,
            decision.approve,
            decision.approver,
            signer=signing.TELEGRAM_SIGNER,
        )
        return decision.model_copy(update=proof)

    async def _finish(self, bot: Bot, key: str, verdict: str, decided_by: str) -> None:
        try:
            await finish_approval_message(bot, self.gate, self.store, key, verdict, decided_by)
        except (DeliveryError, BadRequest) as exc:
            log.warning("could not edit approval message: %s", exc)

    async def details(self, workflow_id: str) -> str:
        try:
            return incident_details(await self.ops.incident(workflow_id))
        except Refused as exc:
            return Doc().add(f"⚠️ {exc}").render()

    # --- commands --------------------------------------------------------------------------------

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None or not message.text:
            return
        words = message.text.split()
        name = words[0][1:].split("@", 1)[0].lower()
        args = words[1:]
        if message.chat.id != self.chat_id:
            await self.refuse(
                "command",
                user,
                message.chat.id,
                message.text,
                "command from a chat that is not allowed",
            )
            await self.reply(
                message, Doc().add("⛔ This bot only answers in its configured chat.").render()
            )
            return
        handler = self.commands.get(name)
        if handler is None:
            await self.reply(
                message, Doc().add(f"Unknown command /{name}. /help lists them.").render()
            )
            return
        if name in STATE_CHANGING and not self.is_approver(user):
            await self.refuse(
                "command",
                user,
                message.chat.id,
                message.text,
                f"{identity(user)} is not an approver",
            )
            await self.reply(
                message, Doc().add(f"⛔ Refused: {identity(user)} is not an approver.").render()
            )
            return
        try:
            html = await handler(message, user, args)
        except Refused as exc:
            html = Doc().add(f"⛔ {exc}").render()
        except Exception as exc:  # Temporal unreachable and the like: say so, keep serving
            log.exception("command /%s failed", name)
            html = (
                Doc().add(f"⚠️ /{name} failed: {type(exc).__name__}: {clip(str(exc), 300)}").render()
            )
        await self.reply(message, html)

    async def cmd_help(self, message: Message, user: User, args: list[str]) -> str:
        doc = Doc().b("homelab-agents").add(" — incident approvals and control").nl(2)
        for command, description in COMMANDS:
            doc.line((f"/{command}", "b"), f" {description}")
        doc.nl().add("You are ").code(identity(user))
        doc.add(": approver." if self.is_approver(user) else ": not an approver (read-only).")
        return doc.render()

    async def cmd_status(self, message: Message, user: User, args: list[str]) -> str:
        paused = await asyncio.to_thread(self.store.paused)
        rows = await self.ops.incidents(True, 200)
        pending = [r for r in rows if r.approval == "pending" or r.phase == "AwaitingApproval"]
        doc = Doc().add("📊 ").b("Status").nl()
        if paused["paused"]:
            doc.add("Writes: ").b("⏸ PAUSED").add(f" by {paused['by']}").nl()
        else:
            doc.line("Writes: ▶️ allowed")
        doc.line(f"Open incidents: {len(rows)}, awaiting approval: {len(pending)}")
        for r in pending[:10]:
            doc.line("• ", (r.workflow_id, "code"), f" {r.alert} on {r.target}")
        return doc.render()

    async def cmd_incidents(self, message: Message, user: User, args: list[str]) -> str:
        rows = await self.ops.incidents(False, 15)
        doc = Doc().add("🗂 ").b("Recent incidents").nl()
        if not rows:
            doc.add("none")
        for r in rows:
            started = f"{r.started:%m-%d %H:%M}" if r.started else ""
            doc.line(
                "• ",
                (r.workflow_id, "code"),
                f" {r.alert} on {r.target or '?'} — {r.phase or r.status}"
                + (f" ({r.approval})" if r.approval else "")
                + f" {started}",
            )
        return doc.render()

    async def cmd_incident(self, message: Message, user: User, args: list[str]) -> str:
        if not args:
            raise Refused("usage: /incident ID")
        return incident_details(await self.ops.incident(args[0]))

    async def _decide_command(
        self, message: Message, user: User, args: list[str], approve: bool
    ) -> str:
        if not args:
            raise Refused(f"usage: /{'approve' if approve else 'deny'} ID [ACTION]")
        wid = args[0] if args[0].startswith(("incident-", "rollback-")) else f"incident-{args[0]}"
        wanted = args[1] if len(args) > 1 else ""
        shown = [
            row
            for row in await asyncio.to_thread(self.store.telegram_open_messages, wid)
            if row["kind"] == "approval" and (not wanted or row["action_id"] == wanted)
        ]
        if len(shown) != 1:
            raise Refused(
                "no approval of this incident is waiting in this chat (already decided, or "
                "never asked here)"
                if not shown
                else "several approvals are open: name the action"
            )
        decision = self.sign(
            wid,
            shown[0],
            ApprovalDecision(
                action_id=shown[0]["action_id"],
                approve=approve,
                approver=identity(user),
                via="telegram",
                reason=f"/{'approve' if approve else 'deny'} by {display(user)}",
            ),
        )
        record = await self.ops.decide(args[0], decision)
        for row in await asyncio.to_thread(self.store.telegram_open_messages, wid):
            if row["action_id"] == record.action_id:
                await self._finish(
                    message.get_bot(), row["message_key"], record.verdict.value, display(user)
                )
        return (
            Doc()
            .add("✅ Approved" if approve else "❌ Denied")
            .add(" action ")
            .code(record.action_id)
            .add(" of ")
            .code(wid)
            .render()
        )

    async def cmd_approve(self, message: Message, user: User, args: list[str]) -> str:
        return await self._decide_command(message, user, args, True)

    async def cmd_deny(self, message: Message, user: User, args: list[str]) -> str:
        return await self._decide_command(message, user, args, False)

    async def cmd_pause(self, message: Message, user: User, args: list[str]) -> str:
        told = await self.ops.set_paused(True, identity(user), " ".join(args))
        return (
            Doc()
            .add("⏸ ")
            .b("Writes paused")
            .add(f" by {display(user)}; {told} running incident(s) told. /resume lifts it.")
            .render()
        )

    async def cmd_resume(self, message: Message, user: User, args: list[str]) -> str:
        told = await self.ops.set_paused(False, identity(user), " ".join(args))
        return (
            Doc()
            .add("▶️ ")
            .b("Writes resumed")
            .add(f" by {display(user)}; {told} running incident(s) told.")
            .render()
        )


def incident_details(state: IncidentState) -> str:
    """One incident for a chat: what /incident and 🔍 More info show."""
    doc = Doc().add("🔎 ").code(state.workflow_id).nl()
    doc.line(
        ("Alert: ", "b"),
        state.alert.name,
        f" · phase {state.phase.value}",
        f" · outcome {state.outcome.value}" if state.outcome else "",
    )
    if state.triage:
        t = state.triage
        doc.line(
            ("Target: ", "b"),
            (str(t.target) if t.target else "-", "code"),
            f" · severity {t.severity}",
            " · CRITICAL" if t.critical else "",
            f" · runbook {t.runbook.name}" if t.runbook else "",
        )
    summary = state.alert.annotations.get("summary") or state.alert.annotations.get("description")
    if summary:
        doc.line(("Summary: ", "b"), clip(summary, 500))
    if state.evidence:
        doc.line(("Evidence:", "b"))
        for e in state.evidence:
            doc.line(
                f"• {e.key} ({e.tool}): ",
                "ok"
                if e.ok
                else f"error {e.error.kind.value}: {e.error.message}"
                if e.error
                else "error",
            )
    if state.plan:
        doc.line(("Plan", "b"), f" ({state.plan.source}):")
        for a in state.plan.actions:
            doc.line(f"• {a.id} ", (a.tool, "code"), f" {a.params or ''} {a.rationale}")
        for note in state.plan.notes:
            doc.line("  ", clip(note, 300))
    for o in state.actions:
        doc.line(
            f"• {o.action.id} {o.action.tool}: {o.level.value}/{o.approval.value}",
            f" by {o.approver}" if o.approver else "",
            f" → {o.result.value} {o.error}",
        )
    if state.pending_approval:
        doc.nl().extend(approval_doc(state.pending_approval)).nl()
    if state.verification:
        v = state.verification
        doc.line(("Verification: ", "b"), "passed" if v.passed else "FAILED", f" {v.detail}")
    for note in state.notes[-5:]:
        doc.line("note: ", clip(note, 300))
    if state.triage and state.triage.ui_url:
        doc.link("Open in the Temporal Web UI", state.triage.ui_url)
    return doc.render()
