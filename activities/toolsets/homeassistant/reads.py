"""Home Assistant reads: core state, the config check, unavailable entities by domain and by
integration, the error log's tail, and the integrations (config entries) that failed."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext
from activities.toolsets.homeassistant.client import (
    FAILED_ENTRY_STATES,
    TOOLSET,
    UNAVAILABLE,
    client_for,
    target_of,
    top_level,
)
from core.redact import redact_text


@TOOLSET.read(
    "status",
    "Whether the API answers, the core state (RUNNING, STARTING, NOT_RUNNING...), version, "
    "safe/recovery mode and how many integrations are loaded.",
    needs_resource=False,
)
async def status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    config = await client_for(ctx).config()
    state = config.get("state")
    integrations = top_level(config.get("components") or [])
    return {
        "state": state,
        "running": state == "RUNNING",
        "version": config.get("version"),
        "location_name": config.get("location_name"),
        "safe_mode": bool(config.get("safe_mode")),
        "recovery_mode": bool(config.get("recovery_mode")),
        "integrations": len(integrations),
        "_summary": f"Home Assistant {config.get('version')} {state}, "
        f"{len(integrations)} integrations loaded",
    }


@TOOLSET.read(
    "config_check",
    "Run Home Assistant's own configuration check (the YAML as it is on disk now): passed "
    "unless it is invalid; integration schema problems come back as warnings.",
    needs_resource=False,
    timeout=timedelta(seconds=90),
)
async def config_check(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    result = await client_for(ctx).check_config()
    verdict = result.get("result")
    errors = result.get("errors")
    warnings = result.get("warnings")
    passed = verdict == "valid" and not errors
    text = "; ".join(str(x) for x in (errors, warnings) if x)
    return {
        "result": verdict,
        "ok": passed,
        "clean": passed and not warnings,
        "errors": redact_text(str(errors)) if errors else None,
        "warnings": redact_text(str(warnings)) if warnings else None,
        "_summary": f"config check {verdict}" + (f": {redact_text(text)[:300]}" if text else ""),
    }


class UnavailableParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: int | None = Field(
        default=None, ge=0, description="more than this is over (default: the target's)"
    )
    include_unknown: bool = Field(default=False, description="count 'unknown' states too")
    limit: int = Field(default=50, ge=1, le=1000, description="entities listed")


@TOOLSET.read(
    "entities_unavailable",
    "Entities whose state is unavailable, counted by domain and by the integration that "
    "provides them; the integration with the most of them first.",
    UnavailableParams,
    needs_resource=False,
)
async def entities_unavailable(ctx: ToolContext[UnavailableParams]) -> dict[str, Any]:
    client = client_for(ctx)
    bad = {UNAVAILABLE, "unknown"} if ctx.params.include_unknown else {UNAVAILABLE}
    states = await client.states()
    config = await client.config()
    owners = await client.owners(top_level(config.get("components") or []))
    owner_of = {entity: domain for domain, entities in owners.items() for entity in entities}
    down = sorted(s["entity_id"] for s in states if s.get("state") in bad)
    by_domain = Counter(e.split(".", 1)[0] for e in down)
    by_integration: dict[str, list[str]] = {}
    for entity in down:
        by_integration.setdefault(owner_of.get(entity, "unknown"), []).append(entity)
    ranked = sorted(by_integration.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    threshold = (
        ctx.params.threshold
        if ctx.params.threshold is not None
        else target_of(ctx).unavailable_threshold
    )
    top = ranked[0][0] if ranked else None
    reloadable = await client.reloadable()
    return {
        "count": len(down),
        "total": len(states),
        "threshold": threshold,
        "over_threshold": len(down) > threshold,
        "by_domain": dict(sorted(by_domain.items())),
        "by_integration": {k: len(v) for k, v in ranked},
        "top_integration": top,
        "top_integration_count": len(ranked[0][1]) if ranked else 0,
        "top_integration_total": len(owners.get(top, [])) if top else 0,
        "top_integration_reloadable": top in reloadable,
        "entities": down[: ctx.params.limit],
        "_summary": f"{len(down)} of {len(states)} entities unavailable"
        + (" (" + ", ".join(f"{k}: {len(v)}" for k, v in ranked[:5]) + ")" if ranked else ""),
    }


class LogParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: int = Field(default=100, ge=1, le=2000, description="lines from the end")
    contains: str | None = Field(default=None, max_length=200, description="only lines with this")


LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) \([^)]*\) \[(?P<logger>[^\]]+)\]")


@TOOLSET.read(
    "error_log",
    "The tail of Home Assistant's log (redacted), with ERROR/WARNING counts by logger.",
    LogParams,
    needs_resource=False,
)
async def error_log(ctx: ToolContext[LogParams]) -> dict[str, Any]:
    text = str(await client_for(ctx).api.get("/api/error_log") or "")
    lines = text.splitlines()
    if ctx.params.contains:
        lines = [line for line in lines if ctx.params.contains in line]
    tail = [redact_text(line)[:1000] for line in lines[-ctx.params.lines :]]
    levels: Counter[str] = Counter()
    loggers: Counter[str] = Counter()
    for line in tail:
        match = LOG_LINE.match(line)
        if match and match["level"] in ("ERROR", "WARNING", "CRITICAL"):
            levels[match["level"]] += 1
            loggers[match["logger"]] += 1
    return {
        "lines": tail,
        "errors": levels["ERROR"] + levels["CRITICAL"],
        "warnings": levels["WARNING"],
        "by_logger": dict(loggers.most_common(10)),
        "_summary": f"{levels['ERROR'] + levels['CRITICAL']} errors, {levels['WARNING']} "
        f"warnings in the last {len(tail)} lines"
        + (f"; mostly {loggers.most_common(1)[0][0]}" if loggers else ""),
    }


@TOOLSET.read(
    "integrations",
    "Loaded integrations and the config entries, with those that failed to set up "
    "(setup_error, setup_retry, migration_error) and why.",
    needs_resource=False,
)
async def integrations(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    entries = await client.entries()
    config = await client.config()
    rows = [
        {
            "entry_id": e.get("entry_id"),
            "domain": e.get("domain"),
            "title": e.get("title"),
            "state": e.get("state"),
            "reason": e.get("reason"),
            "disabled_by": e.get("disabled_by"),
            "supports_unload": e.get("supports_unload"),
        }
        for e in entries
    ]
    failed = [r for r in rows if r["state"] in FAILED_ENTRY_STATES and not r["disabled_by"]]
    return {
        "loaded": top_level(config.get("components") or []),
        "entries": rows,
        "failed": failed,
        "failed_count": len(failed),
        "_summary": f"{len(rows)} config entries, {len(failed)} failed"
        + (
            ": " + ", ".join(f"{r['domain']} '{r['title']}' {r['state']}" for r in failed)
            if failed
            else ""
        ),
    }
