"""Backup repository writes: remove stale locks, prune per the configured policy, and read all
the data on demand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.backups.client import TOOLSET, repo_of
from activities.toolsets.backups.reads import kind_of, lock_report
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes, human_duration


async def capture_locks(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return await lock_report(repo_of(ctx))


def _unlock_preview(ctx: ToolContext[NoParams], before: dict[str, Any]) -> str:
    repo = repo_of(ctx)
    stale = [lock for lock in before["locks"] if lock["stale"]]
    if not stale:
        return f"no-op: {repo.name} has no stale lock ({before['count']} lock(s))"
    command = "restic unlock" if repo.kind == "restic" else "borg break-lock"
    described = ", ".join(
        f"{lock['id']} ({'exclusive' if lock['exclusive'] else 'shared'}, {lock['host']} pid "
        f"{lock['pid']}, {lock['why']})"
        for lock in stale
    )
    return (
        f"{command} on {repo.label}: removes {len(stale)} stale lock(s): {described}; "
        f"{before['active_count']} live lock(s) stay"
    )


@TOOLSET.write(
    "unlock",
    "Remove a repository's stale locks (left by a killed backup; they block the next one). "
    "Live locks are never removed: borg's break-lock removes all, so it is refused while one is live.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_locks,
    preview=_unlock_preview,
    is_noop=lambda ctx, before: before["stale_count"] == 0,
    timeout=timedelta(minutes=10),
)
async def unlock(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    now = await lock_report(repo)
    if now["stale_count"] == 0:
        return {**now, "removed": [], "_summary": f"{repo.name}: no stale lock left"}
    if repo.kind == "borg" and now["active_count"]:
        live = next(lock for lock in now["locks"] if not lock["stale"])
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"{repo.name}: a live lock is held ({live['id']}, {live['host']} pid {live['pid']}); "
            "borg break-lock would remove it too",
        )
    await kind_of(repo).unlock(repo, repo.spec.timeout.total_seconds())
    after = await lock_report(repo)
    removed = [i for i in now["stale_ids"] if i not in {lock["id"] for lock in after["locks"]}]
    if after["stale_count"]:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{repo.name}: {after['stale_count']} stale lock(s) remain after unlock "
            f"({', '.join(after['stale_ids'])}; {repo.kind} keeps locks it does not consider stale)",
        )
    return {
        **after,
        "removed": removed,
        "_summary": f"{repo.name}: removed {len(removed)} stale lock(s); {after['count']} left",
    }


async def capture_prune(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    policy = repo.spec.prune
    if policy is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{repo.name}: no prune policy is configured (prune:)"
        )
    kind = kind_of(repo)
    listed = await kind.snapshots(repo, None, None)
    remove = await kind.prune_plan(repo, policy)
    stats = await kind.stats(repo, restore=False)
    return {
        "repository": repo.name,
        "kind": repo.kind,
        "policy": " ".join(policy.flags()),
        "snapshots": len(listed),
        "remove": [{k: s[k] for k in ("id", "short_id", "name", "time", "host")} for s in remove],
        "keep": len(listed) - len(remove),
        "stored_bytes": stats.get("stored_bytes"),
    }


def _prune_preview(ctx: ToolContext[NoParams], before: dict[str, Any]) -> str:
    repo = repo_of(ctx)
    remove = before["remove"]
    if not remove:
        return f"no-op: {repo.name}'s policy ({before['policy']}) removes no snapshot"
    names = ", ".join(f"{s['short_id']} {s['time'][:19]}" for s in remove[:10])
    more = f" and {len(remove) - 10} more" if len(remove) > 10 else ""
    command = (
        "restic forget <these ids> --prune"
        if repo.kind == "restic"
        else "borg delete <these archives>, then borg compact"
    )
    return (
        f"{command} on {repo.label}: removes {len(remove)} of {before['snapshots']} snapshot(s) "
        f"per {before['policy']}: {names}{more}; keeps {before['keep']}; "
        f"{human_bytes(before['stored_bytes'])} stored now; irreversible"
    )


@TOOLSET.write(
    "prune",
    "Remove the snapshots the configured prune policy does not keep, exactly those shown in the "
    "preview, and free the data only they used (restic forget --prune; borg delete + compact).",
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_prune,
    preview=_prune_preview,
    is_noop=lambda ctx, before: not before["remove"],
    timeout=timedelta(hours=2),
)
async def prune(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    before = ctx.before or await capture_prune(ctx)
    kind = kind_of(repo)
    present = {s["id"] for s in await kind.snapshots(repo, None, None)}
    todo = [s for s in before["remove"] if s["id"] in present]  # a retry: some may be gone
    if todo:
        await kind.remove(repo, todo, repo.spec.timeout.total_seconds())
    left = await kind.snapshots(repo, None, None)
    stats = await kind.stats(repo, restore=False)
    still = [s["short_id"] for s in todo if s["id"] in {x["id"] for x in left}]
    if still:
        raise ToolFailure(ToolErrorKind.FAILED, f"{repo.name}: still holds {', '.join(still)}")
    return {
        "repository": repo.name,
        "removed": [s["short_id"] for s in before["remove"]],
        "removed_now": len(todo),
        "snapshots": len(left),
        "stored_bytes_before": before["stored_bytes"],
        "stored_bytes": stats.get("stored_bytes"),
        "_summary": f"{repo.name}: removed {len(before['remove'])} snapshot(s), {len(left)} left, "
        f"{human_bytes(before['stored_bytes'])} → {human_bytes(stats.get('stored_bytes'))}",
    }


async def capture_read(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    stats = await kind_of(repo).stats(repo, restore=False)
    return {"repository": repo.name, "kind": repo.kind, "stored_bytes": stats.get("stored_bytes")}


def _read_preview(ctx: ToolContext[NoParams], before: dict[str, Any]) -> str:
    repo = repo_of(ctx)
    command = "restic check --read-data" if repo.kind == "restic" else "borg check --verify-data"
    return (
        f"{command} on {repo.label}: reads and verifies all {human_bytes(before['stored_bytes'])} "
        f"of stored data (download costs on remote backends; the repository is locked "
        f"exclusively meanwhile, up to {human_duration(repo.spec.timeout.total_seconds())})"
    )


@TOOLSET.write(
    "check_read_data",
    "Read and verify every byte of a repository (restic check --read-data, borg check "
    "--verify-data); fails with the damaged packs or segments when the data is not intact.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_read,
    preview=_read_preview,
    timeout=timedelta(hours=12),
)
async def check_read_data(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    result = await kind_of(repo).check(repo, True, None, repo.spec.timeout.total_seconds())
    if not result["ok"]:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{repo.name}: the data is damaged: {'; '.join(result['errors'][:5])}",
        )
    return {
        "repository": repo.name,
        **result,
        "_summary": f"{repo.name}: read all data in {result['seconds']}s, no errors",
    }
