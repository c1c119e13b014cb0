"""What the scheduled jobs look at: exhaustion forecasts and anomalies over Prometheus series.

Each job returns an ``Evaluation``: its findings and the keys it looked at and found fine (so the
router resolves what no longer holds, and only that). A source whose query fails is a note, not a
failed run; a run where every source failed is a failure (the schedule's alert sees it).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from activities.catalog import TargetClients, ToolFailure
from activities.proactive.series import Series, fraction_query, prometheus_api, query_range
from core.models import ToolErrorKind
from core.schedules import (
    METRIC_ANOMALY,
    PREDICTED_EXHAUSTION,
    AnomalyInput,
    Evaluation,
    Finding,
    ForecastInput,
    SeriesSource,
    builtin_anomaly_sources,
    builtin_forecast_sources,
)
from core.units import human_duration

log = logging.getLogger(__name__)


def _sources(
    builtin: bool, extra: list[SeriesSource], defaults: list[SeriesSource]
) -> list[SeriesSource]:
    by_name = {s.name: s for s in defaults} if builtin else {}
    by_name.update({s.name: s for s in extra})  # a configured source replaces a built-in one
    return list(by_name.values())


def _key(source: SeriesSource, series: Series) -> dict[str, str]:
    return {"source": source.name, **series.identity(source.labels)}


def _where(ident: dict[str, str]) -> str:
    parts = [ident[k] for k in ("mountpoint", "id", "datastore", "datname", "name") if ident.get(k)]
    host = ident.get("instance") or ident.get("server") or ""
    return " on ".join(p for p in [" ".join(parts), host] if p) or ",".join(ident.values())


def _failed_all(notes: list[str], sources: list[SeriesSource]) -> None:
    if sources and len(notes) >= len(sources):
        raise ToolFailure(ToolErrorKind.UNREACHABLE, "every source failed: " + "; ".join(notes))


async def forecast(clients: TargetClients, inp: ForecastInput) -> Evaluation:
    from activities.proactive import trend  # numpy and scikit-learn: loaded on first use only

    name, api = prometheus_api(clients, inp.prometheus)
    end = inp.at or datetime.now(UTC)
    start = end - inp.window
    sources = _sources(inp.builtin_sources, inp.sources, builtin_forecast_sources())
    out = Evaluation()
    for source in sources:
        try:
            found = await query_range(
                api, fraction_query(source), start, end, inp.step.total_seconds()
            )
        except ToolFailure as exc:
            out.notes.append(f"{source.name}: {exc.message}")
            continue
        threshold = source.threshold or inp.threshold
        for series in found:
            out.series += 1
            result = await asyncio.to_thread(
                trend.forecast,
                series.times,
                series.values,
                end.timestamp(),
                threshold,
                min_jump=0.02 * threshold,
            )
            key = _key(source, series)
            detail = {"key": key, **result.as_dict()}
            out.details.append(detail)
            eta = result.eta_seconds
            if result.growing and eta is not None and eta <= inp.horizon.total_seconds():
                out.findings.append(_exhaustion(source, series, key, result, threshold, inp, name))
            else:
                out.clear.append(key)
    _failed_all(out.notes, sources)
    return out


def _exhaustion(
    source: SeriesSource,
    series: Series,
    key: dict[str, str],
    f: Any,
    threshold: float,
    inp: ForecastInput,
    prometheus: str,
) -> Finding:
    eta = human_duration(f.eta_seconds)
    band = f"{human_duration(f.eta_low_seconds)}–{human_duration(f.eta_high_seconds)}"
    summary = (
        f"{_where(key)} reaches {threshold:.0%} in {eta} ({band}); "
        f"{f.current:.1%} used, {f.slope_per_day:+.2%}/day"
    )
    labels = {k: v for k, v in key.items() if k != "source"}
    labels["resource_kind"] = source.kind
    if source.service:
        labels["homelab_service"] = source.service
    return Finding(
        alert=PREDICTED_EXHAUSTION,
        key=key,
        labels=labels,
        summary=summary,
        severity="critical"
        if (f.eta_seconds or 0) < timedelta(days=1).total_seconds()
        else "warning",
        evidence={
            "eta_seconds": f.eta_seconds,
            "eta_low_seconds": f.eta_low_seconds,
            "eta_high_seconds": f.eta_high_seconds,
            "eta": eta,
            "band": band,
            "threshold": threshold,
            "used_fraction": round(f.current, 5),
            "growth_per_day": round(f.slope_per_day, 6),
            "seasonal_amplitude": round(f.seasonal_amplitude, 5),
            "drops": f.drops,
            "steps": f.steps,
            "window": human_duration(inp.window.total_seconds()),
            "query": fraction_query(source),
            "prometheus": prometheus,
            "method": "hourly medians, jumps joined, Huber daily seasonality, Theil-Sen slope",
        },
    )


def _weeks_ago(series: list[Series]) -> dict[tuple[tuple[str, str], ...], list[float]]:
    out: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for s in series:
        out.setdefault(tuple(sorted(s.labels.items())), []).extend(s.values)
    return out


async def anomalies(clients: TargetClients, inp: AnomalyInput) -> Evaluation:
    from activities.proactive import anomaly  # numpy: loaded on first use only

    _, api = prometheus_api(clients, inp.prometheus)
    end = inp.at or datetime.now(UTC)
    step = inp.step.total_seconds()
    sources = _sources(inp.builtin_sources, inp.sources, builtin_anomaly_sources())
    out = Evaluation()
    for source in sources:
        try:
            recent = await query_range(api, source.query, end - inp.window, end, step)
            past = []
            for week in range(1, inp.weeks + 1):
                at = end - timedelta(weeks=week)
                found = await query_range(
                    api, source.query, at - inp.baseline_window, at + inp.baseline_window, step
                )
                past.append(_weeks_ago(found))
        except ToolFailure as exc:
            out.notes.append(f"{source.name}: {exc.message}")
            continue
        for series in recent:
            out.series += 1
            ident = tuple(sorted(series.labels.items()))
            result = anomaly.score(
                series.values,
                [week.get(ident, []) for week in past],
                z_threshold=inp.z_threshold,
                min_change=source.min_change,
            )
            key = _key(source, series)
            out.details.append({"key": key, **result.as_dict()})
            if not result.anomalous:
                out.clear.append(key)
                continue
            labels = {k: v for k, v in key.items() if k != "source"}
            labels["resource_kind"] = source.kind
            if source.service:
                labels["homelab_service"] = source.service
            out.findings.append(
                Finding(
                    alert=METRIC_ANOMALY,
                    key=key,
                    labels=labels,
                    summary=(
                        f"{source.name} {result.reason} usual on {_where(key)}: "
                        f"{result.current:.4g} vs {result.baseline:.4g} at this hour of the week "
                        f"(robust z {result.z:+.1f})"
                    ),
                    evidence={
                        **{k: v for k, v in result.as_dict().items() if k != "anomalous"},
                        "query": source.query,
                        "baseline": f"±{human_duration(inp.baseline_window.total_seconds())} "
                        f"around this time in {inp.weeks} past weeks",
                    },
                )
            )
    _failed_all(out.notes, sources)
    return out
