"""SweepWorkflow: the daily certificate or backup sweep (``SweepInput.sweep``).

Each finding is already an alert (``activities/sweeps.py``): expiring, expired, invalid or
unreadable certificates and failed renewals; stale, unreadable, locked or damaged backup
repositories, PBS snapshots that failed verification or garbage collection, Proxmox guests
without a recent backup. Routing opens ``incident-<fingerprint>`` for each, answered by the
service's runbook.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.schedules import SWEEP, ScheduleRunResult, SweepInput
    from workflows.scheduled.job import run_job

SWEEPS = {
    "certificates": contracts.SWEEP_CERTIFICATES,
    "backups": contracts.SWEEP_BACKUPS,
}


@workflow.defn(name=SWEEP)
class SweepWorkflow:
    @workflow.run
    async def run(self, inp: SweepInput) -> ScheduleRunResult:
        return await run_job(SWEEPS[inp.sweep], inp, f"sweep {inp.sweep}", inp.timeout)
