"""Site routing: a target at a site has its tools run by that site's worker (its own task queue),
so a Docker socket or an API never has to be reachable from anywhere else. With the site's worker
down, the activity waits in its queue (durably: the incident waits, visibly, and goes on when the
worker returns). No site configured: the workflow's own queue, as before.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.models import TargetRef, Triage


def site_options(triage: Triage | None, target: TargetRef) -> dict[str, Any]:
    """``task_queue=`` for an activity acting on ``target``, when it is at a site."""
    if triage is None:
        return {}
    queue = triage.site_queues.get(f"{target.service}:{target.target}", "")
    return {"task_queue": queue} if queue else {}
