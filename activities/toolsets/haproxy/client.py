"""The toolset and the runtime API: one command per connection on the stats socket."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import shlex
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.commands import CommandResult, run_on
from core.models import ToolErrorKind
from core.targets import HaproxyTarget

TOOLSET = Toolset(
    service="haproxy",
    description="HAProxy load balancers: servers, health checks, 5xx; drain, weight, reload.",
)

NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
"""A backend or server name as HAProxy allows it (no spaces or semicolons: one command only)."""


def target_of(ctx: ToolContext[Any]) -> HaproxyTarget:
    return cast(HaproxyTarget, ctx.clients.target("haproxy", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"haproxy:{ctx.ref.target}"


async def runtime(target: HaproxyTarget, command: str) -> str:
    """Send one runtime API command and read the answer (the socket closes after it)."""
    sock = target.socket
    try:
        if sock.startswith("/"):
            opening = asyncio.open_unix_connection(sock)
        else:
            host, _, port = sock.rpartition(":")
            opening = asyncio.open_connection(host or "127.0.0.1", int(port))
        reader, writer = await asyncio.wait_for(opening, target.timeout)
    except TimeoutError as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"HAProxy stats socket {sock} did not answer in time"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"HAProxy stats socket {sock} unreachable: {exc}"
        ) from exc
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), target.timeout)
    except (TimeoutError, OSError) as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"HAProxy stats socket {sock}: {command!r} failed: {exc}"
        ) from exc
    finally:
        writer.close()
    text = data.decode("utf-8", "replace")
    lowered = text.strip().lower()
    if lowered.startswith("permission denied"):
        raise ToolFailure(
            ToolErrorKind.UNAUTHORIZED,
            f"HAProxy refused {command.split()[0]!r} on {sock}: the socket needs `level admin`",
        )
    if lowered.startswith(("unknown command", "no such")) or "no such server" in lowered:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"HAProxy: {text.strip()[:300]}")
    return text


async def show_stat(target: HaproxyTarget) -> list[dict[str, str]]:
    text = await runtime(target, "show stat")
    if not text.startswith("# "):
        raise ToolFailure(ToolErrorKind.FAILED, f"unexpected `show stat` answer: {text[:200]}")
    return list(csv.DictReader(io.StringIO(text[2:])))


def _num(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def server_row(row: dict[str, str]) -> dict[str, Any]:
    status = row.get("status", "")
    return {
        "backend": row.get("pxname"),
        "server": row.get("svname"),
        "address": row.get("addr") or "",
        "status": status,
        "up": status.startswith("UP") or status == "no check",
        "maintenance": "MAINT" in status,
        "drain": status == "DRAIN",
        "weight": _num(row.get("weight")),
        "check_status": row.get("check_status") or "",
        "check_desc": row.get("check_desc") or "",
        "last_check": row.get("last_chk") or "",
        "check_failures": _num(row.get("chkfail")),
        "downtime_seconds": _num(row.get("downtime")),
        "last_change_seconds": _num(row.get("lastchg")),
        "current_sessions": _num(row.get("scur")),
        "total_sessions": _num(row.get("stot")),
        "http_5xx": _num(row.get("hrsp_5xx")),
        "http_total": sum(_num(row.get(f"hrsp_{c}xx")) for c in range(1, 6))
        + _num(row.get("hrsp_other")),
    }


def servers_of(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [server_row(r) for r in rows if r.get("svname") not in ("FRONTEND", "BACKEND")]


async def one_server(target: HaproxyTarget, backend: str, server: str) -> dict[str, Any]:
    for s in servers_of(await show_stat(target)):
        if s["backend"] == backend and s["server"] == server:
            return s
    raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no server {backend}/{server} in HAProxy")


class ServerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str = Field(pattern=NAME)
    server: str = Field(pattern=NAME)


class ConfigCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    valid: bool
    command: str
    where: str
    output: list[str]


async def run(target: HaproxyTarget, argv: list[str]) -> CommandResult:
    return await run_on(target.ssh, argv, limit=target.command_timeout)


async def config_check(target: HaproxyTarget) -> ConfigCheck:
    if target.config_file is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"haproxy:{target.name} has no config_file to check"
        )
    done = await run(target, [*target.command, "-c", "-f", str(target.config_file)])
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return ConfigCheck(
        valid=done.ok, command=shlex.join(done.argv), where=done.where, output=lines[-20:]
    )


def safe_name(value: str) -> str:
    """Re-checked where a name reaches the socket (parameters are validated, captures are not)."""
    if not re.fullmatch(NAME, value):
        raise ToolFailure(ToolErrorKind.INVALID, f"{value!r} is not a HAProxy name")
    return value


def probe(target: HaproxyTarget) -> str:
    """``doctor``: the runtime API answers, and whether it grants admin level."""
    import asyncio

    async def check() -> str:
        text = await runtime(target, "show info")
        version = next(
            (
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("Version:")
            ),
            "?",
        )
        level = await runtime(target, "show cli level")
        return f"HAProxy {version} on {target.socket} (cli level {level.strip() or '?'})"

    return asyncio.run(check())


TOOLSET.probe = probe
