"""Home Assistant writes: reload one integration (SOFT) and restart (HARD: it is the house).

A reload re-runs one integration's setup: its config entries through the config entries API, or
a YAML integration through its ``<domain>.reload`` service. A restart is refused unless Home
Assistant's own config check passes (a restart on a broken configuration can leave the house
without automations), and waits until the API answers RUNNING again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.homeassistant.client import (
    FAILED_ENTRY_STATES,
    TOOLSET,
    UNAVAILABLE,
    after,
    client_for,
    target_of,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind

RECOVERY_WAIT = 15.0  # seconds a reload waits for its entities to come back


class ReloadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    integration: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="the integration's domain")
    entry_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]{1,64}$", description="only this config entry"
    )


async def _unavailable_of(ctx: ToolContext[Any], integration: str) -> tuple[list[str], int]:
    client = client_for(ctx)
    owners = await client.owners([integration])
    mine = set(owners.get(integration, []))
    states = await client.states()
    down = sorted(
        s["entity_id"] for s in states if s["entity_id"] in mine and s.get("state") == UNAVAILABLE
    )
    return down, len(mine)


async def capture_reload(ctx: ToolContext[ReloadParams]) -> dict[str, Any]:
    client = client_for(ctx)
    domain = ctx.params.integration
    entries = [
        e
        for e in await client.entries()
        if e.get("domain") == domain and (ctx.params.entry_id in (None, e.get("entry_id")))
    ]
    if ctx.params.entry_id and not entries:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no config entry {ctx.params.entry_id} of integration {domain}",
        )
    services = await client.services()
    how = "entries" if entries else ("service" if "reload" in services.get(domain, []) else "")
    if not how:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"integration {domain} has no config entries and no {domain}.reload service: "
            "only a restart reloads it",
        )
    down, total = await _unavailable_of(ctx, domain)
    return {
        "integration": domain,
        "how": how,
        "entries": [
            {"entry_id": e.get("entry_id"), "title": e.get("title"), "state": e.get("state")}
            for e in entries
        ],
        "unavailable": down,
        "entities": total,
    }


def _reload_preview(ctx: ToolContext[ReloadParams], b: dict[str, Any]) -> str:
    damage = f"{len(b['unavailable'])} of its {b['entities']} entities unavailable"
    if b["how"] == "service":
        return f"reload YAML integration {b['integration']} (service {b['integration']}.reload): {damage}"
    entries = ", ".join(f"'{e['title']}' ({e['entry_id']}, {e['state']})" for e in b["entries"])
    return f"reload integration {b['integration']}, config entries {entries}: {damage}"


def _reload_noop(ctx: ToolContext[ReloadParams], b: dict[str, Any]) -> bool:
    return not b["unavailable"] and all(e["state"] == "loaded" for e in b["entries"])


@TOOLSET.write(
    "reload_integration",
    "Reload one integration (its config entries, or a YAML integration's reload service) and "
    "wait briefly for its entities to come back.",
    ReloadParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_reload,
    preview=_reload_preview,
    facts=lambda ctx, b: {
        "integration": b["integration"],
        "how": b["how"],
        "entries": b["entries"],
    },
    is_noop=_reload_noop,
    needs_resource=False,
)
async def reload_integration(ctx: ToolContext[ReloadParams]) -> dict[str, Any]:
    before = ctx.before or await capture_reload(ctx)
    api = client_for(ctx).api
    domain = before["integration"]
    started = time.monotonic()
    if before["how"] == "service":
        await api.post(f"/api/services/{domain}/reload", json_body={})
    else:
        for entry in before["entries"]:
            answer = await api.post(f"/api/config/config_entries/entry/{entry['entry_id']}/reload")
            if isinstance(answer, dict) and answer.get("require_restart"):
                raise ToolFailure(
                    ToolErrorKind.FAILED,
                    f"config entry '{entry['title']}' of {domain} cannot be reloaded: "
                    "Home Assistant needs a restart",
                )
    down, total = await _unavailable_of(ctx, domain)
    while down and time.monotonic() - started < RECOVERY_WAIT:
        await asyncio.sleep(0.5)
        down, total = await _unavailable_of(ctx, domain)
    entries = [e for e in await client_for(ctx).entries() if e.get("domain") == domain]
    failed = [e.get("title") for e in entries if e.get("state") in FAILED_ENTRY_STATES]
    return {
        "integration": domain,
        "unavailable": down,
        "entities": total,
        "recovered": sorted(set(before["unavailable"]) - set(down)),
        "failed_entries": failed,
        "seconds": round(time.monotonic() - started, 2),
        "_summary": f"reloaded {domain}: {len(before['unavailable'])} → {len(down)} of "
        f"{total} entities unavailable",
    }


async def capture_restart(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    check = await client.check_config()
    if check.get("result") != "valid" or check.get("errors"):
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            "Home Assistant's config check does not pass, so it is not restarted: "
            f"{check.get('errors') or check.get('result')}",
        )
    config = await client.config()
    states = await client.states()
    return {
        "version": config.get("version"),
        "state": config.get("state"),
        "started_at": await client.started_at(),
        "ha_now": await client.now(),
        "unavailable": sum(1 for s in states if s.get("state") == UNAVAILABLE),
        "config_check": check.get("result"),
        "warnings": bool(check.get("warnings")),
    }


async def _wait_back(ctx: ToolContext[Any], before: dict[str, Any], limit: float) -> dict[str, Any]:
    """Until the API answers RUNNING from a new run (a new start time), or the limit."""
    client = client_for(ctx)
    started = time.monotonic()
    went_down = False
    last = ""
    while time.monotonic() - started < limit:
        try:
            config = await client.config()
            since = await client.started_at()
        except ToolFailure as failure:
            if failure.kind is not ToolErrorKind.UNREACHABLE:
                raise
            went_down = True
            last = failure.message
        else:
            # a new run: every state of the old one is gone, the oldest is younger than the capture
            fresh = went_down or after(since, before["ha_now"])
            if fresh and config.get("state") == "RUNNING":
                return {"state": "RUNNING", "version": config.get("version"), "started_at": since}
            last = f"state {config.get('state')}"
        await asyncio.sleep(0.5)
    raise ToolFailure(
        ToolErrorKind.FAILED,
        f"Home Assistant did not come back RUNNING within {limit:.0f}s after the restart ({last})",
    )


@TOOLSET.write(
    "restart",
    "Restart Home Assistant, only after its config check passes; wait until the API answers "
    "RUNNING again.",
    level=RiskLevel.HARD,
    reversibility=Reversibility.STATELESS,
    capture=capture_restart,
    facts=lambda ctx, b: {
        "version": b["version"],
        "state": b["state"],
        "config_check": b["config_check"],
    },
    preview=lambda ctx, b: (
        f"restart Home Assistant {b['version']} at {target_of(ctx).url} (now {b['state']}, "
        f"{b['unavailable']} entities unavailable; config check {b['config_check']}"
        + (" with warnings" if b["warnings"] else "")
        + "): automations and dashboards stop for the restart"
    ),
    needs_resource=False,
    timeout=timedelta(minutes=11),
)
async def restart(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await capture_restart(ctx)
    client = client_for(ctx)
    limit = target_of(ctx).restart_timeout.total_seconds()
    started = time.monotonic()
    if after(await client.started_at(), before["ha_now"]):  # a retry: it already restarted
        back = await _wait_back(ctx, before, limit)
        return back | {"restarted": False, "_summary": "Home Assistant was already restarted"}
    try:
        await client.api.post("/api/services/homeassistant/restart", json_body={})
    except ToolFailure as failure:  # the connection may drop as Home Assistant stops
        if failure.kind is not ToolErrorKind.UNREACHABLE:
            raise
    back = await _wait_back(ctx, before, limit)
    seconds = round(time.monotonic() - started, 1)
    return back | {
        "restarted": True,
        "seconds": seconds,
        "_summary": f"restarted Home Assistant {back['version']}: RUNNING again after {seconds}s",
    }
