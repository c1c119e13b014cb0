"""AnomalyWorkflow: configured series against the same hour of the week in past weeks.

Findings open ``MetricAnomaly`` incidents (diagnosed by their service's runbook, or escalated with
the evidence); a series back within its usual spread resolves its finding.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.schedules import ANOMALIES, AnomalyInput, ScheduleRunResult
    from workflows.scheduled.job import run_job


@workflow.defn(name=ANOMALIES)
class AnomalyWorkflow:
    @workflow.run
    async def run(self, inp: AnomalyInput) -> ScheduleRunResult:
        return await run_job(contracts.ANOMALIES_EVALUATE, inp, "score anomalies")
