"""Upstreams behind a proxy: is each one answering, and what runs it.

One probe for every proxy toolset (nginx, Caddy, HAProxy): a TCP connect with a deadline from the
agents' host, so "connection refused" and "timed out" are told apart. And one mapping from an
address to the configured Docker container or PostgreSQL server behind it (the target's
``backends``), so an incident on the proxy names where the investigation continues.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from core.models import TargetRef


def split_address(address: str, default_port: int = 80) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``http://host:port/path`` or a bare host → (host, port)."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        default_port = 443 if scheme.lower() == "https" else default_port
        text = rest
    text = text.split("/", 1)[0]
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if not host:
            host, port = text, ""
    return host, int(port) if port.isdigit() else default_port


async def probe(address: str, within: float) -> dict[str, Any]:
    """Connect to ``address``: up with the connect time, or down with why."""
    host, port = split_address(address)
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except TimeoutError:
        return {"up": False, "error": f"no answer within {within:g}s"}
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        return {"up": False, "error": why.lower()}
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return {"up": True, "connect_ms": round((time.monotonic() - started) * 1000, 1)}


def backend_for(address: str, backends: dict[str, str]) -> dict[str, str] | None:
    """The configured target behind ``address`` (exact ``host:port``, else the host alone)."""
    host, port = split_address(address)
    for key in (address, f"{host}:{port}", host):
        ref = backends.get(key)
        if ref is not None:
            parsed = TargetRef.parse(ref)
            return {
                "ref": ref,
                "service": parsed.service,
                "target": parsed.target,
                "resource": parsed.resource,
            }
    return None


async def probe_all(
    addresses: list[dict[str, Any]], backends: dict[str, str], within: float
) -> list[dict[str, Any]]:
    """Probe every upstream (``{"address": ..., ...}``) concurrently; add ``up`` and ``backend``."""
    results = await asyncio.gather(*(probe(u["address"], within) for u in addresses))
    return [
        {**u, **r, "backend": backend_for(u["address"], backends)}
        for u, r in zip(addresses, results, strict=True)
    ]


def upstream_summary(upstreams: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and the first down upstream (with its backend), for runbook conditions."""
    down = [u for u in upstreams if not u.get("up")]
    first = down[0] if down else None
    return {
        "upstreams": upstreams,
        "upstream_count": len(upstreams),
        "down": down,
        "down_count": len(down),
        "first_down": first,
        "first_down_backend": first.get("backend") if first else None,
    }
