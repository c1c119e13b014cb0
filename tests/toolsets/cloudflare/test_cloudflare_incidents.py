"""Cloudflare incidents end to end on the dev server: a drifted record is put back after a HARD
approval and checked at the authoritative servers; when those keep answering the old content the
verification fails and the compensation restores the old record; a dynamic-DNS record follows a
new WAN address."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ApprovalVerdict, ChangeResult, Outcome, RiskLevel
from tests.fakes.cloudflare import FakeCloudflare, PublicIp
from tests.integration.stack import alertmanager_payload
from tests.toolsets.cloudflare.conftest import OLD_WAN, WAN, cf_target
from tests.toolsets.harness import alert, edge_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def zone(cf: FakeCloudflare) -> FakeCloudflare:
    with cf.lock:
        cf.zone("example.test").records.clear()
        cf.add_record("example.test", "A", "www.example.test", "192.0.2.10")
        cf.add_record("example.test", "A", "home.example.test", OLD_WAN)
        cf.add_record("example.test", "A", "shop.example.test", "192.0.2.99")
        cf.dns_lag = False
    return cf


async def approve(stack: object, wid: str) -> None:
    record = await stack.decide(
        wid,
        ApprovalDecision(approve=True, approver="alice", via="cli"),
    )
    assert record.verdict is ApprovalVerdict.APPROVED


async def test_drifted_record_is_put_back_after_approval(
    dev_env: WorkflowEnvironment, tmp_path: Path, zone: FakeCloudflare, wan: PublicIp
) -> None:
    (record,) = zone.find("shop.example.test")
    async with edge_stack(dev_env, tmp_path, cloudflare=[cf_target(zone, wan)]) as stack:
        fired = alert("DnsRecordDrift", record="shop.example.test", instance="ns.example.test")
        assert (await stack.post(alertmanager_payload(fired))).status_code == 202
        wid = f"incident-{fired['fingerprint']}"
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        request = pending.pending_approval
        assert request is not None and request.level is RiskLevel.HARD
        assert request.preview == (
            f"update A shop.example.test in zone example.test (record {record['id']}): "
            "content 192.0.2.99 → 192.0.2.30"
        )
        assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"  # nothing yet
        await approve(stack, wid)
        state = await stack.result(wid)

        assert state.outcome is Outcome.RESOLVED, state.notes
        assert zone.find("shop.example.test")[0]["content"] == "192.0.2.30"
        assert state.verification is not None and state.verification.passed
        (change,) = stack.store.list_changes(wid)
        assert change.result is ChangeResult.APPLIED and change.approver == "alice"
        assert change.rollback_action == "cloudflare.update_record"
        assert change.rollback_params["content"] == "192.0.2.99"


async def test_failed_verification_restores_the_old_record(
    dev_env: WorkflowEnvironment, tmp_path: Path, zone: FakeCloudflare, wan: PublicIp
) -> None:
    async with edge_stack(dev_env, tmp_path, cloudflare=[cf_target(zone, wan)]) as stack:
        fired = alert("DnsRecordDrift", record="shop.example.test")
        await stack.post(alertmanager_payload(fired))
        wid = f"incident-{fired['fingerprint']}"
        await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        zone.lag_dns()  # the authoritative servers keep serving 192.0.2.99
        await approve(stack, wid)
        # Putting the old record back is a HARD write too: a human approves the rollback.
        undo = await stack.wait_state(
            wid, lambda s: s.pending_approval is not None and s.verification is not None, 120
        )
        assert undo.pending_approval is not None
        assert "content 192.0.2.30 → 192.0.2.99" in undo.pending_approval.preview
        assert zone.find("shop.example.test")[0]["content"] == "192.0.2.30"  # not yet undone
        await approve(stack, wid)
        state = await stack.result(wid, timeout=120)

        assert state.outcome is Outcome.ROLLED_BACK, state.notes
        assert state.verification is not None and not state.verification.passed
        assert "matches_desired = False" in state.verification.detail
        assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"  # restored
        changes = stack.store.list_changes(wid)
        assert [(c.step, c.action, c.result) for c in changes] == [
            ("remediate", "cloudflare.update_record", ChangeResult.APPLIED),
            ("rollback", "cloudflare.update_record", ChangeResult.APPLIED),
        ]
        assert changes[1].rollback_of == changes[0].change_id
        assert changes[1].params["content"] == "192.0.2.99"
        edits = [r.body for r in zone.requests if r.method == "PATCH"]
        assert edits[-2:] == [{"content": "192.0.2.30"}, {"content": "192.0.2.99"}]


async def test_dynamic_dns_record_follows_the_new_wan_address(
    dev_env: WorkflowEnvironment, tmp_path: Path, zone: FakeCloudflare, wan: PublicIp
) -> None:
    async with edge_stack(dev_env, tmp_path, cloudflare=[cf_target(zone, wan)]) as stack:
        fired = alert("DynamicDnsRecordStale", record="home.example.test")
        await stack.post(alertmanager_payload(fired))
        wid = f"incident-{fired['fingerprint']}"
        pending = await stack.wait_state(wid, lambda s: s.pending_approval is not None)
        assert pending.pending_approval is not None
        assert f"content {OLD_WAN} → {WAN}" in pending.pending_approval.preview
        await approve(stack, wid)
        state = await stack.result(wid)
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert zone.find("home.example.test")[0]["content"] == WAN


async def test_a_bad_token_escalates_with_the_typed_error(
    dev_env: WorkflowEnvironment, tmp_path: Path, zone: FakeCloudflare, wan: PublicIp
) -> None:
    target = cf_target(zone, wan, token="cf-token-revoked-0000000")
    async with edge_stack(dev_env, tmp_path, cloudflare=[target]) as stack:
        fired = alert("DnsRecordDrift", record="shop.example.test")
        await stack.post(alertmanager_payload(fired))
        state = await stack.result(f"incident-{fired['fingerprint']}")
        assert state.outcome is Outcome.ESCALATED and state.actions == []
        drift = next(e for e in state.evidence if e.key == "drift")
        assert not drift.ok and drift.error is not None
        assert drift.error.kind.value == "unauthorized" and "code 9109" in drift.error.message
        assert "revoked" not in drift.error.message
        assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"
