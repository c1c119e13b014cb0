"""The toolset, its error translation, and the one way to reach a Redis or Valkey server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis.asyncio as aredis
import redis.exceptions as rexc

from activities.catalog import ToolContext, ToolFailure, Toolset
from core.models import ToolErrorKind
from core.redact import redact_text
from core.targets import RedisTarget

CLIENT_NAME = "homelab-agents"
"""Our connections' CLIENT SETNAME: client_kill never ends them."""


def translate(exc: Exception) -> ToolFailure | None:
    """redis-py errors → typed failures; a lost or refused connection is transient."""
    text = redact_text(str(exc))[:300]
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return ToolFailure(ToolErrorKind.UNAUTHORIZED, f"redis refused the credentials: {text}")
    if isinstance(exc, rexc.NoPermissionError):
        return ToolFailure(
            ToolErrorKind.UNAUTHORIZED,
            f"the ACL user may not run this (grant it, see the README): {text}",
        )
    if isinstance(exc, rexc.BusyLoadingError):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"redis is loading its dataset: {text}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | asyncio.TimeoutError):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"redis unreachable: {text}")
    if isinstance(exc, rexc.ResponseError):
        if "unknown command" in text.lower():
            return ToolFailure(ToolErrorKind.UNSUPPORTED, text)
        return ToolFailure(ToolErrorKind.FAILED, text)
    if isinstance(exc, rexc.RedisError):
        return ToolFailure(ToolErrorKind.FAILED, text)
    return None


TOOLSET = Toolset(
    service="redis",
    description="Redis and Valkey servers: memory, evictions, clients, persistence, slow commands.",
    translate=translate,
)


def make_client(target: RedisTarget) -> aredis.Redis:
    """A small pool per target; decoded replies; every command bounded by ``timeout``."""
    password = target.password.get_secret_value() if target.password else None
    return aredis.Redis.from_url(
        target.url,
        username=target.username,
        password=password,
        socket_timeout=target.timeout,
        socket_connect_timeout=target.timeout,
        decode_responses=True,
        client_name=CLIENT_NAME,
        max_connections=4,
        retry_on_timeout=False,
    )


def client_for(ctx: ToolContext[Any]) -> aredis.Redis:
    return cast(aredis.Redis, ctx.clients.client("redis", ctx.ref.target, make_client))


def target_of(ctx: ToolContext[Any]) -> RedisTarget:
    return cast(RedisTarget, ctx.clients.target("redis", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"redis:{ctx.ref.target}"


def probe(target: RedisTarget) -> str:
    """``doctor``: version, role, memory against maxmemory, and whether the ACL allows the tools."""

    async def check() -> str:
        client = make_client(target)
        try:
            info = await client.info()
            who = await client.execute_command("ACL", "WHOAMI")
        finally:
            await client.aclose()
        server = "valkey" if "valkey_version" in info else "redis"
        version = info.get("valkey_version") or info.get("redis_version")
        return (
            f"{server} {version} ({info.get('role')}), as ACL user {who}; "
            f"used {info.get('used_memory_human')} of maxmemory "
            f"{info.get('maxmemory_human')} ({info.get('maxmemory_policy')})"
        )

    return asyncio.run(check())


TOOLSET.probe = probe
