"""The Unbound toolset: ``unbound-control`` through the one command runner (locally, or over SSH
with the host key checked), and real DNS queries to the resolver."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.commands import CommandResult, run_on
from activities.toolsets.dns_query import split_server
from core.models import ToolErrorKind
from core.targets import UnboundTarget

TOOLSET = Toolset(
    service="unbound",
    description="Unbound resolvers: real queries, statistics, forwarders, lookup; flush a zone, "
    "reload.",
)

ZONE_NAME = re.compile(r"^([A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{0,63}\.?$")


def target_of(ctx: ToolContext[Any]) -> UnboundTarget:
    target = ctx.clients.target("unbound", ctx.ref.target)
    assert isinstance(target, UnboundTarget)
    return target


def zone_name(text: str) -> str:
    name = text.strip()
    if name in (".", "") or not ZONE_NAME.fullmatch(name) or len(name) > 253:
        raise ToolFailure(ToolErrorKind.INVALID, f"{text!r} is not a zone name")
    return name.rstrip(".") + "."


def control_argv(target: UnboundTarget, *args: str) -> list[str]:
    argv = [target.control]
    if target.config:
        argv += ["-c", str(target.config)]
    if target.server:
        argv += ["-s", target.server]
    return [*argv, *args]


async def control(target: UnboundTarget, *args: str) -> CommandResult:
    """``unbound-control ARGS``; a refused control connection means Unbound is not running."""
    result = await run_on(target.ssh, control_argv(target, *args), limit=target.timeout * 2)
    if not result.ok:
        text = result.tail()
        if "connection refused" in text.lower() or "connect:" in text.lower():
            raise ToolFailure(
                ToolErrorKind.UNREACHABLE, f"unbound's control port does not answer: {text}"
            )
        raise ToolFailure(ToolErrorKind.FAILED, f"unbound-control {' '.join(args)}: {text}")
    return result


def key_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


async def checkconf(target: UnboundTarget) -> tuple[bool, str]:
    argv = ["unbound-checkconf"] + ([str(target.config)] if target.config else [])
    result = await run_on(target.ssh, argv, limit=target.timeout * 2)
    return result.ok, (result.stdout.strip() or result.tail())


async def config_text(target: UnboundTarget) -> str | None:
    """The configuration file as it is on disk (None without ``config``)."""
    if target.config is None:
        return None
    result = await run_on(target.ssh, ["cat", "--", str(target.config)], limit=target.timeout)
    return result.check(f"reading {target.config}").stdout


def configured_forwards(text: str) -> dict[str, list[str]]:
    """``forward-zone:`` clauses of a configuration text: zone → forward-addr values."""
    zones: dict[str, list[str]] = {}
    current: str | None = None
    in_forward = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if re.fullmatch(r"[a-z-]+:", line):
            in_forward = line == "forward-zone:"
            current = None
            continue
        key, _, value = line.partition(":")
        value = value.strip().strip('"')
        if in_forward and key == "name":
            current = value.rstrip(".") + "."
            zones.setdefault(current, [])
        elif in_forward and key in ("forward-addr", "forward-host") and current:
            zones[current].append(value)
    return zones


def running_forwards(text: str) -> dict[str, list[str]]:
    """``unbound-control list_forwards``: ``lab.lan. IN forward 127.0.0.1@5353 ...``."""
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "forward":
            zones[parts[0]] = [p for p in parts[3:] if not p.startswith("+")]
    return zones


async def probe_async(target: UnboundTarget) -> str:
    status = await control(target, "status")
    version = re.search(r"version: (\S+)", status.stdout)
    split_server(target.resolver)
    return f"unbound {version.group(1) if version else '?'} running; resolver {target.resolver}"


def probe(target: UnboundTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
