"""SweepWorkflow: the daily certificate or backup sweep (``SweepInput.sweep``).

Each finding is already an alert (``activities/sweeps.py``): expiring, expired, invalid or
unreadable certificates and failed renewals; stale, unreadable, locked or damaged backup
repositories, PBS snapshots that failed verification or garbage collection, Proxmox guests
without a recent backup. Routing opens ``incident-<fingerprint>`` for each, answered by the
service's runbook.

The main worker sweeps the targets with no site and names the sites that have targets to sweep;
the same activity then runs on each site's worker (its own task queue), at once. A site whose
worker does not take it within ``site_wait`` is noted as not swept; what the others found is
routed all the same.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core import contracts
    from core.contracts import Contract
    from core.schedules import SWEEP, Evaluation, ScheduleRunResult, SweepInput
    from workflows.calls import call
    from workflows.remediation import cause
    from workflows.scheduled.job import evaluation_options, run_job

SWEEPS = {
    "certificates": contracts.SWEEP_CERTIFICATES,
    "backups": contracts.SWEEP_BACKUPS,
}


@workflow.defn(name=SWEEP)
class SweepWorkflow:
    @workflow.run
    async def run(self, inp: SweepInput) -> ScheduleRunResult:
        sweep = SWEEPS[inp.sweep]

        async def evaluate() -> Evaluation:
            here = await call(
                sweep, inp, summary=f"sweep {inp.sweep}", **evaluation_options(inp.timeout)
            )
            sites = sorted(here.sites.items())
            there = await asyncio.gather(*(self._at(sweep, inp, s, q) for s, q in sites))
            for evaluation in there:
                here.alerts += evaluation.alerts
                here.notes += evaluation.notes
            here.sites = {}
            return here

        return await run_job(evaluate, inp, f"sweep {inp.sweep}")

    async def _at(
        self, sweep: Contract[Evaluation], inp: SweepInput, site: str, queue: str
    ) -> Evaluation:
        """The same sweep on a site's worker; a site that cannot sweep is a note."""
        try:
            return await call(
                sweep,
                inp,
                summary=f"sweep {inp.sweep} at {site}",
                task_queue=queue,
                schedule_to_start_timeout=inp.site_wait,
                **evaluation_options(inp.timeout),
            )
        except ActivityError as err:
            return Evaluation(notes=[f"site {site}: not swept ({cause(err)})"])
