"""Every Proxmox VE and PBS tool against the HTTPS API fakes and a real sshd: reads, exact
dry-runs that change nothing, tasks waited for with their exit status, safety snapshots and their
rollback, retention, typed errors (bad token, TLS, node offline), and pct exec on real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog, proxmox
from activities.toolsets import pbs as pbs_tools
from core.config import Settings
from core.models import PreparedWrite, Reversibility, TargetRef, ToolCall, ToolErrorKind, ToolResult
from tests.fakes import pct
from tests.fakes.pve import GIB, MIB
from tests.integration.proxmox_lab import NODE, Lab, proxmox_lab

pytestmark = pytest.mark.integration

INCIDENT = "incident-0123456789abcdef"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with proxmox_lab(tmp_path) as lab:
        yield lab


class Tools:
    def __init__(self, lab: Lab, **settings: Any) -> None:
        data: dict[str, Any] = {
            "docker": [],
            "proxmox": [lab.proxmox_target()],
            "pbs": [lab.pbs_target()],
        }
        data.update(settings)
        self.settings = Settings(**data)
        self.clients = TargetClients(self.settings)
        self.runner = ToolRunner(default_catalog(), self.clients)

    def call(self, tool: str, resource: str = "", target: str = "", **params: Any) -> ToolCall:
        service = tool.split(".")[0]
        name = target or ("pve" if service == "proxmox" else "backup")
        return ToolCall(
            tool=tool,
            target=TargetRef(service=service, target=name, resource=resource),
            params=params,
            incident_id=INCIDENT,
        )

    async def run(self, tool: str, resource: str = "", **params: Any) -> ToolResult:
        return await self.runner.run(self.call(tool, resource, **params))

    async def prepare(self, tool: str, resource: str = "", **params: Any) -> PreparedWrite:
        return await self.runner.prepare(self.call(tool, resource, **params))

    async def apply(
        self, tool: str, resource: str = "", **params: Any
    ) -> tuple[PreparedWrite, ToolResult]:
        """What the workflow does: prepare, then run with the captured before-state."""
        prepared = await self.prepare(tool, resource, **params)
        assert prepared.error is None, prepared.error
        call = self.call(tool, resource, **params).model_copy(
            update={"before": prepared.before, "change_id": "c0ffee00-1111"}
        )
        return prepared, await self.runner.run(call)

    async def compensate(self, prepared: PreparedWrite) -> ToolResult:
        assert prepared.compensation is not None
        comp = prepared.compensation
        again = await self.runner.prepare(comp)
        assert again.error is None, again.error
        return await self.runner.run(comp.model_copy(update={"before": again.before}))


@pytest.fixture
def tools(lab: Lab) -> Iterator[Tools]:
    t = Tools(lab)
    yield t
    t.clients.close()


def writes(lab: Lab) -> int:
    return lab.pve.count(path_re=r".") - lab.pve.count(method="GET")


# --- reads -------------------------------------------------------------------------------------


async def test_cluster_node_storage_and_guest_reads(tools: Tools, lab: Lab) -> None:
    cluster = await tools.run("proxmox.cluster_status")
    assert cluster.ok and cluster.data["quorate"] is True and cluster.data["nodes_online"] == 1
    node = await tools.run("proxmox.node_status", f"node/{NODE}")
    assert node.ok and node.data["online"] is True
    used = lab.pve.node_used(NODE)
    assert node.data["memory"] == {
        "total": 16 * GIB,
        "used": used,
        "free": 16 * GIB - used,
        "percent": round(used / (16 * GIB) * 100, 2),
    }
    assert node.data["pveversion"].startswith("pve-manager/8") and node.data["cpus"] == 8
    assert (await tools.run("proxmox.node_status", "lxc/200")).data["node"] == NODE

    storages = await tools.run("proxmox.storage")
    assert {s["id"] for s in storages.data["storages"]} == {
        f"storage/{NODE}/local",
        f"storage/{NODE}/local-lvm",
        f"storage/{NODE}/backups",
    }
    assert storages.data["over"] == [f"storage/{NODE}/backups"]
    one = await tools.run("proxmox.storage", f"storage/{NODE}/backups")
    assert one.data["used_percent"] == 93.0 and one.data["content_bytes"]["backup"] == 600 * MIB
    assert "93.0%" in one.summary
    missing = await tools.run("proxmox.storage", f"storage/{NODE}/nope")
    assert missing.error is not None and missing.error.kind is ToolErrorKind.NOT_FOUND

    guests = await tools.run("proxmox.guests", type="lxc", status="running")
    assert [g["id"] for g in guests.data["guests"]] == ["lxc/200", "lxc/201", "lxc/202"]
    status = await tools.run("proxmox.guest_status", "lxc/200")
    assert status.data["running"] is True and status.data["maxmem"] == 512 * MIB
    assert status.data["memory_percent"] == round(300 / 512 * 100, 2)
    assert status.data["pid"] == lab.pve.guests[200].pid
    config = await tools.run("proxmox.guest_config", "lxc/200")
    assert config.data["memory_mib"] == 512 and config.data["swap_mib"] == 512
    assert config.data["disks"] == [
        {
            "key": "rootfs",
            "volume": "local-lvm:vm-200-disk-0",
            "storage": "local-lvm",
            "size": 8 * GIB,
            "mountpoint": "/",
            "backup": True,
        }
    ]
    assert config.data["networks"][0]["bridge"] == "vmbr0" and config.data["onboot"] is True
    assert config.data["features"] == {"nesting": "1"}
    vm = await tools.run("proxmox.guest_config", "qemu/100")
    assert vm.data["memory_mib"] == 2048 and vm.data["disks"][0]["size"] == 32 * GIB
    wrong_kind = await tools.run("proxmox.guest_status", "qemu/200")
    assert wrong_kind.error is not None and wrong_kind.error.kind is ToolErrorKind.NOT_FOUND
    assert "is a lxc, not qemu" in wrong_kind.error.message
    bad = await tools.run("proxmox.guest_status", "pod/200")
    assert bad.error is not None and bad.error.kind is ToolErrorKind.INVALID


async def test_usage_tasks_ha_and_backup_coverage(tools: Tools, lab: Lab) -> None:
    lab.pve.guests[201].mem_used = 500 * MIB
    usage = await tools.run("proxmox.resource_usage", "lxc/201")
    assert usage.data["memory_percent"] == round(500 / 512 * 100, 2)
    assert usage.data["over"] == ["memory_percent"] and usage.data["ok"] is False
    relaxed = await tools.run("proxmox.resource_usage", "lxc/201", memory_percent=99)
    assert relaxed.data["ok"] is True

    history = await tools.run("proxmox.tasks", "lxc/200")
    assert [t["type"] for t in history.data["tasks"]] == ["vzdump"]
    upid = history.data["tasks"][0]["upid"]
    one = await tools.run("proxmox.task", upid=upid)
    assert one.data["ok"] is True and one.data["log"][-1] == "TASK OK"
    failed = lab.pve.add_finished_task(203, NODE, "vzstart", "startup for container '203' failed")
    errors = await tools.run("proxmox.tasks", "lxc/203", errors_only=True)
    assert errors.data["failed"] == 1 and errors.data["last_failure"]["upid"] == failed
    bad_upid = await tools.run("proxmox.task", upid="nonsense")
    assert bad_upid.error is not None and bad_upid.error.kind is ToolErrorKind.INVALID

    ha = await tools.run("proxmox.ha_status", "qemu/100")
    assert ha.data["enabled"] is True and ha.data["master"] == NODE
    assert ha.data["guest"]["sid"] == "vm:100" and ha.data["guest_managed"] is True

    coverage = await tools.run("proxmox.backup_coverage")
    assert coverage.data["uncovered"] == ["lxc/202", "lxc/203"]  # template 9000 is skipped
    assert set(coverage.data["stale"]) == {"qemu/100", "lxc/201", "lxc/202", "lxc/203"}
    web = await tools.run("proxmox.backup_coverage", "lxc/200")
    assert web.data["covered"] is True and web.data["jobs"] == ["backup-nightly"]
    assert web.data["recent"] is True and web.data["last_vzdump"]["ok"] is True
    assert web.data["pbs"][0]["pbs"] == "backup" and web.data["pbs"][0]["count"] == 2
    vm = await tools.run("proxmox.backup_coverage", "qemu/100", max_age="12d")
    assert vm.data["recent"] is True  # only PBS holds it: 10 days old
    assert "PBS: backup/store1" in vm.summary


# --- power -------------------------------------------------------------------------------------


async def test_start_and_shutdown_wait_for_their_tasks(tools: Tools, lab: Lab) -> None:
    before_writes = writes(lab)
    dry = await tools.runner.run(
        tools.call("proxmox.start", "lxc/203").model_copy(update={"dry_run": True})
    )
    assert dry.ok and dry.data["preview"] == f"start CT 203 (batch) on node {NODE} (now stopped)"
    assert writes(lab) == before_writes and lab.pve.guests[203].status == "stopped"

    prepared, result = await tools.apply("proxmox.start", "lxc/203")
    assert prepared.compensation is not None and prepared.compensation.tool == "proxmox.shutdown"
    assert result.ok and result.data["running"] is True
    assert (
        result.data["task"]["exitstatus"] == "OK" and ":vzstart:203:" in result.data["task"]["upid"]
    )
    assert lab.pve.guests[203].status == "running"
    noop = await tools.prepare("proxmox.start", "lxc/203")
    assert noop.noop and noop.preview.startswith("no-op")

    prepared, result = await tools.apply("proxmox.shutdown", "lxc/203", timeout=5)
    assert result.ok and lab.pve.guests[203].status == "stopped"
    assert prepared.compensation is not None and prepared.compensation.tool == "proxmox.start"
    assert "shut down CT 203 (batch) on node pve1 (timeout 5s, then hard stop)" == prepared.preview

    lab.pve.fail[(203, "vzstart")] = "startup for container '203' failed"
    failed = await tools.run("proxmox.start", "lxc/203")
    assert failed.error is not None and failed.error.kind is ToolErrorKind.FAILED
    assert "ended with \"startup for container '203' failed\"" in failed.error.message
    template = await tools.prepare("proxmox.start", "lxc/9000")
    assert template.error is not None and "template" in template.error.message


async def test_reboot_snapshots_a_container_first_and_rolls_back(tools: Tools, lab: Lab) -> None:
    guest = lab.pve.guests[200]
    old_pid = guest.pid
    prepared, result = await tools.apply("proxmox.reboot", "lxc/200", timeout=10)
    name = "ha-0123456789abcdef"
    assert prepared.before["safety_snapshot"] == name
    assert prepared.preview.endswith(f"safety snapshot {name} first (reboot of a container)")
    assert prepared.compensation is not None
    assert prepared.compensation.tool == "proxmox.snapshot_rollback"
    assert prepared.compensation.params == {"snapshot": name, "start": True}
    assert result.ok and result.data["safety_snapshot"] == name
    assert guest.pid != old_pid and guest.status == "running"
    assert "homelab-agents safety snapshot before reboot" in guest.snapshots[name]["description"]
    # A retried activity (same before-state) sees the new pid and does nothing twice.
    tasks_before = len(lab.pve.tasks)
    again = await tools.runner.run(
        tools.call("proxmox.reboot", "lxc/200", timeout=10).model_copy(
            update={"before": prepared.before}
        )
    )
    assert again.ok and "already rebooted" in again.summary and len(lab.pve.tasks) == tasks_before

    guest.config["memory"] = 2048  # something changed after the snapshot
    undo = await tools.compensate(prepared)
    assert undo.ok and guest.config["memory"] == 512 and guest.status == "running"
    assert undo.data["memory_mib"] == 512

    vm = await tools.prepare("proxmox.reboot", "qemu/100")
    assert vm.compensation is None and vm.reversibility is Reversibility.STATELESS
    stopped = await tools.prepare("proxmox.reboot", "lxc/203")
    assert stopped.error is not None and stopped.error.kind is ToolErrorKind.CONFLICT


async def test_container_without_snapshot_support(lab: Lab) -> None:
    strict = Tools(lab)
    refused = await strict.prepare("proxmox.reboot", "lxc/202")
    assert refused.error is not None and refused.error.kind is ToolErrorKind.UNSUPPORTED
    assert "snapshots.required: false" in refused.error.message
    lax = Tools(lab, proxmox=[lab.proxmox_target(snapshots={"required": False})])
    allowed = await lax.prepare("proxmox.reboot", "lxc/202")
    assert allowed.error is None and allowed.compensation is None
    assert "NO safety snapshot possible (reboot of a container)" in allowed.preview
    strict.clients.close()
    lax.clients.close()


# --- resources ---------------------------------------------------------------------------------


async def test_memory_raise_on_a_normal_container_is_reverted_by_config(
    tools: Tools, lab: Lab
) -> None:
    guest = lab.pve.guests[200]
    dry = await tools.runner.run(
        tools.call("proxmox.update_resources", "lxc/200", memory="768m").model_copy(
            update={"dry_run": True}
        )
    )
    free = 16 * GIB - lab.pve.node_used(NODE)
    assert dry.data["preview"] == (
        f"memory 512 MiB → 768 MiB on CT 200 (web) on node {NODE} "
        f"(node free memory {free / GIB:.1f} GiB)"
    )
    assert guest.config["memory"] == 512

    prepared, result = await tools.apply("proxmox.update_resources", "lxc/200", memory="768m")
    assert result.ok and guest.config["memory"] == 768 and result.data["maxmem"] == 768 * MIB
    assert prepared.before["safety_snapshot"] == "" and not guest.snapshots
    assert prepared.compensation is not None
    assert prepared.compensation.tool == "proxmox.update_resources"
    assert prepared.compensation.params == {"memory": 512 * MIB}
    puts = lab.pve.count("PUT", r"/lxc/200/config")
    retried = await tools.runner.run(
        tools.call("proxmox.update_resources", "lxc/200", memory="768m").model_copy(
            update={"before": prepared.before}
        )
    )
    assert retried.ok and lab.pve.count("PUT", r"/lxc/200/config") == puts
    undo = await tools.compensate(prepared)
    assert undo.ok and guest.config["memory"] == 512

    cores = await tools.apply("proxmox.update_resources", "lxc/200", cores=2, swap="1g")
    assert cores[1].ok and guest.config["cores"] == 2 and guest.config["swap"] == 1024
    assert cores[0].compensation is not None
    assert cores[0].compensation.params == {"cores": 1, "swap": 512 * MIB}
    too_many = await tools.prepare("proxmox.update_resources", "lxc/200", cores=64)
    assert too_many.error is not None and too_many.error.kind is ToolErrorKind.INVALID
    vm_swap = await tools.prepare("proxmox.update_resources", "qemu/100", swap="1g")
    assert vm_swap.error is not None and "VMs have none" in vm_swap.error.message
    invalid = await tools.prepare("proxmox.update_resources", "lxc/200", memory="8m")
    assert invalid.error is not None and invalid.error.kind is ToolErrorKind.INVALID


async def test_memory_increase_refused_when_the_node_lacks_memory(tools: Tools, lab: Lab) -> None:
    lab.pve.nodes[NODE].base_used = 15 * GIB
    before = writes(lab)
    refused = await tools.prepare("proxmox.update_resources", "lxc/200", memory="4g")
    assert refused.error is not None and refused.error.kind is ToolErrorKind.CONFLICT
    assert f"node {NODE} has" in refused.error.message and "memory_reserve" in refused.error.message
    direct = await tools.run("proxmox.update_resources", "lxc/200", memory="4g")
    assert direct.error is not None and direct.error.kind is ToolErrorKind.CONFLICT
    assert writes(lab) == before and lab.pve.guests[200].config["memory"] == 512
    shrink = await tools.prepare("proxmox.update_resources", "lxc/200", memory="256m")
    assert shrink.error is not None and "OOM" in shrink.error.message


async def test_vm_memory_change_runs_as_a_task_and_reports_pending(tools: Tools, lab: Lab) -> None:
    _, result = await tools.apply("proxmox.update_resources", "qemu/100", memory="3g")
    assert result.ok and ":qmconfig:100:" in result.data["task"]["upid"]
    assert result.data["pending_reboot"] == ["memory"]


async def test_critical_container_gets_a_snapshot_and_rolls_back(lab: Lab) -> None:
    tools = Tools(lab, approval={"critical": ["proxmox:*/lxc/201"]})
    guest = lab.pve.guests[201]
    prepared, result = await tools.apply("proxmox.update_resources", "lxc/201", memory="768m")
    name = "ha-0123456789abcdef"
    assert "resource change on a critical guest" in prepared.preview
    assert prepared.compensation is not None
    assert prepared.compensation.params == {"snapshot": name, "start": True}
    assert result.ok and result.data["safety_snapshot"] == name
    assert guest.snapshots[name]["config"]["memory"] == 512 and guest.config["memory"] == 768
    undo = await tools.compensate(prepared)
    assert undo.ok and guest.config["memory"] == 512 and guest.status == "running"
    tools.clients.close()


async def test_safety_snapshot_retention(lab: Lab) -> None:
    guest = lab.pve.guests[200]
    now = int(time.time())
    mark = proxmox.SAFETY_MARK
    for i, age in enumerate([40 * 86400, 3 * 86400, 2 * 86400, 86400]):
        guest.snapshots[f"ha-old{i}"] = {
            "description": f"{mark} before reboot\n",
            "snaptime": now - age,
            "parent": None,
            "config": dict(guest.config),
        }
    guest.snapshots["ha-mine"] = {  # a user's own snapshot with the same prefix: never touched
        "description": "before the upgrade\n",
        "snaptime": now - 90 * 86400,
        "parent": None,
        "config": dict(guest.config),
    }
    tools = Tools(lab, proxmox=[lab.proxmox_target(snapshots={"keep": 3, "max_age": "30d"})])
    _, result = await tools.apply("proxmox.reboot", "lxc/200")
    assert result.ok
    # keep 3: the new one plus the two newest old ones; ha-old0 is also past max_age.
    assert sorted(result.data["pruned"]) == ["ha-old0", "ha-old1"]
    assert set(guest.snapshots) == {"ha-old2", "ha-old3", "ha-mine", "ha-0123456789abcdef"}
    listed = await tools.run("proxmox.snapshots", "lxc/200")
    assert listed.data["safety"] == ["ha-old2", "ha-old3", "ha-0123456789abcdef"]
    tools.clients.close()


async def test_resize_grows_only_with_a_snapshot(tools: Tools, lab: Lab) -> None:
    guest = lab.pve.guests[200]
    shrink = await tools.prepare("proxmox.resize_disk", "lxc/200", size="4G")
    assert shrink.error is not None and "only grow" in shrink.error.message
    prepared, result = await tools.apply("proxmox.resize_disk", "lxc/200", size="+2G")
    assert prepared.preview.startswith(
        f"grow rootfs (local-lvm:vm-200-disk-0) of CT 200 (web) on node {NODE} from 8 GiB to 10 GiB"
    )
    assert prepared.reversibility is Reversibility.IRREVERSIBLE
    assert prepared.compensation is not None
    assert prepared.compensation.tool == "proxmox.snapshot_rollback"
    assert result.ok and result.data["size"] == 10 * GIB and "size=10G" in guest.config["rootfs"]
    same = await tools.prepare("proxmox.resize_disk", "lxc/200", size="10G")
    assert same.noop
    huge = await tools.prepare("proxmox.resize_disk", "lxc/200", size="+500G")
    assert huge.error is not None and huge.error.kind is ToolErrorKind.CONFLICT
    vm = await tools.prepare("proxmox.resize_disk", "qemu/100", disk="scsi0", size="+8G")
    assert vm.compensation is None and vm.reversibility is Reversibility.IRREVERSIBLE


async def test_snapshot_create_rollback_delete(tools: Tools, lab: Lab) -> None:
    guest = lab.pve.guests[200]
    prepared, made = await tools.apply(
        "proxmox.snapshot_create", "lxc/200", name="pre-upgrade", description="before upgrade"
    )
    assert made.ok and "pre-upgrade" in guest.snapshots
    assert prepared.compensation is not None
    assert prepared.compensation.params == {"snapshot": "pre-upgrade"}
    assert (await tools.prepare("proxmox.snapshot_create", "lxc/200", name="pre-upgrade")).noop
    lab.pve.fail[(200, "vzsnapshot")] = "snapshot feature is not available"
    failed = await tools.run("proxmox.snapshot_create", "lxc/200", name="second")
    assert failed.error is not None and "snapshot feature is not available" in failed.error.message

    guest.config["memory"] = 1024
    rollback = await tools.prepare("proxmox.snapshot_rollback", "lxc/200", snapshot="pre-upgrade")
    assert "config memory 1024 → 512" in rollback.preview and "then start it" in rollback.preview
    _, rolled = await tools.apply("proxmox.snapshot_rollback", "lxc/200", snapshot="pre-upgrade")
    assert rolled.ok and guest.config["memory"] == 512 and guest.status == "running"
    missing = await tools.prepare("proxmox.snapshot_rollback", "lxc/200", snapshot="nope")
    assert missing.error is not None and missing.error.kind is ToolErrorKind.NOT_FOUND

    _, deleted = await tools.apply("proxmox.snapshot_delete", "lxc/200", snapshot="pre-upgrade")
    assert deleted.ok and "pre-upgrade" not in guest.snapshots
    assert (await tools.prepare("proxmox.snapshot_delete", "lxc/200", snapshot="pre-upgrade")).noop


# --- errors ------------------------------------------------------------------------------------


async def test_wrong_token_is_a_typed_error_sent_once(lab: Lab) -> None:
    bad = Tools(lab, proxmox=[lab.proxmox_target(token_secret="not-the-secret")])
    result = await bad.run("proxmox.guest_status", "lxc/200")
    assert result.error is not None and result.error.kind is ToolErrorKind.UNAUTHORIZED
    assert (
        "invalid token value!" in result.error.message
        and "not-the-secret" not in result.error.message
    )
    assert lab.pve.count(status=401) == 1
    unknown = Tools(lab, proxmox=[lab.proxmox_target(token_id="root@pam!other")])
    other = await unknown.run("proxmox.cluster_status")
    assert (
        other.error is not None
        and "no such token 'other' for user 'root@pam'" in other.error.message
    )
    lab.pve.readonly_tokens.add("root@pam!homelab")
    tools = Tools(lab)
    denied = await tools.run("proxmox.start", "lxc/203")
    assert denied.error is not None and denied.error.kind is ToolErrorKind.UNAUTHORIZED
    assert "Permission check failed (/vms/203, VM.PowerMgmt)" in denied.error.message
    for t in (bad, unknown, tools):
        t.clients.close()


async def test_tls_is_verified_against_the_ca(lab: Lab) -> None:
    system_cas = Tools(lab, proxmox=[lab.proxmox_target(verify_ssl=True)])
    result = await system_cas.run("proxmox.cluster_status")
    assert result.error is not None and result.error.kind is ToolErrorKind.FAILED
    assert (
        "TLS verification failed" in result.error.message
        and "pve-root-ca.pem" in result.error.message
    )
    assert lab.pve.count() == 0  # the handshake failed: no request reached the API
    system_cas.clients.close()


async def test_offline_node_and_unknown_guest(tools: Tools, lab: Lab) -> None:
    lab.pve.nodes[NODE].online = False
    node = await tools.run("proxmox.node_status", f"node/{NODE}")
    assert node.ok and node.data["online"] is False
    status = await tools.runner.run(tools.call("proxmox.guest_status", "lxc/200"))
    assert status.error is not None and status.error.kind is ToolErrorKind.UNREACHABLE
    assert "595" in status.error.message and "No route to host" in status.error.message
    lab.pve.nodes[NODE].online = True
    missing = await tools.run("proxmox.guest_status", "lxc/999")
    assert missing.error is not None and missing.error.kind is ToolErrorKind.NOT_FOUND


async def test_two_node_cluster_finds_guests_by_vmid_and_acts_on_their_node(
    tools: Tools, lab: Lab
) -> None:
    lab.pve.add_node("pve2", memory_total=8 * GIB, base_used=2 * GIB)
    lab.pve.add_storage("pve2", "local-lvm", "lvmthin", "images,rootdir", 200 * GIB, 10 * GIB)
    lab.pve.add_guest(300, "lxc", "pve2", "cache", status="stopped")
    cluster = await tools.run("proxmox.cluster_status")
    assert cluster.ok and cluster.data["nodes_online"] == 2 and cluster.data["quorate"] is True
    status = await tools.run("proxmox.guest_status", "lxc/300")
    assert status.ok and status.data["node"] == "pve2" and status.data["status"] == "stopped"

    _, started = await tools.apply("proxmox.start", "lxc/300")
    assert started.ok and lab.pve.guests[300].status == "running"
    assert lab.pve.count(method="POST", path_re=r"nodes/pve2/lxc/300/status/start") == 1
    assert lab.pve.count(method="POST", path_re=r"nodes/" + NODE + "/") == 0
    assert lab.pve.count(method="GET", path_re=r"nodes/pve2/tasks/UPID:pve2:") >= 1

    # one node down: guests on the other stay reachable, its own are unreachable (not "missing")
    lab.pve.nodes[NODE].online = False
    assert (await tools.run("proxmox.guest_status", "lxc/300")).ok
    down = await tools.runner.run(tools.call("proxmox.guest_status", "lxc/200"))
    assert down.error is not None and down.error.kind is ToolErrorKind.UNREACHABLE
    lab.pve.nodes[NODE].online = True

    # a migrated guest is looked up again where it lives now, not where it was
    lab.pve.guests[300].node = NODE
    moved = await tools.run("proxmox.guest_status", "lxc/300")
    assert moved.ok and moved.data["node"] == NODE


async def test_ha_managed_start_and_shutdown_wait_for_the_ha_stack(tools: Tools, lab: Lab) -> None:
    """PVE turns start/stop of an HA-managed guest into a hastart/hastop task that only asks the
    HA stack and ends at once; the tool waits for the guest itself, then reports."""
    lab.pve.ha_delay = 1.0
    lab.pve.ha_resources["ct:203"] = {"sid": "ct:203", "type": "ct", "state": "stopped"}
    _, started = await tools.apply("proxmox.start", "lxc/203")
    assert started.ok, started.error
    assert started.data["task"]["type"] == "hastart" and started.data["running"] is True
    assert started.data["task"]["ha_seconds"] >= 0.5  # it waited for the LRM, not just the task
    assert "through HA" in started.summary
    assert lab.pve.ha_resources["ct:203"]["state"] == "started"
    assert lab.pve.guests[203].status == "running"

    prepared, stopped = await tools.apply("proxmox.shutdown", "lxc/203")
    assert stopped.ok, stopped.error
    assert stopped.data["task"]["type"] == "hastop" and stopped.data["running"] is False
    assert lab.pve.guests[203].status == "stopped"
    assert lab.pve.count(method="POST", path_re=r"lxc/203/status/start") == 1  # no second try


async def test_ha_request_that_never_happens_or_is_refused_fails_clearly(lab: Lab) -> None:
    tools = Tools(lab, proxmox=[lab.proxmox_target(task_timeout="2s")])
    try:
        lab.pve.ha_resources["ct:203"] = {"sid": "ct:203", "state": "stopped", "stuck": True}
        _, result = await tools.apply("proxmox.start", "lxc/203")
        assert result.error is not None and result.error.kind is ToolErrorKind.FAILED
        message = result.error.message
        assert "still stopped, not running" in message and "HA state started" in message
        assert "ha-manager status" in message
        assert lab.pve.guests[203].status == "stopped"

        lab.pve.ha_resources["ct:203"] = {"sid": "ct:203", "state": "error"}
        _, refused = await tools.apply("proxmox.start", "lxc/203")
        assert refused.error is not None
        assert "in error state, must be disabled and fixed first" in refused.error.message
    finally:
        tools.clients.close()


# --- services over SSH -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def test_restart_service_via_pct_exec_over_ssh(tools: Tools, lab: Lab) -> None:
    status = await tools.run("proxmox.service_status", "lxc/200", service="demo")
    assert status.ok and status.data["active_state"] == "active"
    old_pid = status.data["main_pid"]
    assert old_pid and _alive(old_pid)
    prepared, result = await tools.apply("proxmox.restart_service", "lxc/200", service="demo")
    assert prepared.preview.startswith(
        f"restart demo.service in CT 200 (web) on node {NODE} via pct exec (now active/running, pid {old_pid}"
    )
    assert result.ok, result.error
    new_pid = result.data["after"]["main_pid"]
    assert result.data["before"]["main_pid"] == old_pid and new_pid != old_pid
    assert _alive(new_pid) and not _alive(old_pid)
    retried = await tools.runner.run(
        tools.call("proxmox.restart_service", "lxc/200", service="demo").model_copy(
            update={"before": prepared.before}
        )
    )
    assert (
        retried.ok
        and retried.data["main_pid"] == new_pid
        and "already restarted" in retried.summary
    )

    (lab.state / "ct" / "200" / "demo.service" / "fail").touch()
    failed = await tools.run("proxmox.restart_service", "lxc/200", service="demo")
    assert failed.error is not None and failed.error.kind is ToolErrorKind.FAILED
    assert "'active_state': 'failed'" in failed.error.message
    assert "Address already in use" in failed.error.message  # from the journal

    unknown = await tools.run("proxmox.service_status", "lxc/200", service="nope")
    assert unknown.error is not None and unknown.error.kind is ToolErrorKind.NOT_FOUND
    stopped = await tools.run("proxmox.service_status", "lxc/203", service="demo")
    assert stopped.error is not None and stopped.error.kind is ToolErrorKind.CONFLICT
    vm = await tools.run("proxmox.service_status", "qemu/100", service="demo")
    assert vm.error is not None and vm.error.kind is ToolErrorKind.UNSUPPORTED
    injected = await tools.prepare("proxmox.restart_service", "lxc/200", service="demo; reboot")
    assert injected.error is not None and injected.error.kind is ToolErrorKind.INVALID


async def test_ssh_host_key_and_settings_are_enforced(lab: Lab, tmp_path: Path) -> None:
    stranger = tmp_path / "other_known_hosts"
    stranger.write_text(
        f"[127.0.0.1]:{lab.sshd.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIHb1o2LRv6mHz0d9m0ZfE3d8KxXQv2ZQn8G3T0n0Jk9X\n"
    )
    target = lab.proxmox_target()
    target["ssh"] = {**target["ssh"], "known_hosts": str(stranger)}
    untrusted = Tools(lab, proxmox=[target])
    result = await untrusted.run("proxmox.service_status", "lxc/200", service="demo")
    assert result.error is not None and result.error.kind is ToolErrorKind.FAILED
    assert "host key" in result.error.message
    no_ssh = Tools(lab, proxmox=[lab.proxmox_target(ssh=None)])
    missing = await no_ssh.run("proxmox.service_status", "lxc/200", service="demo")
    assert missing.error is not None and missing.error.kind is ToolErrorKind.UNSUPPORTED
    for t in (untrusted, no_ssh):
        t.clients.close()


# --- PBS ---------------------------------------------------------------------------------------


async def test_pbs_reads(tools: Tools, lab: Lab) -> None:
    stores = await tools.run("pbs.datastores")
    store = stores.data["datastores"][0]
    assert store["store"] == "store1" and store["used_percent"] == 75.0
    assert 39 < store["days_until_full"] <= 40 and store["gc"]["ok"] is True
    assert store["counts"]["ct"] == {"groups": 1, "snapshots": 2}

    group = await tools.runner.run(
        ToolCall(
            tool="pbs.snapshots",
            target=TargetRef(service="pbs", target="backup", resource="store1/ct/200"),
        )
    )
    assert group.ok and group.data["count"] == 1
    assert group.data["groups"][0]["count"] == 2 and group.data["groups"][0]["verified"] == 2
    assert 4 * 3600 <= group.data["groups"][0]["newest_age_seconds"] < 4 * 3600 + 60

    last = await tools.run("pbs.last_backups")
    assert [g["group"] for g in last.data["guests"]] == ["ct/200", "vm/100"]
    assert last.data["stale"] == ["vm/100"]
    verify = await tools.run("pbs.verify")
    assert verify.data["failed_snapshots"][0]["group"] == "vm/100"
    assert verify.data["unverified_snapshots"] == 1 and verify.data["ok"] is False
    jobs = await tools.run("pbs.jobs")
    assert jobs.data["failed"] == ["sync:s-offsite"]
    assert {j["kind"] for j in jobs.data["jobs"]} == {"sync", "prune"}

    unknown = await tools.runner.run(
        ToolCall(
            tool="pbs.snapshots", target=TargetRef(service="pbs", target="backup", resource="nope")
        )
    )
    assert unknown.error is not None and unknown.error.kind is ToolErrorKind.NOT_FOUND

    bad = Tools(lab, pbs=[lab.pbs_target(token_secret="wrong")])
    denied = await bad.run("pbs.datastores")
    assert denied.error is not None and denied.error.kind is ToolErrorKind.UNAUTHORIZED
    assert "authentication failed - invalid API token" in denied.error.message
    assert lab.pbs.count(status=401) == 1
    bad.clients.close()


async def test_probes(lab: Lab) -> None:
    settings = Settings(docker=[], proxmox=[lab.proxmox_target()], pbs=[lab.pbs_target()])
    assert proxmox.probe(settings.proxmox[0]) == "PVE 8.2.4, standalone, quorate, 1/1 nodes online"
    assert pbs_tools.probe(settings.pbs[0]) == "PBS 3.2.7, datastores: store1"
    missing = Settings(docker=[], pbs=[lab.pbs_target(datastores=["store1", "gone"])])
    with pytest.raises(Exception, match="no datastore gone"):
        pbs_tools.probe(missing.pbs[0])


def test_pct_processes_are_real(lab: Lab) -> None:
    unit = pct.Unit(lab.state, "200", "demo")
    pid = unit.pid
    assert pid and _alive(pid) and os.getpgid(pid) == pid  # its own session, a real process


async def test_every_name_of_a_guest_is_one_target(tools: Tools, lab: Lab) -> None:
    """`100`, `0100` and `lxc/100` once escaped critical patterns, the lock and the write limit."""
    names = {}
    for alias in ("200", "0200", "lxc/200", "/lxc/200/"):
        ref = TargetRef(service="proxmox", target="pve", resource=alias)
        canonical, note = await tools.runner.canonical(ref)
        names[alias] = canonical.resource
        assert note == "" if alias == "lxc/200" else "its one name" in note
    assert set(names.values()) == {"lxc/200"}
    node, _ = await tools.runner.canonical(
        TargetRef(service="proxmox", target="pve", resource="node/pve1/")
    )
    assert node.resource == "node/pve1"
    unknown, why = await tools.runner.canonical(
        TargetRef(service="proxmox", target="pve", resource="9999")
    )
    assert unknown.resource == "9999" and "kept as named" in why
