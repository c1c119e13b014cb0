"""The toolset, the admin API client of a target, and ``caddy validate``."""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any, cast

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.commands import run_on
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import CaddyTarget

TOOLSET = Toolset(
    service="caddy",
    description="Caddy servers: running config, reverse-proxy upstreams, validated reloads.",
)


def target_of(ctx: ToolContext[Any]) -> CaddyTarget:
    return cast(CaddyTarget, ctx.clients.target("caddy", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"caddy:{ctx.ref.target}"


def make_api(target: CaddyTarget) -> HttpApi:
    return HttpApi(target.admin_url, product="caddy admin API", timeout=target.timeout)


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return cast(HttpApi, ctx.clients.client("caddy", ctx.ref.target, make_api))


async def running_config(ctx: ToolContext[Any]) -> tuple[dict[str, Any], str]:
    """The config Caddy runs now (GET /config/) and the sha256 of its canonical JSON."""
    config = await api_for(ctx).get("/config/")
    if not isinstance(config, dict):
        config = {}
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return config, hashlib.sha256(canonical.encode()).hexdigest()


def proxy_upstreams(config: Any) -> list[str]:
    """Every ``dial`` of every reverse_proxy handler in a config, in order, once."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("handler") == "reverse_proxy":
                for upstream in node.get("upstreams") or []:
                    dial = upstream.get("dial") if isinstance(upstream, dict) else None
                    if isinstance(dial, str) and dial not in found:
                        found.append(dial)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def file_of(target: CaddyTarget) -> str:
    if target.config_file is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"caddy:{target.name} has no config_file configured"
        )
    return str(target.config_file)


async def validate(target: CaddyTarget) -> dict[str, Any]:
    """``caddy validate --config FILE --adapter A``: valid or not, with Caddy's message."""
    argv = [*target.command, "validate", "--config", file_of(target), "--adapter", target.adapter]
    done = await run_on(target.ssh, argv, limit=target.command_timeout)
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line][-5:]
    return {
        "valid": done.ok,
        "command": shlex.join(done.argv),
        "where": done.where,
        "errors": errors or ([] if done.ok else lines[-3:]),
    }


async def read_file(target: CaddyTarget) -> bytes:
    done = await run_on(target.ssh, ["cat", "--", file_of(target)], limit=target.command_timeout)
    return done.check(f"reading {file_of(target)}").stdout.encode()


def content_type(target: CaddyTarget) -> str:
    return "application/json" if target.adapter == "json" else f"text/{target.adapter}"


def probe(target: CaddyTarget) -> str:
    """``doctor``: the admin API answers with the running config."""
    import asyncio

    async def check() -> str:
        api = make_api(target)
        try:
            config = await api.get("/config/") or {}
        finally:
            await api.aclose()
        servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
        return f"admin API at {target.admin_url}: {len(servers)} server(s), {len(proxy_upstreams(config))} upstream(s)"

    return asyncio.run(check())


TOOLSET.probe = probe
