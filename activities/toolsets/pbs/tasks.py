"""PBS writes: start a verification or a garbage collection, and wait for its task (UPID).

Both are idempotent against the before-state: a retry first looks for the task it started (same
type and scope, started after the capture) and waits for that one instead of starting another.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Literal

from proxmoxer import ProxmoxAPI
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.pbs.client import TOOLSET, client_for, scope, target_of
from activities.toolsets.proxmox_api import wait_upid
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_bytes, human_duration, seconds_since

NODE = "localhost"  # PBS answers for itself under any node name; the API docs use localhost


def one_store(ctx: ToolContext[Any]) -> tuple[str, str, str]:
    stores, kind, ident = scope(ctx)
    if len(stores) != 1:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"name the datastore: pbs:{ctx.ref.target}/<{'|'.join(stores) or 'datastore'}>",
        )
    return stores[0], kind, ident


def _our_task(api: ProxmoxAPI, store: str, kind: str, worker_id: str, since: int) -> str | None:
    """A task of ``kind`` on ``worker_id`` started at or after ``since`` (a retry's own task)."""
    tasks = (
        api.get(f"nodes/{NODE}/tasks", typefilter=kind, store=store, since=since, limit=50) or []
    )
    for task in tasks:
        if task.get("worker_type") == kind and task.get("worker_id") == worker_id:
            return str(task.get("upid"))
    return None


def _wait(ctx: ToolContext[Any], upid: str, what: str) -> dict[str, Any]:
    timeout = target_of(ctx).task_timeout.total_seconds()
    return wait_upid(client_for(ctx), NODE, upid, what, timeout, "the PBS task list")


# --- verify -----------------------------------------------------------------------------------


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backup_type: Literal["ct", "vm", "host"] | None = None
    backup_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    ignore_verified: bool = Field(
        default=True,
        description="skip snapshots verified OK (and not outdated): only failed "
        "and never-verified ones are read",
    )
    outdated_after: int | None = Field(
        default=None, ge=1, description="days after which an OK verification counts as outdated"
    )


def _verify_scope(ctx: ToolContext[VerifyParams]) -> tuple[str, str, str]:
    store, kind, ident = one_store(ctx)
    kind = kind or (ctx.params.backup_type or "")
    ident = ident or (ctx.params.backup_id or "")
    if ident and not kind:  # pbs-exporter's alerts carry the backup id (vm_id) only
        groups = client_for(ctx).get(f"admin/datastore/{store}/groups") or []
        kinds = sorted(
            {str(g.get("backup-type")) for g in groups if str(g.get("backup-id")) == ident}
        )
        if len(kinds) != 1:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND if not kinds else ToolErrorKind.INVALID,
                f"backup id {ident!r} in {store}: "
                + (
                    f"is a {' and a '.join(kinds)} group, give backup_type"
                    if kinds
                    else "no such group"
                ),
            )
        kind = kinds[0]
    return store, kind, ident


def _states(api: ProxmoxAPI, store: str, kind: str, ident: str) -> dict[str, int]:
    query = {"backup-type": kind, "backup-id": ident} if kind else {}
    counts = {"ok": 0, "failed": 0, "never": 0}
    for snap in api.get(f"admin/datastore/{store}/snapshots", **query) or []:
        state = (snap.get("verification") or {}).get("state")
        counts["ok" if state == "ok" else "failed" if state == "failed" else "never"] += 1
    return counts


def capture_verify(ctx: ToolContext[VerifyParams]) -> dict[str, Any]:
    store, kind, ident = _verify_scope(ctx)
    counts = _states(client_for(ctx), store, kind, ident)
    if kind and not sum(counts.values()):
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"no snapshots of {kind}/{ident} in {store}")
    return {
        "datastore": store,
        "group": f"{kind}/{ident}" if kind else None,
        "states": counts,
        "captured_at": int(time.time()),
    }


def _verify_body(before: dict[str, Any], params: VerifyParams) -> dict[str, Any]:
    body: dict[str, Any] = {"ignore-verified": int(params.ignore_verified)}
    if before["group"]:
        kind, ident = before["group"].split("/", 1)
        body.update({"backup-type": kind, "backup-id": ident})
    if params.outdated_after:
        body["outdated-after"] = params.outdated_after
    return body


def _verify_worker(before: dict[str, Any]) -> tuple[str, str]:
    if before["group"]:
        return "verify_group", f"{before['datastore']}:/{before['group']}"
    return "verify", before["datastore"]


def _verify_preview(ctx: ToolContext[VerifyParams], before: dict[str, Any]) -> str:
    states = before["states"]
    body = " ".join(f"{k}={v}" for k, v in _verify_body(before, ctx.params).items())
    what = f"group {before['group']}" if before["group"] else "every group"
    reads = (
        f"{states['failed'] + states['never']} snapshot(s) (failed or never verified)"
        if ctx.params.ignore_verified
        else f"all {sum(states.values())} snapshot(s)"
    )
    return (
        f"POST admin/datastore/{before['datastore']}/verify {body} on pbs {ctx.ref.target}: "
        f"verifies {what} of {before['datastore']}, reading {reads} "
        f"({states['ok']} ok, {states['failed']} failed, {states['never']} never verified); "
        f"waits up to {human_duration(target_of(ctx).task_timeout.total_seconds())} for the task"
    )


def _verify_noop(ctx: ToolContext[VerifyParams], before: dict[str, Any]) -> bool:
    states = before["states"]
    return bool(
        ctx.params.ignore_verified
        and not states["failed"]
        and not states["never"]
        and not ctx.params.outdated_after
    )


@TOOLSET.write(
    "start_verify",
    "Verify a datastore or one backup group (re-reads chunks, checks their hashes) and wait "
    "for the task; fails with the task log when a snapshot does not verify.",
    VerifyParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_verify,
    preview=_verify_preview,
    is_noop=_verify_noop,
    needs_resource=False,
    timeout=timedelta(hours=6),
)
def start_verify(ctx: ToolContext[VerifyParams]) -> dict[str, Any]:
    api = client_for(ctx)
    before = ctx.before or capture_verify(ctx)
    store = before["datastore"]
    worker_type, worker_id = _verify_worker(before)
    upid = _our_task(api, store, worker_type, worker_id, before["captured_at"])
    if upid is None:
        upid = str(api.post(f"admin/datastore/{store}/verify", **_verify_body(before, ctx.params)))
    what = f"verification of {before['group'] or store}"
    task = _wait(ctx, upid, what)
    kind, _, ident = (before["group"] or "").partition("/")
    states = _states(api, store, kind, ident)
    return {
        **task,
        "datastore": store,
        "group": before["group"],
        "states_before": before["states"],
        "states": states,
        "_summary": f"{what}: task OK in {task['seconds']}s; {states['ok']} ok, "
        f"{states['failed']} failed, {states['never']} never verified",
    }


# --- garbage collection -------------------------------------------------------------------------


def capture_gc(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    store, kind, _ = one_store(ctx)
    if kind:
        raise ToolFailure(ToolErrorKind.INVALID, "garbage collection runs on a whole datastore")
    api = client_for(ctx)
    status = api.get(f"admin/datastore/{store}/status") or {}
    gc = api.get(f"admin/datastore/{store}/gc") or {}
    last = None
    if gc.get("upid"):
        try:
            last = api.get(f"nodes/{NODE}/tasks/{gc['upid']}/status") or None
        except Exception:  # a task log rotated away: no last run to show
            last = None
    return {
        "datastore": store,
        "used": int(status.get("used") or 0),
        "total": int(status.get("total") or 0),
        "pending_bytes": gc.get("pending-bytes"),
        "last_upid": gc.get("upid"),
        "last_status": (last or {}).get("exitstatus"),
        "last_age_seconds": seconds_since((last or {}).get("starttime")),
        "captured_at": int(time.time()),
    }


def _gc_preview(ctx: ToolContext[NoParams], before: dict[str, Any]) -> str:
    share = (
        f"{before['used'] / before['total']:.0%} of {human_bytes(before['total'])}"
        if before["total"]
        else human_bytes(before["used"])
    )
    last = (
        f"last GC {before['last_status'] or 'unknown'} {human_duration(before['last_age_seconds'])} ago"
        if before["last_upid"]
        else "no GC ran yet"
    )
    return (
        f"POST admin/datastore/{before['datastore']}/gc on pbs {ctx.ref.target}: garbage "
        f"collection of {before['datastore']} (used {share}; {last}; "
        f"{human_bytes(before['pending_bytes'])} pending removal); marks every chunk in use, "
        "then removes unused chunks older than 24h05m"
    )


@TOOLSET.write(
    "start_gc",
    "Start garbage collection on a datastore (frees chunks no snapshot uses any more) and wait "
    "for the task.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_gc,
    preview=_gc_preview,
    facts=lambda ctx, b: {"datastore": b["datastore"], "last_gc": b["last_upid"]},
    needs_resource=False,
    timeout=timedelta(hours=6),
)
def start_gc(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    api = client_for(ctx)
    before = ctx.before or capture_gc(ctx)
    store = before["datastore"]
    upid = _our_task(api, store, "garbage_collection", store, before["captured_at"])
    if upid is None:
        upid = str(api.post(f"admin/datastore/{store}/gc"))
    task = _wait(ctx, upid, f"garbage collection of {store}")
    status = api.get(f"admin/datastore/{store}/status") or {}
    gc = api.get(f"admin/datastore/{store}/gc") or {}
    used = int(status.get("used") or 0)
    return {
        **task,
        "datastore": store,
        "used_before": before["used"],
        "used": used,
        "removed_bytes": gc.get("removed-bytes"),
        "pending_bytes": gc.get("pending-bytes"),
        "_summary": f"garbage collection of {store}: OK in {task['seconds']}s, removed "
        f"{human_bytes(gc.get('removed-bytes'))}; used {human_bytes(before['used'])} → "
        f"{human_bytes(used)}",
    }
