"""What every benchmark shares: percentiles computed one way, and results written one way."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Iterable[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


def summary(
    values: Iterable[float], percentiles: tuple[int, ...] = (50, 95), mean: bool = True
) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "mean": ...}`` in seconds, rounded to the millisecond."""
    data = list(values)
    out = {f"p{p}": percentile(data, p) for p in percentiles}
    if mean:
        out["mean"] = round(statistics.mean(data), 3) if data else None
    return out


def write(name: str, report: Any) -> Path:
    """``bench/results/<name>-<UTC timestamp>.json``."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    return out
