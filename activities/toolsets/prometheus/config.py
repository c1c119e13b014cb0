"""Prometheus' configuration: did the last reload work, what promtool says is wrong, reload."""

from __future__ import annotations

import re
from typing import Any

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.commands import run_on
from activities.toolsets.prometheus.client import (
    TOOLSET,
    api_for,
    data,
    flags,
    self_metrics,
    target_of,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import seconds_since

RELOAD_OK = "prometheus_config_last_reload_successful"
RELOAD_AT = "prometheus_config_last_reload_success_timestamp_seconds"

_POSITIONED = re.compile(r"^(?P<file>/?[^\s:][^:]*?): (?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")
_WITH_FILE = re.compile(r"^(?P<file>/?[^\s:][^:]*?\.ya?ml): (?P<msg>.+)$")
_PARSING = re.compile(r"^FAILED: parsing YAML file (?P<file>\S+?):? (?P<msg>.+)$")
LINE_NUMBER = re.compile(r"\bline (\d+)\b")


def parse_promtool(output: str) -> list[dict[str, Any]]:
    """Errors of ``promtool check config|rules`` as file, line, column and message.

    promtool prints ``FILE: L:C: message`` for a bad expression, ``FILE: yaml: line L: ...`` for
    broken YAML, ``FAILED: parsing YAML file FILE: ...`` for the main config, with
    ``line L: ...`` continuation lines for unmarshal errors.
    """
    errors: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in output.splitlines():
        text = raw.strip()
        if not text or text.startswith(("Checking ", "SUCCESS")) or text == "FAILED:":
            current = None
            continue
        match = _POSITIONED.match(text) or _PARSING.match(text) or _WITH_FILE.match(text)
        if match:
            found = match.groupdict()
            line = found.get("line") or next(iter(LINE_NUMBER.findall(found["msg"])), None)
            current = {
                "file": found["file"],
                "line": int(line) if line else None,
                "column": int(found["col"]) if found.get("col") else None,
                "message": found["msg"].strip(),
            }
            errors.append(current)
        elif current is not None:  # a continuation line of the error above
            if current["line"] is None and (continued := LINE_NUMBER.search(text)):
                current["line"] = int(continued.group(1))
            current["message"] = f"{current['message']} {text}"
    unique: list[dict[str, Any]] = []
    for error in errors:  # promtool repeats some errors
        if error not in unique:
            unique.append(error)
    return unique


async def reload_state(ctx: ToolContext[Any]) -> dict[str, Any]:
    api = api_for(ctx)
    info = await data(api, "/api/v1/status/runtimeinfo")
    given = await flags(api)
    gauges = await self_metrics(api, RELOAD_OK, RELOAD_AT)
    target = target_of(ctx)
    lifecycle = target.lifecycle
    if lifecycle is None:
        lifecycle = given.get("web.enable-lifecycle") == "true"
    ok = gauges.get(RELOAD_OK)
    success_at = gauges.get(RELOAD_AT)
    return {
        "reload_successful": bool(ok) if ok is not None else bool(info.get("reloadConfigSuccess")),
        "last_success_time": success_at,
        "last_success_age": seconds_since(success_at) if success_at else None,
        "last_config_time": info.get("lastConfigTime"),
        "config_file": str(target.config_file or given.get("config.file", "")),
        "lifecycle": lifecycle,
        "start_time": info.get("startTime"),
    }


@TOOLSET.read(
    "config_status",
    "Whether the last configuration reload succeeded (prometheus_config_last_reload_successful), "
    "when the config last loaded, the config file and whether /-/reload is enabled.",
    needs_resource=False,
)
async def config_status(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    state = await reload_state(ctx)
    state["_summary"] = (
        f"last reload {'succeeded' if state['reload_successful'] else 'FAILED'}"
        f" ({state['config_file'] or 'config file unknown'})"
    )
    return state


@TOOLSET.read(
    "check_config",
    "Run promtool check config on the server's config file (and every rule file it names) where "
    "it lives (locally, or over the target's ssh): each error with its file and line.",
    needs_resource=False,
)
async def check_config(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    path = str(target.config_file or (await flags(api_for(ctx))).get("config.file", ""))
    if not path:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"prometheus {target.name}: no config_file configured and the server reports none",
        )
    run = await run_on(target.ssh, ["promtool", "check", "config", path], limit=60)
    output = f"{run.stdout}\n{run.stderr}"
    errors = parse_promtool(output)
    if run.exit_status != 0 and not errors:
        errors = [{"file": path, "line": None, "column": None, "message": run.tail(300)}]
    first = errors[0] if errors else None
    where = (
        f"{first['file']}"
        + (f":{first['line']}" if first["line"] else "")
        + f": {first['message']}"
        if first
        else ""
    )
    return {
        "ok": run.exit_status == 0,
        "config_file": path,
        "errors": errors[:20],
        "files": sorted({e["file"] for e in errors}),
        "first_error": where,
        "_summary": ("config valid" if run.exit_status == 0 else f"promtool: {where}")[:300],
    }


@TOOLSET.write(
    "reload",
    "Reload the configuration (POST /-/reload; needs --web.enable-lifecycle) and confirm it "
    "took: prometheus_config_last_reload_successful is 1 afterwards.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=reload_state,
    preview=lambda ctx, b: (
        f"POST /-/reload on prometheus {ctx.ref.target} (config {b['config_file'] or '?'}; "
        f"last reload {'succeeded' if b['reload_successful'] else 'failed'})"
    ),
    needs_resource=False,
)
async def reload(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    before = ctx.before or await reload_state(ctx)
    if not before.get("lifecycle"):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"prometheus {ctx.ref.target} runs without --web.enable-lifecycle: /-/reload is off "
            "(send it SIGHUP, or enable the flag)",
        )
    try:
        await api_for(ctx).post("/-/reload")
    except ToolFailure as failure:
        if failure.kind is ToolErrorKind.FAILED:  # 500: Prometheus says why the config was refused
            raise ToolFailure(
                ToolErrorKind.FAILED, f"Prometheus refused the configuration: {failure.message}"
            ) from failure
        raise
    after = await reload_state(ctx)
    if not after["reload_successful"]:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{RELOAD_OK} is still 0 after /-/reload on prometheus {ctx.ref.target}",
        )
    return {
        "before": {k: before.get(k) for k in ("reload_successful", "last_success_time")},
        "after": after,
        "_summary": f"reloaded prometheus {ctx.ref.target}: {RELOAD_OK} = 1",
    }
