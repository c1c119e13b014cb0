"""What Alertmanager holds: alerts (and what silences or inhibits them), silences, its status."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.alertmanager.client import (
    MARKER,
    TOOLSET,
    Matcher,
    api_for,
    from_api,
    matchers_text,
    target_of,
)
from activities.toolsets.commands import run_on
from activities.toolsets.prometheus.client import self_metrics
from activities.toolsets.prometheus.config import LINE_NUMBER
from core.models import ToolErrorKind
from core.units import seconds_since

RELOAD_OK = "alertmanager_config_last_reload_successful"
RELOAD_AT = "alertmanager_config_last_reload_success_timestamp_seconds"


class AlertsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(default_factory=list, max_length=20)
    silenced: bool = Field(default=True, description="include silenced alerts")
    inhibited: bool = Field(default=True, description="include inhibited alerts")
    limit: int = Field(default=50, ge=1, le=500)


class SilencesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["active", "pending", "expired", "all"] = "active"
    matchers: list[Matcher] = Field(default_factory=list, max_length=20)
    limit: int = Field(default=50, ge=1, le=500)


def filters(matchers: list[Matcher]) -> list[str]:
    return [m.text() for m in matchers]


def silence_row(s: dict[str, Any]) -> dict[str, Any]:
    comment = str(s.get("comment", ""))
    found = MARKER.search(comment)
    return {
        "id": s.get("id"),
        "state": (s.get("status") or {}).get("state"),
        "matchers": [from_api(m) for m in s.get("matchers") or []],
        "starts_at": s.get("startsAt"),
        "ends_at": s.get("endsAt"),
        "created_by": s.get("createdBy"),
        "comment": comment[:500],
        "incident": found.group(1) if found else None,
    }


async def list_silences(ctx: ToolContext[Any], matchers: list[Matcher]) -> list[dict[str, Any]]:
    params = {"filter": filters(matchers)} if matchers else None
    found = await api_for(ctx).get("/api/v2/silences", params=params)
    return [silence_row(s) for s in found or []]


async def matching_alerts(ctx: ToolContext[Any], matchers: list[Matcher]) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"active": "true", "silenced": "true", "inhibited": "true"}
    if matchers:
        params["filter"] = filters(matchers)
    found = await api_for(ctx).get("/api/v2/alerts", params=params)
    return list(found or [])


@TOOLSET.read(
    "alerts",
    "Alerts Alertmanager holds (optionally filtered by matchers): state, and which silences or "
    "inhibitions suppress them.",
    AlertsParams,
    needs_resource=False,
)
async def alerts(ctx: ToolContext[AlertsParams]) -> dict[str, Any]:
    rows = []
    for a in await matching_alerts(ctx, ctx.params.matchers):
        status = a.get("status") or {}
        if not ctx.params.silenced and status.get("silencedBy"):
            continue
        if not ctx.params.inhibited and status.get("inhibitedBy"):
            continue
        rows.append(
            {
                "alertname": (a.get("labels") or {}).get("alertname"),
                "fingerprint": a.get("fingerprint"),
                "state": status.get("state"),
                "silenced_by": status.get("silencedBy") or [],
                "inhibited_by": status.get("inhibitedBy") or [],
                "labels": a.get("labels") or {},
                "starts_at": a.get("startsAt"),
                "receivers": [r.get("name") for r in a.get("receivers") or []],
            }
        )
    kept = rows[: ctx.params.limit]
    suppressed = sum(1 for r in rows if r["state"] == "suppressed")
    return {
        "alerts": kept,
        "count": len(rows),
        "suppressed": suppressed,
        "truncated": len(rows) - len(kept),
        "_summary": f"{len(rows)} alert(s), {suppressed} suppressed"
        + (f" matching {matchers_text(ctx.params.matchers)}" if ctx.params.matchers else ""),
    }


@TOOLSET.read(
    "silences",
    "Silences (active by default): matchers, end time, author, comment, and the incident that "
    "made it when the agents did.",
    SilencesParams,
    needs_resource=False,
)
async def silences(ctx: ToolContext[SilencesParams]) -> dict[str, Any]:
    rows = [
        s
        for s in await list_silences(ctx, ctx.params.matchers)
        if ctx.params.state == "all" or s["state"] == ctx.params.state
    ]
    rows.sort(key=lambda s: str(s["ends_at"]), reverse=True)
    kept = rows[: ctx.params.limit]
    ours = sum(1 for s in rows if s["incident"])
    return {
        "silences": kept,
        "count": len(rows),
        "by_agents": ours,
        "truncated": len(rows) - len(kept),
        "_summary": f"{len(rows)} {ctx.params.state} silence(s), {ours} by homelab-agents",
    }


def _receivers(original: str) -> list[str]:
    """Receiver names only: the config itself may hold webhook URLs and credentials."""
    try:
        config = yaml.safe_load(original) or {}
    except yaml.YAMLError:
        return []
    return [str(r.get("name")) for r in config.get("receivers") or [] if isinstance(r, dict)]


@TOOLSET.read(
    "status",
    "Version, uptime, cluster state, receivers, and whether the last config reload succeeded "
    "(alertmanager_config_last_reload_successful).",
    needs_resource=False,
)
async def status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    api = api_for(ctx)
    found = await api.get("/api/v2/status")
    gauges = await self_metrics(api, RELOAD_OK, RELOAD_AT)
    cluster = found.get("cluster") or {}
    ok = gauges.get(RELOAD_OK)
    at = gauges.get(RELOAD_AT)
    out = {
        "version": (found.get("versionInfo") or {}).get("version"),
        "uptime": found.get("uptime"),
        "cluster_status": cluster.get("status"),
        "peers": len(cluster.get("peers") or []),
        "receivers": _receivers(str((found.get("config") or {}).get("original", ""))),
        "reload_successful": bool(ok) if ok is not None else None,
        "last_success_time": at,
        "last_success_age": seconds_since(at) if at else None,
    }
    out["_summary"] = (
        f"Alertmanager {out['version']}, last reload "
        + {True: "succeeded", False: "FAILED", None: "unknown"}[out["reload_successful"]]
    )
    return out


@TOOLSET.read(
    "check_config",
    "Run amtool check-config on the target's config_file where it lives (locally or over ssh): "
    "the error and its line.",
    needs_resource=False,
)
async def check_config(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    if target.config_file is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"alertmanager {target.name} has no config_file: set it to let amtool check it",
        )
    path = str(target.config_file)
    run = await run_on(target.ssh, ["amtool", "check-config", path], limit=60)
    output = f"{run.stdout}\n{run.stderr}"
    errors = []
    if run.exit_status != 0:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        failed = [line for line in lines if "FAILED" in line or line.startswith("line ")]
        message = " ".join(failed) or run.tail(300)
        line_no = next(iter(LINE_NUMBER.findall(message)), None)
        errors.append(
            {"file": path, "line": int(line_no) if line_no else None, "message": message[:500]}
        )
    first = errors[0] if errors else None
    where = (
        f"{path}" + (f":{first['line']}" if first["line"] else "") + f": {first['message']}"
        if first
        else ""
    )
    return {
        "ok": run.exit_status == 0,
        "config_file": path,
        "errors": errors,
        "first_error": where,
        "_summary": ("config valid" if run.exit_status == 0 else f"amtool: {where}")[:300],
    }
