"""PromQL as evidence: instant and range queries, bounded in series and points."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.prometheus.client import TOOLSET, api_for, data, target_of
from core.models import ToolErrorKind
from core.units import parse_duration

MAX_SERIES = 200


def _duration(value: str) -> float:
    parsed = parse_duration(value)
    if not isinstance(parsed, timedelta) or parsed.total_seconds() <= 0:
        raise ValueError(f"{value!r} is not a duration such as 30s, 15m or 6h")
    return parsed.total_seconds()


def sample(value: Any) -> float | None:
    """A sample value as a JSON number; NaN and ±Inf (not JSON) become None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class QueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000, description="PromQL expression")
    time: float | None = Field(default=None, description="Unix time to evaluate at; default now")
    limit: int = Field(default=50, ge=1, le=MAX_SERIES, description="series kept in the result")


class RangeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000, description="PromQL expression")
    range: str = Field(default="1h", description="how far back from now (15m, 6h, 2d)")
    step: str | None = Field(
        default=None, description="resolution (30s, 5m); default and minimum: range / max_points"
    )
    limit: int = Field(default=20, ge=1, le=MAX_SERIES, description="series kept in the result")

    @field_validator("range", "step")
    @classmethod
    def _is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            _duration(value)
        return value

    @property
    def range_seconds(self) -> float:
        return _duration(self.range)


def _labels(metric: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metric or {}).items()}


def _summary_of(values: list[float | None]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None]
    return {
        "min": min(finite) if finite else None,
        "max": max(finite) if finite else None,
        "last": values[-1] if values else None,
    }


def _series_name(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


@TOOLSET.read(
    "query",
    "Evaluate a PromQL expression now (or at a time): the matching series and their values, "
    "with count, min and max for conditions. Needs no resource: any incident may cite metrics.",
    QueryParams,
    needs_resource=False,
)
async def query(ctx: ToolContext[QueryParams]) -> dict[str, Any]:
    params: dict[str, Any] = {"query": ctx.params.query}
    if ctx.params.time is not None:
        params["time"] = ctx.params.time
    result = await data(api_for(ctx), "/api/v1/query", **params)
    kind = result.get("resultType")
    raw = result.get("result")
    series: list[dict[str, Any]] = []
    if kind in ("scalar", "string"):
        value = sample(raw[1]) if kind == "scalar" else None
        out = {
            "query": ctx.params.query,
            "result_type": kind,
            "count": 1,
            "value": value if kind == "scalar" else raw[1],
            "series": [],
            "truncated": 0,
        }
        out["_summary"] = f"{ctx.params.query} = {out['value']}"
        return out
    for item in raw or []:
        labels = _labels(item.get("metric", {}))
        if kind == "matrix":
            points = [sample(v) for _, v in item.get("values", [])]
            series.append({"labels": labels, "value": points[-1] if points else None})
        else:
            series.append({"labels": labels, "value": sample(item.get("value", [0, None])[1])})
    kept = series[: ctx.params.limit]
    values: list[float] = [s["value"] for s in series if s["value"] is not None]
    out = {
        "query": ctx.params.query,
        "result_type": kind,
        "count": len(series),
        "value": series[0]["value"] if series else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "series": kept,
        "truncated": len(series) - len(kept),
    }
    shown = "; ".join(f"{_series_name(s['labels'])} = {s['value']}" for s in kept[:3])
    out["_summary"] = f"{ctx.params.query}: {len(series)} series" + (f" ({shown})" if shown else "")
    return out


def _step(params: RangeParams, max_points: int) -> tuple[float, str]:
    """The step that keeps every series at most ``max_points`` long."""
    floor = math.ceil(params.range_seconds / (max_points - 1))
    asked = _duration(params.step) if params.step else 0.0
    if asked >= floor:
        return asked, ""
    if params.step:
        return float(
            floor
        ), f"step {params.step} raised to {floor}s to stay within {max_points} points"
    return float(floor), ""


@TOOLSET.read(
    "query_range",
    "Evaluate a PromQL expression over a recent range: each series' points (at most the "
    "target's max_points), with min, max and last. Needs no resource.",
    RangeParams,
    needs_resource=False,
)
async def query_range(ctx: ToolContext[RangeParams]) -> dict[str, Any]:
    max_points = target_of(ctx).max_points
    step, note = _step(ctx.params, max_points)
    end = time.time()
    start = end - ctx.params.range_seconds
    result = await data(
        api_for(ctx), "/api/v1/query_range", query=ctx.params.query, start=start, end=end, step=step
    )
    if result.get("resultType") != "matrix":
        raise ToolFailure(
            ToolErrorKind.FAILED, f"query_range answered {result.get('resultType')}, not a matrix"
        )
    series: list[dict[str, Any]] = []
    for item in result.get("result") or []:
        points = [[float(t), sample(v)] for t, v in item.get("values", [])][-max_points:]
        series.append(
            {
                "labels": _labels(item.get("metric", {})),
                "points": points,
                **_summary_of([p[1] for p in points]),
            }
        )
    kept = series[: ctx.params.limit]
    maxima: list[float] = [float(s["max"]) for s in series if s["max"] is not None]
    out = {
        "query": ctx.params.query,
        "start": datetime.fromtimestamp(start, UTC).isoformat(),
        "end": datetime.fromtimestamp(end, UTC).isoformat(),
        "step_seconds": step,
        "count": len(series),
        "max": max(maxima) if maxima else None,
        "series": kept,
        "truncated": len(series) - len(kept),
        "note": note,
    }
    out["_summary"] = (
        f"{ctx.params.query} over {ctx.params.range} (step {step:g}s): {len(series)} series"
        + (f", max {out['max']}" if out["max"] is not None else "")
    )
    return out
