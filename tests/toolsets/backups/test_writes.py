"""Backup writes on real repositories: stale locks left by a SIGKILLed backup are found and
removed (live ones never), prune removes exactly the previewed snapshots, and reading all data
fails on a damaged pack."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from core.models import TargetRef, ToolCall
from tests.toolsets.backups.conftest import Repos, days_ago, repo_config, target
from tests.toolsets.helpers import tools_for


def holding_lock(repo_path: Path, env: dict[str, str], kind: str) -> subprocess.Popen[bytes]:
    """A backup that is still running (its stdin stays open) and holds the repository lock."""
    if kind == "restic":
        argv = ["restic", "-r", str(repo_path), "backup", "--stdin", "--stdin-filename", "live"]
        marker = repo_path / "locks"
    else:
        argv = ["borg", "create", f"{repo_path}::live-{time.time_ns()}", "-"]
        marker = repo_path / "lock.exclusive"
    held = len(list(marker.iterdir())) if marker.is_dir() else 0
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 30
    while not (marker.is_dir() and len(list(marker.iterdir())) > held):
        assert time.monotonic() < deadline, "the backup never took its lock"
        time.sleep(0.05)
    return proc


async def test_restic_stale_lock_is_found_and_removed_live_one_kept(
    repos: Repos, tmp_path: Path
) -> None:
    repo = repos.copy(repos.home, "locked-restic")
    dead_pid = repo.leave_stale_lock()
    tools = tools_for(tmp_path, backups=[target(repo_config(repo, "home"))])
    locks = await tools.ok("backups.locks", "nas", "home")
    assert locks["count"] == 1 and locks["stale_count"] == 1
    lock = locks["locks"][0]
    assert lock["pid"] == dead_pid and lock["same_host"] and lock["pid_alive"] is False
    assert lock["why"] == f"process {dead_pid} no longer runs on {locks['host']}"

    dry = await tools.run("backups.unlock", "nas", "home", dry_run=True)
    assert dry.ok and dry.data["preview"] == (
        f"restic unlock on restic repository home ({repo.path}): removes 1 stale lock(s): "
        f"{lock['id']} (shared, {lock['host']} pid {dead_pid}, {lock['why']}); 0 live lock(s) stay"
    )
    env = {**repo.env, "RESTIC_PASSWORD_FILE": str(repo.password_file)}
    live = holding_lock(repo.path, env, "restic")
    try:
        both = await tools.ok("backups.locks", "nas", "home")
        assert both["count"] == 2 and both["stale_count"] == 1 and both["active_count"] == 1
        removed = await tools.ok("backups.unlock", "nas", "home")
        assert removed["removed"] == [lock["id"]]
        left = removed["locks"]
        assert [(x["pid"], x["stale"]) for x in left] == [(live.pid, False)]
        # nothing stale: the runner's prepare says no-op
        call = ToolCall(
            tool="backups.unlock",
            target=TargetRef(service="backups", target="nas", resource="home"),
        )
        prepared = await tools.runner.prepare(call)
        assert prepared.noop and prepared.preview.startswith("no-op: home has no stale lock")
    finally:
        live.kill()  # the copy is thrown away: its lock can stay
        live.wait(30)


async def test_borg_stale_lock_removed_and_refused_while_a_live_one_is_held(
    repos: Repos, tmp_path: Path
) -> None:
    from workers.lab.backups import make_repo

    repo = make_repo("borg", repos.root / "locked-borg", "pw")
    repo.backup(repos.source, days_ago(0.01))
    dead_pid = repo.leave_stale_lock()
    tools = tools_for(tmp_path, backups=[target(repo_config(repo, "media"))])
    locks = await tools.ok("backups.locks", "nas", "media")
    assert locks["stale_count"] == 1 and locks["locks"][0]["pid"] == dead_pid
    assert locks["locks"][0]["exclusive"] is True
    removed = await tools.ok("backups.unlock", "nas", "media")
    assert removed["count"] == 0 and len(removed["removed"]) == 1
    assert (
        not (repo.path / "lock.roster").exists()
        or "exclusive" not in (repo.path / "lock.roster").read_text()
    )

    env = {**repo.env, "BORG_PASSCOMMAND": f"cat {repo.password_file}"}
    live = holding_lock(repo.path, env, "borg")
    try:
        held = await tools.ok("backups.locks", "nas", "media")
        assert held["active_count"] == 1 and held["stale_count"] == 0
        assert (await tools.ok("backups.unlock", "nas", "media"))["removed"] == []
        # a stale lock next to a live one: break-lock would remove both, so it is refused
        (repo.path / "lock.exclusive" / f"{held['host']}@1.999999-0").touch()
        roster = (repo.path / "lock.roster").read_text()
        import json

        data = json.loads(roster)
        data["exclusive"].append([f"{held['host']}@1", 999999, 0])
        (repo.path / "lock.roster").write_text(json.dumps(data))
        refused = await tools.fails("backups.unlock", "nas", "media")
        assert refused.kind.value == "conflict" and "live lock" in refused.message
    finally:
        live.kill()  # the copy is thrown away: its lock can stay
        live.wait(30)


async def test_prune_removes_exactly_the_previewed_snapshots(repos: Repos, tmp_path: Path) -> None:
    restic = repos.copy(repos.restic, "prune-restic")
    from workers.lab.backups import make_repo

    borg = make_repo("borg", repos.root / "prune-borg", "pw")
    for days in (2, 1):
        restic.backup(repos.source, days_ago(days), host="nas", tag="daily")
        borg.backup(repos.source, days_ago(days), host="nas")
    policy = {"keep_last": 1}
    tools = tools_for(
        tmp_path,
        backups=[
            target(
                repo_config(restic, "home", prune=policy), repo_config(borg, "media", prune=policy)
            )
        ],
    )
    commands = {
        "home": "restic forget <these ids> --prune",
        "media": "borg delete <these archives>, then borg compact",
    }
    applied: dict[str, ToolCall] = {}
    for name, command in commands.items():
        call = ToolCall(
            tool="backups.prune", target=TargetRef(service="backups", target="nas", resource=name)
        )
        prepared = await tools.runner.prepare(call)
        assert prepared.error is None and not prepared.noop
        assert (
            prepared.reversibility.value == "irreversible"
            and prepared.default_level.value == "HARD"
        )
        [doomed] = prepared.before["remove"]
        assert doomed["time"].startswith(days_ago(2)[:10])  # the older one goes
        assert prepared.preview.startswith(
            f"{command} on {'restic' if name == 'home' else 'borg'} repository {name} "
            f"({restic.path if name == 'home' else borg.path}): removes 1 of 2 snapshot(s) per "
            f"--keep-last 1: {doomed['short_id']} {doomed['time'][:19]}; keeps 1; "
        )
        assert prepared.preview.endswith("; irreversible")
        if name == "home":  # a snapshot made after the approval is not touched: only the previewed
            restic.backup(repos.source, days_ago(3), host="nas", tag="daily")
        applied[name] = call.model_copy(update={"before": prepared.before})
        done = await tools.runner.run(applied[name])
        assert done.ok, done.error
        assert done.data["removed"] == [doomed["short_id"]] and done.data["removed_now"] == 1
        assert done.data["snapshots"] == (2 if name == "home" else 1)
    again = await tools.runner.run(applied["home"])  # the same change retried
    assert again.ok and again.data["removed_now"] == 0 and again.data["snapshots"] == 2


async def test_check_read_data_fails_on_the_damaged_pack(repos: Repos, tmp_path: Path) -> None:
    tools = tools_for(
        tmp_path,
        backups=[target(repo_config(repos.damaged, "damaged"), repo_config(repos.home, "home"))],
    )
    dry = await tools.run("backups.check_read_data", "nas", "damaged", dry_run=True)
    assert dry.ok and dry.data["preview"].startswith(
        f"restic check --read-data on restic repository damaged ({repos.damaged.path}): reads and verifies all "
    )
    failed = await tools.fails("backups.check_read_data", "nas", "damaged")
    assert failed.kind.value == "failed" and "the data is damaged" in failed.message
    assert "Pack ID does not match" in failed.message
    fine = await tools.ok("backups.check_read_data", "nas", "home")
    assert fine["ok"] is True and fine["errors"] == []
