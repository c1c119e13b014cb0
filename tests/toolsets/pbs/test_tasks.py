"""pbs.start_verify and pbs.start_gc against the PBS fake: the exact API calls, waiting for the
task, the datastore changed, a failing task's log in the error, a retry waiting for its own
task, and typed errors for a token without the privilege and a GC already running."""

from __future__ import annotations

import time
from pathlib import Path

from core.models import TargetRef, ToolCall
from tests.fakes.pbs import FakePBS
from tests.toolsets.helpers import tools_for
from tests.toolsets.pbs.conftest import AUDITOR_ID, AUDITOR_SECRET, GIB, pbs_target


async def test_verify_a_group_reads_failed_snapshots_and_reports_the_damaged_one(
    pbs: FakePBS, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, pbs=[pbs_target(pbs)])
    call = ToolCall(
        tool="pbs.start_verify",
        target=TargetRef(service="pbs", target="backup", resource="store1"),
        params={"backup_id": "100"},  # pbs-exporter's alerts carry the id only
    )
    prepared = await tools.runner.prepare(call)
    assert prepared.error is None and not prepared.noop
    assert prepared.before["group"] == "vm/100"
    assert prepared.before["states"] == {"ok": 0, "failed": 2, "never": 0}
    assert prepared.preview.startswith(
        "POST admin/datastore/store1/verify ignore-verified=1 backup-type=vm backup-id=100 on pbs "
        "backup: verifies group vm/100 of store1, reading 2 snapshot(s) (failed or never verified)"
    )
    assert pbs.posts == []  # a preview posts nothing

    result = await tools.runner.run(call.model_copy(update={"before": prepared.before}))
    assert not result.ok and result.error is not None and result.error.kind.value == "failed"
    message = result.error.message
    assert "verification of vm/100 failed" in message
    assert "verification failed - please check the log for details" in message
    assert "Failed to verify the following snapshots/groups" in message
    assert pbs.posts == [
        (
            "admin/datastore/store1/verify",
            {"ignore-verified": "1", "backup-type": "vm", "backup-id": "100"},
        )
    ]
    states = sorted(
        (s["backup-time"], s["verification"]["state"])
        for s in pbs.datastores["store1"].snapshots
        if s["backup-id"] == "100"
    )
    assert [state for _, state in states] == ["ok", "failed"]  # only the damaged one still fails


async def test_verify_the_whole_datastore_and_a_retry_waits_for_its_own_task(
    pbs: FakePBS, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, pbs=[pbs_target(pbs)])
    pbs.corrupt.clear()
    call = ToolCall(
        tool="pbs.start_verify", target=TargetRef(service="pbs", target="backup", resource="store1")
    )
    prepared = await tools.runner.prepare(call)
    assert prepared.before["group"] is None
    done = await tools.runner.run(call.model_copy(update={"before": prepared.before}))
    assert done.ok, done.error
    assert done.data["exitstatus"] == "OK" and done.data["states"] == {
        "ok": 4,
        "failed": 0,
        "never": 0,
    }
    assert done.data["seconds"] >= pbs.task_delay * 0.8  # it waited for the task
    again = await tools.runner.run(call.model_copy(update={"before": prepared.before}))
    assert again.ok and again.data["upid"] == done.data["upid"] and len(pbs.posts) == 1
    noop = await tools.runner.prepare(call)
    assert noop.noop  # everything verified: ignore-verified would read nothing


async def test_gc_runs_frees_the_pending_chunks_and_a_second_one_conflicts(
    pbs: FakePBS, tmp_path: Path
) -> None:
    tools = tools_for(tmp_path, pbs=[pbs_target(pbs)])
    store = pbs.datastores["store2"]
    call = ToolCall(
        tool="pbs.start_gc", target=TargetRef(service="pbs", target="backup", resource="store2")
    )
    prepared = await tools.runner.prepare(call)
    assert prepared.preview.startswith(
        "POST admin/datastore/store2/gc on pbs backup: garbage collection of store2 (used 95% of "
        "1000 GiB; last GC unable to access chunk store - permission denied 2h00m ago; 100 GiB "
        "pending removal)"
    )
    done = await tools.runner.run(call.model_copy(update={"before": prepared.before}))
    assert done.ok, done.error
    assert done.data["used_before"] == 950 * GIB and done.data["used"] == 850 * GIB
    assert store.used == 850 * GIB and done.data["removed_bytes"] == 100 * GIB
    state = await tools.ok("pbs.datastores", "backup", "store2")
    assert state["gc_failed"] == [] and state["datastores"][0]["gc"]["ok"] is True

    pbs.task_delay = 5
    first = ToolCall(
        tool="pbs.start_gc", target=TargetRef(service="pbs", target="backup", resource="store1")
    )
    import asyncio

    running = asyncio.create_task(tools.runner.run(first))
    await asyncio.sleep(1)
    other = tools_for(tmp_path / "other", pbs=[pbs_target(pbs)])
    fresh = await other.runner.prepare(first)  # a new change: its capture is after the first GC
    busy = await other.runner.run(
        first.model_copy(update={"before": {**fresh.before, "captured_at": int(time.time()) + 5}})
    )
    assert not busy.ok and busy.error is not None and busy.error.kind.value == "conflict"
    assert "already running" in busy.error.message
    assert (await running).ok


async def test_typed_errors_without_privilege_or_scope(pbs: FakePBS, tmp_path: Path) -> None:
    audit = tools_for(
        tmp_path, pbs=[pbs_target(pbs, token_id=AUDITOR_ID, token_secret=AUDITOR_SECRET)]
    )
    refused = await audit.fails("pbs.start_gc", "backup", "store2")
    assert refused.kind.value == "unauthorized" and "permission check failed" in refused.message
    tools = tools_for(tmp_path / "b", pbs=[pbs_target(pbs)])
    assert (await tools.fails("pbs.start_gc", "backup")).kind.value == "invalid"  # which datastore?
    assert (await tools.fails("pbs.start_gc", "backup", "nope")).kind.value == "not_found"
    missing = await tools.fails("pbs.start_verify", "backup", "store1", backup_id="999")
    assert missing.kind.value == "not_found"
    wrong_secret = tools_for(tmp_path / "c", pbs=[pbs_target(pbs, token_secret="revoked")])
    assert (
        await wrong_secret.fails("pbs.start_verify", "backup", "store1")
    ).kind.value == "unauthorized"
