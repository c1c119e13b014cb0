"""Grafana's health, its data sources (each health-checked) and dashboard search."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.grafana.client import TOOLSET, api_for
from core.models import ToolErrorKind


class SearchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(default="", max_length=200, description="title substring")
    tags: list[str] = Field(default_factory=list, max_length=10)
    limit: int = Field(default=50, ge=1, le=500)


@TOOLSET.read(
    "health",
    "Grafana's own health: version and whether its database answers.",
    needs_resource=False,
)
async def health(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    found = await api_for(ctx).get("/api/health")
    ok = (found or {}).get("database") == "ok"
    return {
        "version": found.get("version"),
        "commit": found.get("commit"),
        "database": found.get("database"),
        "ok": ok,
        "_summary": f"Grafana {found.get('version')}: database {found.get('database')}",
    }


async def _source_health(ctx: ToolContext[Any], uid: str) -> tuple[str, str]:
    try:
        found = await api_for(ctx).get(f"/api/datasources/uid/{uid}/health")
    except ToolFailure as failure:
        if failure.kind in (ToolErrorKind.UNAUTHORIZED, ToolErrorKind.UNREACHABLE):
            raise
        if failure.kind is ToolErrorKind.NOT_FOUND:
            return "UNKNOWN", "no health check for this data source type"
        return "ERROR", failure.message  # Grafana answers 400 {"status":"ERROR","message":...}
    return str((found or {}).get("status", "UNKNOWN")), str((found or {}).get("message", ""))


@TOOLSET.read(
    "datasources",
    "Every data source with the result of its own health check (Prometheus, Loki, ... reachable "
    "from Grafana or not).",
    needs_resource=False,
)
async def datasources(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = []
    for source in await api_for(ctx).get("/api/datasources") or []:
        status, message = await _source_health(ctx, str(source.get("uid")))
        rows.append(
            {
                "uid": source.get("uid"),
                "name": source.get("name"),
                "type": source.get("type"),
                "url": source.get("url"),
                "is_default": bool(source.get("isDefault")),
                "status": status,
                "message": message[:300],
            }
        )
    failing = [r for r in rows if r["status"] == "ERROR"]
    return {
        "datasources": rows,
        "failing": len(failing),
        "_summary": f"{len(rows)} data source(s), {len(failing)} failing"
        + (f": {failing[0]['name']}: {failing[0]['message']}" if failing else ""),
    }


@TOOLSET.read(
    "dashboards",
    "Search dashboards by title and tags: uid, title, folder, url.",
    SearchParams,
    needs_resource=False,
)
async def dashboards(ctx: ToolContext[SearchParams]) -> dict[str, Any]:
    params: dict[str, Any] = {"type": "dash-db", "limit": ctx.params.limit}
    if ctx.params.query:
        params["query"] = ctx.params.query
    if ctx.params.tags:
        params["tag"] = ctx.params.tags
    found = await api_for(ctx).get("/api/search", params=params)
    rows = [
        {
            "uid": d.get("uid"),
            "title": d.get("title"),
            "folder": d.get("folderTitle", ""),
            "tags": d.get("tags") or [],
            "url": d.get("url"),
        }
        for d in found or []
    ]
    return {"dashboards": rows, "count": len(rows), "_summary": f"{len(rows)} dashboard(s)"}
