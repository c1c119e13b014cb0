"""The toolset, the nginx commands of a target, and reading its configuration."""

from __future__ import annotations

import hashlib
import re
import shlex
from typing import Any, cast

from activities.catalog import ToolContext, Toolset
from activities.toolsets.commands import CommandResult, run_on
from activities.toolsets.http import HttpApi
from core.targets import NginxTarget

TOOLSET = Toolset(
    service="nginx",
    description="nginx reverse proxies: config test, upstream health, stub_status, safe reload.",
)


def target_of(ctx: ToolContext[Any]) -> NginxTarget:
    return cast(NginxTarget, ctx.clients.target("nginx", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"nginx:{ctx.ref.target}"


def test_argv(target: NginxTarget) -> list[str]:
    return [*target.command, "-t"]


def reload_argv(target: NginxTarget) -> list[str]:
    return list(target.reload_command or [*target.command, "-s", "reload"])


def where(target: NginxTarget) -> str:
    if target.ssh is None:
        return "localhost"
    return f"{target.ssh.user}@{target.ssh.host or target.name}"


async def run(target: NginxTarget, argv: list[str]) -> CommandResult:
    return await run_on(target.ssh, argv, limit=target.command_timeout)


async def config_test(target: NginxTarget) -> dict[str, Any]:
    """``nginx -t``: valid or not, with nginx's own lines (it writes them to stderr)."""
    done = await run(target, test_argv(target))
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "[emerg]" in line or "[alert]" in line or "failed" in line]
    return {
        "valid": done.ok,
        "command": shlex.join(done.argv),
        "where": done.where,
        "exit_status": done.exit_status,
        "output": lines[-20:],
        "errors": errors[:10],
    }


async def dump_config(target: NginxTarget) -> tuple[str, str]:
    """``nginx -T``: the whole configuration nginx would load, and its sha256."""
    done = (await run(target, [*target.command, "-T"])).check("nginx -T")
    return done.stdout, hashlib.sha256(done.stdout.encode()).hexdigest()


_COMMENT = re.compile(r"#[^\n]*")
_UPSTREAM = re.compile(r"\bupstream\s+([^\s{]+)\s*\{([^}]*)\}", re.S)
_SERVER = re.compile(r"(?:^|[;{\s])server\s+([^\s;]+)([^;]*);")
_PROXY_PASS = re.compile(r"\b(proxy_pass|grpc_pass|uwsgi_pass|fastcgi_pass)\s+([^\s;]+)\s*;")


def upstreams_in(config: str) -> list[dict[str, Any]]:
    """Every upstream server nginx proxies to: upstream blocks' servers and direct proxy_pass
    addresses (variables and unix sockets cannot be probed and are listed as such)."""
    text = _COMMENT.sub("", config)
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, body in _UPSTREAM.findall(text):
        servers = []
        for address, options in _SERVER.findall(body):
            flags = options.split()
            servers.append(
                {
                    "group": name,
                    "address": address,
                    "backup": "backup" in flags,
                    "marked_down": "down" in flags,
                }
            )
        groups[name] = servers
    found: list[dict[str, Any]] = [s for servers in groups.values() for s in servers]
    seen = {s["address"] for s in found}
    for directive, value in _PROXY_PASS.findall(_UPSTREAM.sub("", text)):
        host = re.sub(r"^[a-z]+://", "", value).split("/", 1)[0]
        if host in groups or host in seen:
            continue
        seen.add(host)
        found.append(
            {
                "group": None,
                "address": host,
                "directive": directive,
                "probe": not (host.startswith("unix:") or "$" in host),
                "backup": False,
                "marked_down": False,
            }
        )
    return found


def status_api(ctx: ToolContext[Any]) -> HttpApi:
    target = target_of(ctx)

    def make(t: NginxTarget) -> HttpApi:
        assert t.status_url is not None
        return HttpApi(t.status_url, product="nginx stub_status", timeout=t.probe_timeout + 3)

    return cast(HttpApi, ctx.clients.client("nginx", target.name, make))


_STUB = re.compile(
    r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+).*?Reading:\s*(\d+)\s+"
    r"Writing:\s*(\d+)\s+Waiting:\s*(\d+)",
    re.S,
)


def parse_stub_status(text: str) -> dict[str, int] | None:
    match = _STUB.search(text)
    if match is None:
        return None
    active, accepts, handled, requests, reading, writing, waiting = map(int, match.groups())
    return {
        "active": active,
        "accepts": accepts,
        "handled": handled,
        "requests": requests,
        "reading": reading,
        "writing": writing,
        "waiting": waiting,
        "dropped": accepts - handled,
    }


def probe(target: NginxTarget) -> str:
    """``doctor``: nginx -t where the target's commands run, and stub_status if configured."""
    import asyncio

    result = asyncio.run(config_test(target))
    if not result["valid"]:
        raise RuntimeError(f"`{result['command']}` fails: " + "; ".join(result["errors"][:2]))
    return f"`{result['command']}` passes on {result['where']}" + (
        f"; stub_status at {target.status_url}" if target.status_url else "; no status_url"
    )


TOOLSET.probe = probe
