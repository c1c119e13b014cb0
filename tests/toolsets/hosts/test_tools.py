"""Every hosts tool over the real sshd (host key checked): df/du/find on a real mount, real
logrotate, systemctl/journalctl stand-ins, real ps and /proc, real ip on a veth pair."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.models import RiskLevel, ToolErrorKind
from tests.conftest import make_settings
from tests.fakes import systemd
from tests.toolsets.calls import CATALOG, Tools
from tests.toolsets.hosts.conftest import HostLab
from workers.lab.processes import free_port

MIB = 1024 * 1024


@pytest.fixture
async def tools(host_lab: HostLab, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, hosts=[host_lab.target()]), "hosts")
    yield t
    await t.aclose()


async def test_disk_usage_finds_what_fills_the_mount_and_what_logrotate_could_free(
    tools: Tools, host_lab: HostLab
) -> None:
    log = host_lab.fill_log("app.log", 6)
    (host_lab.mount / "backups").mkdir(exist_ok=True)
    (host_lab.mount / "backups" / "db.dump").write_bytes(b"\0" * 3 * MIB)
    try:
        result = await tools.read("disk_usage", mountpoint=str(host_lab.mount))
        assert result.ok, result.error
        data = result.data
        assert data["mountpoint"] == str(host_lab.mount) and data["fstype"] == "ext4"
        assert 0 < data["used_percent"] < 100 and data["size"] > 20 * MIB
        dirs = [d["path"] for d in data["top_dirs"]]
        assert dirs[:2] == [str(host_lab.logs), str(host_lab.mount / "backups")]
        assert data["largest_files"][0] == {"path": str(log), "size": log.stat().st_size}
        assert data["rotatable"]["best_config"] == str(host_lab.logrotate)
        assert data["rotatable"]["size"] == log.stat().st_size
        assert data["journal"] == {"on_mount": False, "size": 0, "vacuumable": 0}
        everything = await tools.read("disk_usage")
        assert any(f["mountpoint"] == "/" for f in everything.data["filesystems"])
        missing = await tools.read("disk_usage", mountpoint="/no/such/mount")
        assert missing.error is not None and missing.error.kind is ToolErrorKind.NOT_FOUND
        sneaky = await tools.read("disk_usage", mountpoint=f"{host_lab.mount}/../..")
        assert sneaky.error is not None and sneaky.error.kind is ToolErrorKind.INVALID
    finally:
        log.unlink(missing_ok=True)
        (host_lab.mount / "backups" / "db.dump").unlink()


async def test_rotate_logs_forces_the_configured_logrotate(tools: Tools, host_lab: HostLab) -> None:
    log = host_lab.fill_log("api.log", 5)
    size = log.stat().st_size
    assert CATALOG.get("hosts.rotate_logs").level is RiskLevel.SOFT
    prepared, result = await tools.write("rotate_logs", config=str(host_lab.logrotate))
    assert prepared.preview == (
        f"logrotate -f -s {host_lab.logrotate_state} {host_lab.logrotate} on host lab "
        f"(127.0.0.1): rotates 1 log(s), 5 MiB: {log} (5 MiB) "
        "(rotations beyond the config's `rotate` count are deleted)"
    )
    assert prepared.reversibility.value == "irreversible"
    assert result.ok, result.error
    assert result.data["rotated_bytes"] == size
    assert not log.exists()
    rotated = host_lab.logs / "api.log.1.gz"
    assert rotated.exists() and rotated.stat().st_size < size // 50
    assert str(log) in host_lab.logrotate_state.read_text()
    again = await tools.prepare("rotate_logs", config=str(host_lab.logrotate))
    assert again.noop and again.preview.startswith("no-op")
    rotated.unlink()
    other = await tools.prepare("rotate_logs", config="/etc/logrotate.conf")
    assert other.error is not None and other.error.kind is ToolErrorKind.INVALID
    assert "not among host lab's logrotate configs" in other.error.message


async def test_rotate_logs_reports_a_config_logrotate_ignores(
    host_lab: HostLab, tmp_path: Path
) -> None:
    unsafe = tmp_path / "unsafe"
    unsafe.write_text(host_lab.logrotate.read_text())
    unsafe.chmod(0o666)  # logrotate skips group/world-writable configs, and still exits 0
    tools = Tools(
        make_settings(tmp_path, hosts=[host_lab.target(logrotate=[str(unsafe)])]), "hosts"
    )
    log = host_lab.fill_log("unsafe.log", 2)
    try:
        prepared = await tools.prepare("rotate_logs", config=str(unsafe))
        assert prepared.error is not None and prepared.error.kind is ToolErrorKind.FAILED
        assert "writable by group or others" in prepared.error.message
        disk = await tools.read("disk_usage", mountpoint=str(host_lab.mount))
        assert disk.ok and disk.data["rotatable"]["best_config"] is None
        assert "writable by group or others" in disk.data["rotatable"]["configs"][0]["error"]
        assert log.exists()
    finally:
        log.unlink(missing_ok=True)
        await tools.aclose()


async def test_systemd_units_and_restart_unit(tools: Tools, host_lab: HostLab) -> None:
    web = systemd.add_unit(host_lab.state, "web")
    systemd.add_unit(host_lab.state, "db")
    systemd.crash(web)
    units = await tools.read("systemd_units", "web.service", lines=5)
    assert units.ok, units.error
    assert [u["unit"] for u in units.data["failed"]] == ["web.service"]
    assert (
        units.data["unit"]["active_state"] == "failed" and units.data["unit"]["result"] == "signal"
    )
    assert units.data["allowed_restart"] is True
    assert "Failed with result 'signal'" in units.data["journal"][-1]

    prepared, result = await tools.write("restart_unit", "web.service", wait=10)
    assert prepared.preview == (
        "systemctl restart web.service on host lab (127.0.0.1) (now failed/failed, result signal, "
        "pid -; wait up to 10s)"
    )
    assert result.ok, result.error
    assert result.data["after"]["active"] and result.data["after"]["main_pid"] > 0
    assert (await tools.read("systemd_units")).data["failed_count"] == 0

    denied = await tools.prepare("restart_unit", "db")
    assert denied.error is not None and denied.error.kind is ToolErrorKind.INVALID
    assert "not among host lab's restartable units (web.service)" in denied.error.message
    injected = await tools.prepare("restart_unit", "web;reboot")
    assert injected.error is not None and injected.error.kind is ToolErrorKind.INVALID

    (web.dir / "fail").touch()  # the next start fails, as systemd reports it
    try:
        _, failed = await tools.write("restart_unit", "web", wait=3)
        assert not failed.ok and failed.error is not None
        assert failed.error.kind is ToolErrorKind.FAILED
        assert (
            "exited 1" in failed.error.message and "Address already in use" in failed.error.message
        )
    finally:
        (web.dir / "fail").unlink()


async def test_journal_vacuum_shrinks_the_archived_files(tools: Tools, host_lab: HostLab) -> None:
    for name in ("system@0001", "system@0002", "system@0003", "system"):
        systemd.add_journal_file(host_lab.state, name, 4 * MIB)
    low = await tools.prepare("journal_vacuum", max_size="512k")
    assert low.error is not None and "journal_min_size" in low.error.message
    prepared, result = await tools.write("journal_vacuum", max_size="6m")
    assert prepared.preview.startswith("journalctl --vacuum-size=6291456 on host lab (127.0.0.1): ")
    assert "journal 16 MiB → at most 6 MiB" in prepared.preview
    assert result.ok, result.error
    assert result.data["before"] == 16 * MIB and result.data["after"] == 4 * MIB
    assert result.data["freed"] == 12 * MIB
    assert [p.name for p in systemd.journal_files(host_lab.state)] == ["system.journal"]
    assert (await tools.prepare("journal_vacuum", max_size="6m")).noop


async def test_memory_and_cpu_top(tools: Tools) -> None:
    memory = await tools.read("memory_top", top=5)
    assert memory.ok, memory.error
    assert memory.data["memory"]["total"] > memory.data["memory"]["available"] > 0
    rss = [p["rss"] for p in memory.data["processes"]]
    assert len(rss) == 5 and rss == sorted(rss, reverse=True)
    cpu = await tools.read("cpu_top", top=3)
    assert cpu.ok and cpu.data["cpus"] >= 1 and cpu.data["load1"] is not None
    assert len(cpu.data["processes"]) == 3


async def test_network_interfaces_and_bounce(host_lab: HostLab, tmp_path: Path, veth: str) -> None:
    tools = Tools(
        make_settings(tmp_path, hosts=[host_lab.target(interfaces=[veth, "lo", "eth0"])]), "hosts"
    )
    try:
        listed = await tools.read("network_interfaces", veth)
        assert listed.ok, listed.error
        assert listed.data["interface"]["admin_up"] and listed.data["allowed_restart"]
        assert CATALOG.get("hosts.restart_network_interface").level is RiskLevel.HARD
        prepared, result = await tools.write("restart_network_interface", veth)
        assert prepared.preview.startswith(
            f"ip link set dev {veth} down; ip link set dev {veth} up on host lab (127.0.0.1)"
        )
        assert result.ok, result.error
        assert result.data["after"]["admin_up"]
        shown = subprocess.run(["ip", "-br", "link", "show", veth], capture_output=True, text=True)
        assert "UP" in shown.stdout
        lo = await tools.prepare("restart_network_interface", "lo")
        assert lo.error is not None and "cut them off" in lo.error.message
        eth = await tools.prepare("restart_network_interface", "eth0")  # the default route's
        assert eth.error is not None and "default route" in eth.error.message
        other = await tools.prepare("restart_network_interface", "ifb0")
        assert other.error is not None and "restartable interfaces" in other.error.message
        gone = await tools.read("network_interfaces", "hlnope0")
        assert gone.error is not None and gone.error.kind is ToolErrorKind.NOT_FOUND
    finally:
        await tools.aclose()


async def test_local_host_bad_host_key_and_unreachable_ssh(
    host_lab: HostLab, tmp_path: Path
) -> None:
    wrong_keys = tmp_path / "known_hosts"
    wrong_keys.write_text(
        f"[127.0.0.1]:{host_lab.sshd.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    spoofed = host_lab.target(name="spoofed")
    spoofed["ssh"] = {**spoofed["ssh"], "known_hosts": str(wrong_keys)}
    gone = host_lab.target(name="gone")
    gone["ssh"] = {**gone["ssh"], "port": free_port(), "timeout": 2}
    tools = Tools(make_settings(tmp_path, hosts=[{"name": "lab"}, spoofed, gone]), "hosts")
    try:
        local = await tools.read("disk_usage")
        assert local.ok and local.data["filesystems"]
        tools.target = "spoofed"
        refused = await tools.read("memory_top")
        assert refused.error is not None and refused.error.kind is ToolErrorKind.FAILED
        assert "host key" in refused.error.message
        tools.target = "gone"
        down = await tools.read("memory_top")
        assert down.error is not None and down.error.kind is ToolErrorKind.UNREACHABLE
    finally:
        await tools.aclose()


async def test_doctor_probe(tools: Tools) -> None:
    import asyncio

    from activities.toolsets.hosts import probe

    found = await asyncio.to_thread(probe, tools.settings.hosts[0])
    assert found.startswith("Linux ") and found.endswith("via ssh 127.0.0.1")
