"""The incident's notifications: queued in order, delivered by a background task, drained at close.

Delivery never holds an incident up: a chat outage costs retries in the sender task, not seconds
on the way to the fix.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import Notification
    from workflows import options
    from workflows.calls import call


class Outbox:
    def __init__(self) -> None:
        self.queue: list[Notification] = []
        self.sender: asyncio.Task[None] | None = None
        self.sent = 0

    def send(self, note: Notification) -> None:
        """Queue a notification; the sender task starts (again) if it is not running."""
        self.sent += 1
        self.queue.append(note)
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while self.queue:
            note = self.queue.pop(0)
            try:
                await call(
                    contracts.NOTIFY, note, summary=f"notify {note.kind}", **options.notify()
                )
            except ActivityError as err:
                workflow.logger.warning("notification %s not delivered: %s", note.kind, err.cause)

    async def drain(self) -> None:
        """Every queued notification delivered (or given up) before the incident closes."""
        if self.sender is not None:
            await self.sender
