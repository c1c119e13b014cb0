"""Certificate incidents end to end on the Temporal dev server, through the real intake and
worker: an expiring certificate is renewed by certbot from pebble and nginx serves the new one;
a failed renewal (the sweep's finding) escalates with certbot's log; an unreachable endpoint
escalates with a typed error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.catalog import TargetClients
from activities.sweeps import Sweeper
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.models import ChangeResult, Outcome
from tests.integration.stack import alertmanager_payload, as_webhook, running_stack
from tests.toolsets.certs.conftest import LINEAGE, web_target
from workers.lab.acme import AcmeLab
from workers.lab.processes import free_port

pytestmark = pytest.mark.integration


def blackbox_alert(name: str, instance: str, severity: str = "warning") -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "instance": instance,
            "job": "blackbox-tls",
            "severity": severity,
        },
        "annotations": {"summary": f"{name} ({instance})"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }


async def test_expiring_certificate_is_renewed_and_served(
    dev_env: WorkflowEnvironment, acme: AcmeLab, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{acme.tls_port}"
    served_before = acme.served_serial()
    async with running_stack(
        dev_env, None, tmp_path, certs=[web_target(acme, instances=[address])]
    ) as stack:
        alert = blackbox_alert("SslCertificateWillExpireSoon", address)
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202, response.text
        state = await stack.result(f"incident-{alert['fingerprint']}")

    assert state.outcome is Outcome.RESOLVED, state.notes
    assert state.triage is not None and str(state.triage.target) == f"certs:web/{address}"
    acme_evidence = next(e for e in state.evidence if e.key == "acme")
    assert acme_evidence.data["managed"] and acme_evidence.data["cert_name"] == LINEAGE
    [action] = state.actions
    assert action.action.tool == "certs.renew" and action.result is ChangeResult.APPLIED
    assert action.level.value == "SOFT" and action.preview.startswith(
        "certbot renew --cert-name labcert"
    )
    [change] = stack.store.list_changes(state.workflow_id)
    assert change.before["serial"] == format(served_before, "X")
    assert change.after["serial"] != change.before["serial"]
    assert state.verification is not None and state.verification.passed
    # independently of the agents: nginx presents the new certificate
    assert format(acme.served_serial(), "X") == change.after["serial"]


async def test_failed_renewal_escalates_with_certbots_log(
    dev_env: WorkflowEnvironment, acme: AcmeLab, tmp_path: Path
) -> None:
    original = acme.break_webroot(LINEAGE)
    try:
        assert acme.certbot(
            "renew", "--cert-name", LINEAGE, "--force-renewal", "--no-random-sleep-on-renew"
        ).returncode
    finally:
        acme.renewal_conf(LINEAGE).write_text(original)
    async with running_stack(dev_env, None, tmp_path, certs=[web_target(acme)]) as stack:
        sweeper = Sweeper(
            stack.settings, ToolRunner(default_catalog(), TargetClients(stack.settings))
        )
        [finding] = [
            a for a in await sweeper.certificates() if a.name == "CertificateRenewalFailed"
        ]
        response = await stack.post(alertmanager_payload(as_webhook(finding)))
        assert response.status_code == 202, response.text
        state = await stack.result(f"incident-{finding.fingerprint}")
    assert state.outcome is Outcome.ESCALATED and not state.actions
    assert state.triage is not None and state.triage.runbook is not None
    assert state.triage.runbook.name == "certs-critical" and state.triage.severity == "critical"
    acme_state = next(e for e in state.evidence if e.key == "acme")
    assert acme_state.ok and acme_state.data["failing"] is True
    assert any(
        "Challenge failed for domain app.lab.test" in line for line in acme_state.data["excerpt"]
    )
    assert any(
        "diagnosis only" in note for note in state.notes + (state.plan.notes if state.plan else [])
    )
    healed = acme.certbot(
        "renew", "--cert-name", LINEAGE, "--force-renewal", "--no-random-sleep-on-renew"
    )
    assert healed.returncode == 0, healed.stderr
    acme.serve_latest(LINEAGE)


async def test_unreachable_endpoint_escalates_with_a_typed_error(
    dev_env: WorkflowEnvironment, acme: AcmeLab, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    target = web_target(acme, endpoints=[{"name": "dead", "address": dead}])
    async with running_stack(dev_env, None, tmp_path, certs=[target]) as stack:
        alert = blackbox_alert("SslCertificateWillExpireSoon", dead)
        await stack.post(alertmanager_payload(alert))
        state = await stack.result(f"incident-{alert['fingerprint']}")
    assert state.outcome is Outcome.ESCALATED and not state.actions
    expiry = next(e for e in state.evidence if e.key == "expiry")
    assert not expiry.ok and expiry.error is not None
    assert expiry.error.kind.value == "unreachable" and dead in expiry.error.message
