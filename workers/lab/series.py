"""Synthetic usage series with a known future, and their backfill into a real Prometheus.

Each case is a noiseless process (trend, daily seasonality, one-off jumps) plus noise and spikes.
Its true time to the threshold is where the noiseless process, continued past the end without
further jumps, first reaches it, so a forecast can be scored against the truth. The series are
written as node_exporter filesystem metrics in OpenMetrics text and turned into TSDB blocks by
``promtool tsdb create-blocks-from openmetrics`` (see ``backfill``).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.lab.monitoring import binary

DAY = 86400.0
SIZE = 100 * 1024**3
Process = Callable[[np.ndarray], np.ndarray]


@dataclass
class Case:
    """One series: ``process`` gives the noiseless used fraction at Unix times (before ``end``,
    jumps included; after it, the continuation without new jumps)."""

    name: str
    kind: str  # linear, seasonal, cleanup, step, flat, shrinking, resets
    process: Process
    noise: float = 0.002
    spikes: int = 0
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def true_eta(self, end: float, threshold: float, limit: float = 365 * DAY) -> float | None:
        tau = np.arange(0.0, limit, 300.0)
        hit = np.flatnonzero(self.process(end + tau) >= threshold)
        return float(tau[hit[0]]) if hit.size else None


def _season(t: np.ndarray, amplitude: float, peak_hour: float = 3.0) -> np.ndarray:
    return amplitude * np.cos(2 * math.pi * ((t % DAY) / DAY - peak_hour / 24))


def cases(end: float, days: int, seed: int = 7, variants: int = 1) -> list[Case]:
    """The acceptance set: linear, seasonal with noise, cleanup and regrowth, a step, flat,
    shrinking and counter resets (``variants`` copies of each with other rates and phases)."""
    rng = np.random.default_rng(seed)
    out: list[Case] = []
    for v in range(variants):
        r = rng.uniform(0.8, 1.25)  # rate scale of this variant
        eta = rng.uniform(3.0, 12.0)  # days to 90 % of the trend alone

        def linear(t: np.ndarray, r: float = r, eta: float = eta) -> np.ndarray:
            slope = 0.02 * r
            return 0.9 - slope * eta + slope * (t - end) / DAY

        def seasonal(t: np.ndarray, r: float = r, eta: float = eta, v: int = v) -> np.ndarray:
            slope = 0.025 * r
            return 0.9 - slope * eta + slope * (t - end) / DAY + _season(t, 0.04, 2 + 3 * v)

        cleanup_at = end - rng.uniform(14, 30) * 3600

        def cleanup(
            t: np.ndarray, r: float = r, eta: float = eta, at: float = cleanup_at
        ) -> np.ndarray:
            slope = 0.03 * r
            base = 0.9 - slope * eta + slope * (t - end) / DAY + _season(t, 0.02, 1)
            return base + np.where(t < at, 0.28, 0.0)

        step_at = end - rng.uniform(3, 6) * DAY

        def step(t: np.ndarray, r: float = r, eta: float = eta, at: float = step_at) -> np.ndarray:
            slope = 0.012 * r
            base = 0.9 - slope * (eta + 4) + slope * (t - end) / DAY
            return base - np.where(t < at, 0.15, 0.0)

        def flat(t: np.ndarray, v: int = v) -> np.ndarray:
            return 0.62 + 0.02 * v + _season(t, 0.03, 4)

        def shrinking(t: np.ndarray, r: float = r) -> np.ndarray:
            return 0.75 - 0.01 * r * (t - end) / DAY + _season(t, 0.01, 5)

        period = rng.uniform(4.0, 6.0) * DAY
        last_reset = end - rng.uniform(1.5, 3.0) * DAY

        def resets(
            t: np.ndarray, r: float = r, period: float = period, last: float = last_reset
        ) -> np.ndarray:
            slope = 0.06 * r
            since = np.where(t >= last, t - last, np.mod(t - last, period))
            return 0.2 + slope * since / DAY

        suffix = f"-{v}" if variants > 1 else ""
        out += [
            Case(f"linear{suffix}", "linear", linear),
            Case(f"seasonal{suffix}", "seasonal", seasonal, noise=0.006, spikes=6),
            Case(f"cleanup{suffix}", "cleanup", cleanup, noise=0.003),
            Case(f"step{suffix}", "step", step),
            Case(f"flat{suffix}", "flat", flat, noise=0.004, spikes=4),
            Case(f"shrinking{suffix}", "shrinking", shrinking, noise=0.003),
            Case(f"resets{suffix}", "resets", resets, noise=0.002),
        ]
    step_s = 300.0
    times = np.arange(end - days * DAY, end + 1, step_s)
    for case in out:
        values = case.process(times) + rng.normal(0, case.noise, times.size)
        for at in rng.choice(times.size, size=case.spikes, replace=False):
            values[at] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)
        case.times, case.values = times, np.clip(values, 0.0, 1.0)
    return out


def openmetrics(cases_: list[Case], instance: str = "nas:9100") -> str:
    """node_exporter's filesystem gauges for each case (mount ``/srv/<case>``), OpenMetrics text."""
    lines: list[str] = []
    for metric in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"):
        lines.append(f"# TYPE {metric} gauge")
        for case in cases_:
            labels = (
                f'device="/dev/{case.name}",fstype="ext4",instance="{instance}",'
                f'job="node",mountpoint="/srv/{case.name}"'
            )
            for t, v in zip(case.times, case.values, strict=True):
                value = SIZE if metric == "node_filesystem_size_bytes" else SIZE * (1 - v)
                lines.append(f"{metric}{{{labels}}} {value:.0f} {t:.0f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(text: str, tsdb: Path) -> None:
    """TSDB blocks from OpenMetrics text, written into ``tsdb`` (Prometheus's --storage.tsdb.path)."""
    tsdb.mkdir(parents=True, exist_ok=True)
    source = tsdb.parent / "backfill.om"
    source.write_text(text)
    done = subprocess.run(
        [
            binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(source),
            str(tsdb),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    source.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"promtool could not backfill: {done.stdout}{done.stderr}")
