"""Watches each configured Docker engine's events and opens incidents from them.

``die`` with a non-zero exit, ``oom`` and ``health_status: unhealthy`` become alerts with the names
of the awesome-prometheus-alerts cAdvisor rules (ContainerKilled, ContainerUnhealthy) plus
ContainerOOMKilled, routed through the same path as Alertmanager's, deduplicated by a fingerprint
of engine, container and alert name. A die that follows a ``kill`` (``docker stop``/``restart``,
including our own remediations) is intentional and ignored; a die after an OOM kill is folded into
the OOM alert. ``health_status: healthy`` resolves a ContainerUnhealthy alert.

The engine's own restart policy gets the first chance: a death the engine is restarting
(``State.Restarting`` when the die event arrives) is no incident, unless the container crash-loops
(``crash_loop_restarts`` such restarts within ``crash_loop_window``); a death after which the
policy gave up (its ``MaximumRetryCount`` reached) is one. An OOM kill stays an incident whatever
the policy: a restart does not give the container the memory it lacked. Docker never restarts an
unhealthy container, so ContainerUnhealthy is always an incident.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
from docker.errors import DockerException, NotFound

from activities.toolsets.docker import make_client
from core.config import Settings
from core.metrics import WATCHER_CONNECTED, WATCHER_EVENTS
from core.models import Alert, AlertStatus
from core.targets import DockerTarget

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 30.0
OOM_WINDOW_SECONDS = 10.0
EVENTS = ["die", "oom", "kill", "health_status"]


def fingerprint(engine: str, container: str, alertname: str) -> str:
    return hashlib.sha256(f"docker|{engine}|{container}|{alertname}".encode()).hexdigest()[:16]


def make_alert(
    engine: str,
    container: str,
    alertname: str,
    status: AlertStatus,
    at: datetime,
    why: str = "",
    **labels: str,
) -> Alert:
    summary = {
        "ContainerKilled": f"Container {container} on {engine} exited with code {labels.get('exit_code')}",
        "ContainerOOMKilled": f"Container {container} on {engine} was killed by the OOM killer",
        "ContainerUnhealthy": f"Container {container} on {engine} is unhealthy",
    }[alertname] + (f" ({why})" if why else "")
    return Alert(
        name=alertname,
        status=status,
        fingerprint=fingerprint(engine, container, alertname),
        labels={
            "alertname": alertname,
            "container": container,
            "engine": engine,
            "severity": "warning",
            "source": "docker-events",
            **labels,
        },
        annotations={"summary": summary},
        starts_at=at,
        source="docker-events",
        received_at=datetime.now(UTC),
    )


class EventClassifier:
    """Turns one engine's event stream into alerts; keeps the little state that needs.

    ``inspect`` returns the container's inspect document (``State``, ``RestartCount``,
    ``HostConfig``), or None when it is gone."""

    def __init__(
        self,
        engine: str,
        inspect: Callable[[str], dict[str, Any] | None],
        crash_loop_restarts: int = 3,
        crash_loop_window: timedelta = timedelta(minutes=10),
    ) -> None:
        self.engine = engine
        self.inspect = inspect
        self.crash_loop_restarts = crash_loop_restarts
        self.crash_loop_window = crash_loop_window.total_seconds()
        self.last_kill: dict[str, float] = {}
        self.last_oom: dict[str, float] = {}
        self.policy_restarts: dict[str, deque[float]] = {}

    def classify(self, event: dict[str, Any], now: float | None = None) -> Alert | None:
        now = time.monotonic() if now is None else now
        action = str(event.get("Action") or event.get("status") or "")
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        name = attrs.get("name") or (event.get("Actor") or {}).get("ID", "")[:12]
        at = datetime.fromtimestamp(int(event.get("timeNano", time.time_ns())) / 1e9, UTC)
        image = attrs.get("image", "")
        if action == "kill":
            self.last_kill[name] = now
            return None
        if action == "oom":
            self.last_oom[name] = now
            return make_alert(
                self.engine, name, "ContainerOOMKilled", AlertStatus.FIRING, at, image=image
            )
        if action == "die":
            exit_code = str(attrs.get("exitCode", "0"))
            killed_at = self.last_kill.pop(name, None)
            if killed_at is not None and now - killed_at < KILL_GRACE_SECONDS:
                return None  # stopped or restarted on purpose
            if exit_code == "0":
                return None
            oom_at = self.last_oom.pop(name, None)
            if oom_at is not None and now - oom_at < OOM_WINDOW_SECONDS:
                return None  # the oom event already opened (or signalled) the incident
            info = self.inspect(name) or {}
            state = info.get("State") or {}
            # Missed the oom event (watcher reconnecting)? The engine's flag is sticky across
            # restarts, so trust it only together with SIGKILL's exit code.
            if exit_code == "137" and state.get("OOMKilled"):
                return make_alert(
                    self.engine,
                    name,
                    "ContainerOOMKilled",
                    AlertStatus.FIRING,
                    at,
                    image=image,
                    exit_code=exit_code,
                )
            restart_policy = (info.get("HostConfig") or {}).get("RestartPolicy") or {}
            policy = str(restart_policy.get("Name") or "no")
            restarts = str(info.get("RestartCount", 0))
            why = ""
            if state.get("Restarting"):  # the engine's policy is restarting it
                if not self._crash_looping(name, now):
                    return None
                why = (
                    f"crash loop: {self.crash_loop_restarts} restarts by its {policy} policy "
                    f"within {self.crash_loop_window:.0f}s"
                )
            elif policy == "on-failure":
                why = (
                    f"its on-failure restart policy gave up after {restarts} restarts "
                    f"(MaximumRetryCount {restart_policy.get('MaximumRetryCount', 0)})"
                )
            elif policy != "no":
                why = f"its {policy} restart policy did not restart it"
            extra = {"restart_policy": policy, "restart_count": restarts} if why else {}
            return make_alert(
                self.engine,
                name,
                "ContainerKilled",
                AlertStatus.FIRING,
                at,
                why,
                image=image,
                exit_code=exit_code,
                **extra,
            )
        if action.startswith("health_status"):
            health = action.split(":", 1)[1].strip() if ":" in action else ""
            if health == "unhealthy":
                return make_alert(
                    self.engine, name, "ContainerUnhealthy", AlertStatus.FIRING, at, image=image
                )
            if health == "healthy":
                return make_alert(
                    self.engine, name, "ContainerUnhealthy", AlertStatus.RESOLVED, at, image=image
                )
        return None

    def _crash_looping(self, name: str, now: float) -> bool:
        """One more restart by the engine; True (and the count starts over) at the threshold."""
        times = self.policy_restarts.setdefault(name, deque())
        times.append(now)
        while times and now - times[0] > self.crash_loop_window:
            times.popleft()
        if len(times) >= self.crash_loop_restarts:
            times.clear()
            return True
        return False


class DockerEventsWatcher:
    """One reader thread per engine feeding the event loop; reconnects with backoff."""

    def __init__(self, settings: Settings, route: Callable[[Alert], Awaitable[Any]]) -> None:
        self.targets = [t for t in settings.docker if t.watch_events]
        self.route = route
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if not self.targets:
            log.info("docker events watcher: no engines to watch")
            await asyncio.Event().wait()
        await asyncio.gather(*(self._watch(t) for t in self.targets))

    async def _watch(self, target: DockerTarget) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        backoff = 1.0
        warned = False
        while not self._stop.is_set():
            try:
                client = make_client(target)
            except DockerException as exc:
                # Say it once; then retry quietly (debug) until the engine answers.
                (log.debug if warned else log.warning)(
                    "docker engine %s unreachable (%s); retrying with backoff up to 30s",
                    target.name,
                    exc,
                )
                warned = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            classifier = EventClassifier(
                target.name,
                functools.partial(_inspect, client),
                target.crash_loop_restarts,
                target.crash_loop_window,
            )
            stream = client.events(decode=True, filters={"type": "container", "event": EVENTS})
            thread = threading.Thread(
                target=_pump,
                args=(stream, queue, loop),
                name=f"docker-events-{target.name}",
                daemon=True,
            )
            thread.start()
            WATCHER_CONNECTED.labels(target.name).set(1)
            log.info("watching docker events on %s (%s)", target.name, target.url)
            backoff, warned = 1.0, False
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, Exception):
                        raise item
                    WATCHER_EVENTS.labels(target.name, str(item.get("Action", ""))).inc()
                    alert = await asyncio.to_thread(classifier.classify, item)
                    if alert is not None:
                        await self._deliver(alert)
            except asyncio.CancelledError:
                stream.close()
                client.close()
                raise
            except Exception as exc:
                log.warning("events stream of %s ended (%s); reconnecting", target.name, exc)
            finally:
                WATCHER_CONNECTED.labels(target.name).set(0)
            stream.close()
            client.close()
            await asyncio.sleep(backoff)

    async def _deliver(self, alert: Alert) -> None:
        """Retry until Temporal takes the alert: an event is never dropped for a transient outage."""
        delay = 0.5
        while True:
            try:
                await self.route(alert)
                return
            except Exception as exc:
                log.warning(
                    "could not route %s for %s (%s); retrying",
                    alert.name,
                    alert.labels["container"],
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)


def _inspect(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.api.inspect_container(name))
    except (NotFound, DockerException):
        return None


def _pump(stream: Any, queue: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop) -> None:
    try:
        for event in stream:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        loop.call_soon_threadsafe(queue.put_nowait, ConnectionError("events stream closed"))
    except Exception as exc:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        except RuntimeError:
            pass  # loop closed during shutdown
