"""End-to-end plumbing for the learning tests: test runbooks, containers that die on demand, and
incidents posted through the real intake of a stack on the dev server and the private dockerd."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from core.models import ApprovalDecision, IncidentState
from tests.integration.stack import (
    Stack,
    alertmanager_payload,
    am_alert,
    run_container,
    wait_exited,
)

# A restartable service that dies once per `docker kill`: after its first death it sleeps.
CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"

VERIFY_RUNNING = """verification:
  checks:
    - tool: docker.inspect
      abort_when:
        - {path: state.status, in: [exited, dead]}
      expect:
        - {path: state.running, equals: true}
  timeout: 15s
  interval: 0.2s
  stable_for: 1s
"""

# Two candidate fixes for one alert: A (a CPU-shares change, which applies but never brings an
# exited container back: its verification fails and the saga undoes it) and B (a start). The
# alert's `attempt` label says which apply: a, b or both.
TWO_FIXES = f"""name: flaky-two-fixes
description: Two candidate fixes; the record decides which goes first.
service: docker
alerts: [FlakyDown]
incident_type: flaky
resource_labels: [name]
max_actions: 1
diagnostics:
  - {{key: inspect, tool: docker.inspect}}
remediations:
  - tool: docker.update_resources
    params: {{cpu_shares: 2048}}
    rationale: fix A
    when:
      - {{evidence: inspect, path: state.running, equals: false}}
      - {{evidence: alert, path: labels.attempt, in: [a, both]}}
  - tool: docker.start
    rationale: fix B
    when:
      - {{evidence: inspect, path: state.running, equals: false}}
      - {{evidence: alert, path: labels.attempt, in: [b, both]}}
{VERIFY_RUNNING}"""

# One fix that is always rolled back (it applies and never helps).
ROLLED_BACK = f"""name: flaky-rolled-back
description: A fix that never holds.
service: docker
alerts: [NeverFixed]
incident_type: flaky
resource_labels: [name]
diagnostics:
  - {{key: inspect, tool: docker.inspect}}
remediations:
  - tool: docker.update_resources
    params: {{cpu_shares: 2048}}
    when:
      - {{evidence: inspect, path: state.running, equals: false}}
{VERIFY_RUNNING}"""


def runbook_dir(tmp: Path, *texts: str) -> Path:
    folder = tmp / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (folder / f"test-{i}.yaml").write_text(text)
    return folder


def dead_container(stack: Stack, prefix: str, command: str = "exit 3") -> Any:
    """An exited container with explicit CPU shares (fix A raises them, a growth the policy lets through; the saga restores them)."""
    container = run_container(
        stack.docker(), f"{prefix}-{uuid.uuid4().hex[:6]}", command, cpu_shares=1024
    )
    wait_exited(container)
    return container


def kill(container: Any) -> None:
    """Make a running CRASH_ONCE container exit again (SIGKILL: code 137)."""
    container.reload()
    if container.status == "running":
        container.kill()
    wait_exited(container)


async def post(stack: Stack, alert: str, container: Any, **labels: str) -> str:
    """Post the alert through the real intake; the incident's workflow id."""
    body = am_alert(alert, container.name, **labels)
    response = await stack.post(alertmanager_payload(body))
    assert response.status_code == 202, response.text
    return f"incident-{body['fingerprint']}"


async def approve(stack: Stack, wid: str, approve: bool = True) -> IncidentState:
    await stack.wait_state(wid, lambda s: s.pending_approval is not None, timeout=60)
    await stack.decide(wid, ApprovalDecision(approve=approve, approver="alice"))
    return await stack.result(wid)
