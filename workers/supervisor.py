"""Long-running components kept alive: restarted with backoff when they crash, stopped on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    """Keeps named components running until asked to stop."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        self.tasks.append(asyncio.create_task(self._keep(name, factory), name=name))

    async def _keep(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                await factory()
                if self.stopping.is_set():
                    return
                log.warning("%s exited; restarting in %.0fs", name, backoff)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed; restarting in %.0fs", name, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30)

    async def stop(self) -> None:
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
