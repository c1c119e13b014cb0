"""Purging a queue: HARD and irreversible — the messages are gone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from activities.catalog import NoParams, ToolContext
from activities.toolsets.rabbitmq.client import (
    TOOLSET,
    api_for,
    get_queue,
    place,
    queue_name,
    vhost_path,
)
from core.models import Reversibility, RiskLevel


async def capture_queue(ctx: ToolContext[Any]) -> dict[str, Any]:
    return await get_queue(ctx, queue_name(ctx))


def _purge_path(ctx: ToolContext[Any]) -> str:
    return f"/queues/{vhost_path(ctx)}/{quote(queue_name(ctx), safe='')}/contents"


@TOOLSET.write(
    "purge_queue",
    "Delete every ready message of a queue (the resource); unacknowledged messages stay with "
    "their consumers. Irreversible.",
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_queue,
    facts=lambda ctx, b: {"queue": b["name"], "empty": not b["messages_ready"]},
    preview=lambda ctx, b: (
        f"no-op: queue {b['name']} on {place(ctx)} has no ready messages"
        if not b["messages_ready"]
        else f"DELETE /api{_purge_path(ctx)}: drop every ready message of queue "
        f"{place(ctx, b['name'])} — {b['messages_ready']} ready per the management statistics "
        f"(refreshed every few seconds; publishes since then go too), "
        f"{b['messages_unacknowledged']} unacked kept, {b['consumers']} consumer(s); they cannot "
        "be recovered"
    ),
    is_noop=lambda ctx, b: not b["messages_ready"],
)
async def purge_queue(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await capture_queue(ctx)
    await api_for(ctx).delete(_purge_path(ctx))  # purging an empty queue is harmless: idempotent
    return {
        "queue": before["name"],
        "purged_at_least": before["messages_ready"],
        "consumers": before["consumers"],
        "_summary": f"purged queue {place(ctx, before['name'])} "
        f"({before['messages_ready']} ready message(s) at capture)",
    }
