"""What Prometheus itself reports: scrape targets, rule groups, alerts, TSDB cardinality."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext
from activities.toolsets.prometheus.client import TOOLSET, api_for, data, self_metrics
from core.units import seconds_since

ERROR_CHARS = 500
TSDB_COUNTERS = {
    "compactions_failed": "prometheus_tsdb_compactions_failed_total",
    "compactions": "prometheus_tsdb_compactions_total",
    "head_truncations_failed": "prometheus_tsdb_head_truncations_failed_total",
    "reloads_failed": "prometheus_tsdb_reloads_failures_total",
    "wal_corruptions": "prometheus_tsdb_wal_corruptions_total",
    "blocks_bytes": "prometheus_tsdb_storage_blocks_bytes",
    "blocks_loaded": "prometheus_tsdb_blocks_loaded",
}


class TargetsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str | None = Field(default=None, max_length=200, description="only this scrape job")
    only_down: bool = Field(default=True, description="list only targets that are not up")
    limit: int = Field(default=50, ge=1, le=500)


class RulesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    only_failing: bool = Field(default=True, description="only groups with a failing rule")
    limit: int = Field(default=50, ge=1, le=500)


class AlertsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["firing", "pending", "all"] = "firing"
    alertname: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=500)


class TsdbParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top: int = Field(default=10, ge=1, le=50, description="entries per cardinality list")


def _age(stamp: str | None) -> int | None:
    """Seconds since an RFC 3339 time (Prometheus' lastScrape/lastEvaluation)."""
    from datetime import datetime

    if not stamp or stamp.startswith("0001-"):
        return None
    try:
        return seconds_since(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@TOOLSET.read(
    "targets",
    "Scrape targets (by default only those down) with their last error and scrape age, and "
    "how many are up per job.",
    TargetsParams,
    needs_resource=False,
)
async def targets(ctx: ToolContext[TargetsParams]) -> dict[str, Any]:
    found = await data(api_for(ctx), "/api/v1/targets", state="active")
    rows = []
    per_job: Counter[str] = Counter()
    up_per_job: Counter[str] = Counter()
    for t in found.get("activeTargets") or []:
        labels = t.get("labels") or {}
        job = str(labels.get("job") or t.get("scrapePool", ""))
        if ctx.params.job and job != ctx.params.job:
            continue
        per_job[job] += 1
        if t.get("health") == "up":
            up_per_job[job] += 1
            if ctx.params.only_down:
                continue
        rows.append(
            {
                "job": job,
                "instance": str(labels.get("instance", "")),
                "scrape_url": t.get("scrapeUrl", ""),
                "health": t.get("health"),
                "last_error": str(t.get("lastError") or "")[:ERROR_CHARS],
                "last_scrape_age": _age(t.get("lastScrape")),
                "last_scrape_seconds": t.get("lastScrapeDuration"),
            }
        )
    down = sum(per_job.values()) - sum(up_per_job.values())
    kept = rows[: ctx.params.limit]
    jobs = {job: {"up": up_per_job[job], "total": n} for job, n in sorted(per_job.items())}
    first = f": {kept[0]['job']}/{kept[0]['instance']} {kept[0]['last_error']}" if kept else ""
    return {
        "targets": kept,
        "down": down,
        "total": sum(per_job.values()),
        "jobs": jobs,
        "truncated": len(rows) - len(kept),
        "_summary": f"{down} of {sum(per_job.values())} targets down{first}"[:300],
    }


@TOOLSET.read(
    "rules",
    "Rule groups (by default only those with a failing rule): file, failing rules and their "
    "last evaluation error.",
    RulesParams,
    needs_resource=False,
)
async def rules(ctx: ToolContext[RulesParams]) -> dict[str, Any]:
    found = await data(api_for(ctx), "/api/v1/rules")
    groups = []
    failing_rules = 0
    total_rules = 0
    for group in found.get("groups") or []:
        members = group.get("rules") or []
        total_rules += len(members)
        bad = [r for r in members if r.get("health") not in ("ok", "unknown")]
        failing_rules += len(bad)
        if ctx.params.only_failing and not bad:
            continue
        groups.append(
            {
                "name": group.get("name"),
                "file": group.get("file"),
                "interval": group.get("interval"),
                "rules": len(members),
                "last_evaluation_age": _age(group.get("lastEvaluation")),
                "evaluation_seconds": group.get("evaluationTime"),
                "failing": [
                    {
                        "name": r.get("name"),
                        "type": r.get("type"),
                        "query": str(r.get("query", ""))[:ERROR_CHARS],
                        "health": r.get("health"),
                        "last_error": str(r.get("lastError") or "")[:ERROR_CHARS],
                    }
                    for r in bad
                ],
            }
        )
    kept = groups[: ctx.params.limit]
    first = ""
    if kept and kept[0]["failing"]:
        bad_rule = kept[0]["failing"][0]
        first = f": {kept[0]['file']} {bad_rule['name']}: {bad_rule['last_error']}"
    return {
        "groups": kept,
        "failing_groups": sum(1 for g in groups if g["failing"]),
        "failing_rules": failing_rules,
        "total_rules": total_rules,
        "truncated": len(groups) - len(kept),
        "_summary": f"{failing_rules} of {total_rules} rules failing{first}"[:300],
    }


@TOOLSET.read(
    "alerts",
    "Alerts Prometheus evaluates as firing (or pending): labels, since when, value.",
    AlertsParams,
    needs_resource=False,
)
async def alerts(ctx: ToolContext[AlertsParams]) -> dict[str, Any]:
    found = await data(api_for(ctx), "/api/v1/alerts")
    rows = []
    for a in found.get("alerts") or []:
        labels = a.get("labels") or {}
        if ctx.params.state != "all" and a.get("state") != ctx.params.state:
            continue
        if ctx.params.alertname and labels.get("alertname") != ctx.params.alertname:
            continue
        rows.append(
            {
                "alertname": labels.get("alertname"),
                "state": a.get("state"),
                "labels": labels,
                "summary": (a.get("annotations") or {}).get("summary", ""),
                "active_at": a.get("activeAt"),
                "value": a.get("value"),
            }
        )
    kept = rows[: ctx.params.limit]
    names = Counter(str(r["alertname"]) for r in rows)
    return {
        "alerts": kept,
        "count": len(rows),
        "by_name": dict(names),
        "truncated": len(rows) - len(kept),
        "_summary": f"{len(rows)} {ctx.params.state} alert(s)"
        + (f": {', '.join(f'{n} ×{c}' for n, c in names.most_common(5))}" if names else ""),
    }


def _top(entries: Any, top: int) -> list[dict[str, Any]]:
    return [{"name": e.get("name"), "value": e.get("value")} for e in (entries or [])[:top]]


@TOOLSET.read(
    "tsdb_status",
    "TSDB head (series, chunks, label pairs), compaction/truncation/WAL failure counters, block "
    "bytes, and the top metrics and labels by cardinality.",
    TsdbParams,
    needs_resource=False,
)
async def tsdb_status(ctx: ToolContext[TsdbParams]) -> dict[str, Any]:
    api = api_for(ctx)
    found = await data(api, "/api/v1/status/tsdb")
    counters = await self_metrics(api, *TSDB_COUNTERS.values())
    head = found.get("headStats") or {}
    top = ctx.params.top
    out: dict[str, Any] = {
        **{key: counters.get(name) for key, name in TSDB_COUNTERS.items()},
        "head_series": head.get("numSeries"),
        "head_chunks": head.get("chunkCount"),
        "label_pairs": head.get("numLabelPairs"),
        "series_by_metric": _top(found.get("seriesCountByMetricName"), top),
        "values_by_label": _top(found.get("labelValueCountByLabelName"), top),
        "memory_by_label": _top(found.get("memoryInBytesByLabelName"), top),
        "series_by_label_pair": _top(found.get("seriesCountByLabelValuePair"), top),
    }
    biggest = out["series_by_metric"][0] if out["series_by_metric"] else None
    out["_summary"] = (
        f"{out['head_series']} head series, {out['compactions_failed']} failed compactions"
    ) + (f", most: {biggest['name']} ({biggest['value']})" if biggest else "")
    return out
