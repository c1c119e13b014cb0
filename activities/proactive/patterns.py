"""The pattern report: when incidents happen, where, what recurs, how well it is fixed, MTTR.

Read from the store's incident records (closed incidents), so the CLI and the weekly scheduled
workflow print the same numbers.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from core.schedules import Count, PatternReport, PatternReportInput, RecurringFault, WeekMttr

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
FIXED = {"resolved", "recovered", "alert_resolved"}


def _seconds(row: dict[str, Any]) -> float | None:
    if row["closed_at"] is None:
        return None
    return float((row["closed_at"] - row["opened_at"]).total_seconds())


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def report(
    rows: list[dict[str, Any]],
    trend_rows: list[dict[str, Any]],
    inp: PatternReportInput,
    since: datetime,
    until: datetime,
) -> PatternReport:
    """``rows``: incidents of the period; ``trend_rows``: those of the MTTR trend's weeks."""
    weekdays = Counter(WEEKDAYS[r["opened_at"].weekday()] for r in rows)
    hours = Counter(r["opened_at"].hour for r in rows)
    targets = Counter(r["target"] or "unknown" for r in rows)
    alerts = Counter(r["alert"] for r in rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["alert"], r["target"] or "unknown")].append(r)
    recurring = []
    for (alert, target), members in groups.items():
        if len(members) < 2:
            continue
        fixed = [m for m in members if m["outcome"] in FIXED]
        recurring.append(
            RecurringFault(
                alert=alert,
                target=target,
                count=len(members),
                succeeded=len(fixed),
                success_rate=len(fixed) / len(members),
                mttr_seconds=_median([s for m in fixed if (s := _seconds(m)) is not None]),
            )
        )
    recurring.sort(key=lambda f: (-f.count, f.alert, f.target))
    weeks: dict[str, list[dict[str, Any]]] = {}
    start = until - timedelta(weeks=inp.trend_weeks)
    for n in range(inp.trend_weeks):
        weeks[_week(start + timedelta(weeks=n, days=3))] = []
    for r in trend_rows:
        weeks.setdefault(_week(r["opened_at"]), []).append(r)
    trend = []
    for week in sorted(weeks):
        members = weeks[week]
        fixed = [m for m in members if m["outcome"] in FIXED]
        trend.append(
            WeekMttr(
                week=week,
                incidents=len(members),
                resolved=len(fixed),
                mttr_seconds=_median([s for m in fixed if (s := _seconds(m)) is not None]),
            )
        )
    fixed_all = sum(1 for r in rows if r["outcome"] in FIXED)
    return PatternReport(
        since=since,
        until=until,
        incidents=len(rows),
        by_weekday={d: weekdays.get(d, 0) for d in WEEKDAYS},
        by_hour=[hours.get(h, 0) for h in range(24)],
        by_target=[Count(name=n, count=c) for n, c in targets.most_common(inp.top)],
        by_alert=[Count(name=n, count=c) for n, c in alerts.most_common(inp.top)],
        recurring=recurring[: inp.top],
        mttr_trend=trend,
        success_rate=fixed_all / len(rows) if rows else None,
    )


def build(store: Any, inp: PatternReportInput) -> PatternReport:
    until = inp.at or datetime.now(UTC)
    since = until - timedelta(days=inp.days)
    rows = store.incidents_between(since, until)
    trend_rows = store.incidents_between(until - timedelta(weeks=inp.trend_weeks), until)
    return report(rows, trend_rows, inp, since, until)
