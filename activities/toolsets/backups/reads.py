"""Backup repository reads: snapshots and their age, check, stats, locks, encryption, and the
log of the job that writes the repository."""

from __future__ import annotations

import time
from datetime import timedelta
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.backups import borg, restic
from activities.toolsets.backups.client import TOOLSET, Repo, error_lines, host_command, repo_of
from core.models import ToolErrorKind
from core.redact import redact_text
from core.units import human_bytes, human_duration, parse_duration


def kind_of(repo: Repo) -> ModuleType:
    return restic if repo.kind == "restic" else borg


class SnapshotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:=-]+$", description="restic only")
    max_age: str | None = Field(default=None, description="default: the repository's max_age")
    limit: int = Field(default=10, ge=1, le=500, description="newest snapshots listed")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not isinstance(parse_duration(value), timedelta):
            raise ValueError(f"{value!r} is not a duration such as 26h or 7d")
        return value


def _max_age(repo: Repo, text: str | None) -> float:
    if text is None:
        return repo.spec.max_age.total_seconds()
    parsed = parse_duration(text)
    assert isinstance(parsed, timedelta)
    return parsed.total_seconds()


def _group(
    rows: list[dict[str, Any]], key: str, max_age: float, now: float
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        values = row[key] if isinstance(row[key], list) else [row[key]]
        for value in values or []:
            groups.setdefault(str(value), []).append(row)
    out = []
    for value, members in sorted(groups.items()):
        newest = max(members, key=lambda r: r["epoch"])
        age = int(now - newest["epoch"])
        out.append(
            {
                key.rstrip("s"): value,
                "count": len(members),
                "newest": newest["time"],
                "newest_id": newest["short_id"],
                "newest_age_seconds": age,
                "stale": age > max_age,
            }
        )
    return out


@TOOLSET.read(
    "snapshots",
    "A repository's snapshots (restic) or archives (borg): count, newest and its age against "
    "max_age, per host and per tag, the newest few.",
    SnapshotParams,
)
async def snapshots(ctx: ToolContext[SnapshotParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    p = ctx.params
    rows = await kind_of(repo).snapshots(repo, p.host, p.tag)
    rows.sort(key=lambda r: r["epoch"])
    now = time.time()
    max_age = _max_age(repo, p.max_age)
    newest = rows[-1] if rows else None
    age = int(now - newest["epoch"]) if newest else None
    stale = age is None or age > max_age
    public = [{k: v for k, v in r.items() if k != "epoch"} for r in reversed(rows[-p.limit :])]
    return {
        "repository": repo.name,
        "kind": repo.kind,
        "count": len(rows),
        "newest": public[0] if public else None,
        "newest_age_seconds": age,
        "oldest": rows[0]["time"] if rows else None,
        "max_age_seconds": max_age,
        "stale": stale,
        "per_host": _group(rows, "host", max_age, now),
        "per_tag": _group(rows, "tags", max_age, now),
        "snapshots": public,
        "_summary": f"{repo.name}: {len(rows)} snapshot(s), newest "
        + (f"{human_duration(age)} old" if age is not None else "none")
        + (f" (older than {human_duration(max_age)}: stale)" if stale else ""),
    }


class CheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    read_data_subset: str | None = Field(
        default=None,
        pattern=r"^(\d+/\d+|\d+(\.\d+)?%|\d+[KMGT]?)$",
        description="restic: also read this part of the data (1/5, 10%, 500M)",
    )


@TOOLSET.read(
    "check",
    "Check a repository's structure (restic check; borg check, which also reads every "
    "segment's checksum); restic can read a subset of the data too. Errors are evidence, not "
    "a failed call.",
    CheckParams,
    timeout=timedelta(hours=2),
)
async def check(ctx: ToolContext[CheckParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    subset = ctx.params.read_data_subset
    result = await kind_of(repo).check(repo, False, subset, repo.spec.timeout.total_seconds())
    what = "check" + (f" (reading {subset} of the data)" if subset else "")
    return {
        "repository": repo.name,
        "kind": repo.kind,
        "read_data_subset": subset,
        **result,
        "_summary": f"{repo.name}: {what} "
        + ("found no errors" if result["ok"] else f"FAILED: {'; '.join(result['errors'][:3])}"),
    }


@TOOLSET.read("stats", "A repository's size on disk, restore size and snapshot count.")
async def stats(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    data = await kind_of(repo).stats(repo)
    return {
        "repository": repo.name,
        "kind": repo.kind,
        **data,
        "_summary": f"{repo.name}: {data.get('snapshots')} snapshot(s), "
        f"{human_bytes(data.get('stored_bytes'))} stored, "
        f"{human_bytes(data.get('restore_bytes'))} to restore",
    }


async def host_facts(repo: Repo, pids: list[int]) -> tuple[str, dict[int, bool]]:
    """The host's name and which of ``pids`` run there (zombies count as gone)."""
    name = (await host_command(repo, ["uname", "-n"])).stdout.strip()
    alive: dict[int, bool] = dict.fromkeys(pids, False)
    if pids:
        listed = await host_command(
            repo, ["ps", "-o", "pid=,stat=", "-p", ",".join(map(str, pids))]
        )
        for line in listed.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit() and not parts[1].startswith("Z"):
                alive[int(parts[0])] = True
    return name, alive


async def lock_report(repo: Repo) -> dict[str, Any]:
    """Every lock, and which are stale: its process is gone from this host, or it is older than
    the repository's ``stale_lock_after`` (restic's own rule by default)."""
    rows = await kind_of(repo).locks(repo)
    pids = sorted({int(r["pid"]) for r in rows if isinstance(r.get("pid"), int)})
    hostname, alive = await host_facts(repo, pids)
    now = time.time()
    limit = repo.stale_lock_after.total_seconds()
    for row in rows:
        age = int(now - row["epoch"]) if row.get("epoch") else None
        same = bool(row.get("host")) and row.get("host") == hostname
        pid_alive = alive.get(int(row["pid"])) if same and isinstance(row.get("pid"), int) else None
        reasons = []
        if same and pid_alive is False:
            reasons.append(f"process {row['pid']} no longer runs on {hostname}")
        if age is not None and age > limit:
            reasons.append(f"older than {human_duration(limit)}")
        row.update(
            {
                "age_seconds": age,
                "same_host": same,
                "pid_alive": pid_alive,
                "stale": bool(reasons),
                "why": "; ".join(reasons) or None,
            }
        )
        row.pop("epoch", None)
    stale = [r for r in rows if r["stale"]]
    return {
        "repository": repo.name,
        "kind": repo.kind,
        "host": hostname,
        "locks": rows,
        "count": len(rows),
        "stale_count": len(stale),
        "active_count": len(rows) - len(stale),
        "stale_ids": [r["id"] for r in stale],
        "exclusive": any(r["exclusive"] for r in rows),
        "stale_lock_after_seconds": limit,
        "_summary": f"{repo.name}: {len(rows)} lock(s), {len(stale)} stale"
        + (f" ({stale[0]['id']}: {stale[0]['why']})" if stale else ""),
    }


@TOOLSET.read(
    "locks",
    "A repository's locks with host, process and age, and which are stale (the process is gone "
    "from this host, or older than stale_lock_after).",
)
async def locks(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return await lock_report(repo_of(ctx))


@TOOLSET.read(
    "encryption",
    "Whether a repository is encrypted and its key is present and opens it (the configured "
    "password works).",
)
async def encryption(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    data = await kind_of(repo).encryption(repo)
    unlock_with = (
        "password_file" if repo.spec.password_file else "stdin" if repo.spec.password else "none"
    )
    ok = bool(data["encrypted"] and data["key_present"])
    return {
        "repository": repo.name,
        "kind": repo.kind,
        **data,
        "unlocked_with": unlock_with,
        "ok": ok,
        "_summary": f"{repo.name}: "
        + (f"encrypted ({data['mode']}), key present" if ok else f"NOT encrypted ({data['mode']})"),
    }


@TOOLSET.read(
    "last_job",
    "The end of the backup job's log (its log_file, or journalctl for its systemd unit), and "
    "the lines that report errors.",
)
async def last_job(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    repo = repo_of(ctx)
    job = repo.spec.job
    if job is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{repo.name}: no job (log_file or unit) is configured"
        )
    data: dict[str, Any] = {"repository": repo.name}
    if job.log_file:
        tail = await host_command(repo, ["tail", "-n", str(job.lines), "--", job.log_file])
        if not tail.ok:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND if "No such file" in tail.stderr else ToolErrorKind.FAILED,
                f"cannot read {job.log_file} on {tail.where}: {tail.tail(200)}",
            )
        stamp = await host_command(repo, ["stat", "-c", "%Y", "--", job.log_file])
        modified = (
            float(stamp.stdout.strip()) if stamp.ok and stamp.stdout.strip().isdigit() else None
        )
        text = tail.stdout
        data.update(
            {
                "source": job.log_file,
                "log_modified_age_seconds": int(time.time() - modified) if modified else None,
            }
        )
    else:
        assert job.unit is not None
        journal = await host_command(
            repo,
            ["journalctl", "-u", job.unit, "-n", str(job.lines), "--no-pager", "-o", "short-iso"],
        )
        if not journal.ok:
            raise ToolFailure(
                ToolErrorKind.FAILED, f"journalctl -u {job.unit}: {journal.tail(200)}"
            )
        shown = await host_command(
            repo,
            [
                "systemctl",
                "show",
                job.unit,
                "-p",
                "Result",
                "-p",
                "ExecMainStatus",
                "-p",
                "InactiveEnterTimestamp",
            ],
        )
        text = journal.stdout
        data.update(
            {
                "source": f"journalctl -u {job.unit}",
                "unit": dict(
                    line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line
                ),
            }
        )
    lines = [redact_text(line)[:400] for line in text.splitlines()]
    errors = error_lines(text)
    data.update(
        {
            "lines": lines,
            "errors": errors,
            "_summary": f"{repo.name}: last {len(lines)} line(s) of {data['source']}"
            + (f"; {len(errors)} report errors: {errors[-1]}" if errors else ""),
        }
    )
    return data
