"""Reloading nginx — only after ``nginx -t`` passes, checked again right before the reload, so a
broken configuration is never loaded and the running one stays."""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Any

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.nginx.client import (
    TOOLSET,
    config_test,
    dump_config,
    place,
    reload_argv,
    run,
    target_of,
    where,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind


async def capture_reload(ctx: ToolContext[Any]) -> dict[str, Any]:
    target = target_of(ctx)
    test = await config_test(target)
    sha = (await dump_config(target))[1] if test["valid"] else None
    return {
        "valid": test["valid"],
        "test_command": test["command"],
        "errors": test["errors"],
        "reload_command": shlex.join(reload_argv(target)),
        "where": where(target),
        "config_sha256": sha,
    }


def _reload_preview(ctx: ToolContext[Any], b: dict[str, Any]) -> str:
    if not b["valid"]:
        return (
            f"REFUSED: `{b['test_command']}` fails on {b['where']}, so {place(ctx)} is not "
            f"reloaded and keeps its running configuration: " + "; ".join(b["errors"][:3])
        )
    return (
        f"`{b['test_command']}` passes; run `{b['reload_command']}` on {b['where']}: {place(ctx)} "
        f"loads the configuration on disk (sha256 {str(b['config_sha256'])[:12]}); old workers "
        "finish their requests"
    )


@TOOLSET.write(
    "reload",
    "Reload nginx with the configuration on disk, only if nginx -t passes (checked again just "
    "before): a broken configuration is refused and the running one kept.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_reload,
    preview=_reload_preview,
    needs_resource=False,
    timeout=timedelta(minutes=2),
)
async def reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    test = await config_test(target)
    if not test["valid"]:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"refusing to reload {place(ctx)}: `{test['command']}` fails ("
            + "; ".join(test["errors"][:3])
            + "); the running configuration is kept",
        )
    done = (await run(target, reload_argv(target))).check(f"reload of {place(ctx)}")
    return {
        "reloaded": True,
        "command": shlex.join(done.argv),
        "where": done.where,
        "config_sha256": (await dump_config(target))[1],
        "output": (done.stderr + done.stdout).strip()[-500:],
        "_summary": f"reloaded {place(ctx)} (`{shlex.join(done.argv)}` after nginx -t passed)",
    }
