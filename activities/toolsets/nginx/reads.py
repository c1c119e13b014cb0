"""nginx reads: the config test, the upstreams with their health and backends, stub_status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.nginx.client import (
    TOOLSET,
    config_test,
    dump_config,
    parse_stub_status,
    place,
    status_api,
    target_of,
    upstreams_in,
)
from activities.toolsets.upstreams import probe_all, upstream_summary
from core.models import ToolErrorKind


@TOOLSET.read(
    "config_test",
    "Test the configuration on disk (nginx -t): valid or not, and nginx's error lines.",
    needs_resource=False,
)
async def config_test_tool(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    result = await config_test(target_of(ctx))
    result["_summary"] = f"nginx -t on {place(ctx)}: " + (
        "configuration ok" if result["valid"] else "FAILS: " + "; ".join(result["errors"][:2])
    )
    return result


class UpstreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group: str | None = Field(default=None, max_length=200, description="only this upstream block")


@TOOLSET.read(
    "upstreams",
    "Every upstream nginx proxies to (upstream blocks and proxy_pass, from nginx -T), probed "
    "from the agents' host, each with the configured Docker/PostgreSQL target behind it.",
    UpstreamParams,
    needs_resource=False,
)
async def upstreams(ctx: ToolContext[UpstreamParams]) -> dict[str, Any]:
    target = target_of(ctx)
    config, sha = await dump_config(target)
    found = upstreams_in(config)
    if ctx.params.group is not None:
        found = [u for u in found if u["group"] == ctx.params.group]
        if not found:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"no upstream {ctx.params.group!r} in {place(ctx)}'s config",
            )
    probed = await probe_all(
        [u for u in found if u.get("probe", True)], target.backends, target.probe_timeout
    )
    data = upstream_summary(probed)
    data["unprobed"] = [u for u in found if not u.get("probe", True)]
    data["config_sha256"] = sha
    first = data["first_down"]
    data["_summary"] = (
        f"{data['down_count']} of {data['upstream_count']} upstream(s) of {place(ctx)} down: "
        + ", ".join(f"{u['address']} ({u['error']})" for u in data["down"][:4])
        + (
            f"; {first['address']} is {first['backend']['ref']}"
            if first and first["backend"]
            else ""
        )
        if data["down"]
        else f"all {data['upstream_count']} upstream(s) of {place(ctx)} answer"
    )
    return data


@TOOLSET.read(
    "status",
    "stub_status: active, reading, writing and waiting connections, accepted vs handled "
    "(dropped) and requests.",
    needs_resource=False,
)
async def status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    if not target_of(ctx).status_url:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"{place(ctx)} has no status_url (a location with `stub_status;`)",
        )
    text = await status_api(ctx).get("")
    parsed = parse_stub_status(str(text))
    if parsed is None:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"{place(ctx)}'s status_url does not answer stub_status format"
        )
    return {
        **parsed,
        "_summary": f"{parsed['active']} active connections ({parsed['reading']} reading, "
        f"{parsed['writing']} writing, {parsed['waiting']} waiting); {parsed['requests']} "
        f"requests; {parsed['dropped']} dropped",
    }
