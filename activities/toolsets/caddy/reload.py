"""Reloading Caddy: the config file is validated (``caddy validate``), validated again just
before, then POSTed to the admin API's /load — which itself keeps the running config when a load
fails. A broken file is never loaded."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.caddy.client import (
    TOOLSET,
    api_for,
    content_type,
    file_of,
    place,
    read_file,
    running_config,
    target_of,
    validate,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


async def capture_reload(ctx: ToolContext[Any]) -> dict[str, Any]:
    target = target_of(ctx)
    check = await validate(target)
    _, running_sha = await running_config(ctx)
    content = await read_file(target)
    return {
        **check,
        "file": file_of(target),
        "adapter": target.adapter,
        "file_sha256": hashlib.sha256(content).hexdigest(),
        "file_bytes": len(content),
        "running_sha256": running_sha,
    }


def _preview(ctx: ToolContext[Any], b: dict[str, Any]) -> str:
    if not b["valid"]:
        return (
            f"REFUSED: `{b['command']}` fails on {b['where']}, so {place(ctx)} is not reloaded and "
            "keeps its running configuration: " + "; ".join(b["errors"][:3])
        )
    return (
        f"`{b['command']}` passes; POST {b['file']} ({b['file_bytes']} bytes, sha256 "
        f"{b['file_sha256'][:12]}, Content-Type {content_type(target_of(ctx))}) to "
        f"{target_of(ctx).admin_url}/load: replaces the running config (sha256 "
        f"{b['running_sha256'][:12]})"
    )


@TOOLSET.write(
    "reload",
    "Load the config file into Caddy (admin API /load), only if caddy validate passes (checked "
    "again just before): a broken configuration is refused and the running one kept.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_reload,
    preview=_preview,
    needs_resource=False,
    timeout=timedelta(minutes=2),
)
async def reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    check = await validate(target)
    if not check["valid"]:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"refusing to reload {place(ctx)}: `{check['command']}` fails ("
            + "; ".join(check["errors"][:3])
            + "); the running configuration is kept",
        )
    content = await read_file(target)
    await api_for(ctx).post(
        "/load", content=content, headers={"Content-Type": content_type(target)}
    )
    _, sha = await running_config(ctx)
    return {
        "reloaded": True,
        "file_sha256": hashlib.sha256(content).hexdigest(),
        "running_sha256": sha,
        "_summary": f"loaded {file_of(target)} into {place(ctx)} (caddy validate passed)",
    }
