"""The agents as the MTTR benchmarks run them: a Temporal dev server, and the worker and the intake
in this process (so the bench reads their store directly), torn down in order."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from workers.lab.processes import free_port
from workers.routing import AlertRouter
from workers.stack import _serve_intake
from workers.worker import Components, build_components, build_worker
from workflows import search_attributes


@dataclass
class Agents:
    client: Client
    parts: Components
    url: str
    """The intake's Alertmanager webhook."""
    ui: str = ""
    """The Temporal Web UI, when asked for."""


@asynccontextmanager
async def running_agents(
    root: Path, task_queue: str, ui_port: int | None = None, **sections: Any
) -> AsyncIterator[Agents]:
    """``sections``: the targets and any other config sections the bench needs; ``ui_port``:
    serve the dev server's Web UI there."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(Path(sys.prefix) / "bin" / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_startup_timeout=timedelta(seconds=60),
        ui=ui_port is not None,
        ui_port=ui_port,
    )
    settings = Settings(
        temporal={
            "address": env.client.service_client.config.target_host,
            "state_dir": str(root / "state"),
            "task_queue": task_queue,
        },
        store={"url": f"sqlite:///{root / 'store.db'}"},
        intake={"port": free_port()},
        worker={"metrics_port": 0},
        **sections,
    )
    parts = build_components(settings)
    worker = build_worker(env.client, parts)
    tasks = [
        asyncio.create_task(worker.run()),
        asyncio.create_task(
            _serve_intake(settings, AlertRouter(env.client, task_queue), parts.store)
        ),
    ]
    base = f"http://127.0.0.1:{settings.intake.port}"
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/healthz")).is_success:
                        break
                await asyncio.sleep(0.05)
        yield Agents(
            client=env.client,
            parts=parts,
            url=f"{base}/alerts/alertmanager",
            ui=f"http://127.0.0.1:{ui_port}" if ui_port else "",
        )
    finally:
        await worker.shutdown()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await parts.aclose()
        await env.shutdown()
