"""Time until a usage series crosses its threshold, robust to what real disks do.

Real usage series are not lines: they breathe daily (backups, caches), carry outliers, drop when
someone cleans up, and counters reset. ``predict_linear`` over the last hours mistakes a daily peak
for growth and a cleanup for shrinkage. Here, per series:

1. hourly medians (one spike cannot move a median);
2. jumps are found in the hourly differences (far outside their robust spread and at least
   ``min_jump``) and taken out, joining the levels (a cleanup, a counter reset or a one-off copy
   is not a growth rate);
3. a Huber regression (scikit-learn) of the joined series on time and two daily harmonics gives
   the daily seasonality, which is removed;
4. the Theil–Sen slope of what remains (median of pairwise slopes) with Sen's rank confidence
   interval, over the segment since the last drop when it spans ``min_segment_days`` (the rate
   may have changed with the cleanup), else over the whole window; the current level is the
   median of the real values since the last jump (a day at most) around that slope;
5. the first time trend plus seasonality reaches the threshold, for the slope and for both ends
   of its interval (the band).

numpy and scikit-learn are imported by this module only, which the activity imports on first use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import HuberRegressor

HOUR = 3600.0
DAY = 86400.0
Z_90 = 1.645


@dataclass
class Forecast:
    eta_seconds: float | None
    eta_low_seconds: float | None
    eta_high_seconds: float | None
    slope_per_day: float
    slope_low_per_day: float
    slope_high_per_day: float
    level: float
    current: float
    seasonal_amplitude: float
    segment_hours: float
    drops: int
    steps: int
    points: int
    reason: str

    @property
    def growing(self) -> bool:
        """Growth beyond doubt: the whole confidence interval of the slope is above zero."""
        return self.slope_low_per_day > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hourly(ts: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median per whole hour, stamped at the hour's middle."""
    keep = np.isfinite(ys)
    ts, ys = ts[keep], ys[keep]
    if ts.size == 0:
        return ts, ys
    bins = np.floor(ts / HOUR).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bins, ys = bins[order], ys[order]
    edges = np.flatnonzero(np.diff(bins)) + 1
    groups = np.split(ys, edges)
    starts = bins[np.concatenate(([0], edges))]
    return starts * HOUR + HOUR / 2, np.array([np.median(g) for g in groups])


def robust_scale(values: np.ndarray) -> float:
    """1.4826 × MAD: the standard deviation of normal noise, unmoved by outliers."""
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def jumps(y: np.ndarray, min_jump: float) -> np.ndarray:
    """Hourly differences that are jumps: index i is the jump between points i and i+1."""
    d = np.diff(y)
    if d.size == 0:
        return np.array([], dtype=np.int64)
    limit = max(8.0 * robust_scale(d), min_jump)
    return np.flatnonzero(np.abs(d) > limit)


def without_steps(y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The series with each jump's size taken out of every later point (levels joined)."""
    out = y.astype(float).copy()
    d = np.diff(y)
    for i in at:
        out[i + 1 :] -= d[i] - (np.median(d) if d.size else 0.0)
    return out


def harmonics(t: np.ndarray) -> np.ndarray:
    phase = 2 * math.pi * (t % DAY) / DAY
    return np.column_stack([np.sin(phase), np.cos(phase), np.sin(2 * phase), np.cos(2 * phase)])


def theil_sen(x: np.ndarray, y: np.ndarray, z: float = Z_90) -> tuple[float, float, float]:
    """Median pairwise slope and Sen's rank confidence interval around it."""
    n = x.size
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    ok = dx > 0
    slopes = np.sort((y[j] - y[i])[ok] / dx[ok])
    total = slopes.size
    if total == 0:
        return 0.0, 0.0, 0.0
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo = int(max(0, math.floor((total - c) / 2)))
    hi = int(min(total - 1, math.ceil((total + c) / 2)))
    return float(np.median(slopes)), float(slopes[lo]), float(slopes[hi])


def first_crossing(
    level: float,
    slope_per_day: float,
    seasonal: np.ndarray,
    now: float,
    threshold: float,
    limit_seconds: float,
    step: float = 300.0,
) -> float | None:
    """Seconds from ``now`` until trend + seasonality reaches ``threshold`` (None: not within
    ``limit_seconds``)."""
    tau = np.arange(0.0, limit_seconds + step, step)
    season = harmonics(now + tau) @ seasonal if seasonal.size else 0.0
    path = level + slope_per_day * tau / DAY + season
    hit = np.flatnonzero(path >= threshold)
    return float(tau[hit[0]]) if hit.size else None


def forecast(
    ts: list[float] | np.ndarray,
    ys: list[float] | np.ndarray,
    now: float,
    threshold: float,
    *,
    min_jump: float,
    limit_seconds: float = 365 * DAY,
    min_hours: int = 12,
    min_segment_days: float = 3.0,
) -> Forecast:
    """The forecast of one series (timestamps in Unix seconds, values in the threshold's unit)."""
    t_h, y_h = hourly(np.asarray(ts, dtype=float), np.asarray(ys, dtype=float))
    current = float(y_h[-1]) if y_h.size else math.nan
    if y_h.size < min_hours:
        return _none(current, y_h.size, f"insufficient data ({y_h.size} hours, need {min_hours})")

    at = jumps(y_h, min_jump)
    d = np.diff(y_h)
    drops = at[d[at] < 0]
    y_adj = without_steps(y_h, at)
    x_days = (t_h - now) / DAY

    seasonal = np.zeros(0)
    if t_h[-1] - t_h[0] >= 2 * DAY:
        features = np.column_stack([x_days, harmonics(t_h)])
        model = HuberRegressor(alpha=0.0, max_iter=500).fit(features, y_adj)
        seasonal = np.asarray(model.coef_[1:], dtype=float)
    season = harmonics(t_h) @ seasonal if seasonal.size else np.zeros_like(y_adj)

    segment_from = int(drops[-1]) + 1 if drops.size else 0
    if t_h[-1] - t_h[segment_from] < min_segment_days * DAY - HOUR:
        segment_from = 0  # too little since the last drop: the whole window, jumps taken out
    slope, slope_lo, slope_hi = theil_sen(x_days[segment_from:], (y_adj - season)[segment_from:])

    # The level now, from the real values since the last jump, over a day at most.
    recent_from = max(int(at[-1]) + 1 if at.size else 0, int(np.searchsorted(t_h, now - DAY)))
    recent_from = min(recent_from, t_h.size - 1)
    real = (y_h - season - slope * x_days)[recent_from:]
    level = float(np.median(real))
    amplitude = (
        float(np.ptp(harmonics(np.arange(0, DAY, 600.0)) @ seasonal) / 2) if seasonal.size else 0.0
    )
    steps = int(at.size - drops.size)

    def eta(s: float) -> float | None:
        return first_crossing(level, s, seasonal, now, threshold, limit_seconds)

    eta_mid = eta(slope)
    result = Forecast(
        eta_seconds=eta_mid,
        eta_low_seconds=eta(slope_hi),
        eta_high_seconds=eta(slope_lo),
        slope_per_day=slope,
        slope_low_per_day=slope_lo,
        slope_high_per_day=slope_hi,
        level=level,
        current=current,
        seasonal_amplitude=amplitude,
        segment_hours=float((t_h[-1] - t_h[segment_from]) / HOUR),
        drops=int(drops.size),
        steps=steps,
        points=int(np.asarray(ts).size),
        reason="",
    )
    if slope_lo <= 0:
        result.reason = "not growing beyond doubt"
    elif eta_mid is None:
        result.reason = "does not reach the threshold within a year"
    else:
        result.reason = "growing"
    return result


def _none(current: float, hours: int, reason: str) -> Forecast:
    return Forecast(
        eta_seconds=None,
        eta_low_seconds=None,
        eta_high_seconds=None,
        slope_per_day=0.0,
        slope_low_per_day=0.0,
        slope_high_per_day=0.0,
        level=current,
        current=current,
        seasonal_amplitude=0.0,
        segment_hours=float(hours),
        drops=0,
        steps=0,
        points=0,
        reason=reason,
    )
