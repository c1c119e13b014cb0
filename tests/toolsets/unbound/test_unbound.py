"""Every Unbound tool against real Unbound servers (unbound-control over TLS, real queries), and
the resolution-failing incident end to end: the old forwarder dies, the config file already names
a new one, the runbook finds the configured forwarder answering and reloads Unbound; typed errors
for a stopped server, a failing config and a missing binary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel, ToolErrorKind
from tests.integration.stack import alertmanager_payload
from tests.toolsets.harness import Tools, alert, edge_stack
from tests.toolsets.unbound.conftest import ZONE, DnsLab
from workers.lab.unbound import Unbound


@pytest_asyncio.fixture
async def tools(dns_lab: DnsLab) -> AsyncIterator[Tools]:
    tools = Tools(unbound=[dns_lab.target()])
    yield tools
    await tools.aclose()


async def test_reads_on_a_healthy_resolver(tools: Tools, dns_lab: DnsLab) -> None:
    status = await tools.run("unbound.status")
    assert status.ok, status.error
    assert status.data["running"] and status.data["version"]
    query = await tools.run("unbound.query")
    assert query.data["failing_count"] == 0
    assert [r["answers"] for r in query.data["results"]] == [["10.0.0.5"], ["10.0.0.6"]]
    stats = await tools.run("unbound.stats")
    assert stats.data["queries"] >= 2
    lookup = await tools.run("unbound.lookup", name="app.lab.lan")
    assert lookup.data["forwarding"] is True
    assert [s["address"] for s in lookup.data["servers"]] == ["127.0.0.1"]
    forwarders = await tools.run("unbound.forwarders")
    (zone,) = forwarders.data["zones"]
    assert zone["zone"] == ZONE and zone["configured"] == [dns_lab.old.address]
    assert zone["answers"][dns_lab.old.address] != "TIMEOUT"
    assert forwarders.data["configured_answer"] and forwarders.data["config_valid"]


async def test_flush_zone_previews_and_flushes(tools: Tools) -> None:
    await tools.run("unbound.query")  # something cached
    prepared = await tools.prepare("unbound.flush_zone", zone="lab.lan")
    assert prepared.error is None and prepared.default_level is RiskLevel.SOFT
    assert prepared.preview.startswith("flush zone lab.lan. from unbound at 127.0.0.1:")
    assert prepared.preview.endswith("; forget every server's timeout state (flush_infra all)")
    assert prepared.before["rrset_cache"] >= 2
    _, result = await tools.apply("unbound.flush_zone", zone="lab.lan")
    assert result.ok and result.data["result"].startswith("ok removed")
    bad = await tools.run("unbound.flush_zone", zone="lab.lan; rm -rf /")
    assert bad.error is not None and bad.error.kind is ToolErrorKind.INVALID


async def test_reload_refuses_a_config_that_fails_checkconf(tools: Tools, dns_lab: DnsLab) -> None:
    config = dns_lab.resolver.config
    good = config.read_text()
    config.write_text(good + "server:\n    no-such-option: yes\n")
    try:
        prepared = await tools.prepare("unbound.reload")
        assert prepared.error is not None and prepared.error.kind is ToolErrorKind.CONFLICT
        assert "unbound-checkconf fails" in prepared.error.message
        # unbound-control reads the same file for its keys: it cannot even connect now
        forwarders = await tools.run("unbound.forwarders")
        assert forwarders.error is not None and forwarders.error.kind is ToolErrorKind.FAILED
        assert "could not read config file" in forwarders.error.message
    finally:
        config.write_text(good)


async def test_stopped_server_and_missing_binary_are_typed(dns_lab: DnsLab, tmp_path: Path) -> None:
    stopped = Unbound(tmp_path / "stopped", keys=dns_lab.resolver.root).start()
    stopped.stop()
    gone = Tools(
        unbound=[
            {
                "name": "gone",
                "config": str(stopped.config),
                "resolver": stopped.resolver,
                "timeout": 1,
            }
        ]
    )
    missing = Tools(unbound=[dns_lab.target(control="/nonexistent/unbound-control")])
    try:
        down = await gone.run("unbound.status")
        silent = await gone.run("unbound.query", names=["app.lab.lan"])
        absent = await missing.run("unbound.status")
    finally:
        await gone.aclose()
        await missing.aclose()
    assert down.error is not None and down.error.kind is ToolErrorKind.UNREACHABLE
    assert silent.ok and silent.data["resolver_answers"] is False
    assert absent.error is not None and absent.error.kind is ToolErrorKind.UNSUPPORTED


@pytest.mark.integration
async def test_dead_forwarder_with_a_new_one_configured_is_fixed_by_a_reload(
    dev_env: WorkflowEnvironment, tmp_path: Path, dns_lab: DnsLab
) -> None:
    resolver = dns_lab.resolver
    dns_lab.old.stop()  # the old upstream dies; the config file already names the new one
    resolver.forwards = {ZONE: [dns_lab.new.address]}
    resolver.write_config()
    resolver.control("flush_zone", ZONE)
    async with edge_stack(dev_env, tmp_path, unbound=[dns_lab.target()]) as stack:
        fired = alert("DnsResolutionFailing", instance=resolver.resolver)
        assert (await stack.post(alertmanager_payload(fired))).status_code == 202
        state = await stack.result(f"incident-{fired['fingerprint']}", timeout=120)

        assert state.outcome is Outcome.RESOLVED, state.notes
        evidence = {e.key: e.data for e in state.evidence}
        assert evidence["query"]["failing_count"] == 2
        assert evidence["forwarders"]["zones"][0]["running"] == ["127.0.0.1"]
        assert evidence["forwarders"]["zones"][0]["configured"] == [dns_lab.new.address]
        assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
            ("unbound.reload", RiskLevel.SOFT, ChangeResult.APPLIED)
        ]
        (change,) = stack.store.list_changes(state.workflow_id)
        assert f"→ {dns_lab.new.address}" in change.preview
    assert dns_lab.new.address.split("@")[1] in resolver.control("dump_infra")
