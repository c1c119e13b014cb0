"""The Telegram bot process: `homelab-agents bot`, and a supervised component of `up`.

Exactly one process may own ``getUpdates`` for a bot token: Telegram answers a second poller with
409 Conflict ("terminated by other getUpdates request"), and polling is refused while a webhook is
set. So run the bot either inside `up` or as `homelab-agents bot`, never both with one token
(workers that only *send* notifications may run anywhere). Webhook mode (``telegram.mode:
webhook``) serves ``POST <path of telegram.webhook_url>`` on ``webhook_listen:webhook_port``
behind your TLS proxy, and accepts only requests carrying ``telegram.webhook_secret`` in
``X-Telegram-Bot-Api-Secret-Token`` (a forged update could otherwise claim any user id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.error import Conflict, InvalidToken, TelegramError
from temporalio.client import Client

from activities.store import Store
from approval.telegram_bot import ApprovalBot, IncidentLine, Refused
from approval.telegram_notifier import TelegramNotifier
from core.config import Settings
from core.models import ApprovalDecision, ApprovalRecord, IncidentState
from workers import operations
from workers.supervisor import Supervisor, install_signal_handlers

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query"]


class TemporalOps:
    """`approval.telegram_bot.BotOps` over workers.operations (the same paths the CLI uses)."""

    def __init__(self, client: Client, store: Store) -> None:
        self.client = client
        self.store = store

    async def decide(self, ident: str, decision: ApprovalDecision) -> ApprovalRecord:
        try:
            return await operations.decide(self.client, self.store, ident, decision)
        except operations.OperationError as exc:
            raise Refused(str(exc)) from None

    async def set_paused(self, paused: bool, actor: str, reason: str) -> int:
        return await operations.set_paused(self.client, self.store, paused, actor, reason)

    async def incidents(self, open_only: bool, limit: int) -> list[IncidentLine]:
        rows = await operations.list_incidents(self.client, limit, open_only)
        return [
            IncidentLine(
                workflow_id=r.workflow_id,
                alert=r.alert,
                target=r.target,
                phase=r.phase,
                approval=r.approval,
                status=r.status,
                started=r.started,
            )
            for r in rows
        ]

    async def incident(self, ident: str) -> IncidentState:
        try:
            return await operations.show_incident(self.client, self.store, ident)
        except operations.OperationError as exc:
            raise Refused(str(exc)) from None


def telegram_notifier(settings: Settings) -> TelegramNotifier:
    return TelegramNotifier(settings.telegram, Store(settings.store_url))


def _polling_error(exc: TelegramError) -> None:
    if isinstance(exc, Conflict):
        log.error(
            "telegram: another process is polling this bot token or a webhook is set (%s); "
            "only one bot process may run per token",
            exc.message,
        )
    else:
        log.warning("telegram polling: %s: %s", type(exc).__name__, exc.message)


async def serve_bot(
    settings: Settings, client: Client, store: Store, *, started: asyncio.Event | None = None
) -> None:
    """Run the bot until cancelled (polling, or webhook when ``telegram.mode`` says so)."""
    tg = settings.telegram
    for noisy in ("httpx", "telegram.ext.Updater", "telegram.ext.Application"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger(noisy).level, logging.WARNING))
    bot = ApprovalBot(settings, TemporalOps(client, store), store)
    webhook = tg.mode == "webhook"
    app = bot.build(webhook=webhook)
    try:
        await app.initialize()  # getMe: a wrong token fails here, loudly
    except InvalidToken as exc:
        raise RuntimeError(f"telegram.token was refused by {tg.base_url}: {exc.message}") from None
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        await app.start()
        await bot.register_commands(app)
        if webhook:
            server, serving = await _start_webhook(settings, app)
        else:
            assert app.updater is not None
            await app.updater.start_polling(
                poll_interval=0,
                timeout=tg.poll_timeout,
                allowed_updates=ALLOWED_UPDATES,
                error_callback=_polling_error,
            )
        log.info("telegram bot @%s serving chat %s (%s)", app.bot.username, tg.chat_id, tg.mode)
        if started is not None:
            started.set()
        if serving is not None:
            await serving
            raise RuntimeError("telegram webhook server stopped")
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
        if server is not None and serving is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, timeout=5)
        with contextlib.suppress(Exception):
            if app.running:
                await app.stop()
        with contextlib.suppress(Exception):
            await app.shutdown()


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner handles SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def _start_webhook(settings: Settings, app: Any) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    tg = settings.telegram
    assert tg.webhook_url and tg.webhook_secret
    secret = tg.webhook_secret.get_secret_value()
    path = urlsplit(tg.webhook_url).path or "/"

    async def receive(request: Request) -> Response:
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("telegram webhook: request without the right secret token refused")
            return Response(status_code=403)
        try:
            data = await request.json()
            update = Update.de_json(data, app.bot)
        except Exception:
            return Response(status_code=400)
        await app.update_queue.put(update)
        return Response(status_code=200)

    web = Starlette(routes=[Route(path, receive, methods=["POST"])])
    config = uvicorn.Config(
        web,
        host=tg.webhook_listen,
        port=tg.webhook_port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.025)
    if not server.started:
        raise RuntimeError(
            f"telegram webhook could not listen on {tg.webhook_listen}:{tg.webhook_port}"
        )
    await app.bot.set_webhook(
        url=tg.webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES
    )
    return server, serving


async def run_bot(settings: Settings) -> None:
    """`homelab-agents bot`: the bot alone, restarted with backoff if it crashes."""
    from workers.temporal_client import address, connect

    stop = asyncio.Event()
    install_signal_handlers(stop)
    try:
        client = await connect(settings)
    except Exception as exc:
        raise RuntimeError(f"cannot reach Temporal at {address(settings)}: {exc}") from exc
    store = Store(settings.store_url)
    store.migrate()
    supervisor = Supervisor()
    supervisor.add("telegram-bot", lambda: serve_bot(settings, client, store))
    await stop.wait()
    await supervisor.stop()
    store.close()
