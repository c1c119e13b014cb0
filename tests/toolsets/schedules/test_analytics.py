"""The forecast, anomaly and pattern computations on data with a known answer (no services), and
the schedules section of the config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from activities.proactive.anomaly import score
from activities.proactive.findings import fingerprint, target_labels
from activities.proactive.patterns import report
from activities.proactive.trend import forecast
from core.config import ConfigError, Settings, load_settings
from core.schedules import PatternReportInput, SweepInput
from workers.lab.series import cases

END = 1_780_000_000.0 // 7200 * 7200
DAY = 86400.0


@pytest.mark.parametrize("case", cases(END, 14, variants=2), ids=lambda c: c.name)
def test_forecast_matches_the_truth_and_stays_quiet_when_nothing_grows(case) -> None:  # type: ignore[no-untyped-def]
    result = forecast(case.times, case.values, END, 0.9, min_jump=0.018)
    truth = case.true_eta(END, 0.9)
    if truth is None:
        assert not result.growing or result.eta_seconds is None
        return
    assert result.growing and result.eta_seconds is not None
    assert abs(result.eta_seconds - truth) <= 0.05 * truth
    assert result.eta_low_seconds is not None and result.eta_low_seconds <= result.eta_seconds
    if case.kind in ("cleanup", "resets"):
        assert result.drops >= 1
    if case.kind == "step":
        assert result.steps >= 1
    if case.kind == "seasonal":
        assert result.seasonal_amplitude == pytest.approx(0.04, abs=0.01)


def test_forecast_needs_enough_data() -> None:
    times = np.arange(END - 6 * 3600, END, 300.0)
    result = forecast(times, 0.5 + 0.01 * np.arange(times.size), END, 0.9, min_jump=0.02)
    assert result.eta_seconds is None and "insufficient data" in result.reason


def test_anomaly_score_finds_shifts_not_flat_or_usual_series() -> None:
    rng = np.random.default_rng(3)
    weeks = [list(1.0 + rng.normal(0, 0.05, 13)) for _ in range(4)]
    usual = score(list(1.0 + rng.normal(0, 0.05, 3)), weeks, z_threshold=5, min_change=0)
    shifted = score([1.6, 1.62, 1.58], weeks, z_threshold=5, min_change=0.15)
    flat = score([3.0, 3.0, 3.0], [[2.0] * 13] * 4, z_threshold=5, min_change=2)
    new = score([1.0], [[], [1.0]], z_threshold=5, min_change=0)
    assert not usual.anomalous and usual.reason == "within the usual spread"
    assert shifted.anomalous and shifted.reason == "above" and shifted.z > 5
    assert not flat.anomalous and flat.reason == "change below min_change"
    assert not new.anomalous and new.reason.startswith("no baseline")


def test_pattern_report_counts_recurring_faults_and_mttr() -> None:
    monday = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)

    def row(alert: str, target: str, outcome: str, day: int, minutes: float) -> dict[str, object]:
        opened = monday + timedelta(days=day)
        return {
            "alert": alert,
            "target": target,
            "outcome": outcome,
            "opened_at": opened,
            "closed_at": opened + timedelta(minutes=minutes),
        }

    rows = [
        row("ContainerKilled", "docker:lab/web", "resolved", 0, 1),
        row("ContainerKilled", "docker:lab/web", "resolved", 0, 3),
        row("ContainerKilled", "docker:lab/web", "escalated", 2, 30),
        row("PredictedExhaustion", "docker:lab", "escalated", 4, 2),
    ]
    until = monday + timedelta(days=7)
    got = report(
        rows, rows, PatternReportInput(days=7, trend_weeks=2), until - timedelta(days=7), until
    )
    assert got.incidents == 4 and got.by_weekday["Mon"] == 2 and got.by_hour[3] == 4
    fault = got.recurring[0]
    assert (fault.alert, fault.count, fault.succeeded) == ("ContainerKilled", 3, 2)
    assert fault.success_rate == pytest.approx(2 / 3) and fault.mttr_seconds == 120
    assert got.success_rate == 0.5
    assert any(w.mttr_seconds == 120 for w in got.mttr_trend)
    assert any("recurring: ContainerKilled" in line for line in got.lines())


def test_fingerprints_are_stable_and_filesystems_find_their_service() -> None:
    key = {"source": "filesystem", "instance": "nas:9100", "mountpoint": "/srv"}
    assert fingerprint("PredictedExhaustion", key) == fingerprint(
        "PredictedExhaustion", dict(reversed(key.items()))
    )
    assert fingerprint("PredictedExhaustion", key) != fingerprint("MetricAnomaly", key)
    settings = Settings(
        docker=[{"name": "lab", "instances": ["docker-host"]}],
        hosts=[{"name": "nas", "instances": ["nas"]}],
    )
    labels = {"resource_kind": "filesystem", "instance": "nas:9100"}
    assert target_labels(settings, labels)["homelab_service"] == "hosts"
    docker = target_labels(settings, {**labels, "instance": "docker-host:9100"})
    assert "homelab_service" not in docker  # the Docker disk runbook answers


def test_schedules_config_defaults_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert list(Settings(docker=[]).schedule_jobs()) == ["patterns"]
    with_prom = Settings(docker=[], prometheus=[{"name": "p", "url": "http://p:9090"}])
    assert list(with_prom.schedule_jobs()) == ["forecast", "anomalies", "patterns"]
    path = tmp_path / "homelab.yaml"
    for body, problem in [
        ("schedules: {x: {workflow: Nope, every: 1h}}", "cannot be scheduled"),
        ("schedules: {x: {workflow: ForecastWorkflow}}", "exactly one of `every` and `cron`"),
        ("schedules: {x: {workflow: ForecastWorkflow, every: 1h, input: {horizn: 1d}}}", "horizn"),
        ("schedules: {x: {workflow: ForecastWorkflow, every: 1h, catchup_window: 3d}}", "bounded"),
        ("schedules: {X!: {workflow: ForecastWorkflow, every: 1h}}", "schedule name"),
    ]:
        path.write_text(body + "\ndocker: []\n")
        with pytest.raises(ConfigError) as err:
            load_settings(path)
        assert problem in str(err.value)


def test_default_sweeps_only_for_configured_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    certs = [{"name": "web", "endpoints": [{"name": "app", "address": "127.0.0.1:443"}]}]
    backups = [{"name": "nas", "repositories": [{"name": "home", "kind": "borg",
                                                 "repository": "/srv/borg"}]}]  # fmt: skip
    pve = [{"name": "pve", "host": "pve.lab", "token_id": "a@pve!b", "token_secret": "s"}]
    assert list(Settings(docker=[]).schedule_jobs()) == ["patterns"]
    jobs = Settings(docker=[], certs=certs).schedule_jobs()
    assert list(jobs) == ["patterns", "certificate-sweep"]
    sweep = jobs["certificate-sweep"]
    assert sweep.workflow == "SweepWorkflow" and sweep.input == {"sweep": "certificates"}
    assert sweep.cron == ["0 6 * * *"] and sweep.jitter == timedelta(minutes=15)
    assert sweep.period == timedelta(days=1)  # the missed-run alert's yardstick
    assert sweep.run_timeout > SweepInput(sweep="certificates").timeout
    for section in ({"backups": backups}, {"proxmox": pve}, {"pbs": pve}):
        jobs = Settings(docker=[], **section).schedule_jobs()
        assert list(jobs) == ["patterns", "backup-sweep"], section
        assert jobs["backup-sweep"].input == {"sweep": "backups"}
    both = Settings(
        docker=[], certs=certs, backups=backups, prometheus=[{"name": "p", "url": "http://p:9090"}]
    )
    assert list(both.schedule_jobs()) == [
        "forecast", "anomalies", "patterns", "certificate-sweep", "backup-sweep"
    ]  # fmt: skip
    # set by the user: exactly what is set, checked like any schedule
    path = tmp_path / "homelab.yaml"
    path.write_text(
        "schedules: {certs: {workflow: SweepWorkflow, cron: '0 5 * * *', "
        "input: {sweep: certificates, repeat_interval: 12h}}}\ndocker: []\n"
    )
    jobs = load_settings(path).schedule_jobs()
    assert list(jobs) == ["certs"] and jobs["certs"].input["repeat_interval"] == "PT12H"
    for body, problem in [
        ("schedules: {x: {workflow: SweepWorkflow, cron: '0 5 * * *'}}", "sweep"),
        ("schedules: {x: {workflow: SweepWorkflow, every: 1d, input: {sweep: dns}}}", "'backups'"),
    ]:
        path.write_text(body + "\ndocker: []\n")
        with pytest.raises(ConfigError) as err:
            load_settings(path)
        assert problem in str(err.value)
