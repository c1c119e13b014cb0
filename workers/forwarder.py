"""The intake's forwarder: accepted alerts from the outbox to Temporal, each delivered once.

The intake commits an alert to the store's outbox and answers 202 at once; this loop sends the
pending rows (signal-with-start, or a signal for a resolved alert) and marks each one. Rows of one
fingerprint go in acceptance order, one at a time (a resolved notification never overtakes its
firing one); different fingerprints go concurrently. While Temporal is unavailable the rows wait
(the backlog is on /metrics) and the loop backs off; an alert Temporal refuses for what it is
(rather than because it is down) is marked refused and logged, never retried forever.

A crash between sending and marking re-sends the row after the restart with the same request id,
and Temporal drops the repeat: delivered exactly once per (fingerprint, status, startsAt).

Every outbox statement of the process runs on one thread, and the posts that arrive while a commit
is running are committed together in the next one (group commit): SQLite takes one writer at a
time, and writers of one process that wait for each other sleep in its busy handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from activities.store import Store
from activities.store.outbox import Accepted, Pending
from core.metrics import (
    ALERTS_RECEIVED,
    INTAKE_BACKLOG,
    INTAKE_BACKLOG_AGE,
    INTAKE_DELIVERED,
    INTAKE_DELIVERY,
)
from core.models import Alert
from workers.routing import AlertRefused, Routed

log = logging.getLogger(__name__)

Route = Callable[[Alert, str], Awaitable[Routed]]
T = TypeVar("T")

POLL_SECONDS = 1.0
PAGE = 1000
MAX_BACKOFF_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 60.0


class Forwarder:
    def __init__(
        self,
        store: Store,
        route: Route,
        *,
        concurrency: int = 16,
        dedup_window: timedelta = timedelta(hours=1),
    ) -> None:
        self.store = store
        self.route = route
        self.concurrency = concurrency
        self.dedup_window = dedup_window
        self._wake = asyncio.Event()
        self._pruned = 0.0
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._batch: list[tuple[list[Alert], asyncio.Future[list[Accepted]]]] = []
        self._committing: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[str] = set()
        self._backoff = 0.0
        self._retry_at = 0.0

    async def _sql(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def accept(self, alerts: list[Alert]) -> list[Accepted]:
        """Commit the alerts to the outbox (the caller answers only after this) and wake the loop."""
        done: asyncio.Future[list[Accepted]] = asyncio.get_running_loop().create_future()
        self._batch.append((alerts, done))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_batches())
        accepted = await done
        new = 0
        for alert, one in zip(alerts, accepted, strict=True):
            if one.new:
                new += 1
            else:
                ALERTS_RECEIVED.labels(alert.source, alert.status.value, "duplicate").inc()
        if new:
            INTAKE_BACKLOG.inc(new)
            self._wake.set()
        return accepted

    async def _commit_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                rows = await self._sql(
                    self.store.outbox_accept, [a for alerts, _ in batch for a in alerts]
                )
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            start = 0
            for alerts, done in batch:
                if not done.done():
                    done.set_result(rows[start : start + len(alerts)])
                start += len(alerts)

    async def submit(self, alert: Alert) -> None:
        """One alert from inside the intake process (the Docker events watcher)."""
        await self.accept([alert])

    async def run(self) -> None:
        """Start a lane for every fingerprint with pending rows and none running; a slow or
        failing delivery holds up its own fingerprint only."""
        lanes: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                except TimeoutError:
                    pass
                self._wake.clear()
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    await self._maybe_prune()
                    rows = await self._sql(self.store.outbox_pending, PAGE)
                    await self._publish_backlog()
                except Exception:  # the store itself failed: keep the loop alive
                    log.exception("intake forwarder: reading the outbox failed")
                    self._failed()
                    continue
                groups: dict[str, list[Pending]] = {}
                for row in rows:
                    if row.fingerprint not in self._inflight:
                        groups.setdefault(row.fingerprint, []).append(row)
                for fingerprint, group in groups.items():
                    self._inflight.add(fingerprint)
                    lane = asyncio.create_task(self._lane(fingerprint, group))
                    lanes.add(lane)
                    lane.add_done_callback(lanes.discard)
        finally:
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _lane(self, fingerprint: str, group: list[Pending]) -> None:
        """One fingerprint's rows in acceptance order; stops at the first that does not go."""
        try:
            async with self._slots:
                for row in group:
                    if not await self._deliver(row):
                        self._failed()
                        return
                self._backoff = 0.0
        finally:
            self._inflight.discard(fingerprint)
            self._wake.set()  # rows accepted meanwhile, or the rest of a page
            await self._publish_backlog()

    def _failed(self) -> None:
        """Temporal (or the store) unavailable: new lanes wait, longer each time."""
        self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
        self._retry_at = time.monotonic() + self._backoff

    async def _deliver(self, row: Pending) -> bool:
        try:
            routed = await self.route(row.alert, row.delivery_id)
        except AlertRefused as exc:
            reason = str(exc)
            log.warning("Temporal refused alert %s; dropped: %s", row.fingerprint, reason)
            await self._sql(lambda: self.store.outbox_done(row.seq, "refused", error=reason))
            INTAKE_DELIVERED.labels("refused").inc()
            return True
        except Exception as exc:  # TemporalUnavailable, or a client that cannot connect
            if row.attempts == 0:
                log.warning("alert %s waits in the outbox: %s", row.fingerprint, exc)
            await self._sql(self.store.outbox_attempt, row.seq, str(exc))
            return False
        await self._sql(self.store.outbox_done, row.seq, "delivered", routed.action, routed.run_id)
        INTAKE_DELIVERED.labels("delivered").inc()
        INTAKE_DELIVERY.observe(max(0.0, (datetime.now(UTC) - row.accepted_at).total_seconds()))
        return True

    async def _publish_backlog(self) -> None:
        count, oldest = await self._sql(self.store.outbox_backlog)
        INTAKE_BACKLOG.set(count)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        INTAKE_BACKLOG_AGE.set(max(0.0, age))

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY_SECONDS:
            return
        self._pruned = now
        before = datetime.now(UTC) - self.dedup_window
        removed = await self._sql(self.store.outbox_prune, before)
        if removed:
            log.debug("intake outbox: forgot %d delivered alerts", removed)
