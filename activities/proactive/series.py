"""Range queries for the scheduled jobs, at explicit times, through the Prometheus toolset's client.

Explicit ``start``/``end`` (never "now" on the server's side) make a run reproducible and let a
job evaluate backfilled history. Values that are not finite are dropped, not zeroed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from activities.catalog import TargetClients, ToolFailure
from activities.toolsets.http import HttpApi
from activities.toolsets.prometheus.client import data, make_client
from core.models import ToolErrorKind
from core.schedules import SeriesSource

MAX_POINTS = 11000  # Prometheus refuses longer range queries


@dataclass
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]

    def identity(self, keep: list[str]) -> dict[str, str]:
        """The labels that name this series (``keep``, or all but ``__name__``)."""
        if keep:
            return {k: self.labels[k] for k in keep if self.labels.get(k)}
        return {k: v for k, v in self.labels.items() if k != "__name__"}


def fraction_query(source: SeriesSource) -> str:
    """The PromQL whose series are the used fraction (or the raw value without a capacity)."""
    if source.capacity_query:
        return f"({source.query}) / ({source.capacity_query})"
    if source.capacity:
        return f"({source.query}) / {source.capacity!r}"
    return source.query


def prometheus_api(clients: TargetClients, name: str) -> tuple[str, HttpApi]:
    """The named prometheus target's client (or the only one's)."""
    targets = clients.settings.prometheus
    if not name:
        if len(targets) != 1:
            raise ToolFailure(
                ToolErrorKind.INVALID,
                f"{len(targets)} prometheus targets are configured: name one in the "
                "schedule's input (prometheus: NAME)",
            )
        name = targets[0].name
    return name, clients.client("prometheus", name, make_client)


async def query_range(
    api: HttpApi, query: str, start: datetime, end: datetime, step: float
) -> list[Series]:
    step = max(step, math.ceil((end - start).total_seconds() / (MAX_POINTS - 1)))
    result: Any = await data(
        api,
        "/api/v1/query_range",
        query=query,
        start=f"{start.timestamp():.3f}",
        end=f"{end.timestamp():.3f}",
        step=f"{step:g}",
    )
    if not isinstance(result, dict) or result.get("resultType") != "matrix":
        raise ToolFailure(ToolErrorKind.FAILED, f"{query}: the answer is not a matrix")
    out: list[Series] = []
    for item in result.get("result") or []:
        times: list[float] = []
        values: list[float] = []
        for t, v in item.get("values", []):
            try:
                number = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                times.append(float(t))
                values.append(number)
        out.append(
            Series({str(k): str(v) for k, v in item.get("metric", {}).items()}, times, values)
        )
    return out
