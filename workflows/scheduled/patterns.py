"""PatternReportWorkflow: the week's incidents by weekday, hour, target and alert, what recurs
and how well it is fixed, and the MTTR trend — to the notification channels (Telegram)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.models import Notification
    from core.schedules import PATTERNS, PatternReport, PatternReportInput, ScheduleRunResult
    from workflows.calls import call
    from workflows.remediation import cause
    from workflows.scheduled.job import evaluation_options, internal_options, record, schedule_name


@workflow.defn(name=PATTERNS)
class PatternReportWorkflow:
    @workflow.run
    async def run(self, inp: PatternReportInput) -> ScheduleRunResult:
        name = schedule_name(inp)
        started = workflow.now()
        result = ScheduleRunResult(schedule=name)
        try:
            report: PatternReport = await call(
                contracts.PATTERNS_REPORT, inp, summary="pattern report", **evaluation_options()
            )
        except ActivityError as err:
            await record(name, False, started, result, cause(err))
            raise ApplicationError(
                f"{name}: {cause(err)}", type="ScheduledRunFailed", non_retryable=True
            ) from err
        result.report = report.model_dump(mode="json")
        lines = report.lines()
        workflow.set_current_details("\n\n".join(lines))
        if inp.notify:
            info = workflow.info()
            try:
                await call(
                    contracts.NOTIFY,
                    Notification(
                        kind="plan",
                        incident_id=info.workflow_id,
                        workflow_id=info.workflow_id,
                        title=f"Incident patterns, last {inp.days} days",
                        lines=lines,
                        severity="info",
                    ),
                    summary="send the report",
                    **internal_options(),
                )
            except ActivityError as err:  # best-effort, like every notification
                result.notes.append(f"report not delivered: {cause(err)}")
        await record(name, True, started, result)
        return result
