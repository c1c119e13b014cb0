"""Every AdGuard Home tool against the API fake (basic auth, text errors), and the upstream-down
incident end to end: the diagnosis names the failing upstream; a partial failure drops it after
approval, a total one escalates with every upstream's error."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.models import (
    ApprovalDecision,
    ChangeResult,
    Outcome,
    Reversibility,
    RiskLevel,
    ToolErrorKind,
)
from tests.fakes.adguard import FakeAdGuard
from tests.integration.stack import alertmanager_payload
from tests.toolsets.adguard.conftest import PASSWORD, USER, agh_target
from tests.toolsets.harness import Tools, alert, edge_stack

DOT = "tls://1.1.1.1"


@pytest_asyncio.fixture
async def tools(agh: FakeAdGuard) -> AsyncIterator[Tools]:
    tools = Tools(adguard=[agh_target(agh)])
    yield tools
    await tools.aclose()


async def test_reads(tools: Tools, agh: FakeAdGuard) -> None:
    status = await tools.run("adguard.status")
    assert status.ok, status.error
    assert status.data["running"] and status.data["protection_enabled"]
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert agh.requests[-1].header("authorization") == expected
    filtering = await tools.run("adguard.filtering_status")
    assert filtering.data["stale"] == ["OISD Big"]  # 9 days old; the disabled list is not judged
    assert filtering.data["rules"] == 58210 + 210334
    agh.fail_upstream(DOT)
    upstreams = await tools.run("adguard.upstreams")
    assert upstreams.data["failing"] == [DOT] and upstreams.data["working_count"] == 2
    assert "i/o timeout" in upstreams.data["results"][DOT]
    assert DOT in upstreams.summary and "i/o timeout" in upstreams.summary
    sent = agh.requests[-1].body
    assert sent["upstream_dns"] == agh.upstreams and sent["bootstrap_dns"] == agh.bootstrap
    stats = await tools.run("adguard.query_stats")
    assert stats.data["queries"] == 12840 and stats.data["upstream_avg_seconds"][DOT] == 5.0


async def test_protection_writes_compensate_each_other(tools: Tools, agh: FakeAdGuard) -> None:
    prepared, paused = await tools.apply("adguard.disable_protection", minutes=10)
    assert paused.ok and prepared.default_level is RiskLevel.HARD
    assert prepared.preview == (
        f"turn protection off at {agh.url} for 10 min: every blocked domain resolves"
    )
    assert agh.protection is False and agh.paused_ms == 600_000
    again, enabled = await tools.apply("adguard.enable_protection")
    assert enabled.ok and agh.protection
    assert again.preview == f"turn protection on at {agh.url} (now paused for 10 more min)"
    assert again.compensation is not None
    assert (again.compensation.tool, again.compensation.params) == (
        "adguard.disable_protection",
        {"minutes": 10},
    )
    assert (await tools.prepare("adguard.enable_protection")).noop


async def test_refresh_filters(tools: Tools, agh: FakeAdGuard) -> None:
    prepared, result = await tools.apply("adguard.refresh_filters")
    assert result.ok and result.data["updated"] == 2
    assert prepared.reversibility is Reversibility.IRREVERSIBLE
    assert prepared.preview.startswith("refresh 2 blocklists at ")
    assert agh.requests[-2].body == {"whitelist": False}
    assert (await tools.run("adguard.filtering_status")).data["stale_count"] == 0


async def test_set_upstreams_tests_first_and_compensates(tools: Tools, agh: FakeAdGuard) -> None:
    old = list(agh.upstreams)
    prepared, result = await tools.apply("adguard.set_upstreams", upstreams=[old[0], old[2]])
    assert result.ok, result.error
    assert prepared.preview == (
        f"set the upstream DNS servers of {agh.url}: {', '.join(old)} → {old[0]}, {old[2]} "
        f"(removed {old[1]})"
    )
    assert agh.upstreams == [old[0], old[2]]
    assert [r.body for r in agh.requests if r.path == "/control/dns_config"] == [
        {"upstream_dns": [old[0], old[2]]}
    ]
    assert (await tools.compensate(prepared)).ok and agh.upstreams == old

    agh.fail_upstream("tls://9.9.9.9")
    refused = await tools.run("adguard.set_upstreams", upstreams=["tls://9.9.9.9"])
    assert refused.error is not None and refused.error.kind is ToolErrorKind.FAILED
    assert "none of the new upstreams answers" in refused.error.message and agh.upstreams == old
    bad = await tools.run("adguard.set_upstreams", upstreams=["two words"])
    assert bad.error is not None and bad.error.kind is ToolErrorKind.INVALID


async def test_bad_credentials_and_timeouts_are_typed(agh: FakeAdGuard) -> None:
    wrong = Tools(adguard=[agh_target(agh, password="wrong-pass-123")])
    slow = Tools(adguard=[agh_target(agh, timeout=0.3)])
    agh.server.delay = 1.0
    try:
        refused = await wrong.run("adguard.status")
        late = await slow.run("adguard.status")
    finally:
        agh.server.delay = 0
        await wrong.aclose()
        await slow.aclose()
    assert refused.error is not None and refused.error.kind is ToolErrorKind.UNAUTHORIZED
    assert "wrong-pass" not in refused.error.message
    assert late.error is not None and late.error.kind is ToolErrorKind.UNREACHABLE


@pytest.mark.integration
async def test_upstream_failure_is_named_and_dropped_after_approval(
    dev_env: WorkflowEnvironment, tmp_path: Path, agh: FakeAdGuard
) -> None:
    agh.fail_upstream(DOT)
    async with edge_stack(dev_env, tmp_path, adguard=[agh_target(agh)]) as stack:
        fired = alert(
            "AdguardUpstreamsFailing",
            instance="adguard-exporter:9618",
            server="http://adguard.lan:3000",
        )
        await stack.post(alertmanager_payload(fired))
        wid = f"incident-{fired['fingerprint']}"
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        evidence = next(e for e in pending.evidence if e.key == "upstreams")
        assert evidence.data["failing"] == [DOT]
        assert pending.pending_approval is not None
        assert pending.pending_approval.level is RiskLevel.HARD
        assert f"(removed {DOT})" in pending.pending_approval.preview
        await stack.decide(wid, ApprovalDecision(approve=True, approver="alice"))
        state = await stack.result(wid)
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert DOT not in agh.upstreams and len(agh.upstreams) == 2
        (change,) = stack.store.list_changes(wid)
        assert change.result is ChangeResult.APPLIED
        assert change.rollback_params == {
            "upstreams": ["https://dns.quad9.net/dns-query", DOT, "8.8.8.8"]
        }


@pytest.mark.integration
async def test_all_upstreams_failing_escalates_naming_each(
    dev_env: WorkflowEnvironment, tmp_path: Path, agh: FakeAdGuard
) -> None:
    for upstream in agh.upstreams:
        agh.fail_upstream(upstream)
    async with edge_stack(dev_env, tmp_path, adguard=[agh_target(agh)]) as stack:
        fired = alert("AdguardUpstreamsFailing", server="http://adguard.lan:3000")
        await stack.post(alertmanager_payload(fired))
        state = await stack.result(f"incident-{fired['fingerprint']}")
        assert state.outcome is Outcome.ESCALATED and state.actions == []
        evidence = next(e for e in state.evidence if e.key == "upstreams")
        assert evidence.data["all_failing"] and len(evidence.data["failing"]) == 3
        assert any("working_count" in note for note in state.notes)
