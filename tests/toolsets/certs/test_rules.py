"""The certificate alert rules (promtool check and unit tests) and the runbooks' plans: renew
when certbot manages a certificate that is not critical and whose renewal did not fail, else
escalate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activities.planner import runbook_plan
from activities.runbooks import load_runbooks, match
from activities.toolsets import default_catalog
from core.models import Alert, AlertStatus, Evidence, PlanRequest, TargetRef, Triage
from tests.toolsets.helpers import promtool_check, promtool_test

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "certs.rules.yml"
CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)
DAY = 86400


def test_rules_pass_promtool_check() -> None:
    assert "SUCCESS: 3 rules found" in promtool_check(RULES)


def test_rules_fire_by_days_left(tmp_path: Path) -> None:
    """At t=1d: expiring in 20 days → warning; in 3 days → critical; expired → critical."""
    probes = {
        "soon.lab:443": 21 * DAY,  # 20 days left at the evaluation time
        "verysoon.lab:443": 4 * DAY,
        "gone.lab:443": DAY - 3600,
        "fine.lab:443": 91 * DAY,
    }
    series = [
        {
            "series": f'probe_ssl_earliest_cert_expiry{{instance="{instance}",job="blackbox-tls"}}',
            "values": f"{expiry}x1500",
        }
        for instance, expiry in probes.items()
    ]

    def fired(name: str, instance: str, severity: str) -> dict[str, Any]:
        return {
            "eval_time": "1d",
            "alertname": name,
            "exp_alerts": [
                {"exp_labels": {"instance": instance, "job": "blackbox-tls", "severity": severity}}
            ],
        }

    promtool_test(
        RULES,
        [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    fired("SslCertificateWillExpireSoon", "soon.lab:443", "warning"),
                    fired(
                        "BlackboxSslCertificateWillExpireVerySoon", "verysoon.lab:443", "critical"
                    ),
                    fired("BlackboxSslCertificateExpired", "gone.lab:443", "critical"),
                ],
            }
        ],
        tmp_path,
    )


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="fp",
        labels={"alertname": name, **labels},
        starts_at="2026-12-01T00:00:00Z",  # type: ignore[arg-type]
    )


def plan(runbook_name: str, a: Alert, **evidence: dict[str, Any]) -> Any:
    runbook = next(r for r in RUNBOOKS if r.name == runbook_name)
    target = TargetRef(service="certs", target="web", resource="app")
    triage = Triage(
        incident_type=runbook.incident_type, service="certs", target=target, severity="warning",
        critical=False, runbook=runbook, approval_timeout="5m", approvers=[],
    )  # fmt: skip
    ev = [
        Evidence(key=k, tool="t", target=str(target), ok=True, data=v) for k, v in evidence.items()
    ]
    return runbook_plan(PlanRequest(incident_id="i", alert=a, triage=triage, evidence=ev), CATALOG)


def test_every_certificate_alert_has_its_runbook() -> None:
    renew = [
        "SslCertificateWillExpireSoon",
        "BlackboxSslCertificateWillExpireSoon",
        "CertificateExpiringSoon",
    ]
    human = [
        "BlackboxSslCertificateWillExpireVerySoon", "BlackboxSslCertificateExpired",
        "SslCertificateHasExpired", "CertificateExpiringVerySoon", "CertificateExpired",
        "CertificateRenewalFailed", "CertificateInvalid", "CertificateProbeFailed",
    ]  # fmt: skip
    for name in renew + human:
        found = match(RUNBOOKS, alert(name, instance="app:443"))
        assert found is not None, name
        assert found.name == ("certs-expiring" if name in renew else "certs-critical"), name


def test_expiring_renews_only_what_certbot_can_and_escalates_the_rest() -> None:
    a = alert("SslCertificateWillExpireSoon", instance="app.lab.test:443")
    due = {"status": "warning", "earliest": {"is_leaf": True}}
    managed = {"managed": True, "failing": False}
    assert [
        x.tool for x in plan("certs-expiring", a, expiry=due, acme=managed, chain={}).actions
    ] == ["certs.renew"]
    for expiry, acme in (
        ({**due, "status": "critical"}, managed),  # a human now, not a retry loop
        (due, {"managed": True, "failing": True}),  # the last renewal failed
        (due, {"managed": False, "failing": False}),  # certbot does not manage it
        ({**due, "earliest": {"is_leaf": False}}, managed),  # an intermediate expires
    ):
        p = plan("certs-expiring", a, expiry=expiry, acme=acme, chain={})
        assert p.actions == [] and p.escalate, (expiry, acme)
    critical = plan(
        "certs-critical",
        alert("CertificateRenewalFailed", certificate="labcert"),
        expiry=due,
        acme=managed,
        chain={},
    )
    assert critical.actions == [] and critical.escalate
