"""Exhaustion forecasts and anomaly scores against the truth, side by side with predict_linear.

Synthesizes usage series with a known future (workers/lab/series.py: linear, seasonal with noise
and spikes, cleanup then regrowth, a step, flat, shrinking, counter resets; ``--variants`` copies
of each with other rates and phases), backfills them into a real Prometheus with promtool, and
for each series compares the true time to 90 % with:

* ours: the forecast activity's code (``forecast.evaluate``) querying that Prometheus;
* Prometheus' own ``predict_linear(node_filesystem_avail_bytes[6h], …)`` and ``[24h]`` (the
  anchor users already have), evaluated by the same Prometheus at the same time.

Error = |predicted − true| / true (capped at 1: a miss counts as 100 %); a false alarm is a flat
or shrinking series predicted to fill within the horizon. Anomalies: a generated set of
seasonal series (daily and weekly shape, noise), some with a spike or a level shift injected in
the last minutes, scored by ``anomalies.evaluate``: precision and recall.

Prints and writes bench/results/forecast-<time>.json (its ``summary`` has ``median_error_ours``,
``median_error_predict_linear`` and ``false_alarms``).

    .venv/bin/python bench/forecast.py [--days 21] [--variants 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.catalog import TargetClients
from activities.proactive import jobs
from bench.report import write
from core.config import Settings
from core.schedules import AnomalyInput, ForecastInput, SeriesSource
from workers.lab.monitoring import Prometheus
from workers.lab.processes import free_port
from workers.lab.series import SIZE, Case, backfill, cases, openmetrics

THRESHOLD = 0.9
HORIZON = 7 * 86400.0
DAY = 86400.0
QUIET = {"flat", "shrinking"}


def anomaly_series(end: float, weeks: int, seed: int = 11) -> tuple[str, dict[str, bool]]:
    """OpenMetrics text of ``bench_load`` series and whether each has an injected anomaly."""
    rng = np.random.default_rng(seed)
    step = 300.0
    times = np.arange(end - (weeks * 7 + 1) * DAY, end + 1, step)
    hour = (times % DAY) / 3600
    weekday = ((times // DAY) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    lines = ["# TYPE bench_load gauge"]
    truth: dict[str, bool] = {}
    kinds = ["clean"] * 20 + ["spike"] * 10 + ["shift"] * 10
    for i, kind in enumerate(kinds):
        base = rng.uniform(0.5, 2.0)
        daily = 0.4 * base * np.clip(np.sin(math.pi * (hour - 7) / 12), 0, None)
        weekend = np.where(weekday >= 5, 0.5, 1.0)
        values = base + daily * weekend + rng.normal(0, 0.04 * base, times.size)
        recent = times > end - 20 * 60
        if kind == "spike":
            values[recent] += rng.uniform(0.6, 1.5) * base
        elif kind == "shift":
            values[times > end - rng.uniform(1, 2) * DAY] += rng.uniform(0.3, 0.8) * base
        name = f"{kind}-{i}"
        truth[name] = kind != "clean"
        for t, v in zip(times, values, strict=True):
            lines.append(f'bench_load{{case="{name}",job="bench"}} {v:.5f} {t:.0f}')
    return "\n".join(lines) + "\n", truth


def instant(prom: Prometheus, query: str, at: float) -> dict[str, float]:
    body = httpx.get(
        f"{prom.url}/api/v1/query", params={"query": query, "time": at}, timeout=30, trust_env=False
    ).json()
    return {r["metric"]["mountpoint"]: float(r["value"][1]) for r in body["data"]["result"]}


def predict_linear_eta(prom: Prometheus, window: str, at: float) -> dict[str, float | None]:
    """Seconds until avail reaches (1 - threshold) × size, from predict_linear's own line."""
    now = instant(prom, f"predict_linear(node_filesystem_avail_bytes[{window}], 0)", at)
    rate = instant(prom, f"deriv(node_filesystem_avail_bytes[{window}])", at)
    floor = (1 - THRESHOLD) * SIZE
    out: dict[str, float | None] = {}
    for mount, level in now.items():
        slope = rate.get(mount, 0.0)
        if level <= floor:
            out[mount] = 0.0
        elif slope < 0:
            out[mount] = (level - floor) / -slope
        else:
            out[mount] = None
    return out


def error(pred: float | None, truth: float) -> float:
    if pred is None:
        return 1.0
    return min(abs(pred - truth) / truth, 1.0)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


async def main(days: int, variants: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-forecast-"))
    end = (time.time() // 7200) * 7200 - 4 * 3600
    series: list[Case] = cases(end, days, variants=variants)
    text, truth_anomaly = anomaly_series(end, weeks=4)
    t0 = time.monotonic()
    backfill(openmetrics(series)[: -len("# EOF\n")] + text + "# EOF\n", root / "tsdb")
    backfilled = time.monotonic() - t0
    prom = Prometheus(root, free_port())
    prom.write_bare_config()
    prom.start(tsdb=root / "tsdb", retention="3650d")
    settings = Settings(
        docker=[],
        prometheus=[{"name": "bench", "url": prom.url, "timeout": 60}],
        temporal={"state_dir": str(root / "state")},
    )
    clients = TargetClients(settings)
    at = datetime.fromtimestamp(end, UTC)
    try:
        t0 = time.monotonic()
        evaluation = await jobs.forecast(clients, ForecastInput(at=at, horizon=timedelta(days=7)))
        ours_seconds = time.monotonic() - t0
        ours = {d["key"]["mountpoint"]: d["eta_seconds"] for d in evaluation.details}
        alarmed = {f.key["mountpoint"] for f in evaluation.findings}
        pl = {w: predict_linear_eta(prom, w, end) for w in ("6h", "24h")}

        t0 = time.monotonic()
        scored = await jobs.anomalies(
            clients,
            AnomalyInput(
                at=at,
                step=timedelta(minutes=5),
                builtin_sources=False,
                sources=[SeriesSource(name="bench_load", query="bench_load", min_change=0.15)],
            ),
        )
        anomaly_seconds = time.monotonic() - t0
    finally:
        await clients.aclose()
        if prom.proc is not None:
            prom.proc.stop()

    rows = []
    for case in series:
        mount = f"/srv/{case.name}"
        truth = case.true_eta(end, THRESHOLD)
        row: dict[str, Any] = {
            "series": case.name,
            "kind": case.kind,
            "true_days": None if truth is None else round(truth / DAY, 3),
            "ours_days": None if ours.get(mount) is None else round(ours[mount] / DAY, 3),
            "ours_alarm": mount in alarmed,
        }
        for w, etas in pl.items():
            value = etas.get(mount)
            row[f"predict_linear_{w}_days"] = None if value is None else round(value / DAY, 3)
            row[f"predict_linear_{w}_alarm"] = value is not None and value <= HORIZON
        if truth is not None:
            row["error_ours"] = round(error(ours.get(mount), truth), 4)
            for w, etas in pl.items():
                row[f"error_predict_linear_{w}"] = round(error(etas.get(mount), truth), 4)
        rows.append(row)

    def med(key: str, kinds: set[str] | None = None) -> float | None:
        return median([r[key] for r in rows if key in r and (kinds is None or r["kind"] in kinds)])

    def false_alarms(key: str) -> int:
        return sum(1 for r in rows if r["kind"] in QUIET and r[key])

    per_kind = {
        kind: {
            "ours": med("error_ours", {kind}),
            "predict_linear_6h": med("error_predict_linear_6h", {kind}),
            "predict_linear_24h": med("error_predict_linear_24h", {kind}),
        }
        for kind in sorted({c.kind for c in series} - QUIET)
    }
    pl_best = min((w for w in ("6h", "24h")), key=lambda w: med(f"error_predict_linear_{w}") or 1.0)
    found = {
        d["key"]["case"]
        for d in scored.details
        if not d["reason"].startswith(("within", "change", "no "))
    }
    flagged = {f.key["case"] for f in scored.findings}
    positives = {n for n, bad in truth_anomaly.items() if bad}
    tp = len(flagged & positives)
    precision = tp / len(flagged) if flagged else 1.0
    recall = tp / len(positives) if positives else 1.0
    seasonal_ok = all(
        (per_kind[k]["ours"] or 0)
        <= 0.5 * min(per_kind[k]["predict_linear_6h"] or 1, per_kind[k]["predict_linear_24h"] or 1)
        for k in ("seasonal", "cleanup")
    )
    summary = {
        "series": len(rows),
        "median_error_ours": med("error_ours"),
        "median_error_predict_linear": med(f"error_predict_linear_{pl_best}"),
        "predict_linear_window": pl_best,
        "median_error_predict_linear_6h": med("error_predict_linear_6h"),
        "median_error_predict_linear_24h": med("error_predict_linear_24h"),
        "false_alarms": false_alarms("ours_alarm"),
        "false_alarms_predict_linear_6h": false_alarms("predict_linear_6h_alarm"),
        "false_alarms_predict_linear_24h": false_alarms("predict_linear_24h_alarm"),
        "target_median_error_le_10pct": (med("error_ours") or 0) <= 0.10,
        "target_half_of_predict_linear_on_seasonal_and_cleanup": seasonal_ok,
        "anomaly_precision": round(precision, 3),
        "anomaly_recall": round(recall, 3),
        "anomaly_series": len(truth_anomaly),
        "anomaly_injected": len(positives),
        "anomaly_found_beyond_threshold": len(found),
    }
    return {
        "at": datetime.now(UTC).isoformat(),
        "days": days,
        "variants": variants,
        "threshold": THRESHOLD,
        "horizon_days": HORIZON / DAY,
        "backfill_seconds": round(backfilled, 2),
        "forecast_seconds": round(ours_seconds, 2),
        "anomaly_seconds": round(anomaly_seconds, 2),
        "summary": summary,
        "per_kind_median_error": per_kind,
        "series": rows,
        "anomalies": [
            {
                "case": d["key"]["case"],
                "z": round(d["z"], 2),
                "change": round(d["change"], 3),
                "injected": truth_anomaly[d["key"]["case"]],
                "flagged": d["key"]["case"] in flagged,
            }
            for d in scored.details
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--variants", type=int, default=4)
    args = parser.parse_args()
    report = asyncio.run(main(args.days, args.variants))
    path = write("forecast", report)
    print(json.dumps({k: report[k] for k in ("summary", "per_kind_median_error")}, indent=2))
    print(f"written to {path}")
