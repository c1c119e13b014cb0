"""The daily certificate sweep, as the activity the schedule runs, over pebble/certbot/nginx and
the private-CA files: exactly the expected findings (expiring, critical, expired, invalid,
unreachable, a failed renewal in certbot's log), each routed to its runbook with the target and
certificate labelled, and the same fingerprints on a second run."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.catalog import TargetClients
from activities.incident import resolve_target
from activities.runbooks import load_runbooks, match
from activities.sweeps import SweepActivities
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.models import Alert
from core.schedules import SweepInput
from tests.conftest import make_settings
from tests.schedules import settings_on, sweep_twice
from tests.toolsets.certs.conftest import LINEAGE, Files, files_target, web_target
from workers.lab.acme import AcmeLab

CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)
SWEEP = SweepInput(schedule="certificate-sweep", sweep="certificates")


async def test_certificate_sweep_finds_exactly_the_problems(
    acme: AcmeLab, files: Files, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, certs=[files_target(files), web_target(acme)])
    activities = SweepActivities(settings, ToolRunner(CATALOG, TargetClients(settings)))
    env = ActivityEnvironment()
    first: list[Alert] = (await env.run(activities.certificates, SWEEP)).alerts
    found = {
        (a.name, a.labels["homelab_target"], a.labels["certificate"], a.labels["severity"])
        for a in first
    }
    assert found == {
        ("CertificateExpiringSoon", "pem", "expiring", "warning"),
        ("CertificateExpiringVerySoon", "pem", "critical", "critical"),
        ("CertificateExpired", "pem", "expired", "critical"),
        ("CertificateInvalid", "pem", "weak", "warning"),
        ("CertificateInvalid", "pem", "mismatch", "critical"),
        ("CertificateProbeFailed", "pem", "dead", "critical"),
    }
    assert all(a.source == "sweep" and a.labels["homelab_source"] == "sweep" for a in first)
    expiring = next(a for a in first if a.name == "CertificateExpiringSoon")
    assert expiring.annotations["subject"] == "expiring.lab.test"
    assert 9.9 < float(expiring.annotations["days_left"]) <= 10
    mismatch = next(a for a in first if a.labels["certificate"] == "mismatch")
    assert "hostname mismatch" in mismatch.annotations["summary"]
    for alert in first:
        runbook = match(RUNBOOKS, alert)
        assert runbook is not None and runbook.service == "certs", alert.name
        ref, notes = resolve_target(settings, runbook, alert)
        assert ref is not None and ref.resource == alert.labels["certificate"], notes
    assert sorted(
        a.fingerprint for a in (await env.run(activities.certificates, SWEEP)).alerts
    ) == sorted(a.fingerprint for a in first)

    # certbot's last renewal of the lineage fails: a finding with certbot's own log
    original = acme.break_webroot(LINEAGE)
    try:
        failed = acme.certbot(
            "renew", "--cert-name", LINEAGE, "--force-renewal", "--no-random-sleep-on-renew"
        )
        assert failed.returncode != 0
    finally:
        acme.renewal_conf(LINEAGE).write_text(original)
    after: list[Alert] = (await env.run(activities.certificates, SWEEP)).alerts
    renewal = [a for a in after if a.name == "CertificateRenewalFailed"]
    assert len(renewal) == 1 and len(after) == len(first) + 1
    alert = renewal[0]
    assert alert.labels["homelab_target"] == "web" and alert.labels["certificate"] == LINEAGE
    assert alert.annotations["last_error"] == "Some challenges have failed."
    assert "Challenge failed for domain app.lab.test" in alert.annotations["excerpt"]
    runbook = match(RUNBOOKS, alert)
    assert runbook is not None and runbook.name == "certs-critical"
    # the next successful renewal clears it
    done = acme.certbot(
        "renew", "--cert-name", LINEAGE, "--force-renewal", "--no-random-sleep-on-renew"
    )
    assert done.returncode == 0, done.stderr
    acme.serve_latest(LINEAGE)  # what the renew tool's reload does
    assert not [
        a
        for a in (await env.run(activities.certificates, SWEEP)).alerts
        if a.name == "CertificateRenewalFailed"
    ]


async def test_certificate_sweep_schedule_opens_exactly_the_expected_incidents(
    dev_env: WorkflowEnvironment, files: Files, tmp_path: Path, task_queue: str
) -> None:
    """The default schedules with certs targets, one at a site: the sweep's schedule is applied
    and listed; a triggered run (the main worker's sweep and the site worker's) opens one incident
    per finding (``incident-<fingerprint>``) that its runbook answers on the certificate; a
    second run opens none."""
    edge = files_target(
        files,
        name="edge",
        site="edge",
        files=[{"name": "expiring", "path": files.path("expiring")}],
        endpoints=[],
    )
    settings = settings_on(dev_env, tmp_path, task_queue, certs=[files_target(files), edge])
    done = await sweep_twice(dev_env, settings, "certificate-sweep", "certificates")

    assert done.applied == {"patterns": "created", "certificate-sweep": "created"}
    listed = done.listed["certificate-sweep"]
    assert listed.workflow == "SweepWorkflow" and listed.spec.startswith("cron 0 6 * * *")
    assert listed.next_runs and listed.next_runs[0].hour in (6, 7)
    assert {
        (a.labels["homelab_target"], a.name, a.labels["certificate"]) for a in done.expected
    } == {
        ("pem", "CertificateExpiringSoon", "expiring"),
        ("pem", "CertificateExpiringVerySoon", "critical"),
        ("pem", "CertificateExpired", "expired"),
        ("pem", "CertificateInvalid", "weak"),
        ("pem", "CertificateInvalid", "mismatch"),
        ("pem", "CertificateProbeFailed", "dead"),
        ("edge", "CertificateExpiringSoon", "expiring"),  # swept by the site's worker
    }
    wanted = {f"incident-{a.fingerprint}" for a in done.expected}
    first = done.first
    assert first.findings == 7 and first.opened == 7 and first.schedule == "certificate-sweep"
    assert {r.workflow_id for r in first.routed} == wanted and not first.notes
    assert done.runs == sorted(wanted)  # exactly these on the server, each run once

    by_ref = {
        (s.alert.labels["homelab_target"], s.alert.labels["certificate"]): s
        for s in done.states.values()
    }
    for (target, cert), state in by_ref.items():
        alert = state.alert
        assert alert.source == "sweep" and alert.labels["schedule"] == "certificate-sweep"
        assert done.run_id in alert.annotations["run_url"]
        assert state.triage is not None and state.triage.runbook is not None, state.notes
        assert str(state.triage.target) == f"certs:{target}/{cert}", state.triage.notes
    expiring = by_ref[("edge", "expiring")]
    assert expiring.alert.annotations["subject"] == "expiring.lab.test"
    assert expiring.triage is not None and expiring.triage.runbook is not None
    assert expiring.triage.runbook.name == "certs-expiring"
    assert expiring.triage.site_queues == {"certs:edge": f"{task_queue}@edge"}
    assert any(e.ok for e in expiring.evidence)  # its diagnostics ran on the site's worker

    again = done.second
    assert again.findings == 7 and again.opened == 0 and not again.routed
    assert again.notes == [
        "7 finding(s) not re-opened: their incident closed within repeat_interval"
    ]
