"""Disks: what fills a mount, and the two safe ways to free one (logrotate, journal vacuum)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.hosts.client import TOOLSET, abs_path, run, target_of, where
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.targets import HostTarget
from core.units import human_bytes, parse_size

JOURNAL_DIR = "/var/log/journal"
_JOURNAL_USAGE = re.compile(r"take up ([\d.]+)\s*([KMGTPE]?)B?\b", re.IGNORECASE)
_FREED = re.compile(r"freed ([\d.]+)\s*([KMGTPE]?)B?\b", re.IGNORECASE)
_CONSIDERING = re.compile(r"^considering log (.+)$")
SCAN_LIMIT = 10.0
"""Seconds du and find each get: a diagnostic must fit its activity's timeout, so a huge mount
gives a partial picture with a note rather than no picture."""


class DiskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mountpoint: str | None = Field(default=None, description="the alerted mount; unset: df only")
    top: int = Field(default=10, ge=1, le=50, description="directories and files listed")
    min_file_size: str = Field(default="1m", description="smallest file listed (1m, 100m)")
    scan: bool = Field(default=True, description="du/find the mount (off for quick re-checks)")

    @field_validator("min_file_size")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value


class RotateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str = Field(description="a logrotate config listed in the host's `logrotate`")


class VacuumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_size: str = Field(default="512m", description="shrink the journal to this (512m, 1g)")

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value


def _bytes(number: str, unit: str) -> int:
    return int(float(number) * 1024 ** "BKMGTPE".index((unit or "B").upper()))


def parse_df(text: str) -> list[dict[str, Any]]:
    """``df -PT -B1``: one row per filesystem (the mountpoint may contain spaces)."""
    rows = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 6)
        if len(parts) < 7 or not parts[2].isdigit():
            continue
        size, used, avail = int(parts[2]), int(parts[3]), int(parts[4])
        total = used + avail
        rows.append(
            {
                "device": parts[0],
                "fstype": parts[1],
                "size": size,
                "used": used,
                "avail": avail,
                "used_percent": round(100 * used / total, 1) if total else 0.0,
                "free_percent": round(100 * avail / size, 1) if size else 0.0,
                "mountpoint": parts[6],
            }
        )
    return rows


def mount_of(path: str, mounts: list[str]) -> str | None:
    """The mount holding ``path``: the longest mountpoint that is a prefix of it."""
    best = None
    for mount in mounts:
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > len(best)):
            best = mount
    return best


def _sized_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for line in text.splitlines():
        size, _, path = line.partition("\t")
        if size.strip().isdigit() and path:
            out.append((int(size), path))
    return out


async def filesystems(ctx: ToolContext[Any]) -> list[dict[str, Any]]:
    done = await run(ctx, ["df", "-PT", "-B1"])
    rows = parse_df(done.stdout)
    if not rows:
        done.check("df")
        raise ToolFailure(ToolErrorKind.FAILED, f"df on {where(ctx)} listed no filesystems")
    return rows


async def logrotate_files(ctx: ToolContext[Any], config: str) -> list[dict[str, Any]]:
    """The logs a config rotates (``logrotate -d``: a dry run) and their sizes now.

    logrotate exits 0 when it ignores a config (group/world-writable, a bad directive): its
    ``error:`` lines make that a FAILED here, naming the reason.
    """
    target = target_of(ctx)
    argv = ["logrotate", "-d"]
    if target.logrotate_state is not None:
        argv += ["-s", str(target.logrotate_state)]
    done = await run(ctx, [*argv, config])
    output = f"{done.stdout}\n{done.stderr}"
    if "No such file" in output and config in output and "considering" not in output:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"logrotate config {config} is missing on {where(ctx)}"
        )
    errors = [line.strip() for line in output.splitlines() if line.startswith("error:")]
    if errors:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"logrotate {config} on {where(ctx)}: {'; '.join(errors)[:400]}"
        )
    paths = []
    for line in output.splitlines():
        match = _CONSIDERING.match(line.strip())
        if match and match.group(1) not in paths:
            paths.append(match.group(1))
    if not paths:
        return []
    stat = await run(ctx, ["stat", "-c", "%s\t%n", "--", *paths])
    sizes = {path: size for size, path in _sized_lines(stat.stdout)}
    return [{"path": p, "size": sizes[p]} for p in paths if p in sizes]


async def journal_usage(ctx: ToolContext[Any]) -> int:
    done = await run(ctx, ["journalctl", "--disk-usage"])
    match = _JOURNAL_USAGE.search(f"{done.stdout}\n{done.stderr}")
    if not match:
        done.check("journalctl --disk-usage")
        raise ToolFailure(
            ToolErrorKind.FAILED, f"journalctl --disk-usage on {where(ctx)}: {done.tail(200)}"
        )
    return _bytes(match.group(1), match.group(2))


async def _scan(ctx: ToolContext[DiskParams], mount: str) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": []}
    try:
        du = await run(ctx, ["du", "-x", "-B1", "-d", "1", "--", mount], limit=SCAN_LIMIT)
        dirs = sorted((s, p) for s, p in _sized_lines(du.stdout) if p != mount)[::-1]
        out["top_dirs"] = [{"path": p, "size": s} for s, p in dirs[: ctx.params.top]]
    except ToolFailure as failure:
        out["top_dirs"] = []
        out["notes"].append(f"du: {failure.message}")
    kib = max(parse_size(ctx.params.min_file_size) // 1024, 1)
    try:
        found = await run(
            ctx,
            ["find", mount, "-xdev", "-type", "f", "-size", f"+{kib}k", "-printf", "%s\\t%p\\n"],
            limit=SCAN_LIMIT,
        )
        files = sorted(_sized_lines(found.stdout))[::-1]
        out["largest_files"] = [{"path": p, "size": s} for s, p in files[: ctx.params.top]]
    except ToolFailure as failure:
        out["largest_files"] = []
        out["notes"].append(f"find: {failure.message}")
    return out


async def _rotatable(
    ctx: ToolContext[Any], target: HostTarget, mount: str, mounts: list[str]
) -> dict[str, Any]:
    configs: list[dict[str, Any]] = []
    for config in target.logrotate:
        try:
            covered = await logrotate_files(ctx, str(config))
        except ToolFailure as failure:  # one unusable config must not hide the others
            configs.append(
                {"config": str(config), "files": [], "size": 0, "error": failure.message}
            )
            continue
        files = [f for f in covered if mount_of(f["path"], mounts) == mount]
        configs.append(
            {"config": str(config), "files": files, "size": sum(f["size"] for f in files)}
        )
    configs.sort(key=lambda c: -c["size"])
    return {
        "configs": configs,
        "size": sum(c["size"] for c in configs),
        "best_config": configs[0]["config"] if configs and configs[0]["size"] else None,
    }


@TOOLSET.read(
    "disk_usage",
    "Filesystems (df); on the alerted mount: its top directories and largest files, what the "
    "host's logrotate configs and the journal could free there.",
    DiskParams,
    needs_resource=False,
    timeout=timedelta(minutes=5),
)
async def disk_usage(ctx: ToolContext[DiskParams]) -> dict[str, Any]:
    rows = await filesystems(ctx)
    out: dict[str, Any] = {"filesystems": rows}
    if not ctx.params.mountpoint:
        fullest = max(rows, key=lambda r: r["used_percent"])
        out["_summary"] = (
            f"{len(rows)} filesystems; fullest {fullest['mountpoint']} {fullest['used_percent']}%"
        )
        return out
    wanted = abs_path(ctx.params.mountpoint, "mountpoint")
    mount = next((r for r in rows if r["mountpoint"] == wanted), None)
    if mount is None:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"no filesystem mounted at {wanted} on {where(ctx)} "
            f"(mounted: {', '.join(r['mountpoint'] for r in rows[:20])})",
        )
    target = target_of(ctx)
    mounts = [r["mountpoint"] for r in rows]
    out.update(mount)
    out["filesystems"] = [r for r in rows if r["mountpoint"] == wanted]
    if ctx.params.scan:
        out.update(await _scan(ctx, wanted))
        out["rotatable"] = await _rotatable(ctx, target, wanted, mounts)
        journal_on_mount = mount_of(JOURNAL_DIR, mounts) == wanted
        usage = await journal_usage(ctx) if journal_on_mount else 0
        out["journal"] = {
            "on_mount": journal_on_mount,
            "size": usage,
            "vacuumable": max(usage - target.journal_min_size, 0) if journal_on_mount else 0,
        }
    out["_summary"] = (
        f"{wanted} on {where(ctx)}: {out['used_percent']}% used, {human_bytes(out['avail'])} free"
        + (
            f"; logrotate could free up to {human_bytes(out['rotatable']['size'])}"
            if ctx.params.scan and out["rotatable"]["size"]
            else ""
        )
    )
    return out


def _config(ctx: ToolContext[RotateParams]) -> str:
    path = abs_path(ctx.params.config, "logrotate config")
    allowed = [str(p) for p in target_of(ctx).logrotate]
    if path not in allowed:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{path} is not among host {ctx.ref.target}'s logrotate configs ({', '.join(allowed) or 'none'})",
        )
    return path


async def capture_rotate(ctx: ToolContext[RotateParams]) -> dict[str, Any]:
    config = _config(ctx)
    files = await logrotate_files(ctx, config)
    return {"config": config, "files": files, "size": sum(f["size"] for f in files)}


def preview_rotate(ctx: ToolContext[RotateParams], b: dict[str, Any]) -> str:
    if not b["files"]:
        return f"no-op: {b['config']} rotates no existing log on {where(ctx)}"
    listed = ", ".join(f"{f['path']} ({human_bytes(f['size'])})" for f in b["files"][:5])
    more = f" and {len(b['files']) - 5} more" if len(b["files"]) > 5 else ""
    state = target_of(ctx).logrotate_state
    return (
        f"logrotate -f {'-s ' + str(state) + ' ' if state else ''}{b['config']} on {where(ctx)}: "
        f"rotates {len(b['files'])} log(s), {human_bytes(b['size'])}: {listed}{more} "
        "(rotations beyond the config's `rotate` count are deleted)"
    )


@TOOLSET.write(
    "rotate_logs",
    "Force one of the host's configured logrotate configs now (logrotate -f): its logs are "
    "rotated, compressed and old rotations removed as the config says.",
    RotateParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_rotate,
    preview=preview_rotate,
    is_noop=lambda ctx, b: b["size"] == 0,
    needs_resource=False,
    timeout=timedelta(minutes=10),
)
async def rotate_logs(ctx: ToolContext[RotateParams]) -> dict[str, Any]:
    before = ctx.before or await capture_rotate(ctx)
    target = target_of(ctx)
    argv = ["logrotate", "-f", "-v"]
    if target.logrotate_state is not None:
        argv += ["-s", str(target.logrotate_state)]
    done = await run(ctx, [*argv, before["config"]], limit=max(target.command_timeout, 300))
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    if done.exit_status != 0 or errors:
        # logrotate exits 0 when it ignores an unsafe config: its `error:` lines say so
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"logrotate -f {before['config']} on {where(ctx)}: "
            + ("; ".join(errors) or done.tail(300))[:500],
        )
    after = await logrotate_files(ctx, before["config"])
    size_after = sum(f["size"] for f in after)
    return {
        "config": before["config"],
        "before": before["files"],
        "after": after,
        "rotated_bytes": before["size"] - size_after,
        "_summary": f"rotated {before['config']} on {where(ctx)}: "
        f"{human_bytes(before['size'])} → {human_bytes(size_after)} in the live logs",
    }


async def capture_vacuum(ctx: ToolContext[VacuumParams]) -> dict[str, Any]:
    floor = target_of(ctx).journal_min_size
    wanted = parse_size(ctx.params.max_size)
    if wanted < floor:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"max_size {ctx.params.max_size} is below host {ctx.ref.target}'s journal_min_size "
            f"({human_bytes(floor)})",
        )
    return {"size": await journal_usage(ctx), "max_size": wanted}


@TOOLSET.write(
    "journal_vacuum",
    "Shrink the systemd journal's archived files to a size (journalctl --vacuum-size), never "
    "below the host's journal_min_size.",
    VacuumParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_vacuum,
    preview=lambda ctx, b: (
        f"journalctl --vacuum-size={b['max_size']} on {where(ctx)}: journal "
        f"{human_bytes(b['size'])} → at most {human_bytes(b['max_size'])} (oldest archived files deleted)"
    ),
    is_noop=lambda ctx, b: b["size"] <= b["max_size"],
    needs_resource=False,
)
async def journal_vacuum(ctx: ToolContext[VacuumParams]) -> dict[str, Any]:
    before = ctx.before or await capture_vacuum(ctx)
    done = await run(ctx, ["journalctl", f"--vacuum-size={before['max_size']}"])
    done.check("journalctl --vacuum-size")
    freed = sum(_bytes(n, u) for n, u in _FREED.findall(f"{done.stdout}\n{done.stderr}"))
    after = await journal_usage(ctx)
    return {
        "before": before["size"],
        "after": after,
        "freed": freed or max(before["size"] - after, 0),
        "_summary": f"journal on {where(ctx)}: {human_bytes(before['size'])} → {human_bytes(after)}",
    }
