"""Process entry points: the embedded stack (`up`), the worker, the intake.

`up` runs the Temporal dev server (unless `temporal.address` is set), the worker, the intake and
the Docker events watcher under one supervisor: a component that crashes is restarted with
backoff; SIGINT/SIGTERM stops everything, the dev server last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from prometheus_client import start_http_server
from rich.console import Console
from temporalio import activity

from activities.memory.metrics import publish_records
from activities.notify import Notifier
from activities.proactive.activities import publish_periods
from activities.store import Store
from activities.toolsets.grafana.notifier import grafana_notifiers
from core.config import Settings
from workers.devserver import DevServer
from workers.docker_events import DockerEventsWatcher
from workers.forwarder import Forwarder
from workers.intake import create_app
from workers.routing import AlertRouter
from workers.schedules import apply as apply_schedules
from workers.supervisor import Supervisor, install_signal_handlers
from workers.temporal_client import address, connect, ensure_search_attributes
from workers.worker import build_components, build_site_worker, build_worker
from workflows import search_attributes

log = logging.getLogger(__name__)
console = Console(stderr=True)


async def incident_alert(workflow_id: str) -> str | None:
    """The alert an incident was opened for (its search attribute), asked from inside the notify
    activity with the worker's own client; None elsewhere."""
    if not activity.in_activity():
        return None
    described = await activity.client().get_workflow_handle(workflow_id).describe()
    return described.typed_search_attributes.get(search_attributes.ALERT)


def _notifiers(settings: Settings) -> list[Notifier]:
    """Notification channels beside the log: Telegram when configured, and an annotation channel
    per Grafana target with ``annotate_incidents``."""
    channels: list[Notifier] = []
    if settings.telegram.enabled:
        from workers.telegram import telegram_notifier

        channels.append(telegram_notifier(settings))
    channels.extend(grafana_notifiers(settings, incident_alert))
    return channels


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the supervisor owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_forwarder(settings: Settings, router: AlertRouter, store: Store) -> Forwarder:
    return Forwarder(
        store,
        router.route,
        concurrency=settings.intake.forward_concurrency,
        dedup_window=settings.intake.dedup_window,
    )


async def _serve_intake(
    settings: Settings,
    router: AlertRouter,
    store: Store,
    forwarder: Forwarder | None = None,
) -> None:
    """The HTTP server and the forwarder that delivers what it accepted; both or neither."""
    forwarder = forwarder or make_forwarder(settings, router, store)
    app = create_app(settings, forwarder, store=store)
    config = uvicorn.Config(
        app,
        host=settings.intake.host,
        port=settings.intake.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    forwarding = asyncio.create_task(forwarder.run())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=5)
        raise
    finally:
        forwarding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarding
    if not server.started:
        raise RuntimeError(
            f"intake could not listen on {settings.intake.host}:{settings.intake.port}"
        )


async def run_up(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    dev: DevServer | None = None
    if not settings.temporal.address:
        dev = DevServer(settings)
        console.print(
            f"starting Temporal dev server ({settings.state_dir.resolve() / 'temporal.db'}) …"
        )
        await dev.start()
    try:
        client = await connect(settings)
        added = await ensure_search_attributes(client, settings.temporal.namespace)
        if added:
            log.info("registered search attributes %s", ", ".join(added))
        changed = [a for a in await apply_schedules(client, settings) if a.action != "unchanged"]
        for applied in changed:
            log.info("schedule %s %s", applied.schedule_id, applied.action)
        publish_periods(settings)
        parts = build_components(settings, _notifiers(settings))
        publish_records(parts.store, settings.memory)
        router = AlertRouter(client, settings.temporal.task_queue, parts.store.owner_of_alert)
        forwarder = make_forwarder(settings, router, parts.store)
        watcher = DockerEventsWatcher(settings, forwarder.submit)
        supervisor = Supervisor()

        async def worker() -> None:
            await build_worker(client, parts).run()

        supervisor.add("worker", worker)
        supervisor.add("intake", lambda: _serve_intake(settings, router, parts.store, forwarder))
        supervisor.add("docker-events", watcher.run)
        if settings.telegram.enabled:
            from workers.telegram import serve_bot

            supervisor.add("telegram-bot", lambda: serve_bot(settings, client, parts.store))
        if dev is not None:

            async def watch_dev() -> None:
                code = await dev.wait()
                if not supervisor.stopping.is_set():
                    log.error("Temporal dev server exited with %s; restarting it", code)
                    await dev.start()

            supervisor.add("temporal-dev-server", watch_dev)

        annotating = [t.name for t in settings.grafana if t.annotate_incidents]
        ui = settings.temporal.web_ui() or "(external Temporal: see its Web UI)"
        intake = f"http://{settings.intake.host}:{settings.intake.port}"
        console.print(
            "[bold green]homelab-agents is up[/]\n"
            f"  Temporal:     {address(settings)} (namespace {settings.temporal.namespace})\n"
            f"  Web UI:       {ui}\n"
            f"  Intake:       {intake}/alerts/alertmanager\n"
            f"  Metrics:      {intake}/metrics\n"
            f"  Schedules:    {', '.join(settings.schedule_jobs()) or 'none'} "
            "(homelab-agents schedules list)\n"
            f"  Docker:       {', '.join(f'{t.name} ({t.url})' for t in settings.docker) or 'no engines'}\n"
            + (
                f"  Telegram:     bot for chat {settings.telegram.chat_id} "
                f"({settings.telegram.mode})\n"
                if settings.telegram.enabled
                else "  Telegram:     not configured (approve with the CLI)\n"
            )
            + (
                f"  Annotations:  incidents on Grafana {', '.join(annotating)}\n"
                if annotating
                else ""
            )
            + "  Ctrl-C stops everything."
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        console.print("stopping …")
        watcher.stop()
        await supervisor.stop()
        await parts.aclose()
    finally:
        if dev is not None:
            await dev.stop()


async def run_worker(settings: Settings, site: str = "") -> None:
    """The worker; with ``site``, a site's worker (its targets' tools only, its own queue)."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    client = await connect(settings)
    await ensure_search_attributes(client, settings.temporal.namespace)
    parts = build_components(settings, [] if site else _notifiers(settings))
    if not site:
        publish_periods(settings)
        publish_records(parts.store, settings.memory)
    if settings.worker.metrics_port:
        start_http_server(settings.worker.metrics_port, addr=settings.worker.metrics_host)
    worker = build_site_worker(client, parts, site) if site else build_worker(client, parts)
    queue = settings.site_queue(site)
    console.print(f"worker polling {queue!r} on {address(settings)}")
    task = asyncio.create_task(worker.run())
    await asyncio.wait(
        [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if not task.done():
        await worker.shutdown()
    await task
    await parts.aclose()


async def run_intake(settings: Settings) -> None:
    """The intake accepts alerts while Temporal is down (the client connects on first use):
    they wait in the outbox and go out when it returns."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    client = await connect(settings, lazy=True)
    store = Store(settings.store_url)
    store.migrate()
    router = AlertRouter(client, settings.temporal.task_queue, store.owner_of_alert)
    forwarder = make_forwarder(settings, router, store)
    watcher = DockerEventsWatcher(settings, forwarder.submit)
    supervisor = Supervisor()
    supervisor.add("intake", lambda: _serve_intake(settings, router, store, forwarder))
    supervisor.add("docker-events", watcher.run)
    console.print(
        f"intake on http://{settings.intake.host}:{settings.intake.port}/alerts/alertmanager"
    )
    await stop.wait()
    watcher.stop()
    await supervisor.stop()
    store.close()
