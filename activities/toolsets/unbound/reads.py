"""Unbound reads: status, statistics, real queries to the resolver, what it knows about a name's
servers (lookup), and each forwarder asked directly."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.dns_query import query
from activities.toolsets.unbound.client import (
    TOOLSET,
    checkconf,
    config_text,
    configured_forwards,
    control,
    key_values,
    running_forwards,
    target_of,
)
from core.models import ToolErrorKind

NAME = r"^[A-Za-z0-9_.-]{1,253}$"


@TOOLSET.read(
    "status",
    "Whether Unbound runs, its version, uptime, threads and modules.",
    needs_resource=False,
)
async def status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    text = (await control(target_of(ctx), "status")).stdout
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in text.splitlines())
        if v
    )
    uptime = re.match(r"(\d+)", fields.get("uptime", ""))
    return {
        "running": "is running" in text,
        "version": fields.get("version"),
        "uptime_seconds": int(uptime.group(1)) if uptime else None,
        "threads": int(fields.get("threads", "0") or 0),
        "modules": fields.get("modules"),
        "_summary": f"unbound {fields.get('version')} running, up {fields.get('uptime')}",
    }


@TOOLSET.read(
    "stats",
    "Counters since the last reload (not reset by reading): queries, cache hit ratio, "
    "SERVFAIL answers, recursion time, request list.",
    needs_resource=False,
)
async def stats(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    values = key_values((await control(target_of(ctx), "stats_noreset")).stdout)

    def number(key: str) -> float:
        try:
            return float(values.get(key, 0))
        except ValueError:
            return 0.0

    queries = number("total.num.queries")
    hits = number("total.num.cachehits")
    servfail = number("num.answer.rcode.SERVFAIL")
    return {
        "queries": int(queries),
        "cache_hits": int(hits),
        "cache_misses": int(number("total.num.cachemiss")),
        "cache_hit_ratio": round(hits / queries, 4) if queries else None,
        "servfail": int(servfail),
        "servfail_ratio": round(servfail / queries, 4) if queries else None,
        "nxdomain": int(number("num.answer.rcode.NXDOMAIN")),
        "recursion_avg_seconds": number("total.recursion.time.avg"),
        "requestlist_current": int(number("total.requestlist.current.all")),
        "requestlist_exceeded": int(number("total.requestlist.exceeded")),
        "elapsed_seconds": number("time.elapsed"),
        "_summary": f"{int(queries)} queries, {int(servfail)} SERVFAIL, cache hit ratio "
        f"{round(hits / queries * 100, 1) if queries else '-'} %",
    }


class QueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str] = Field(
        default_factory=list, description="names to resolve; default: the target's probe_names"
    )
    type: str = Field(default="A", pattern=r"^[A-Z]{1,10}$")


async def _ask(server: str, name: str, rtype: str, limit: float) -> dict[str, Any]:
    try:
        return (await query(server, name, rtype, limit=limit)).as_dict()
    except ToolFailure as failure:
        if failure.kind is not ToolErrorKind.UNREACHABLE:
            raise
        return {
            "server": server,
            "name": name,
            "type": rtype,
            "rcode": "TIMEOUT",
            "answers": [],
            "ok": False,
            "ms": None,
        }


@TOOLSET.read(
    "query",
    "Resolve names through the resolver as a client would (a real DNS query each): rcode, "
    "answers, latency; which names fail.",
    QueryParams,
    needs_resource=False,
)
async def query_names(ctx: ToolContext[QueryParams]) -> dict[str, Any]:
    target = target_of(ctx)
    names = ctx.params.names or target.probe_names
    for name in names:
        if not re.fullmatch(NAME, name):
            raise ToolFailure(ToolErrorKind.INVALID, f"{name!r} is not a DNS name")
    rows = await asyncio.gather(
        *(_ask(target.resolver, n, ctx.params.type, target.timeout) for n in names)
    )
    failing = [f"{r['name']}: {r['rcode']}" for r in rows if not r["ok"]]
    return {
        "results": list(rows),
        "failing": failing,
        "failing_count": len(failing),
        "resolver_answers": any(r["rcode"] != "TIMEOUT" for r in rows),
        "_summary": f"{len(rows) - len(failing)} of {len(rows)} names resolve via {target.resolver}"
        + (f"; failing: {', '.join(failing)}" if failing else ""),
    }


class LookupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)


@TOOLSET.read(
    "lookup",
    "Which servers Unbound would ask for a name (delegation or forwarders) and what its "
    "infrastructure cache knows about them (timeouts, rtt).",
    LookupParams,
    needs_resource=False,
)
async def lookup(ctx: ToolContext[LookupParams]) -> dict[str, Any]:
    text = (await control(target_of(ctx), "lookup", ctx.params.name)).stdout
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    forwarding = any("forwarding request" in line for line in lines)
    servers = [
        {"address": parts[0], "detail": " ".join(parts[1:])}
        for parts in (line.split() for line in lines)
        if parts and re.fullmatch(r"[0-9a-fA-F:.]+", parts[0])
    ]
    return {
        "name": ctx.params.name,
        "forwarding": forwarding,
        "servers": servers,
        "lines": lines[:50],
        "_summary": f"{ctx.params.name}: {'forwarded' if forwarding else 'recursed'} to "
        + (", ".join(s["address"] for s in servers) or "no known server"),
    }


@TOOLSET.read(
    "forwarders",
    "Forward zones as Unbound runs them and as the config file on disk has them; each "
    "configured forwarder asked directly (answers or not), and the config file checked.",
    needs_resource=False,
)
async def forwarders(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    running = running_forwards((await control(target, "list_forwards")).stdout)
    text = await config_text(target)
    configured = configured_forwards(text) if text is not None else running
    valid, check_output = await checkconf(target)
    zones = sorted(set(running) | set(configured))
    rows = []
    down: list[str] = []
    for zone in zones:
        addresses = configured.get(zone, [])
        answers = await asyncio.gather(
            *(_ask(a.replace("@", ":"), zone, "SOA", target.timeout) for a in addresses)
        )
        state = {a: r["rcode"] for a, r in zip(addresses, answers, strict=True)}
        down += [f"{a} ({zone})" for a, rcode in state.items() if rcode == "TIMEOUT"]
        rows.append(
            {
                "zone": zone,
                "running": running.get(zone, []),
                "configured": addresses,
                "answers": state,
                "any_answers": any(r != "TIMEOUT" for r in state.values()),
            }
        )
    return {
        "zones": rows,
        "down": down,
        "configured_answer": bool(rows) and all(r["any_answers"] for r in rows),
        "config_valid": valid,
        "checkconf": check_output[-500:],
        "_summary": f"{len(rows)} forward zones; "
        + (f"not answering: {', '.join(down)}" if down else "every configured forwarder answers")
        + ("" if valid else "; the config file does not pass unbound-checkconf"),
    }
