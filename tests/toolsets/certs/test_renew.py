"""certs.renew on the real thing: certbot renews from pebble over HTTP-01, nginx is reloaded and
serves the new serial; a retry does not renew twice; a failing challenge is a typed failure with
certbot's own explanation, and acme_status then reports it; the same over SSH."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.fakes.sshd import SshServer
from tests.toolsets.certs.conftest import LINEAGE, web_target
from tests.toolsets.helpers import ssh_access, tools_for
from workers.lab.acme import AcmeLab


def archived(acme: AcmeLab) -> int:
    return len(list((acme.le / "config" / "archive" / LINEAGE).glob("cert*.pem")))


async def test_renew_previews_runs_certbot_reloads_and_serves_the_new_serial(
    acme: AcmeLab, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, certs=[web_target(acme)])
    before = await tools.ok("certs.expiry", "web", "app")
    issued = archived(acme)

    dry = await tools.run("certs.renew", "web", "app", dry_run=True)
    assert dry.ok, dry.error
    command = [
        "certbot", "renew", "--cert-name", LINEAGE, "--non-interactive",
        "--no-random-sleep-on-renew",
        "--config-dir", str(acme.le / "config"),
        "--logs-dir", str(acme.le / "logs"),
        "--work-dir", str(acme.le / "work"),
    ]  # fmt: skip
    assert dry.data["preview"] == (
        f"{shlex.join(command)} on localhost; then {shlex.join(acme.reload_command)}; then "
        f"re-read app (127.0.0.1:{acme.tls_port}) until it shows the new certificate "
        f"(now serial {before['serial']}, expires {before['not_after']}, "
        f"{before['days_left']:g} days left; lineage {LINEAGE})"
    )
    assert archived(acme) == issued  # a preview changes nothing

    runner = tools.runner
    spec = runner.catalog.get("certs.renew")
    from core.models import TargetRef, ToolCall

    call = ToolCall(
        tool="certs.renew", target=TargetRef(service="certs", target="web", resource="app")
    )
    prepared = await runner.prepare(call)
    assert prepared.error is None and prepared.before["serial"] == before["serial"]
    assert prepared.reversibility.value == "irreversible" and spec.level.value == "SOFT"

    result = await runner.run(call.model_copy(update={"before": prepared.before}))
    assert result.ok, result.error
    data = result.data
    assert data["serial_before"] == before["serial"] and data["serial"] != before["serial"]
    assert data["reloaded"] is True and data["renewed_by_an_earlier_attempt"] is False
    assert "all renewals succeeded" in data["certbot_output"]
    assert archived(acme) == issued + 1
    after = await tools.ok("certs.expiry", "web", "app")  # an independent re-probe
    assert after["serial"] == data["serial"] == after["lineage_serial"]
    assert after["not_after"] > before["not_after"] and after["serving_latest"]

    # a retry of the same change (same before-state) does not renew again
    again = await runner.run(call.model_copy(update={"before": prepared.before}))
    assert again.ok and again.data["renewed_by_an_earlier_attempt"] is True
    assert again.data["serial"] == data["serial"] and archived(acme) == issued + 1


async def test_a_failing_challenge_is_a_typed_failure_and_acme_status_reports_it(
    acme: AcmeLab, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, certs=[web_target(acme)])
    original = acme.break_webroot(LINEAGE)
    try:
        failed = await tools.run("certs.renew", "web", "app")
        assert not failed.ok and failed.error is not None
        assert failed.error.kind.value == "failed"
        message = failed.error.message
        assert "renewal on localhost exited 1" in message
        assert "Some challenges have failed" in message or "challenges have failed" in message
        assert "404" in message  # pebble's detail: the challenge file was not served

        status = await tools.ok("certs.acme_status", "web", "app")
        assert status["failing"] is True and status["last_outcome"] == "failure"
        assert status["consecutive_failures"] >= 1
        assert status["last_error"] == "Some challenges have failed."
        excerpt = "\n".join(status["excerpt"])
        assert "Challenge failed for domain app.lab.test" in excerpt
        assert "CA: " in excerpt and "404" in excerpt
    finally:
        acme.renewal_conf(LINEAGE).write_text(original)
    healed = await tools.ok("certs.renew", "web", "app")
    assert healed["status"] == "ok"
    assert (await tools.ok("certs.acme_status", "web", "app"))["failing"] is False


async def test_renew_over_ssh_with_certbots_environment(
    acme: AcmeLab, sshd: SshServer, tmp_path: Path
) -> None:
    """certbot runs on the host over SSH (host key checked); its non-secret environment (the
    private ACME CA's bundle) travels as an `env` prefix."""
    tools = tools_for(tmp_path, certs=[web_target(acme, ssh=ssh_access(sshd))])
    before = await tools.ok("certs.expiry", "web", "app")
    dry = await tools.run("certs.renew", "web", "app", dry_run=True, force=True)
    assert dry.ok and f"on {sshd.user}@127.0.0.1;" in dry.data["preview"]
    assert "--force-renewal" in dry.data["preview"]
    renewed = await tools.ok("certs.renew", "web", "app", force=True)
    assert renewed["serial"] != before["serial"]
    assert (await tools.ok("certs.expiry", "web", "app"))["serial"] == renewed["serial"]
