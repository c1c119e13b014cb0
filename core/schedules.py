"""Proactive operations: scheduled jobs, their inputs and results, and the findings they route.

A schedule is a workflow type, its input and a spec (``every`` or ``cron``), declared in the
``schedules:`` section of the config and kept on Temporal as a Schedule by
``homelab-agents schedules apply`` (and ``up``). Each workflow type a schedule may start registers
its input model in ``SCHEDULED_INPUTS``, so a config error names the key before anything runs.
A finding is an ``Alert`` in the making: the ``findings.route`` activity gives it a stable
fingerprint and routes it like an Alertmanager notification.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.models import Alert, Model
from core.targets import Section
from core.units import Duration

SCHEDULE_NAME = r"^[a-z0-9][a-z0-9_-]{0,40}$"

FORECAST = "ForecastWorkflow"
ANOMALIES = "AnomalyWorkflow"
PATTERNS = "PatternReportWorkflow"
SWEEP = "SweepWorkflow"

PREDICTED_EXHAUSTION = "PredictedExhaustion"
METRIC_ANOMALY = "MetricAnomaly"
SCHEDULE_ALERTS = {PREDICTED_EXHAUSTION, METRIC_ANOMALY}
"""Alert names only schedules raise (runbooks may answer them like any shipped alert)."""


# --- what the forecast reads -------------------------------------------------------------------


class SeriesSource(Section):
    """One PromQL expression whose series are forecast (or watched for anomalies).

    ``query`` gives the used amount; the fraction compared with the threshold is ``query`` /
    ``capacity_query`` (same labels), or / ``capacity``, or ``query`` itself when neither is set.
    """

    name: str = Field(pattern=r"^[a-z0-9_]{1,40}$")
    kind: str = Field(
        default="series",
        pattern=r"^[a-z0-9_]{1,40}$",
        description="resource kind: the finding's `resource_kind` label, which picks the runbook",
    )
    query: str = Field(min_length=1, max_length=2000)
    capacity_query: str | None = Field(default=None, max_length=2000)
    capacity: float | None = Field(default=None, gt=0)
    threshold: float | None = Field(
        default=None, gt=0, le=1, description="fraction of capacity; default: the job's"
    )
    labels: list[str] = Field(
        default_factory=list,
        description="labels that name one series (kept on the finding); default: all",
    )
    service: str = Field(
        default="",
        description="homelab service whose targets own these series (docker, hosts, proxmox, "
        "pbs, postgres); empty: decided per series from the configured targets",
    )
    min_change: float = Field(
        default=0.0,
        ge=0,
        description="anomalies: the smallest absolute change from the baseline that counts",
    )


def builtin_forecast_sources() -> list[SeriesSource]:
    """What fills up in a homelab: filesystems, PVE storages and guest disks, PBS datastores.

    PostgreSQL databases have no capacity of their own: add one with ``capacity`` (the bytes of
    the volume it lives on) in ``sources``.
    """
    fs = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|devtmpfs|autofs|fuse.lxcfs"'
    return [
        SeriesSource(
            name="filesystem",
            kind="filesystem",
            query=f"node_filesystem_size_bytes{{{fs}}} - node_filesystem_avail_bytes{{{fs}}}",
            capacity_query=f"node_filesystem_size_bytes{{{fs}}}",
            labels=["instance", "mountpoint", "device", "homelab_service", "homelab_target"],
        ),
        SeriesSource(
            name="pve_storage",
            kind="pve_storage",
            service="proxmox",
            query='pve_disk_usage_bytes{id=~"storage/.*"}',
            capacity_query='pve_disk_size_bytes{id=~"storage/.*"}',
            labels=["instance", "id", "homelab_target"],
        ),
        SeriesSource(
            name="pve_guest_disk",
            kind="pve_guest_disk",
            service="proxmox",
            query='pve_disk_usage_bytes{id=~"(qemu|lxc)/.*"}',
            capacity_query='pve_disk_size_bytes{id=~"(qemu|lxc)/.*"}',
            labels=["instance", "id", "homelab_target"],
        ),
        SeriesSource(
            name="pbs_datastore",
            kind="pbs_datastore",
            service="pbs",
            query="pbs_used",
            capacity_query="pbs_size",
            labels=["instance", "datastore", "homelab_target"],
        ),
    ]


def builtin_anomaly_sources() -> list[SeriesSource]:
    """Container restarts, CPU, memory, PostgreSQL connections and disk I/O."""
    return [
        SeriesSource(
            name="container_restarts",
            kind="container_restarts",
            service="docker",
            query='sum by (instance, name) (changes(container_start_time_seconds{name!=""}[15m]))',
            min_change=2,
        ),
        SeriesSource(
            name="cpu",
            kind="cpu",
            query='1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
            min_change=0.2,
        ),
        SeriesSource(
            name="memory",
            kind="memory",
            query="1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
            min_change=0.15,
        ),
        SeriesSource(
            name="postgres_connections",
            kind="postgres_connections",
            service="postgres",
            query="sum by (instance, server) (pg_stat_database_numbackends)",
            min_change=10,
        ),
        SeriesSource(
            name="disk_io",
            kind="disk_io",
            query="rate(node_disk_io_time_seconds_total[5m])",
            min_change=0.25,
        ),
    ]


# --- scheduled workflow inputs -----------------------------------------------------------------


class ScheduledInput(Model):
    schedule: str = Field(default="", description="the schedule's name (set by `schedules apply`)")
    repeat_interval: Duration = Field(
        default=timedelta(hours=24),
        description="a finding whose incident has closed opens a new one only after this",
    )


class ForecastInput(ScheduledInput):
    prometheus: str = Field(default="", description="prometheus target; default: the only one")
    window: Duration = timedelta(days=14)
    step: Duration = timedelta(minutes=5)
    threshold: float = Field(default=0.9, gt=0, le=1)
    horizon: Duration = timedelta(days=7)
    builtin_sources: bool = True
    sources: list[SeriesSource] = Field(default_factory=list)
    at: datetime | None = Field(
        default=None, description="evaluate as of this time (backfills, tests); default: the run"
    )


class AnomalyInput(ScheduledInput):
    prometheus: str = ""
    weeks: int = Field(default=4, ge=1, le=12, description="same hour-of-week in this many weeks")
    baseline_window: Duration = Field(
        default=timedelta(minutes=30), description="± around the same time in each past week"
    )
    window: Duration = Field(
        default=timedelta(minutes=10), description="the recent stretch compared (its median)"
    )
    step: Duration = timedelta(minutes=1)
    z_threshold: float = Field(default=5.0, gt=0)
    builtin_sources: bool = True
    sources: list[SeriesSource] = Field(default_factory=list)
    at: datetime | None = None


class PatternReportInput(ScheduledInput):
    days: int = Field(default=7, ge=1, le=365, description="the period the report covers")
    trend_weeks: int = Field(default=8, ge=1, le=52, description="weeks in the MTTR trend")
    top: int = Field(default=5, ge=1, le=50)
    notify: bool = True
    at: datetime | None = None


class SweepInput(ScheduledInput):
    """A daily sweep: every certs target's certificates, or every backup repository, PBS and
    Proxmox VE cluster (``activities/sweeps.py``)."""

    sweep: Literal["certificates", "backups"]
    repeat_interval: Duration = Field(
        default=timedelta(hours=20),
        description="a finding whose incident has closed opens a new one only after this "
        "(under a day: a daily sweep re-raises what is still wrong every day)",
    )
    timeout: Duration = Field(
        default=timedelta(hours=2),
        description="the whole sweep (every repository's check together); keep the schedule's "
        "run_timeout above it",
    )
    site_wait: Duration = Field(
        default=timedelta(minutes=30),
        description="how long a site's sweep waits for the site's worker to take it; then that "
        "site's targets are noted as not swept and the rest is routed",
    )


SCHEDULED_INPUTS: dict[str, type[ScheduledInput]] = {
    FORECAST: ForecastInput,
    ANOMALIES: AnomalyInput,
    PATTERNS: PatternReportInput,
    SWEEP: SweepInput,
}
"""Workflow type → its input model: every workflow a schedule may start (add yours here)."""


# --- schedules as config -----------------------------------------------------------------------


class ScheduleJob(Section):
    """One Temporal Schedule: which workflow with which input, and when."""

    workflow: str
    input: dict[str, Any] = Field(default_factory=dict)
    every: Duration | None = Field(default=None, description="interval (1h, 15m)")
    offset: Duration | None = Field(default=None, description="phase of the interval")
    cron: list[str] = Field(default_factory=list, description="cron expressions (UTC)")
    jitter: Duration = Field(
        default=timedelta(minutes=1), description="random delay of each run, at most this"
    )
    catchup_window: Duration = Field(
        default=timedelta(minutes=10),
        description="runs missed while Temporal was down are caught up only within this",
    )
    paused: bool = Field(
        default=False,
        description="create it paused (an existing one keeps what the Web UI or CLI set)",
    )
    note: str = Field(default="", max_length=300)
    run_timeout: Duration = Field(default=timedelta(minutes=30))

    @field_validator("cron", mode="before")
    @classmethod
    def _cron_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid(self) -> ScheduleJob:
        model = SCHEDULED_INPUTS.get(self.workflow)
        if model is None:
            raise ValueError(
                f"workflow {self.workflow!r} cannot be scheduled "
                f"(one of: {', '.join(sorted(SCHEDULED_INPUTS))})"
            )
        self.input = model.model_validate(self.input).model_dump(mode="json", exclude_unset=True)
        if bool(self.every) == bool(self.cron):
            raise ValueError("set exactly one of `every` and `cron`")
        if self.every is not None and self.every < timedelta(minutes=1):
            raise ValueError("every: at least 1m")
        if self.catchup_window < timedelta(seconds=10) or self.catchup_window > timedelta(days=1):
            raise ValueError("catchup_window: between 10s and 1d (a bounded catch-up)")
        if self.every is not None and self.jitter >= self.every:
            raise ValueError("jitter: must be shorter than `every`")
        return self

    @property
    def period(self) -> timedelta:
        """The longest expected gap between runs (the missed-schedule alert's yardstick)."""
        if self.every is not None:
            return self.every
        return timedelta(days=7) if any(_weekly(c) for c in self.cron) else timedelta(days=1)


def _weekly(cron: str) -> bool:
    fields = cron.split()
    return len(fields) == 5 and fields[4] != "*"


def default_schedules(
    has_prometheus: bool, *, certificates: bool = False, backups: bool = False
) -> dict[str, ScheduleJob]:
    """Forecasts hourly and anomalies every 15 minutes (with a Prometheus to read), the pattern
    report on Monday mornings, and the daily sweeps of what is configured: certificates at 06:00
    UTC, backups at 06:30 (after the night's backups)."""
    jobs: dict[str, ScheduleJob] = {}
    if has_prometheus:
        jobs["forecast"] = ScheduleJob(
            workflow=FORECAST, every=timedelta(hours=1), jitter=timedelta(minutes=5)
        )
        jobs["anomalies"] = ScheduleJob(
            workflow=ANOMALIES, every=timedelta(minutes=15), jitter=timedelta(minutes=1)
        )
    jobs["patterns"] = ScheduleJob(
        workflow=PATTERNS, cron=["0 7 * * 1"], jitter=timedelta(minutes=10)
    )
    for name, sweep, cron, wanted in (
        ("certificate-sweep", "certificates", "0 6 * * *", certificates),
        ("backup-sweep", "backups", "30 6 * * *", backups),
    ):
        if wanted:
            jobs[name] = ScheduleJob(
                workflow=SWEEP,
                input={"sweep": sweep},
                cron=[cron],
                jitter=timedelta(minutes=15),
                run_timeout=timedelta(hours=3),
            )
    return jobs


# --- findings and run results ------------------------------------------------------------------


class Finding(Model):
    """Something a scheduled job found: an alert before routing (no fingerprint yet)."""

    alert: str
    key: dict[str, str] = Field(description="labels that identify it across runs")
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    severity: Literal["info", "warning", "critical"] = "warning"


class Evaluation(Model):
    """One job's look at the world: its findings, and the keys it looked at and found fine."""

    findings: list[Finding] = Field(default_factory=list)
    alerts: list[Alert] = Field(
        default_factory=list,
        description="findings their job made into alerts itself (the sweeps': fingerprinted by "
        "the problem's instance, evidence in the annotations), routed as they are",
    )
    clear: list[dict[str, str]] = Field(
        default_factory=list, description="keys evaluated this run with nothing to report"
    )
    series: int = 0
    notes: list[str] = Field(default_factory=list)
    details: list[dict[str, Any]] = Field(default_factory=list)
    sites: dict[str, str] = Field(
        default_factory=dict,
        description="site → task queue: sites whose targets this evaluation left to their own "
        "worker (the sweeps: the workflow evaluates there too)",
    )

    @property
    def found(self) -> int:
        return len(self.findings) + len(self.alerts)


class RouteRequest(Model):
    schedule: str
    evaluation: Evaluation
    run_url: str = ""
    repeat_interval: Duration = timedelta(hours=24)


class RoutedFinding(Model):
    fingerprint: str
    workflow_id: str
    status: Literal["firing", "resolved"]
    action: str
    summary: str = ""


class RouteResult(Model):
    routed: list[RoutedFinding] = Field(default_factory=list)
    suppressed: int = 0

    @property
    def opened(self) -> int:
        return sum(1 for r in self.routed if r.action == "signal-with-start")


class RunRecord(Model):
    """A scheduled run's outcome, for metrics (``schedules.finish``)."""

    schedule: str
    workflow: str
    ok: bool
    started_at: datetime
    finished_at: datetime
    findings: int = 0
    opened: int = 0
    resolved: int = 0
    error: str = ""


class ScheduleRunResult(Model):
    """What a scheduled workflow returns (``schedules list`` shows it as the last result)."""

    schedule: str
    findings: int = 0
    opened: int = 0
    resolved: int = 0
    series: int = 0
    notes: list[str] = Field(default_factory=list)
    routed: list[RoutedFinding] = Field(default_factory=list)
    report: dict[str, Any] = Field(default_factory=dict)


# --- the pattern report ------------------------------------------------------------------------


class Count(Model):
    name: str
    count: int


class RecurringFault(Model):
    alert: str
    target: str
    count: int
    succeeded: int
    success_rate: float
    mttr_seconds: float | None = None


class WeekMttr(Model):
    week: str = Field(description="ISO week, e.g. 2026-W48")
    incidents: int
    resolved: int
    mttr_seconds: float | None = Field(description="median open-to-close of resolved ones")


class PatternReport(Model):
    since: datetime
    until: datetime
    incidents: int
    by_weekday: dict[str, int]
    by_hour: list[int] = Field(description="24 counts, UTC")
    by_target: list[Count]
    by_alert: list[Count]
    recurring: list[RecurringFault]
    mttr_trend: list[WeekMttr]
    success_rate: float | None = None

    def lines(self) -> list[str]:
        """The report as short lines (Telegram, logs)."""
        out = [
            f"{self.incidents} incident(s) from {self.since:%Y-%m-%d} to {self.until:%Y-%m-%d}"
            + (f", {self.success_rate:.0%} fixed" if self.success_rate is not None else "")
        ]
        if self.incidents:
            day = max(self.by_weekday, key=lambda d: self.by_weekday[d])
            hour = max(range(24), key=lambda h: self.by_hour[h])
            out.append(
                f"busiest: {day} ({self.by_weekday[day]}), {hour:02d}:00 UTC ({self.by_hour[hour]})"
            )
            out.append("targets: " + ", ".join(f"{c.name} {c.count}" for c in self.by_target))
            out.append("alerts: " + ", ".join(f"{c.name} {c.count}" for c in self.by_alert))
        for fault in self.recurring:
            mttr = f", MTTR {fault.mttr_seconds:.0f}s" if fault.mttr_seconds is not None else ""
            out.append(
                f"recurring: {fault.alert} on {fault.target} ×{fault.count}, "
                f"{fault.success_rate:.0%} fixed{mttr}"
            )
        trend = [w for w in self.mttr_trend if w.mttr_seconds is not None]
        if trend:
            out.append(
                "MTTR by week: " + ", ".join(f"{w.week} {w.mttr_seconds:.0f}s" for w in trend[-6:])
            )
        return out
