"""Anomalies: the recent level against the same hour of the week in past weeks.

The baseline is every sample within ``± baseline_window`` of the same moment 1..N weeks ago (a
Monday-morning backup is normal on Monday mornings); the score is a robust z — the distance of the
recent median from the baseline median in units of 1.4826 × MAD — so the spikes a baseline
contains do not widen it. A flat series has no spread: ``min_change`` (the smallest absolute
change that counts) keeps it quiet. numpy only; the activity imports this on first use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Score:
    current: float
    baseline: float
    spread: float
    z: float
    change: float
    baseline_points: int
    weeks: int
    anomalous: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(
    recent: list[float],
    baseline_by_week: list[list[float]],
    *,
    z_threshold: float,
    min_change: float,
    min_weeks: int = 2,
) -> Score:
    now = np.asarray([v for v in recent if np.isfinite(v)], dtype=float)
    weeks = [np.asarray([v for v in w if np.isfinite(v)], dtype=float) for w in baseline_by_week]
    weeks = [w for w in weeks if w.size]
    base = np.concatenate(weeks) if weeks else np.zeros(0)
    if now.size == 0 or len(weeks) < min_weeks:
        return Score(
            current=float(np.median(now)) if now.size else float("nan"),
            baseline=float("nan"),
            spread=0.0,
            z=0.0,
            change=0.0,
            baseline_points=int(base.size),
            weeks=len(weeks),
            anomalous=False,
            reason=f"no baseline ({len(weeks)} of {min_weeks} weeks with data)",
        )
    current = float(np.median(now))
    median = float(np.median(base))
    spread = float(1.4826 * np.median(np.abs(base - median)))
    change = current - median
    floor = 1e-9 + 1e-6 * max(1.0, abs(median))
    z = change / max(spread, floor)
    big = abs(change) >= min_change
    anomalous = bool(abs(z) >= z_threshold and big)
    if anomalous:
        reason = "above" if change > 0 else "below"
    elif not big:
        reason = "change below min_change"
    else:
        reason = "within the usual spread"
    return Score(
        current=current,
        baseline=median,
        spread=spread,
        z=float(z),
        change=float(change),
        baseline_points=int(base.size),
        weeks=len(weeks),
        anomalous=anomalous,
        reason=reason,
    )
