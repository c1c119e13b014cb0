"""ForecastWorkflow: when will each filesystem, storage and datastore reach its threshold?

Findings (exhaustion within the horizon) open ``PredictedExhaustion`` incidents; a forecast that
moves out of the horizon resolves its finding.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.schedules import FORECAST, ForecastInput, ScheduleRunResult
    from workflows.scheduled.job import run_job


@workflow.defn(name=FORECAST)
class ForecastWorkflow:
    @workflow.run
    async def run(self, inp: ForecastInput) -> ScheduleRunResult:
        return await run_job(contracts.FORECAST_EVALUATE, inp, "forecast exhaustion")
