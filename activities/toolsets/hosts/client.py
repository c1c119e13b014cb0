"""The hosts toolset, the one way it runs a command, and the names it accepts.

Commands come from a fixed set (df, du, find, stat, ps, cat /proc/*, ip, systemctl, journalctl,
logrotate), built as argument vectors by the tools themselves; unit, interface and path names are
validated before they reach one. ``sudo: true`` prefixes ``sudo -n`` (never a password prompt).
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from collections.abc import Sequence
from typing import Any

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.commands import CommandResult, run_on
from core.models import ToolErrorKind
from core.targets import HostTarget

TOOLSET = Toolset(
    service="hosts",
    description="Linux hosts over SSH (or this machine): disks, systemd units, memory, network.",
)

COMMANDS = frozenset(
    {"df", "du", "find", "stat", "ps", "cat", "ip", "systemctl", "journalctl", "logrotate", "uname"}
)
INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def target_of(ctx: ToolContext[Any]) -> HostTarget:
    target = ctx.clients.target("hosts", ctx.ref.target)
    assert isinstance(target, HostTarget)
    return target


async def run_host(
    target: HostTarget, argv: Sequence[str], *, limit: float | None = None
) -> CommandResult:
    """Run one of the allowed commands on the host (SSH when configured, else locally)."""
    if not argv or argv[0] not in COMMANDS:
        raise ToolFailure(ToolErrorKind.INVALID, f"{argv[:1]} is not a command the hosts tools run")
    full = ["sudo", "-n", *argv] if target.sudo else list(argv)
    return await run_on(target.ssh, full, limit=limit or target.command_timeout)


async def run(
    ctx: ToolContext[Any], argv: Sequence[str], *, limit: float | None = None
) -> CommandResult:
    return await run_host(target_of(ctx), argv, limit=limit)


def abs_path(value: str, what: str = "path") -> str:
    """An absolute, normalised path that cannot be read as an option or smuggle a line."""
    if not value.startswith("/") or _CONTROL.search(value) or len(value) > 4096:
        raise ToolFailure(ToolErrorKind.INVALID, f"{what} {value!r} is not an absolute path")
    if ".." in value.split("/"):
        raise ToolFailure(ToolErrorKind.INVALID, f"{what} {value!r} climbs out with '..'")
    normal = posixpath.normpath(value)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


def interface_name(name: str) -> str:
    if not INTERFACE.fullmatch(name):
        raise ToolFailure(ToolErrorKind.INVALID, f"{name!r} is not a network interface name")
    return name


def where(ctx: ToolContext[Any]) -> str:
    target = target_of(ctx)
    return f"host {target.name}" + (f" ({target.ssh.host})" if target.ssh else " (local)")


async def _probe(target: HostTarget) -> str:
    run_ = await run_host(target, ["uname", "-srn"], limit=20)
    run_.check("uname")
    return (
        f"{run_.stdout.strip()} via {'ssh ' + target.ssh.host if target.ssh else 'local commands'}"
    )


def probe(target: HostTarget) -> str:
    return asyncio.run(_probe(target))


TOOLSET.probe = probe
