"""restic: the argument vectors and what their output means (restic 0.14+, ``--json``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from activities.catalog import ToolFailure
from activities.toolsets.backups.client import Repo, error_lines, failure, run, run_ok
from activities.toolsets.commands import CommandResult
from core.models import ToolErrorKind
from core.targets import PrunePolicy


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 times with nanoseconds (Python keeps microseconds)."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    when = datetime.fromisoformat(trimmed)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _json(result: CommandResult, repo: Repo, what: str) -> Any:
    """The JSON document of stdout (restic prints "reading repository password from stdin" to
    stdout before it when the password comes on stdin)."""
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line[:1] in ("[", "{")), len(lines))
    try:
        return json.loads("\n".join(lines[start:]) or "null")
    except json.JSONDecodeError as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"{what} of {repo.label}: restic printed no JSON ({exc})"
        ) from exc


def snapshot_row(raw: dict[str, Any]) -> dict[str, Any]:
    when = parse_time(str(raw.get("time")))
    return {
        "id": raw.get("id"),
        "short_id": raw.get("short_id") or str(raw.get("id", ""))[:8],
        "time": when.isoformat(),
        "epoch": when.timestamp(),
        "host": raw.get("hostname"),
        "user": raw.get("username"),
        "tags": raw.get("tags") or [],
        "paths": raw.get("paths") or [],
        "name": raw.get("short_id") or str(raw.get("id", ""))[:8],
    }


async def snapshots(repo: Repo, host: str | None, tag: str | None) -> list[dict[str, Any]]:
    args = ["snapshots", "--json", "--no-lock"]
    if host:
        args += ["--host", host]
    if tag:
        args += ["--tag", tag]
    result = await run_ok(repo, args, limit=300, what="listing snapshots")
    return [snapshot_row(s) for s in _json(result, repo, "listing snapshots") or []]


async def check(repo: Repo, read_data: bool, subset: str | None, limit: float) -> dict[str, Any]:
    args = ["check"]
    if read_data:
        args.append("--read-data")
    elif subset:
        args.append(f"--read-data-subset={subset}")
    result = await run(repo, args, limit=limit)
    output = f"{result.stdout}\n{result.stderr}"
    if result.ok:
        return {"ok": True, "errors": [], "seconds": round(result.seconds, 2)}
    if "repository contains errors" in output or "check failed" in output.lower():
        return {"ok": False, "errors": error_lines(output), "seconds": round(result.seconds, 2)}
    raise failure(repo, result, "check")


async def stats(repo: Repo, restore: bool = True) -> dict[str, Any]:
    """Stored bytes (raw data); with ``restore`` also what a full restore would write."""
    args = ["stats", "--json", "--no-lock"]
    raw = await run_ok(repo, [*args, "--mode", "raw-data"], limit=600, what="stats")
    data = _json(raw, repo, "stats")
    out = {
        "snapshots": data.get("snapshots_count"),
        "stored_bytes": data.get("total_size"),
        "blobs": data.get("total_blob_count"),
    }
    if restore:
        files = _json(await run_ok(repo, args, limit=600, what="stats"), repo, "stats")
        out.update(
            {"restore_bytes": files.get("total_size"), "files": files.get("total_file_count")}
        )
    return out


async def locks(repo: Repo) -> list[dict[str, Any]]:
    listed = await run_ok(repo, ["list", "locks", "--no-lock"], limit=120, what="listing locks")
    ids = [
        line.strip()
        for line in listed.stdout.splitlines()
        if re.fullmatch(r"[0-9a-f]{64}", line.strip())
    ]
    rows = []
    for lock_id in ids:
        shown = await run(repo, ["cat", "lock", lock_id, "--no-lock"], limit=60)
        if not shown.ok:  # removed between list and cat: gone, not a lock
            continue
        raw = _json(shown, repo, "reading a lock") or {}
        when = parse_time(str(raw.get("time"))) if raw.get("time") else None
        rows.append(
            {
                "id": lock_id[:8],
                "exclusive": bool(raw.get("exclusive")),
                "host": raw.get("hostname"),
                "pid": raw.get("pid"),
                "user": raw.get("username"),
                "time": when.isoformat() if when else None,
                "epoch": when.timestamp() if when else None,
            }
        )
    return rows


async def encryption(repo: Repo) -> dict[str, Any]:
    result = await run_ok(
        repo, ["key", "list", "--json", "--no-lock"], limit=120, what="listing keys"
    )
    keys = _json(result, repo, "listing keys") or []
    current: dict[str, Any] = next((k for k in keys if k.get("current")), {})
    return {
        "encrypted": True,  # restic has no unencrypted repositories
        "mode": "restic (AES-256-CTR + Poly1305-AES)",
        "keys": len(keys),
        "key_present": bool(current),
        "current_key": {
            "id": current.get("id"),
            "user": current.get("userName"),
            "host": current.get("hostName"),
            "created": current.get("created"),
        }
        if current
        else None,
    }


async def unlock(repo: Repo, limit: float) -> CommandResult:
    """``restic unlock``: removes only stale locks (restic's own rule), never live ones."""
    return await run_ok(repo, ["unlock"], limit=limit, what="unlock")


async def prune_plan(repo: Repo, policy: PrunePolicy) -> list[dict[str, Any]]:
    """The snapshots ``forget`` with the policy would remove (a dry run, no lock)."""
    args = ["forget", "--dry-run", "--json", "--no-lock", *policy.flags()]
    result = await run_ok(repo, args, limit=300, what="planning prune")
    groups = _json(result, repo, "planning prune") or []
    return [snapshot_row(s) for group in groups for s in group.get("remove") or []]


async def remove(repo: Repo, snapshots: list[dict[str, Any]], limit: float) -> CommandResult:
    """Forget exactly these snapshots and prune the data only they referenced."""
    ids = [str(s["id"]) for s in snapshots]
    return await run_ok(repo, ["forget", *ids, "--prune"], limit=limit, what="prune")
