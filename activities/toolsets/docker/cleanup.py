"""Docker writes that free disk: dangling and unused images, a runaway container log."""

from __future__ import annotations

import os
from typing import Any

from docker.errors import APIError, NotFound

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.docker.client import (
    TOOLSET,
    client_for,
    container_for,
    explain,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_size as mib


def _images(ctx: ToolContext[Any], *, dangling_only: bool) -> dict[str, Any]:
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    found = []
    for image in client.images.list(filters={"dangling": True} if dangling_only else None):
        if image.id in used:
            continue
        found.append({"id": image.id, "tags": image.tags, "size": image.attrs.get("Size", 0)})
    return {"images": found, "total_size": sum(i["size"] for i in found)}


def _prune_preview(what: str) -> Any:
    def preview(ctx: ToolContext[Any], before: dict[str, Any]) -> str:
        images = before["images"]
        if not images:
            return f"no-op: no {what} images on engine {ctx.ref.target}"
        names = ", ".join((i["tags"] or [i["id"][:19]])[0] for i in images[:10])
        more = f" and {len(images) - 10} more" if len(images) > 10 else ""
        return (
            f"remove {len(images)} {what} image(s) ({mib(before['total_size'])}) on engine "
            f"{ctx.ref.target}: {names}{more}"
        )

    return preview


def _remove_images(ctx: ToolContext[Any]) -> dict[str, Any]:
    """Remove exactly the images that were previewed and approved, skipping any now in use."""
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    removed, skipped, reclaimed = [], [], 0
    for image in (ctx.before or {}).get("images", []):
        if image["id"] in used:
            skipped.append({"id": image["id"], "reason": "now in use"})
            continue
        try:
            client.images.remove(image["id"], force=False, noprune=False)
        except NotFound:
            skipped.append({"id": image["id"], "reason": "already gone"})
            continue
        except APIError as exc:
            skipped.append({"id": image["id"], "reason": explain(exc)})
            continue
        removed.append(image["id"])
        reclaimed += image["size"]
    return {
        "removed": removed,
        "skipped": skipped,
        "space_reclaimed": reclaimed,
        "_summary": f"removed {len(removed)} image(s), reclaimed {mib(reclaimed)}",
    }


@TOOLSET.write(
    "prune_images",
    "Remove dangling (untagged, unused) images.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=lambda ctx: _images(ctx, dangling_only=True),
    preview=_prune_preview("dangling"),
    is_noop=lambda ctx, b: not b["images"],
    needs_resource=False,
)
def prune_images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return _remove_images(ctx)


@TOOLSET.write(
    "prune_unused_images",
    "Remove every image no container uses (tagged ones too).",
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=lambda ctx: _images(ctx, dangling_only=False),
    preview=_prune_preview("unused"),
    is_noop=lambda ctx, b: not b["images"],
    needs_resource=False,
)
def prune_unused_images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return _remove_images(ctx)


def capture_log(ctx: ToolContext[Any]) -> dict[str, Any]:
    attrs = container_for(ctx).attrs
    driver = (attrs.get("HostConfig", {}).get("LogConfig") or {}).get("Type", "")
    path = attrs.get("LogPath") or ""
    if driver != "json-file":
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"{ctx.where()} logs with {driver or 'no'} driver, not json-file",
        )
    if not path or not os.path.exists(path):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"the log file of {ctx.where()} is not on this host ({path or 'no path'}); "
            "clearing logs needs the agent on the engine's host",
        )
    return {"log_path": path, "size": os.path.getsize(path)}


@TOOLSET.write(
    "clear_logs",
    "Truncate a container's json-file log (frees disk; the old lines are lost).",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_log,
    preview=lambda ctx, b: (
        f"truncate the json-file log of container {ctx.where()} ({mib(b['size'])} at {b['log_path']})"
    ),
    is_noop=lambda ctx, b: b["size"] == 0,
)
def clear_logs(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    info = capture_log(ctx)
    with open(info["log_path"], "r+b") as handle:
        handle.truncate(0)
    return {
        "log_path": info["log_path"],
        "freed": info["size"],
        "_summary": f"truncated log of {ctx.where()}, freed {mib(info['size'])}",
    }
