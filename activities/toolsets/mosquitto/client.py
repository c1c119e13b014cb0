"""The toolset and reading ``$SYS`` from a Mosquitto target (one short subscription per call)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from typing import Any, cast

import aiomqtt

from activities.catalog import ToolContext, ToolFailure, Toolset
from core.models import ToolErrorKind
from core.targets import MosquittoTarget

TOOLSET = Toolset(
    service="mosquitto",
    description="Mosquitto MQTT brokers: clients, message rates, dropped messages ($SYS).",
)


def target_of(ctx: ToolContext[Any]) -> MosquittoTarget:
    return cast(MosquittoTarget, ctx.clients.target("mosquitto", ctx.ref.target))


def place(ctx: ToolContext[Any]) -> str:
    return f"mosquitto:{ctx.ref.target}"


def _tls(target: MosquittoTarget) -> ssl.SSLContext | None:
    if not target.tls:
        return None
    return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)


async def read_sys(target: MosquittoTarget, topic: str = "$SYS/broker/#") -> dict[str, str]:
    """Subscribe to ``$SYS`` for ``sys_wait`` seconds; every topic's latest value."""
    values: dict[str, str] = {}
    password = target.password.get_secret_value() if target.password else None
    try:
        async with aiomqtt.Client(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=password,
            identifier=f"homelab-agents-{uuid.uuid4().hex[:8]}",
            tls_context=_tls(target),
            timeout=target.timeout,
            clean_session=True,
        ) as client:
            await client.subscribe(topic, qos=0)
            deadline = time.monotonic() + target.sys_wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(target.sys_wait):
                    async for message in client.messages:
                        values[str(message.topic)] = bytes(message.payload or b"").decode(
                            "utf-8", "replace"
                        )
                        if time.monotonic() >= deadline:
                            break
    except aiomqtt.MqttCodeError as exc:
        code = getattr(exc, "rc", None)
        text = str(exc)
        if "not authorized" in text.lower() or "bad user name or password" in text.lower():
            raise ToolFailure(
                ToolErrorKind.UNAUTHORIZED, f"mosquitto {target.host}:{target.port}: {text}"
            ) from exc
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"mosquitto {target.host}:{target.port}: {text} ({code})"
        ) from exc
    except aiomqtt.MqttError as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"mosquitto {target.host}:{target.port} unreachable: {exc}"
        ) from exc
    if not values:
        raise ToolFailure(
            ToolErrorKind.UNAUTHORIZED,
            f"no $SYS topics from {target.host}:{target.port} within {target.sys_wait:g}s: the "
            "user may not read $SYS/# (acl) or sys_interval is 0",
        )
    return values


def probe(target: MosquittoTarget) -> str:
    """``doctor``: the user can read ``$SYS``."""
    values = asyncio.run(read_sys(target, "$SYS/broker/version"))
    return f"{next(iter(values.values()))} at {target.host}:{target.port}"


TOOLSET.probe = probe
