"""Record golden workflow histories of a release into tests/histories/<release>-<case>.json.

Run once per release (``python -m tests.histories.record v0.1``) and commit the files; every
change to workflow code must still replay them (tests/workflows/test_golden_histories.py), and a
change that would take another path for them is guarded with ``workflow.patched``. The cases run
the real workflow and its real store, policy, planner, lock and record activities on the
time-skipping test server, with the Docker tools faked (tests/workflows/fakes.py) so that each
case is reproducible: approval, timeout, rollback after failed verification, the LLM chain
failing over to the runbook planner, the kill switch, and a manual rollback. Since 0.2, the
scheduled jobs too: a forecast and an anomaly run whose (canned) evaluations find something that
the real ``findings.route`` opens an incident for, a forecast run that fails, and the pattern
report from the real store. Since 0.3, a certificate sweep whose (canned) finding, already an
alert, the real ``findings.route`` opens an incident for.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sweeps import finding as sweep_finding
from core.config import Settings
from core.models import (
    Alert,
    AlertStatus,
    ChangeResult,
    IncidentInput,
    IncidentState,
    VerificationResult,
    VerifyRequest,
    lock_workflow_id,
)
from core.schedules import (
    AnomalyInput,
    Evaluation,
    Finding,
    ForecastInput,
    PatternReportInput,
    SweepInput,
)
from tests.approvals import signal as signed
from tests.conftest import make_settings
from tests.workflows.fakes import FakeDocker, merge
from workers.lab.processes import free_port
from workers.temporal_client import ensure_search_attributes
from workers.worker import WORKFLOWS, Components, activities_for, build_components

HERE = Path(__file__).resolve().parent
BIN = Path(sys.prefix) / "bin"


def alert(fingerprint: str) -> Alert:
    return Alert(
        name="ContainerKilled",
        status=AlertStatus.FIRING,
        fingerprint=fingerprint,
        labels={
            "alertname": "ContainerKilled",
            "container": "web",
            "engine": "lab",
            "severity": "warning",
        },
        starts_at=datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
    )


class NeverHealthy(FakeDocker):
    """Starts, but verification never passes: the compensation must run."""

    def activities(self) -> list[Any]:
        @activity.defn(name="incident.verify")
        async def verify(request: VerifyRequest) -> VerificationResult:
            return VerificationResult(passed=False, detail="exited again")

        return merge(super().activities(), [verify])


AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def finding(alert: str, mount: str, summary: str) -> Finding:
    return Finding(
        alert=alert,
        key={"source": "filesystem", "instance": "lab:9100", "mountpoint": mount},
        labels={"instance": "lab:9100", "mountpoint": mount, "resource_kind": "filesystem"},
        summary=summary,
        evidence={"eta_seconds": 259200.0, "threshold": 0.9},
    )


class Scheduled(FakeDocker):
    """Canned evaluations (no Prometheus): everything after them is the real thing."""

    def activities(self) -> list[Any]:
        @activity.defn(name="forecast.evaluate")
        async def forecast(inp: ForecastInput) -> Evaluation:
            if inp.horizon.total_seconds() < 3600:  # the failing case
                raise ApplicationError(
                    "Prometheus at http://prometheus:9090 unreachable",
                    type="ToolUnreachable",
                    non_retryable=True,
                )
            return Evaluation(
                findings=[
                    finding("PredictedExhaustion", "/srv", "/srv on lab:9100 reaches 90% in 3d")
                ],
                clear=[{"source": "filesystem", "instance": "lab:9100", "mountpoint": "/"}],
                series=2,
            )

        @activity.defn(name="anomalies.evaluate")
        async def anomalies(inp: AnomalyInput) -> Evaluation:
            return Evaluation(
                findings=[finding("MetricAnomaly", "/var", "disk_io above usual on lab:9100")],
                series=1,
            )

        @activity.defn(name="sweeps.certificates")
        async def certificates(inp: SweepInput) -> Evaluation:
            expiring = sweep_finding(
                "certificates",
                "CertificateExpiringSoon",
                "warning",
                "certs",
                "pem",
                "certificate",
                "expiring",
                "certificate expiring (/etc/ssl/expiring.pem) expires in 10 days",
                {"subject": "expiring.lab.test", "days_left": 10.0},
                "0a1b2c",
            )
            return Evaluation(alerts=[expiring])

        return merge(super().activities(), [forecast, anomalies, certificates])


async def scheduled(client: Client, settings: Settings, workflow: str, wid: str, inp: Any) -> Any:
    return await client.start_workflow(
        workflow,
        inp,
        id=wid,
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(hours=1),
    )


async def forecast(client: Client, settings: Settings, parts: Components) -> Any:
    inp = ForecastInput(schedule="forecast", at=AT)
    return await scheduled(client, settings, "ForecastWorkflow", "golden-forecast", inp)


async def forecast_failed(client: Client, settings: Settings, parts: Components) -> Any:
    inp = ForecastInput(schedule="forecast", at=AT, horizon=timedelta(minutes=1))
    return await scheduled(client, settings, "ForecastWorkflow", "golden-forecast-failed", inp)


async def anomalies(client: Client, settings: Settings, parts: Components) -> Any:
    inp = AnomalyInput(schedule="anomalies", at=AT)
    return await scheduled(client, settings, "AnomalyWorkflow", "golden-anomalies", inp)


async def patterns(client: Client, settings: Settings, parts: Components) -> Any:
    inp = PatternReportInput(schedule="patterns", at=AT)
    return await scheduled(client, settings, "PatternReportWorkflow", "golden-patterns", inp)


async def sweep(client: Client, settings: Settings, parts: Components) -> Any:
    inp = SweepInput(schedule="certificate-sweep", sweep="certificates")
    return await scheduled(client, settings, "SweepWorkflow", "golden-sweep", inp)


Case = Callable[[Client, Settings, Components], Awaitable[WorkflowHandle[Any, IncidentState]]]


async def start(client: Client, settings: Settings, fp: str, **extra: Any) -> Any:
    return await client.start_workflow(
        "IncidentWorkflow",
        IncidentInput(alert=alert(fp), **extra),
        id=f"incident-{fp}",
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(hours=2),
        result_type=IncidentState,
    )


async def wait_for(handle: Any, test: Callable[[IncidentState], bool]) -> IncidentState:
    for _ in range(400):
        state: IncidentState = await handle.query("state", result_type=IncidentState)
        if test(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the incident never reached the expected state")


async def approved(client: Client, settings: Settings, parts: Components) -> Any:
    handle = await start(client, settings, "golden-approved")
    state = await wait_for(handle, lambda s: s.pending_approval is not None)
    assert state.pending_approval is not None
    await handle.signal("approve", signed(settings, handle.id, state.pending_approval, "alice"))
    return handle


async def timeout(client: Client, settings: Settings, parts: Components) -> Any:
    return await start(client, settings, "golden-timeout")


async def rollback(client: Client, settings: Settings, parts: Components) -> Any:
    return await start(client, settings, "golden-rollback")


async def llm_chain(client: Client, settings: Settings, parts: Components) -> Any:
    return await start(client, settings, "golden-llm-chain")


async def pause(client: Client, settings: Settings, parts: Components) -> Any:
    parts.store.set_paused(True, "golden", "recording the pause path")
    handle = await start(client, settings, "golden-pause")
    await wait_for(handle, lambda s: s.paused)
    parts.store.set_paused(False, "golden", "resume")
    await handle.signal("resume")
    return handle


async def manual_rollback(client: Client, settings: Settings, parts: Components) -> Any:
    first = await start(client, settings, "golden-before-manual-rollback")
    await first.result()
    change = next(c for c in parts.store.list_changes(first.id) if c.result is ChangeResult.APPLIED)
    handle = await client.start_workflow(
        "IncidentWorkflow",
        IncidentInput(alert=alert("golden-manual-rollback"), rollback_of=change.change_id),
        id=f"rollback-{change.change_id}",
        task_queue=settings.temporal.task_queue,
        execution_timeout=timedelta(hours=2),
        result_type=IncidentState,
    )
    state = await wait_for(handle, lambda s: s.pending_approval is not None)  # stop is HARD
    assert state.pending_approval is not None
    await handle.signal("approve", signed(settings, handle.id, state.pending_approval, "alice"))
    return handle


CASES: dict[str, tuple[Case, dict[str, Any], type[FakeDocker]]] = {
    "approved": (approved, {"approval": {"critical": ["docker:lab/*"]}}, FakeDocker),
    "timeout": (timeout, {"approval": {"critical": ["docker:lab/*"]}}, FakeDocker),
    "rollback": (rollback, {}, NeverHealthy),
    "llm-chain": (llm_chain, {}, FakeDocker),
    "pause": (pause, {}, FakeDocker),
    "manual-rollback": (manual_rollback, {}, FakeDocker),
    "forecast": (forecast, {}, Scheduled),
    "forecast-failed": (forecast_failed, {}, Scheduled),
    "anomalies": (anomalies, {}, Scheduled),
    "patterns": (patterns, {}, Scheduled),
    "sweep": (sweep, {}, Scheduled),
}


def case_settings(tmp: Path, name: str, overrides: dict[str, Any]) -> Settings:
    extra: dict[str, Any] = {
        "docker": [{"name": "lab", "url": "unix:///nonexistent.sock"}],
        "approval": {"approvers": ["alice"], **overrides.get("approval", {})},
    }
    if name == "llm-chain":  # a provider that is down: the chain fails over to the runbook planner
        extra["llm"] = {
            "providers": [
                {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"http://127.0.0.1:{free_port()}/v1",
                    "api_key_env": "GOLDEN_FAKE_KEY",
                    "max_attempts": 1,
                    "timeout": "2s",
                }
            ]
        }
        os.environ.setdefault("GOLDEN_FAKE_KEY", "sk-golden-not-a-real-key")
    return make_settings(tmp / name, f"golden-{name}-{uuid.uuid4().hex[:6]}", **extra)


async def record(release: str, only: list[str]) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    written: list[Path] = []
    try:
        await ensure_search_attributes(env.client, "default")
        with tempfile.TemporaryDirectory() as tmp:
            for name, (case, overrides, fake_type) in CASES.items():
                if only and name not in only:
                    continue
                settings = case_settings(Path(tmp), name, overrides)
                parts = build_components(settings)
                fake = fake_type(running=False)
                async with Worker(
                    env.client,
                    task_queue=settings.temporal.task_queue,
                    workflows=WORKFLOWS,
                    activities=merge(activities_for(env.client, parts), fake.activities()),
                ):
                    handle = await case(env.client, settings, parts)
                    try:
                        state = await handle.result()
                    except WorkflowFailureError as exc:  # a failed scheduled run
                        state = exc
                    history = await handle.fetch_history()
                    histories = {name: history}
                    if name == "approved":  # the target lock it took, released at close
                        lock = env.client.get_workflow_handle(
                            lock_workflow_id(settings.temporal.task_queue, "docker:lab/web")
                        )
                        await lock.result()
                        histories["lock"] = await lock.fetch_history()
                parts.close()
                for label, hist in histories.items():
                    path = HERE / f"{release}-{label}.json"
                    path.write_text(json.dumps(json.loads(hist.to_json()), indent=1) + "\n")
                    written.append(path)
                    outcome = getattr(state, "outcome", None) or type(state).__name__
                    print(f"{path.name}: {outcome} ({len(hist.events)} events)")
    finally:
        await env.shutdown()
    return written


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m tests.histories.record RELEASE [CASE ...]")
    asyncio.run(record(sys.argv[1], sys.argv[2:]))
    sys.stdout.flush()
    os._exit(0)  # temporalio's runtime can abort at interpreter exit (sdk-python#300)


if __name__ == "__main__":
    main()
