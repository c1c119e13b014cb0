"""Backup reads on real restic and borg repositories: snapshots and their age, check (and a
damaged one), stats, encryption, the job log, the same over a real sshd, and typed errors for a
wrong password, a missing repository and a missing binary."""

from __future__ import annotations

import socket
from pathlib import Path

from activities.toolsets.backups.client import Repo, invocation
from core.config import Settings
from tests.fakes.sshd import SshServer
from tests.toolsets.backups.conftest import PASSWORD, Repos, repo_config, target
from tests.toolsets.helpers import ssh_access, tools_for


def settings_for(repos: Repos, tmp: Path, **extra: object) -> list[dict[str, object]]:
    return [
        target(
            repo_config(repos.home, "home"),
            repo_config(repos.old, "old"),
            repo_config(repos.damaged, "damaged", check_read_data_subset="1/1"),
            repo_config(repos.media, "media"),
            repo_config(repos.broken, "broken"),
            repo_config(repos.plain, "plain", password_file=None),
            **extra,
        )
    ]


async def test_snapshots_age_per_host_and_tag(repos: Repos, tmp_path: Path) -> None:
    tools = tools_for(tmp_path, backups=settings_for(repos, tmp_path))
    home = await tools.ok("backups.snapshots", "nas", "home")
    assert home["kind"] == "restic" and home["count"] == 2 and home["stale"] is False
    assert 3000 < home["newest_age_seconds"] < 3900 and home["max_age_seconds"] == 26 * 3600
    assert home["newest"]["host"] == "nas" and home["newest"]["tags"] == ["daily"]
    assert home["per_host"] == [
        {
            "host": "nas",
            "count": 2,
            "newest": home["newest"]["time"],
            "newest_id": home["newest"]["short_id"],
            "newest_age_seconds": home["newest_age_seconds"],
            "stale": False,
        }
    ]
    assert [t["tag"] for t in home["per_tag"]] == ["daily"]
    old = await tools.ok("backups.snapshots", "nas", "old")
    assert old["stale"] is True and 9.9 * 86400 < old["newest_age_seconds"] < 10.1 * 86400
    assert (await tools.ok("backups.snapshots", "nas", "old", max_age="11d"))["stale"] is False
    assert (await tools.ok("backups.snapshots", "nas", "home", host="elsewhere"))["count"] == 0
    assert (await tools.ok("backups.snapshots", "nas", "home", host="elsewhere"))["stale"] is True

    media = await tools.ok("backups.snapshots", "nas", "media")
    assert media["kind"] == "borg" and media["count"] == 2 and media["stale"] is False
    # borg records the machine that wrote the archive (the lab names archives after "nas")
    assert media["newest"]["name"].startswith("nas-")
    assert media["newest"]["host"] == socket.gethostname()
    assert 3000 < media["newest_age_seconds"] < 3900  # borg's times read in UTC
    tag = await tools.fails("backups.snapshots", "nas", "media", tag="daily")
    assert tag.kind.value == "invalid"


async def test_check_finds_the_damage(repos: Repos, tmp_path: Path) -> None:
    tools = tools_for(tmp_path, backups=settings_for(repos, tmp_path))
    assert (await tools.ok("backups.check", "nas", "home"))["ok"] is True
    # restic's structural check does not read packs: the damaged one passes...
    assert (await tools.ok("backups.check", "nas", "damaged"))["ok"] is True
    # ...reading the data finds it
    subset = await tools.ok("backups.check", "nas", "damaged", read_data_subset="1/1")
    assert subset["ok"] is False and any("does not match" in e for e in subset["errors"])
    # borg's check reads every segment's checksum
    broken = await tools.ok("backups.check", "nas", "broken")
    assert broken["ok"] is False
    assert any("Segment entry checksum mismatch" in e for e in broken["errors"])
    assert (await tools.ok("backups.check", "nas", "media"))["ok"] is True
    no_subset = await tools.fails("backups.check", "nas", "media", read_data_subset="1/2")
    assert no_subset.kind.value == "invalid"


async def test_stats_and_encryption(repos: Repos, tmp_path: Path) -> None:
    tools = tools_for(tmp_path, backups=settings_for(repos, tmp_path))
    home = await tools.ok("backups.stats", "nas", "home")
    assert (
        home["snapshots"] == 2
        and home["stored_bytes"] > 1_000_000
        and home["restore_bytes"] > 1_000_000
    )
    media = await tools.ok("backups.stats", "nas", "media")
    assert media["snapshots"] == 2 and 0 < media["stored_bytes"] < media["restore_bytes"]

    restic = await tools.ok("backups.encryption", "nas", "home")
    assert restic["encrypted"] and restic["key_present"] and restic["keys"] == 1 and restic["ok"]
    assert restic["unlocked_with"] == "password_file"
    borg = await tools.ok("backups.encryption", "nas", "media")
    assert borg["mode"] == "repokey" and borg["ok"] and borg["key_location"] == "in the repository"
    plain = await tools.ok("backups.encryption", "nas", "plain")
    assert plain["encrypted"] is False and plain["mode"] == "none" and plain["ok"] is False


async def test_last_job_reads_the_log_and_its_errors(repos: Repos, tmp_path: Path) -> None:
    log = tmp_path / "backup-home.log"
    log.write_text(
        "2026-12-01 01:00:01 starting backup of /srv\n"
        "2026-12-01 01:00:09 Fatal: unable to create lock in backend: repository is already locked\n"
    )
    tools = tools_for(
        tmp_path,
        backups=[
            target(
                repo_config(repos.home, "home", job={"log_file": str(log)}),
                repo_config(repos.old, "old"),
            )
        ],
    )
    job = await tools.ok("backups.last_job", "nas", "home")
    assert job["source"] == str(log) and len(job["lines"]) == 2
    assert job["errors"] == [log.read_text().splitlines()[1]]
    assert 0 <= job["log_modified_age_seconds"] < 60
    assert (await tools.fails("backups.last_job", "nas", "old")).kind.value == "unsupported"


async def test_the_password_never_reaches_an_argument_vector(repos: Repos, tmp_path: Path) -> None:
    settings = Settings(
        docker=[],
        backups=[
            target(
                repo_config(repos.home, "home", password=PASSWORD, password_file=None),
                repo_config(repos.media, "media", password=PASSWORD, password_file=None),
                repo_config(repos.old, "old"),
            )
        ],
    )
    nas = settings.backups[0]
    for spec in nas.repositories:
        call = invocation(Repo(nas, spec), ["snapshots"])
        assert PASSWORD not in " ".join(call.argv) and PASSWORD not in str(call.env)
        if spec.password is not None:
            assert call.stdin == PASSWORD.encode() + b"\n"
    assert PASSWORD not in repr(settings)


async def test_over_ssh_password_on_stdin_and_password_file(
    repos: Repos, sshd: SshServer, tmp_path: Path
) -> None:
    tools = tools_for(
        tmp_path,
        backups=[
            target(
                repo_config(repos.home, "home", password=PASSWORD, password_file=None),
                repo_config(repos.media, "media", password=PASSWORD, password_file=None),
                repo_config(repos.old, "old"),
                repo_config(repos.broken, "broken"),
                ssh=ssh_access(sshd),
            )
        ],
    )
    assert (await tools.ok("backups.snapshots", "nas", "home"))["count"] == 2
    assert (await tools.ok("backups.snapshots", "nas", "media"))["count"] == 2
    assert (await tools.ok("backups.snapshots", "nas", "old"))["stale"] is True
    assert (await tools.ok("backups.check", "nas", "broken"))["ok"] is False
    locks = await tools.ok("backups.locks", "nas", "home")
    assert locks["count"] == 0 and locks["host"]


async def test_bad_input_is_typed_and_never_shows_the_password(
    repos: Repos, tmp_path: Path
) -> None:
    wrong = "not-the-password-4711"
    (tmp_path / "wrong").write_text(wrong + "\n")
    tools = tools_for(
        tmp_path,
        backups=[
            target(
                repo_config(repos.home, "restic-wrong", password=wrong, password_file=None),
                repo_config(repos.media, "borg-wrong", password_file=str(tmp_path / "wrong")),
                repo_config(repos.home, "restic-gone", repository=str(tmp_path / "nothing-here")),
                repo_config(repos.media, "borg-gone", repository=str(tmp_path / "nothing-here")),
                repo_config(repos.home, "no-binary", binary="restic-not-installed"),
                repo_config(repos.home, "home"),
            )
        ],
    )
    cases = {
        ("backups.snapshots", "restic-wrong"): "unauthorized",
        ("backups.snapshots", "borg-wrong"): "unauthorized",
        ("backups.check", "restic-wrong"): "unauthorized",
        ("backups.snapshots", "restic-gone"): "not_found",
        ("backups.snapshots", "borg-gone"): "not_found",
        ("backups.locks", "borg-gone"): "not_found",
        ("backups.snapshots", "no-binary"): "unsupported",
        ("backups.snapshots", "nope"): "not_found",
        ("backups.prune", "home"): "unsupported",  # no policy configured
    }
    for (tool, repo), kind in cases.items():
        error = await tools.fails(tool, "nas", repo, **({} if tool != "backups.prune" else {}))
        assert error.kind.value == kind, (tool, repo, error)
        assert wrong not in error.message
    missing = await tools.fails("backups.snapshots", "nas")
    assert missing.kind.value == "invalid" and "needs a resource" in missing.message


async def test_doctor_probe_opens_each_repository(repos: Repos, tmp_path: Path) -> None:
    import asyncio

    from activities.toolsets.backups import probe

    settings = tools_for(
        tmp_path,
        backups=[
            target(
                repo_config(repos.home, "home"),
                repo_config(repos.media, "media"),
                repo_config(repos.home, "wrong", password="nope", password_file=None),
            )
        ],
    ).settings
    found = await asyncio.to_thread(probe, settings.backups[0])
    assert found.startswith("home (restic): ok; media (borg): ok; wrong (restic): listing of ")
    assert found.endswith("Fatal: wrong password or no key found (check password/password_file)")
