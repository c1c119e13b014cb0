"""Certificate reads on real components: pebble-issued certificates served by nginx, PEM files
from a private CA, certbot's lineage and log, the same over a real sshd, and blackbox_exporter's
probes read from a real Prometheus."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.sshd import SshServer
from tests.toolsets.certs.conftest import (
    DOMAIN,
    LINEAGE,
    Files,
    files_target,
    web_target,
)
from tests.toolsets.helpers import ssh_access, tools_for
from workers.lab.acme import AcmeLab
from workers.lab.monitoring import Prometheus, blackbox_exporter
from workers.lab.processes import free_ports, wait_for


async def test_expiry_and_chain_of_a_pebble_certificate_served_by_nginx(
    acme: AcmeLab, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, certs=[web_target(acme)])
    expiry = await tools.ok("certs.expiry", "web", "app")
    assert expiry["subject"] == DOMAIN and expiry["sans"] == [DOMAIN]
    assert expiry["issuer"].startswith("Pebble Intermediate CA")
    assert 0.03 < expiry["lifetime_days"] < 0.05  # pebble's 1-hour certificates
    # thresholds shrink to a third / a tenth of a short lifetime: a fresh one is not "expiring"
    assert expiry["status"] == "ok" and expiry["warn_days"] < expiry["lifetime_days"] / 2
    assert expiry["earliest"]["is_leaf"] is True
    assert expiry["cert_name"] == LINEAGE and expiry["serving_latest"] is True
    assert expiry["serial"] == expiry["lineage_serial"]

    chain = await tools.ok("certs.chain", "web", "app")
    assert chain["verified"] and chain["trusted"] and chain["hostname_ok"] and chain["ok"]
    assert chain["length"] == 2 and chain["chain"][1]["subject"].startswith("Pebble Intermediate")
    assert chain["must_staple"] is False and chain["weak"] == [] and chain["problems"] == []

    # the same endpoint judged against the system CAs, and for a name it does not carry
    other = tools_for(
        tmp_path,
        certs=[
            web_target(
                acme,
                ca_file=None,
                endpoints=[
                    {"name": "app", "address": f"127.0.0.1:{acme.tls_port}", "server_name": DOMAIN},
                    {
                        "name": "wrong",
                        "address": f"127.0.0.1:{acme.tls_port}",
                        "server_name": "x.lab.test",
                    },
                ],
            )
        ],
    )
    untrusted = await other.ok("certs.chain", "web", "app")
    assert not untrusted["verified"] and not untrusted["trusted"] and untrusted["ca"] == "system"
    assert untrusted["verify_error"] == (
        "unable to get local issuer certificate (certificate 1 of the chain)"
    )
    wrong = await tools_for(
        tmp_path,
        certs=[
            web_target(
                acme,
                endpoints=[
                    {
                        "name": "wrong",
                        "address": f"127.0.0.1:{acme.tls_port}",
                        "server_name": "x.lab.test",
                    }
                ],
            )
        ],
    ).ok("certs.chain", "web", "wrong")
    assert wrong["trusted"] and not wrong["verified"] and wrong["hostname_ok"] is False
    assert wrong["verify_error"] == "hostname mismatch"


async def test_inventory_judges_every_file_and_endpoint(files: Files, tmp_path: Path) -> None:
    tools = tools_for(tmp_path, certs=[files_target(files)])
    data = await tools.ok("certs.inventory", "pem")
    rows = {r["name"]: r for r in data["certificates"]}
    assert {n: r["status"] for n, r in rows.items()} == {
        "fine": "ok",
        "expiring": "warning",
        "critical": "critical",
        "expired": "expired",
        "weak": "ok",
        "mismatch": "ok",
        "dead": "error",
    }
    assert (
        rows["fine"]["ok"]
        and rows["fine"]["verified"]
        and rows["fine"]["issuer"] == "homelab test CA"
    )
    assert (
        rows["expiring"]["sans"] == ["expiring.lab.test"]
        and 9.9 < rows["expiring"]["days_left"] <= 10
    )
    assert rows["weak"]["weak"] == ["RSA key of 1024 bits (< 2048)"] and not rows["weak"]["ok"]
    assert (
        rows["mismatch"]["hostname_ok"] is False
        and rows["mismatch"]["verify_error"] == "hostname mismatch"
    )
    assert rows["expired"]["verify_error"] == "certificate has expired"
    assert rows["dead"]["kind"] == "unreachable" and "cannot connect" in rows["dead"]["error"]
    assert set(data["expiring"]) == {"expiring", "critical", "expired"}
    assert set(data["unverified"]) == {"mismatch", "expired"} and data["errors"] == ["dead"]

    expired = await tools.ok("certs.expiry", "pem", "expired")
    assert expired["expired"] and expired["status"] == "expired" and expired["days_left"] < 0


async def test_acme_status_reads_the_lineage_and_certbots_log(
    acme: AcmeLab, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, certs=[web_target(acme)])
    data = await tools.ok("certs.acme_status", "web")
    assert data["count"] == 1 and data["failing"] == []
    row = data["lineages"][0]
    assert row["cert_name"] == LINEAGE and row["domains"] == [DOMAIN]
    assert row["server"] == acme.directory and row["authenticator"] == "webroot"
    assert row["renew_before_expiry"] == "30 days" and row["due"] is True  # a 1-hour certificate
    assert row["last_outcome"] == "success" and row["failing"] is False and row["last_attempt"]
    mine = await tools.ok("certs.acme_status", "web", "app")
    assert mine["managed"] is True and mine["cert_name"] == LINEAGE and mine["failing"] is False


async def test_files_and_certbot_over_ssh_with_the_host_key_checked(
    acme: AcmeLab, files: Files, sshd: SshServer, tmp_path: Path
) -> None:
    tools = tools_for(
        tmp_path,
        certs=[
            files_target(files, ssh=ssh_access(sshd), endpoints=[]),
            web_target(acme, ssh=ssh_access(sshd)),
        ],
    )
    inventory = await tools.ok("certs.inventory", "pem")
    assert {r["name"]: r["status"] for r in inventory["certificates"]}["expiring"] == "warning"
    acme_state = await tools.ok("certs.acme_status", "web", "app")
    assert acme_state["cert_name"] == LINEAGE and acme_state["last_outcome"] == "success"
    # an unknown host key is refused, typed
    (tmp_path / "known_hosts").write_text("")
    refused = tools_for(
        tmp_path,
        certs=[
            files_target(
                files,
                endpoints=[],
                ssh={**ssh_access(sshd), "known_hosts": str(tmp_path / "known_hosts")},
            )
        ],
    )
    result = await refused.run("certs.expiry", "pem", "fine")
    assert not result.ok and result.error is not None and result.error.kind.value == "failed"
    assert "host key" in result.error.message


async def test_bad_input_gives_typed_errors(acme: AcmeLab, files: Files, tmp_path: Path) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    tools = tools_for(
        tmp_path,
        certs=[
            files_target(
                files,
                files=[
                    {"name": "missing", "path": str(tmp_path / "nope.pem")},
                    {"name": "garbage", "path": str(tmp_path / "garbage.pem")},
                ],
            )
        ],
    )
    cases = {
        ("certs.expiry", "dead"): "unreachable",
        ("certs.expiry", "missing"): "not_found",
        ("certs.expiry", "garbage"): "failed",
        ("certs.expiry", "nothing-like-it"): "not_found",
        ("certs.acme_status", ""): "unsupported",
        ("certs.renew", "missing"): "not_found",
    }
    for (tool, resource), kind in cases.items():
        result = await tools.run(tool, "pem", resource, dry_run=tool == "certs.renew")
        assert not result.ok and result.error is not None, (tool, resource)
        assert result.error.kind.value == kind, (tool, resource, result.error)
    unknown = await tools.run("certs.expiry", "nope", "x")
    assert unknown.error is not None and unknown.error.kind.value == "not_found"


async def test_blackbox_exporter_probes_are_certificates_too(acme: AcmeLab, tmp_path: Path) -> None:
    """A real blackbox_exporter probes nginx, a real Prometheus scrapes it; the certs target reads
    the probed endpoints from Prometheus and finds a certificate by the alert's instance label."""
    exporter_port, prom_port = free_ports(2)
    exporter = blackbox_exporter(tmp_path, exporter_port, acme.root_ca, DOMAIN)
    prometheus = Prometheus(tmp_path / "prom", prom_port)
    instance = f"127.0.0.1:{acme.tls_port}"  # probed by address, as the scrape config says
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
        "scrape_configs:\n"
        "  - job_name: blackbox-tls\n"
        "    metrics_path: /probe\n"
        "    params: {module: [tls_connect]}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{acme.tls_port}']}}]\n"
        "    relabel_configs:\n"
        "      - {source_labels: [__address__], target_label: __param_target}\n"
        "      - {source_labels: [__param_target], target_label: instance}\n"
        f"      - {{target_label: __address__, replacement: '127.0.0.1:{exporter_port}'}}\n"
    )
    try:
        prometheus.start()

        def scraped() -> bool:
            answer = httpx.get(
                f"{prometheus.url}/api/v1/query",
                params={"query": "probe_ssl_earliest_cert_expiry"},
                timeout=2,
                trust_env=False,
            ).json()
            return bool(answer["data"]["result"])

        wait_for(scraped, 30, "a blackbox TLS probe in Prometheus")
        tools = tools_for(
            tmp_path,
            prometheus=[{"name": "prom", "url": prometheus.url}],
            certs=[
                web_target(
                    acme,
                    endpoints=[],
                    blackbox={"prometheus": "prom", "selector": 'job="blackbox-tls"'},
                )
            ],
        )
        inventory = await tools.ok("certs.inventory", "web")
        probed = next(r for r in inventory["certificates"] if r["source"] == "blackbox")
        assert probed["name"] == instance and probed["subject"] == DOMAIN
        # blackbox checked the name it was configured with; a client asking for the probed
        # address gets a certificate that does not name it
        assert probed["hostname_ok"] is False and probed["verify_error"] == "IP address mismatch"
        by_label = await tools.ok("certs.expiry", "web", f"https://{instance}/")
        assert by_label["certificate"]["source"] == "blackbox" and by_label["cert_name"] == LINEAGE
    finally:
        if prometheus.proc is not None:
            prometheus.proc.stop()
        exporter.stop()


async def test_doctor_probe_lists_the_lineages(acme: AcmeLab, tmp_path: Path) -> None:
    import asyncio

    from activities.toolsets.certs import probe

    settings = tools_for(tmp_path, certs=[web_target(acme)]).settings
    found = await asyncio.to_thread(probe, settings.certs[0])  # doctor runs probes in a thread
    assert found == f"1 endpoint(s), 0 file(s); certbot lineages: {LINEAGE}"
