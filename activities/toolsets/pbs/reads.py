"""PBS read tools: datastores, snapshots, last backups, verify results, sync and prune jobs."""

from __future__ import annotations

import time
from typing import Any, Literal

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import MaxAgeParams, NoParams, ToolContext, ToolFailure
from activities.toolsets.pbs.client import TOOLSET, client_for, scope, task_status
from core.models import ToolErrorKind
from core.units import human_bytes, human_duration, seconds_since


class StoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warn_percent: float = Field(default=85, gt=0, le=100)


@TOOLSET.read(
    "datastores",
    "Datastore usage, the server's estimated full date, and garbage-collection results.",
    StoreParams,
    needs_resource=False,
)
def datastores(ctx: ToolContext[StoreParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stores, _, _ = scope(ctx)
    usage = {str(u.get("store")): u for u in client.get("status/datastore-usage") or []}
    rows: list[dict[str, Any]] = []
    now = time.time()
    for store in stores:
        status = client.get(f"admin/datastore/{store}/status", verbose=1) or {}
        gc = status.get("gc-status") or client.get(f"admin/datastore/{store}/gc") or {}
        total, used = int(status.get("total") or 0), int(status.get("used") or 0)
        percent = round(used / total * 100, 2) if total else None
        full = (usage.get(store) or {}).get("estimated-full-date")
        last_gc = task_status(client, gc.get("upid"))
        rows.append(
            {
                "store": store,
                "total": total,
                "used": used,
                "avail": int(status.get("avail") or 0),
                "used_percent": percent,
                "over": bool(percent is not None and percent >= ctx.params.warn_percent),
                "estimated_full_date": full if full and full > 0 else None,
                "days_until_full": round((full - now) / 86400, 1) if full and full > now else None,
                "gc": {
                    "upid": gc.get("upid"),
                    "last_run": last_gc,
                    "ok": last_gc["ok"] if last_gc else None,
                    "removed_bytes": gc.get("removed-bytes"),
                    "pending_bytes": gc.get("pending-bytes"),
                    "disk_bytes": gc.get("disk-bytes"),
                    "index_data_bytes": gc.get("index-data-bytes"),
                    "still_bad": gc.get("still-bad", 0),
                    "removed_bad": gc.get("removed-bad", 0),
                },
                "counts": status.get("counts") or {},
            }
        )
    over = [r["store"] for r in rows if r["over"]]
    gc_failed = [r["store"] for r in rows if r["gc"]["ok"] is False]
    bad = [r["store"] for r in rows if r["gc"]["still_bad"]]
    return {
        "datastores": rows,
        "count": len(rows),
        "over": over,
        "gc_failed": gc_failed,
        "bad_chunks": bad,
        "_summary": ", ".join(
            f"{r['store']} {r['used_percent']}% of {human_bytes(r['total'])}" for r in rows
        )
        + (f"; GC failed on {', '.join(gc_failed)}" if gc_failed else ""),
    }


class SnapshotsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backup_type: Literal["ct", "vm", "host"] | None = None
    backup_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    per_group: int = Field(default=10, ge=1, le=1000, description="newest snapshots per group")


@TOOLSET.read(
    "snapshots",
    "Backup snapshots per group (ct/200, vm/100, host/x) with age, size and verification.",
    SnapshotsParams,
    needs_resource=False,
)
def snapshots(ctx: ToolContext[SnapshotsParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stores, kind, ident = scope(ctx)
    kind = kind or (ctx.params.backup_type or "")
    ident = ident or (ctx.params.backup_id or "")
    now = time.time()
    groups: list[dict[str, Any]] = []
    for store in stores:
        query: dict[str, Any] = {}
        if kind:
            query["backup-type"] = kind
        if ident:
            query["backup-id"] = ident
        by_group: dict[str, list[dict[str, Any]]] = {}
        for snap in client.get(f"admin/datastore/{store}/snapshots", **query) or []:
            key = f"{snap.get('backup-type')}/{snap.get('backup-id')}"
            by_group.setdefault(key, []).append(snap)
        for key, snaps in sorted(by_group.items()):
            snaps.sort(key=lambda s: s.get("backup-time", 0), reverse=True)
            verified = [s for s in snaps if (s.get("verification") or {}).get("state") == "ok"]
            failed = [s for s in snaps if (s.get("verification") or {}).get("state") == "failed"]
            groups.append(
                {
                    "datastore": store,
                    "group": key,
                    "count": len(snaps),
                    "newest": snaps[0].get("backup-time"),
                    "newest_age_seconds": seconds_since(snaps[0].get("backup-time"), now),
                    "oldest": snaps[-1].get("backup-time"),
                    "verified": len(verified),
                    "verify_failed": len(failed),
                    "unverified": len(snaps) - len(verified) - len(failed),
                    "snapshots": [
                        {
                            "time": s.get("backup-time"),
                            "age_seconds": seconds_since(s.get("backup-time"), now),
                            "size": s.get("size"),
                            "verification": (s.get("verification") or {}).get("state"),
                            "protected": bool(s.get("protected")),
                            "comment": s.get("comment"),
                        }
                        for s in snaps[: ctx.params.per_group]
                    ],
                }
            )
    if (kind and ident) and not groups:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no backups of {kind}/{ident} in {', '.join(stores)}"
        )
    total = sum(g["count"] for g in groups)
    return {
        "groups": groups,
        "count": len(groups),
        "snapshots": total,
        "_summary": f"{len(groups)} backup groups, {total} snapshots"
        + (
            f"; {groups[0]['group']} newest {human_duration(groups[0]['newest_age_seconds'])} old"
            if len(groups) == 1
            else ""
        ),
    }


@TOOLSET.read(
    "last_backups",
    "The newest backup of every guest (ct/vm groups) and which are older than max_age.",
    MaxAgeParams,
    needs_resource=False,
)
def last_backups(ctx: ToolContext[MaxAgeParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stores, kind, ident = scope(ctx)
    now = time.time()
    newest: dict[str, dict[str, Any]] = {}
    for store in stores:
        for group in client.get(f"admin/datastore/{store}/groups") or []:
            gtype, gid = group.get("backup-type"), str(group.get("backup-id"))
            if gtype not in ("ct", "vm") or (kind and (gtype != kind or gid != ident)):
                continue
            key = f"{gtype}/{gid}"
            last = group.get("last-backup") or 0
            if key not in newest or last > newest[key]["last_backup"]:
                newest[key] = {
                    "group": key,
                    "type": gtype,
                    "vmid": int(gid) if gid.isdigit() else gid,
                    "datastore": store,
                    "last_backup": last,
                    "count": group.get("backup-count"),
                }
    rows = sorted(newest.values(), key=lambda r: r["group"])
    for row in rows:
        row["age_seconds"] = seconds_since(row["last_backup"], now)
        row["stale"] = row["age_seconds"] is None or row["age_seconds"] > ctx.params.max_age_seconds
    stale = [r["group"] for r in rows if r["stale"]]
    data: dict[str, Any] = {
        "guests": rows,
        "count": len(rows),
        "stale": stale,
        "max_age": ctx.params.max_age,
        "_summary": f"{len(rows)} guests backed up, {len(stale)} older than {ctx.params.max_age}",
    }
    if kind:
        if not rows:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no backups of {kind}/{ident}")
        data.update({k: rows[0][k] for k in ("last_backup", "age_seconds", "stale", "count")})
        data["_summary"] = (
            f"{kind}/{ident}: newest backup {human_duration(rows[0]['age_seconds'])} old"
        )
    return data


def _job_rows(client: ProxmoxAPI, path: str, kind: str, stores: list[str]) -> list[dict[str, Any]]:
    try:
        jobs = client.get(path) or []
    except ResourceException as exc:
        if exc.status_code in (404, 501):  # an older PBS without this job type
            return []
        raise
    rows = []
    for job in jobs:
        if job.get("store") and job.get("store") not in stores:
            continue
        state = job.get("last-run-state")
        rows.append(
            {
                "kind": kind,
                "id": job.get("id"),
                "store": job.get("store"),
                "schedule": job.get("schedule"),
                "disabled": bool(job.get("disable")),
                "remote": job.get("remote"),
                "remote_store": job.get("remote-store"),
                "last_run_state": state,
                "last_run_endtime": job.get("last-run-endtime"),
                "last_run_upid": job.get("last-run-upid"),
                "next_run": job.get("next-run"),
                "ok": None if state is None else state == "OK",
            }
        )
    return rows


@TOOLSET.read(
    "verify",
    "Verify jobs' last results, and backup snapshots whose verification failed or never ran.",
    needs_resource=False,
)
def verify(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stores, _, _ = scope(ctx)
    jobs = _job_rows(client, "admin/verify", "verify", stores)
    failed_snapshots = []
    unverified = 0
    for store in stores:
        for snap in client.get(f"admin/datastore/{store}/snapshots") or []:
            state = (snap.get("verification") or {}).get("state")
            if state == "failed":
                failed_snapshots.append(
                    {
                        "datastore": store,
                        "group": f"{snap.get('backup-type')}/{snap.get('backup-id')}",
                        "time": snap.get("backup-time"),
                    }
                )
            elif state is None:
                unverified += 1
    failed_jobs = [j["id"] for j in jobs if j["ok"] is False]
    return {
        "jobs": jobs,
        "failed_jobs": failed_jobs,
        "failed_snapshots": failed_snapshots,
        "unverified_snapshots": unverified,
        "ok": not failed_jobs and not failed_snapshots,
        "_summary": f"{len(jobs)} verify jobs ({len(failed_jobs)} failed), "
        f"{len(failed_snapshots)} snapshots failed verification, {unverified} never verified",
    }


@TOOLSET.read("jobs", "Sync and prune jobs: schedule, last result, next run.", needs_resource=False)
def jobs(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    stores, _, _ = scope(ctx)
    rows = _job_rows(client, "admin/sync", "sync", stores) + _job_rows(
        client, "admin/prune", "prune", stores
    )
    failed = [f"{r['kind']}:{r['id']}" for r in rows if r["ok"] is False]
    return {
        "jobs": rows,
        "count": len(rows),
        "failed": failed,
        "ok": not failed,
        "_summary": f"{len(rows)} sync/prune jobs, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else ""),
    }
