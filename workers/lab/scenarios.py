"""Fault scenarios as data, and the runner that injects them and checks the real outcome.

A scenario file (``deploy/lab/scenarios/*.yaml``) says how to inject a fault into the lab, which
alert should come of it (from Prometheus rules or the Docker events watcher), the expected outcome,
the writes that are allowed, what a human does if asked, and an independent check of the real
system afterwards — read from the engine or the database, never from the agents' own report.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tarfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import docker
import httpx
import psycopg
import redis
import yaml
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import Client

from activities.store import Store
from core.models import (
    ApprovalDecision,
    ApprovalVerdict,
    ChangeResult,
    IncidentState,
    Outcome,
    RiskLevel,
)
from core.units import Duration
from workers.lab.dockerd import BUSYBOX_IMAGE
from workers.lab.lab import LabState
from workers.operations import decide, list_incidents
from workflows.incident import IncidentWorkflow

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "scenarios"
SIBLING_WINDOW = 3.0  # seconds to wait for more incidents from the same fault

Expected = Literal[
    "resolved",
    "approval_then_resolved",
    "auto_denied",
    "rolled_back",
    "escalated",
    "alert_resolved",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DockerRun(Strict):
    name: str
    command: str
    mem_limit: str | None = None
    memswap_limit: str | None = None
    healthcheck: str | None = Field(default=None, description="shell command (CMD-SHELL)")
    health_interval_ms: int = 500
    restart_policy: str | None = None
    init: bool = True
    network_host: bool = False


class Step(Strict):
    """One injection or cleanup step; exactly one action field is set."""

    docker_run: DockerRun | None = None
    docker_remove: list[str] | None = None
    dangling_images: int | None = Field(default=None, description="import N untagged images")
    dangling_image_mb: int = 8
    sql: list[str] | None = Field(default=None, description="statements on one autocommit session")
    sql_hold: list[str] | None = Field(
        default=None, description="statements left idle in an open transaction until cleanup"
    )
    sql_background: list[str] | None = Field(
        default=None,
        description="statements run from a thread (they block: a waiter, a long query)",
    )
    idle_in_transaction: int | None = Field(
        default=None, description="open N sessions, each idle inside a transaction"
    )
    release_held: bool = False
    docker_stop: list[str] | None = Field(
        default=None, description="stop containers (a clean stop: no Docker events incident)"
    )
    docker_start: list[str] | None = None
    redis_fill: str | None = Field(
        default=None, description="write 1 KiB values under this key prefix until Redis refuses"
    )
    redis: list[list[str]] | None = Field(
        default=None, description="Redis commands as the workload (the default user)"
    )
    database: str = "labdb"
    ignore_errors: bool = False
    sleep: Duration | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [
            self.docker_run,
            self.docker_remove,
            self.dangling_images,
            self.sql,
            self.sql_hold,
            self.sql_background,
            self.idle_in_transaction,
            self.sleep,
            self.release_held or None,
            self.docker_stop,
            self.docker_start,
            self.redis_fill,
            self.redis,
        ]
        if sum(a is not None for a in actions) != 1:
            raise ValueError("a step does exactly one thing")
        return self


class Check(Strict):
    """An independent look at the real system after the incident."""

    docker_running: str | None = None
    docker_healthy: str | None = None
    docker_memory_mb: dict[str, int] | None = None
    docker_exited: str | None = None
    dangling_images_max: int | None = None
    disk_free_percent_min: float | None = Field(default=None, description="the engine's data disk")
    sql_scalar: str | None = None
    redis_writable: bool | None = Field(default=None, description="a SET succeeds (or not)")
    redis_maxmemory_mb_min: float | None = None
    http_status: int | None = Field(default=None, description="status of GET url")
    url: str = Field(default="", description="for http_status; {port_name} placeholders")
    database: str = "labdb"
    equals: Any = None
    at_most: float | None = None
    at_least: float | None = None


class Expect(Strict):
    outcome: Expected
    writes: list[str] = Field(default_factory=list, description="applied writes allowed")
    approval: bool = False


class Scenario(Strict):
    name: str
    description: str
    service: str
    alert: str
    alert_source: Literal["docker-events", "prometheus"]
    target_contains: str = ""
    inject: list[Step]
    expect: Expect
    decide: Literal["approve", "deny", "none"] = "none"
    checks: list[Check] = Field(default_factory=list)
    cleanup: list[Step] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=120)
    ci: bool = Field(default=False, description="part of the fast subset run as an e2e test")


def load_scenarios(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    scenarios = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            scenarios.append(Scenario.model_validate(yaml.safe_load(path.read_text())))
        except Exception as exc:
            raise ValueError(f"{path}: {exc}") from exc
    names = [s.name for s in scenarios]
    if len(names) != len(set(names)):
        raise ValueError("scenario names must be unique")
    return scenarios


class ScenarioResult(BaseModel):
    name: str
    expected: str
    observed: str
    passed: bool
    auto_eligible: bool
    approval_required: bool
    approval_asked: bool
    writes: list[str] = Field(default_factory=list)
    unintended: list[str] = Field(default_factory=list)
    checks_passed: bool = False
    check_notes: list[str] = Field(default_factory=list)
    workflow_id: str = ""
    restore_from_start_s: float | None = None
    restore_from_intake_s: float | None = None
    verified_from_start_s: float | None = None
    verified_from_intake_s: float | None = None
    seconds: float = 0.0
    error: str = ""
    notes: list[str] = Field(default_factory=list, description="the incident's own notes")


class LabHands:
    """Injects faults into the lab and checks its real state (docker SDK, psycopg)."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.docker = docker.DockerClient(base_url=state.docker_url, version="auto", timeout=120)
        self.held: list[psycopg.Connection[Any]] = []

    def close(self) -> None:
        self.release()
        self.docker.close()

    def dsn(self, database: str, user: str = "app") -> str:
        """Injected workload runs as the application role; checks look as the superuser."""
        return f"host=127.0.0.1 port={self.state.ports['postgres']} user={user} dbname={database}"

    def ensure_database(self, name: str) -> None:
        with psycopg.connect(self.dsn("postgres", "postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(name)))

    def run_step(self, step: Step) -> None:
        if step.docker_run is not None:
            spec = step.docker_run
            with contextlib.suppress(docker.errors.NotFound):
                self.docker.containers.get(spec.name).remove(force=True)
            kwargs: dict[str, Any] = {
                "name": spec.name,
                "detach": True,
                "init": spec.init,
                "labels": {"homelab.lab": "scenario"},
            }
            if spec.mem_limit:
                kwargs["mem_limit"] = spec.mem_limit
                kwargs["memswap_limit"] = spec.memswap_limit or spec.mem_limit
            if spec.healthcheck:
                kwargs["healthcheck"] = {
                    "test": ["CMD-SHELL", spec.healthcheck],
                    "interval": spec.health_interval_ms * 1_000_000,
                    "retries": 1,
                }
            if spec.restart_policy:
                kwargs["restart_policy"] = {"Name": spec.restart_policy}
            if spec.network_host:
                kwargs["network_mode"] = "host"
            self.docker.containers.run(BUSYBOX_IMAGE, ["sh", "-c", spec.command], **kwargs)
        elif step.docker_remove is not None:
            for name in step.docker_remove:
                with contextlib.suppress(docker.errors.NotFound):
                    self.docker.containers.get(name).remove(force=True)
        elif step.dangling_images is not None:
            for _ in range(step.dangling_images):
                buffer = io.BytesIO()
                payload = uuid.uuid4().bytes * (step.dangling_image_mb * 65536)
                with tarfile.open(fileobj=buffer, mode="w") as tar:
                    info = tarfile.TarInfo("blob")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                self.docker.api.import_image_from_data(buffer.getvalue())
        elif step.sql is not None:
            self.ensure_database(step.database)
            with psycopg.connect(self.dsn(step.database), autocommit=True) as conn:
                for statement in step.sql:
                    try:
                        conn.execute(statement.encode())
                    except psycopg.Error:
                        if not step.ignore_errors:
                            raise
        elif step.sql_hold is not None:
            self.ensure_database(step.database)
            conn = psycopg.connect(self.dsn(step.database), autocommit=False)
            self.held.append(conn)
            for statement in step.sql_hold:
                conn.execute(statement.encode())
        elif step.sql_background is not None:
            self.ensure_database(step.database)
            conn = psycopg.connect(self.dsn(step.database), autocommit=True)
            self.held.append(conn)
            threading.Thread(target=_quietly, args=(conn, step.sql_background), daemon=True).start()
        elif step.idle_in_transaction is not None:
            self.ensure_database(step.database)
            for _ in range(step.idle_in_transaction):
                conn = psycopg.connect(self.dsn(step.database), autocommit=False)
                conn.execute(b"SELECT 1")
                self.held.append(conn)
        elif step.release_held:
            self.release()
        elif step.docker_stop is not None:
            for name in step.docker_stop:
                self.docker.containers.get(name).stop(timeout=2)
        elif step.docker_start is not None:
            for name in step.docker_start:
                self.docker.containers.get(name).start()
        elif step.redis_fill is not None:
            with contextlib.closing(self.redis()) as client:
                for i in range(1_000_000):
                    try:
                        client.set(f"{step.redis_fill}:{i}", "x" * 1024)
                    except redis.exceptions.ResponseError:
                        break  # OOM: the fault is in place
        elif step.redis is not None:
            with contextlib.closing(self.redis()) as client:
                for command in step.redis:
                    client.execute_command(*command)
        elif step.sleep is not None:
            time.sleep(step.sleep.total_seconds())

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.state.ports["redis"], decode_responses=True)

    def release(self) -> None:
        for conn in self.held:
            with contextlib.suppress(Exception):
                conn.close()
        self.held.clear()

    def check(self, check: Check) -> tuple[bool, str]:
        try:
            if check.docker_running:
                c = self.docker.containers.get(check.docker_running)
                return c.status == "running", f"{check.docker_running} is {c.status}"
            if check.docker_exited:
                c = self.docker.containers.get(check.docker_exited)
                return c.status == "exited", f"{check.docker_exited} is {c.status}"
            if check.docker_healthy:
                c = self.docker.containers.get(check.docker_healthy)
                health = (c.attrs["State"].get("Health") or {}).get("Status")
                return health == "healthy", f"{check.docker_healthy} health {health}"
            if check.docker_memory_mb:
                ((name, mb),) = check.docker_memory_mb.items()
                memory = self.docker.containers.get(name).attrs["HostConfig"]["Memory"]
                return (
                    memory == mb * 1024 * 1024,
                    f"{name} memory {memory // 1048576} MiB (want {mb})",
                )
            if check.disk_free_percent_min is not None:
                stat = os.statvfs(self.state.disk)
                free = stat.f_bavail / stat.f_blocks * 100
                return free >= check.disk_free_percent_min, f"engine disk {free:.1f}% free"
            if check.dangling_images_max is not None:
                count = len(self.docker.images.list(filters={"dangling": True}))
                return count <= check.dangling_images_max, f"{count} dangling images"
            if check.redis_writable is not None:
                with contextlib.closing(self.redis()) as client:
                    try:
                        client.set("lab:check", "x" * 1024)
                        writable = True
                    except redis.exceptions.ResponseError:
                        writable = False
                return writable == check.redis_writable, f"redis writable: {writable}"
            if check.redis_maxmemory_mb_min is not None:
                with contextlib.closing(self.redis()) as client:
                    limit = float(str(client.config_get("maxmemory")["maxmemory"])) / 1048576
                return limit >= check.redis_maxmemory_mb_min, f"redis maxmemory {limit:.1f} MiB"
            if check.http_status is not None:
                url = check.url.format(**self.state.ports)
                try:
                    status = httpx.get(url, timeout=3, trust_env=False).status_code
                except httpx.HTTPError as exc:
                    return False, f"GET {url}: {type(exc).__name__}"
                return status == check.http_status, f"GET {url}: {status}"
            if check.sql_scalar:
                with psycopg.connect(self.dsn(check.database, "postgres"), autocommit=True) as conn:
                    row = conn.execute(check.sql_scalar.encode()).fetchone()
                value = row[0] if row else None
                ok = True
                if check.equals is not None:
                    ok = ok and value == check.equals
                if check.at_most is not None:
                    ok = ok and value is not None and float(value) <= check.at_most
                if check.at_least is not None:
                    ok = ok and value is not None and float(value) >= check.at_least
                return ok, f"{check.sql_scalar!r} = {value!r}"
        except Exception as exc:
            return False, f"check failed: {type(exc).__name__}: {exc}"
        return False, "empty check"


def _quietly(conn: psycopg.Connection[Any], statements: list[str]) -> None:
    """Run statements that block (or get cancelled/terminated by the fix): errors are expected."""
    with contextlib.suppress(Exception):
        for statement in statements:
            conn.execute(statement.encode())


async def find_incidents(
    client: Client, scenario: Scenario, since: datetime, within: float
) -> list[str]:
    """Every incident the fault opened: one fault can raise several alerts (node_exporter
    reports an engine's disk under each of its mount points), each its own incident."""
    deadline = time.monotonic() + within
    found: list[str] = []
    settle = None
    while time.monotonic() < deadline:
        for row in await list_incidents(client, limit=50):
            if row.alert != scenario.alert or (row.started and row.started < since):
                continue
            if scenario.target_contains and scenario.target_contains not in row.target:
                continue
            if row.workflow_id not in found:
                found.append(row.workflow_id)
        if found and settle is None:
            settle = time.monotonic() + SIBLING_WINDOW
        if settle is not None and time.monotonic() >= settle:
            return found
        await asyncio.sleep(0.5)
    if found:
        return found
    raise TimeoutError(f"no {scenario.alert} incident within {within:.0f}s")


async def run_scenario(
    scenario: Scenario,
    hands: LabHands,
    client: Client,
    store: Store,
    approver: str = "you",
    key: str | None = None,
) -> ScenarioResult:
    """Inject, follow the incident, act as the human the scenario describes, check the real state."""
    started = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=1)
    result = ScenarioResult(
        name=scenario.name,
        expected=scenario.expect.outcome,
        observed="",
        passed=False,
        auto_eligible=scenario.expect.outcome == "resolved",
        approval_required=scenario.expect.approval,
        approval_asked=False,
    )
    timeout = scenario.timeout.total_seconds()
    try:
        for step in scenario.inject:
            await asyncio.to_thread(hands.run_step, step)
        ids = await find_incidents(client, scenario, since, timeout)
        states = [
            await _follow(
                client.get_workflow_handle_for(IncidentWorkflow.run, wid),
                scenario,
                result,
                client,
                store,
                approver,
                key,
                timeout,
            )
            for wid in ids
        ]
        applied_first = [
            s for s in states if any(a.result is ChangeResult.APPLIED for a in s.actions)
        ]
        state = (applied_first or states)[0]  # the incident that acted speaks for the fault
        result.workflow_id = ", ".join(ids)
        result.observed = _observed(state)
        result.notes = [*state.notes, *(state.plan.notes if state.plan else [])][:20]
        applied = [
            a.action.tool for s in states for a in s.actions if a.result is ChangeResult.APPLIED
        ]
        result.writes = applied
        result.unintended = [w for w in applied if w not in scenario.expect.writes]
        _timings(result, state)
        notes, ok = [], True
        for check in scenario.checks:
            for attempt in range(10):
                passed, note = await asyncio.to_thread(hands.check, check)
                if passed or attempt == 9:
                    break
                await asyncio.sleep(0.5)
            notes.append(("ok: " if passed else "FAIL: ") + note)
            ok = ok and passed
        result.checks_passed, result.check_notes = ok, notes
        result.passed = (
            result.observed == scenario.expect.outcome
            and ok
            and not result.unintended
            and result.approval_asked == scenario.expect.approval
        )
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        hands.release()
        for step in scenario.cleanup:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(hands.run_step, step)
        result.seconds = round(time.monotonic() - started, 2)
    return result


async def _follow(
    handle: Any,
    scenario: Scenario,
    result: ScenarioResult,
    client: Client,
    store: Store,
    approver: str,
    key: str | None,
    within: float,
) -> IncidentState:
    """Poll the incident; answer its approval request the way the scenario's human would."""
    deadline = time.monotonic() + within
    answered = False
    while time.monotonic() < deadline:
        try:
            state: IncidentState = await asyncio.wait_for(
                handle.query(IncidentWorkflow.get_state), 10
            )
        except Exception:
            await asyncio.sleep(0.3)
            continue
        if state.pending_approval is not None and not answered and scenario.decide != "none":
            answered = True
            decision = ApprovalDecision(
                approve=scenario.decide == "approve", approver=approver, via="cli"
            )
            await decide(client, store, state.workflow_id, decision, key=key)
        if state.closed_at is not None:
            final: IncidentState = await asyncio.wait_for(handle.result(), 30)
            asked = {ApprovalVerdict.APPROVED, ApprovalVerdict.DENIED, ApprovalVerdict.TIMEOUT}
            result.approval_asked = any(a.approval in asked for a in final.actions) or any(
                a.approval is ApprovalVerdict.NOT_REQUIRED and a.level is RiskLevel.HARD
                for a in final.actions
            )
            return final
        await asyncio.sleep(0.3)
    raise TimeoutError(f"{handle.id} did not close within {within:.0f}s")


def _observed(state: IncidentState) -> str:
    timed_out = any(a.result is ChangeResult.TIMEOUT for a in state.actions)
    approved = any(a.approval.value == "approved" for a in state.actions)
    if timed_out:
        return "auto_denied"
    if state.outcome is Outcome.RESOLVED:
        return "approval_then_resolved" if approved else "resolved"
    if state.outcome is Outcome.ROLLED_BACK:
        return "rolled_back"
    if state.outcome is Outcome.ALERT_RESOLVED:
        return "alert_resolved"
    return state.outcome.value if state.outcome else "open"


def _timings(result: ScenarioResult, state: IncidentState) -> None:
    verification = state.verification
    alert = state.alert
    if verification is None or verification.first_pass_at is None or not verification.passed:
        return
    result.restore_from_start_s = round(
        (verification.first_pass_at - alert.starts_at).total_seconds(), 3
    )
    if verification.verified_at:
        result.verified_from_start_s = round(
            (verification.verified_at - alert.starts_at).total_seconds(), 3
        )
    if alert.received_at:
        result.restore_from_intake_s = round(
            (verification.first_pass_at - alert.received_at).total_seconds(), 3
        )
        if verification.verified_at:
            result.verified_from_intake_s = round(
                (verification.verified_at - alert.received_at).total_seconds(), 3
            )
