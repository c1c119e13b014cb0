"""The Temporal floor of this machine: workflows that run K sequential no-op activities, as many
as an incident runs, on a worker process of their own. What is left of an incident's time above
this is the agents' own work (and the engine's).

    .venv/bin/python bench/floor.py ADDRESS TASK_QUEUE      # the worker (the bench starts it)
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn(name="floor.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="FloorWorkflow", sandboxed=True)
class FloorWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        done = 0
        for step in range(activities):
            done += 1 + 0 * await workflow.execute_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return done


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=[noop],
        max_concurrent_activities=50,  # the agents' worker default
    )
    await worker.run()


if __name__ == "__main__":
    try:
        asyncio.run(serve(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:
        pass
    os._exit(0)
