"""borg 1.2: the argument vectors and what their output means (times shown in UTC)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from activities.catalog import ToolFailure
from activities.toolsets.backups.client import (
    Repo,
    error_lines,
    failure,
    host_command,
    run,
    run_ok,
)
from activities.toolsets.commands import CommandResult
from core.models import ToolErrorKind
from core.targets import PrunePolicy

LIST_FORMAT = "{id}{TAB}{time:%Y-%m-%dT%H:%M:%S}{TAB}{hostname}{TAB}{username}{TAB}{name}{NL}"
_ID = re.compile(r"\[([0-9a-f]{64})\]\s*$")


def _json(result: CommandResult, repo: Repo, what: str) -> Any:
    try:
        return json.loads(result.stdout or "null")
    except json.JSONDecodeError as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"{what} of {repo.label}: borg printed no JSON ({exc})"
        ) from exc


async def snapshots(repo: Repo, host: str | None, tag: str | None) -> list[dict[str, Any]]:
    if tag:
        raise ToolFailure(ToolErrorKind.INVALID, "borg archives have no tags (filter by host)")
    result = await run_ok(
        repo, ["list", "--format", LIST_FORMAT, "{repo}"], limit=300, what="listing archives"
    )
    rows = []
    for line in result.stdout.splitlines():
        parts = line.split("\t", 4)
        if len(parts) != 5:
            continue
        archive_id, stamp, hostname, user, name = parts
        when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        if host and hostname != host:
            continue
        rows.append(
            {
                "id": archive_id,
                "short_id": archive_id[:8],
                "time": when.isoformat(),
                "epoch": when.timestamp(),
                "host": hostname,
                "user": user,
                "tags": [],
                "paths": [],
                "name": name,
            }
        )
    return sorted(rows, key=lambda r: r["epoch"])


async def check(repo: Repo, read_data: bool, subset: str | None, limit: float) -> dict[str, Any]:
    if subset:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            "borg has no --read-data-subset: its check reads every segment (CRC); "
            "backups.check_read_data also verifies the data cryptographically",
        )
    args = ["check", *(["--verify-data"] if read_data else []), "{repo}"]
    result = await run(repo, args, limit=limit)
    output = f"{result.stdout}\n{result.stderr}"
    if result.ok:
        return {"ok": True, "errors": [], "seconds": round(result.seconds, 2)}
    if result.exit_status == 1 and ("errors found" in output or error_lines(output)):
        return {"ok": False, "errors": error_lines(output), "seconds": round(result.seconds, 2)}
    raise failure(repo, result, "check")


async def stats(repo: Repo, restore: bool = True) -> dict[str, Any]:
    """Stored and restore sizes from ``borg info`` (one call gives both)."""
    info = _json(
        await run_ok(repo, ["info", "--json", "{repo}"], limit=600, what="info"), repo, "info"
    )
    listed = await snapshots(repo, None, None)
    totals = (info.get("cache") or {}).get("stats") or {}
    return {
        "snapshots": len(listed),
        "stored_bytes": totals.get("unique_csize"),
        "deduplicated_bytes": totals.get("unique_size"),
        "restore_bytes": totals.get("total_size"),
        "chunks": totals.get("total_unique_chunks"),
    }


async def locks(repo: Repo) -> list[dict[str, Any]]:
    """A local repository's ``lock.roster`` (who holds it) and its lock files' times; for a
    remote one, a 1-second attempt to take the lock (borg offers no other way to see it)."""
    if not repo.is_local_path:
        probe = await run(repo, ["with-lock", "--lock-wait", "1", "{repo}", "true"], limit=120)
        if probe.ok:
            return []
        if "lock" in (probe.stderr + probe.stdout).lower():
            return [
                {
                    "id": "lock",
                    "exclusive": True,
                    "host": None,
                    "pid": None,
                    "user": None,
                    "time": None,
                    "epoch": None,
                }
            ]
        raise failure(repo, probe, "probing the lock")
    base = repo.spec.repository.rstrip("/")
    exists = await host_command(repo, ["test", "-f", f"{base}/config"])
    if not exists.ok:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"{repo.label}: no borg repository at {base} on {exists.where}",
        )
    roster = await host_command(repo, ["cat", "--", f"{base}/lock.roster"])
    if not roster.ok:
        if "No such file" in roster.stderr:
            return []
        raise failure(repo, roster, "reading the lock roster")
    files = await host_command(
        repo,
        ["find", f"{base}/lock.exclusive", "-maxdepth", "1", "-type", "f", "-printf", "%f %T@\\n"],
    )
    mtimes: dict[str, float] = {}
    for line in files.stdout.splitlines():
        name, _, stamp = line.rpartition(" ")
        try:
            mtimes[name] = float(stamp)
        except ValueError:
            continue
    try:
        data = json.loads(roster.stdout or "{}")
    except json.JSONDecodeError:
        data = {}
    rows = []
    for mode in ("exclusive", "shared"):
        for hostid, pid, thread in data.get(mode) or []:
            epoch = mtimes.get(f"{hostid}.{pid}-{thread}")
            rows.append(
                {
                    "id": f"{hostid}.{pid}-{thread}",
                    "exclusive": mode == "exclusive",
                    "host": str(hostid).split("@", 1)[0],
                    "pid": pid,
                    "user": None,
                    "time": datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None,
                    "epoch": epoch,
                }
            )
    return rows


async def encryption(repo: Repo) -> dict[str, Any]:
    info = _json(
        await run_ok(repo, ["info", "--json", "{repo}"], limit=600, what="info"), repo, "info"
    )
    mode = str((info.get("encryption") or {}).get("mode", "unknown"))
    encrypted = mode not in ("none", "authenticated", "authenticated-blake2", "unknown")
    return {
        "encrypted": encrypted,
        "mode": mode,
        "keys": 1 if encrypted else 0,
        "key_present": encrypted,  # borg could not have opened the repository without it
        "key_location": "in the repository"
        if mode.startswith("repokey")
        else ("keyfile on the client" if mode.startswith("keyfile") else None),
    }


async def unlock(repo: Repo, limit: float) -> CommandResult:
    """``borg break-lock``: removes every lock, so the caller makes sure none is live."""
    return await run_ok(repo, ["break-lock", "{repo}"], limit=limit, what="break-lock")


async def prune_plan(repo: Repo, policy: PrunePolicy) -> list[dict[str, Any]]:
    result = await run_ok(
        repo,
        ["prune", "--dry-run", "--list", *policy.flags(), "{repo}"],
        limit=300,
        what="planning prune",
    )
    ids = [
        m.group(1)
        for line in (result.stderr + result.stdout).splitlines()
        if line.startswith("Would prune") and (m := _ID.search(line))
    ]
    listed = {s["id"]: s for s in await snapshots(repo, None, None)}
    return [listed[i] for i in ids if i in listed]


async def remove(repo: Repo, snapshots: list[dict[str, Any]], limit: float) -> CommandResult:
    """Delete exactly these archives, then ``compact`` to free their space (borg 1.2)."""
    names = [str(s["name"]) for s in snapshots]
    await run_ok(repo, ["delete", f"{{repo}}::{names[0]}", *names[1:]], limit=limit, what="delete")
    return await run_ok(repo, ["compact", "{repo}"], limit=limit, what="compact")
