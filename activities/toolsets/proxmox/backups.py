"""Whether each guest has a recent backup, from the backup jobs and (when configured) PBS."""

from __future__ import annotations

import time
from typing import Any

from activities.catalog import MaxAgeParams, ToolContext, ToolFailure
from activities.toolsets.proxmox.client import (
    TOOLSET,
    api_for,
    find_guest,
    parse_resource,
)
from core.models import ToolErrorKind
from core.units import human_duration, seconds_since


def _job_covers(job: dict[str, Any], vmid: int, node: str) -> bool:
    if not job.get("enabled", 1) or str(job.get("enabled", "1")) == "0":
        return False
    if job.get("node") and job.get("node") != node:
        return False
    excluded = {int(v) for v in str(job.get("exclude") or "").split(",") if v.strip().isdigit()}
    if str(job.get("all", "0")) == "1" or job.get("all") is True:
        return vmid not in excluded
    listed = {int(v) for v in str(job.get("vmid") or "").split(",") if v.strip().isdigit()}
    return vmid in listed


def _pbs_evidence(
    ctx: ToolContext[Any],
) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], list[str]]:
    """Last backup per guest on every configured PBS (evidence beyond what PVE lists)."""
    from activities.toolsets import pbs  # the PBS client: one path to every PBS

    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    errors: list[str] = []
    for target in ctx.settings.pbs:
        try:
            client = ctx.clients.client("pbs", target.name, pbs.make_client)
            for store in pbs.datastore_names(client, target):
                for group in client.get(f"admin/datastore/{store}/groups") or []:
                    kind = group.get("backup-type")
                    ident = str(group.get("backup-id", ""))
                    if kind not in ("ct", "vm") or not ident.isdigit():
                        continue
                    found.setdefault((kind, int(ident)), []).append(
                        {
                            "pbs": target.name,
                            "datastore": store,
                            "last_backup": group.get("last-backup"),
                            "count": group.get("backup-count"),
                        }
                    )
        except Exception as exc:  # evidence is best-effort: say what could not be read
            failure = pbs.translate(exc) if not isinstance(exc, ToolFailure) else exc
            errors.append(f"pbs {target.name}: {failure.message if failure else exc}")
    return found, errors


@TOOLSET.read(
    "backup_coverage",
    "Which guests no backup job covers, and each guest's newest backup (PVE backup storages, "
    "vzdump tasks and every configured PBS) against a maximum age.",
    MaxAgeParams,
    needs_resource=False,
)
def backup_coverage(ctx: ToolContext[MaxAgeParams]) -> dict[str, Any]:
    api = api_for(ctx)
    now = time.time()
    max_age = ctx.params.max_age_seconds
    vms = [r for r in api.get("cluster/resources", type="vm") or [] if not r.get("template")]
    jobs = api.get("cluster/backup") or []
    not_covered = {
        int(r.get("vmid", 0)) for r in api.get("cluster/backup-info/not-backed-up") or []
    }
    online = [str(r.get("node")) for r in api.get("nodes") or [] if r.get("status") == "online"]
    last: dict[int, dict[str, Any]] = {}
    seen_shared: set[str] = set()
    for node in online:
        for store in api.get(f"nodes/{node}/storage", content="backup") or []:
            name = str(store.get("storage"))
            if store.get("shared") and name in seen_shared:
                continue
            seen_shared.add(name)
            if not store.get("active", 1):
                continue
            for item in api.get(f"nodes/{node}/storage/{name}/content", content="backup") or []:
                vmid = int(item.get("vmid") or 0)
                if vmid and (vmid not in last or item.get("ctime", 0) > last[vmid]["ctime"]):
                    last[vmid] = {
                        "ctime": item.get("ctime", 0),
                        "volid": item.get("volid"),
                        "storage": name,
                        "verification": (item.get("verification") or {}).get("state"),
                    }
    pbs_found, pbs_errors = _pbs_evidence(ctx)
    res = parse_resource(ctx.ref.resource)
    wanted = find_guest(ctx).vmid if res.kind in ("guest", "lxc", "qemu") else None
    rows = []
    for vm in sorted(vms, key=lambda r: int(r.get("vmid", 0))):
        vmid = int(vm.get("vmid", 0))
        if wanted is not None and vmid != wanted:
            continue
        kind = "ct" if vm.get("type") == "lxc" else "vm"
        pbs_rows = pbs_found.get((kind, vmid), [])
        times = [last[vmid]["ctime"]] if vmid in last else []
        times += [r["last_backup"] for r in pbs_rows if r.get("last_backup")]
        newest = max(times) if times else None
        age = seconds_since(newest, now)
        vzdump = None
        node = str(vm.get("node"))
        if node in online:
            recent = api.get(f"nodes/{node}/tasks", typefilter="vzdump", vmid=vmid, limit=1) or []
            if recent:
                vzdump = {
                    "upid": recent[0].get("upid"),
                    "status": recent[0].get("status"),
                    "starttime": recent[0].get("starttime"),
                    "ok": recent[0].get("status") == "OK",
                }
        covered = vmid not in not_covered and any(_job_covers(j, vmid, node) for j in jobs)
        rows.append(
            {
                "id": f"{vm.get('type')}/{vmid}",
                "vmid": vmid,
                "name": vm.get("name"),
                "covered": covered,
                "jobs": [j.get("id") for j in jobs if _job_covers(j, vmid, node)],
                "last_backup": newest,
                "last_backup_age_seconds": age,
                "last_backup_on": last.get(vmid, {}).get("volid"),
                "recent": age is not None and age <= max_age,
                "last_vzdump": vzdump,
                "pbs": pbs_rows,
            }
        )
    uncovered = [r["id"] for r in rows if not r["covered"]]
    stale = [r["id"] for r in rows if not r["recent"]]
    data: dict[str, Any] = {
        "guests": rows,
        "jobs": [
            {
                "id": j.get("id"),
                "schedule": j.get("schedule"),
                "enabled": str(j.get("enabled", "1")) != "0",
                "storage": j.get("storage"),
            }
            for j in jobs
        ],
        "uncovered": uncovered,
        "stale": stale,
        "max_age": ctx.params.max_age,
        "pbs_errors": pbs_errors,
    }
    if wanted is not None:
        if not rows:
            raise ToolFailure(ToolErrorKind.NOT_FOUND, f"guest {wanted} is a template or unknown")
        row = rows[0]
        data.update({k: row[k] for k in row if k not in ("id",)})
        data["id"] = row["id"]
        data["_summary"] = (
            f"{row['id']}: "
            + ("covered by " + ", ".join(row["jobs"]) if row["covered"] else "in NO backup job")
            + (
                f"; newest backup {human_duration(row['last_backup_age_seconds'])} old"
                if row["last_backup"]
                else "; no backup found"
            )
            + (
                f" (PBS: {', '.join(r['pbs'] + '/' + r['datastore'] for r in row['pbs'])})"
                if row["pbs"]
                else ""
            )
        )
    else:
        data["_summary"] = (
            f"{len(rows)} guests: {len(uncovered)} in no backup job, {len(stale)} without a "
            f"backup newer than {ctx.params.max_age}"
        )
    return data
