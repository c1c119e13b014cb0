"""systemd units inside containers, through ``pct exec`` over SSH on the guest's node."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.commands import CommandResult, known_hosts_file, run_ssh
from activities.toolsets.proxmox.client import (
    TOOLSET,
    Guest,
    api_for,
    cluster_summary,
    find_guest,
    target_of,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


class ServiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,200}$",
        description="a service unit (nginx or nginx.service); never a target, socket or timer "
        "(restarting poweroff.target would power the guest off)",
    )

    @field_validator("service")
    @classmethod
    def _a_service(cls, name: str) -> str:
        other = (
            ".target",
            ".socket",
            ".timer",
            ".path",
            ".mount",
            ".automount",
            ".swap",
            ".slice",
            ".scope",
            ".device",
        )
        if name.endswith(other):
            raise ValueError(f"{name!r} is not a service unit: only services are restarted")
        return name

    @property
    def unit(self) -> str:
        return self.service if self.service.endswith(".service") else f"{self.service}.service"


class RestartServiceParams(ServiceParams):
    wait: int = Field(default=30, ge=1, le=600, description="seconds to wait for it to be active")


SHOW_PROPERTIES = (
    "Id,LoadState,ActiveState,SubState,MainPID,ExecMainStartTimestampMonotonic,NRestarts,Result"
)


def _ssh_host(ctx: ToolContext[Any], node: str) -> str:
    """The node's SSH address (its known_hosts file must vouch for its key)."""
    target = target_of(ctx)
    if target.ssh is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"proxmox target {target.name} has no `ssh` settings (key_file, known_hosts): "
            "commands inside containers need SSH to the node",
        )
    ssh = target.ssh
    known_hosts_file(ssh)  # fail before any API call when the key cannot be checked
    if node in ssh.nodes:
        return ssh.nodes[node]
    cluster = cluster_summary(api_for(ctx).get("cluster/status") or [])
    if cluster["nodes_total"] > 1:
        ip = next((n["ip"] for n in cluster["nodes"] if n["name"] == node and n["ip"]), None)
        if ip:
            return str(ip)
    if ssh.host:
        return ssh.host
    host = target.host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def ssh_run(
    ctx: ToolContext[Any], node: str, command: list[str], limit: float
) -> CommandResult:
    """Run one command on a node over SSH (host key verified against known_hosts)."""
    host = await asyncio.to_thread(_ssh_host, ctx, node)
    ssh = target_of(ctx).ssh
    assert ssh is not None
    return await run_ssh(ssh, command, limit=limit, host=host)


async def pct_exec(
    ctx: ToolContext[Any], guest: Guest, command: list[str], limit: float = 60
) -> CommandResult:
    return await ssh_run(ctx, guest.node, ["pct", "exec", str(guest.vmid), "--", *command], limit)


def parse_show(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


async def running_container(ctx: ToolContext[Any]) -> Guest:
    guest = await asyncio.to_thread(find_guest, ctx)
    if guest.type != "lxc":
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"{guest.label} is a VM: services run inside containers only (pct exec)",
        )
    if guest.status != "running":
        raise ToolFailure(
            ToolErrorKind.CONFLICT, f"{guest.label} is {guest.status}: start it first"
        )
    return guest


async def service_state(ctx: ToolContext[Any], guest: Guest, unit: str) -> dict[str, Any]:
    run = await pct_exec(ctx, guest, ["systemctl", "show", f"--property={SHOW_PROPERTIES}", unit])
    if run.exit_status != 0:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"pct exec {guest.vmid} -- systemctl show {unit} exited {run.exit_status}: "
            f"{(run.stderr or run.stdout).strip()[-500:]}",
        )
    props = parse_show(run.stdout)
    if props.get("LoadState") == "not-found":
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no unit {unit} in {guest.label}")
    pid = props.get("MainPID", "0")
    return {
        "unit": unit,
        "vmid": guest.vmid,
        "node": guest.node,
        "load_state": props.get("LoadState"),
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "active": props.get("ActiveState") == "active",
        "main_pid": int(pid) if pid.isdigit() else 0,
        "started_monotonic": props.get("ExecMainStartTimestampMonotonic"),
        "restarts": int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None,
        "result": props.get("Result"),
    }


@TOOLSET.read(
    "service_status",
    "A systemd unit's state inside a running container (pct exec over SSH to its node).",
    ServiceParams,
)
async def service_status(ctx: ToolContext[ServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    data = await service_state(ctx, guest, ctx.params.unit)
    data["_summary"] = (
        f"{ctx.params.unit} in {guest.label}: {data['active_state']} ({data['sub_state']})"
    )
    return data


async def capture_service(ctx: ToolContext[RestartServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    return await service_state(ctx, guest, ctx.params.unit) | {"name": guest.name}


async def journal_tail(ctx: ToolContext[Any], guest: Guest, unit: str) -> list[str]:
    try:
        run = await pct_exec(
            ctx, guest, ["journalctl", "-u", unit, "-n", "10", "--no-pager", "-o", "cat"], 20
        )
    except ToolFailure:
        return []
    return run.stdout.strip().splitlines()[-10:] if run.exit_status == 0 else []


@TOOLSET.write(
    "restart_service",
    "Restart a systemd service inside a container (pct exec over SSH to the node) and report "
    "its state before and after.",
    RestartServiceParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_service,
    preview=lambda ctx, b: (
        f"restart {b['unit']} in CT {b['vmid']}"
        + (f" ({b['name']})" if b.get("name") else "")
        + f" on node {b['node']} via pct exec (now {b['active_state']}/{b['sub_state']}, "
        f"pid {b['main_pid'] or '-'}; wait up to {ctx.params.wait}s for active)"
    ),
    timeout=timedelta(minutes=12),
)
async def restart_service(ctx: ToolContext[RestartServiceParams]) -> dict[str, Any]:
    guest = await running_container(ctx)
    unit = ctx.params.unit
    before = ctx.before or await service_state(ctx, guest, unit)
    now = await service_state(ctx, guest, unit)
    already = (
        now["active"]
        and before.get("started_monotonic")
        and now["started_monotonic"] != before["started_monotonic"]
    )
    run: CommandResult | None = None
    if not already:
        run = await pct_exec(ctx, guest, ["systemctl", "restart", unit], ctx.params.wait + 30)
    deadline = time.monotonic() + ctx.params.wait
    after = await service_state(ctx, guest, unit)
    while after["active_state"] in ("activating", "deactivating", "reloading") and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.5)
        after = await service_state(ctx, guest, unit)
    state_before = {k: before.get(k) for k in ("active_state", "sub_state", "main_pid")}
    state_after = {k: after[k] for k in ("active_state", "sub_state", "main_pid")}
    if not after["active"] or (run is not None and run.exit_status != 0):
        journal = await journal_tail(ctx, guest, unit)
        why = (run.stderr or run.stdout).strip()[-300:] if run and run.exit_status else ""
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"restart of {unit} in {guest.label} did not leave it active: before {state_before}, "
            f"after {state_after}"
            + (f"; systemctl: {why}" if why else "")
            + (f"; journal: {' | '.join(journal)}" if journal else ""),
        )
    return {
        "unit": unit,
        "before": state_before,
        "after": state_after,
        "active": True,
        "main_pid": after["main_pid"],
        "_summary": f"{unit} in {guest.label}: {state_before['active_state']} (pid "
        f"{state_before['main_pid'] or '-'}) → {after['active_state']} (pid {after['main_pid']})"
        + (" (already restarted by this change)" if already else ""),
    }
