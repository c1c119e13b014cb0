#!/usr/bin/env python3
"""Backup metrics for node_exporter's textfile collector: how old the newest snapshot of a restic
or borg repository is, whether the repository opens, its locks, and (with --check) whether
`check` passes. deploy/prometheus/backups.rules.yml alerts on them (BackupTooOld,
BackupRepositoryUnreadable, BackupStaleLock, BackupCheckFailed).

Run it after each backup (ExecStartPost= of the backup unit) or from a timer, one repository per
run, with the repository's password the way the backup job has it (RESTIC_PASSWORD_FILE,
BORG_PASSCOMMAND, ... in the environment, or --password-file). Standard library only.

    backup-textfile.py --kind restic --name home --repo /srv/restic/home \\
        --password-file /etc/restic/home.pass --dir /var/lib/prometheus/node-exporter [--check]

Writes <dir>/backup_<kind>_<name>.prom atomically (a temporary file, then rename).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def restic_times(repo: str, env: dict[str, str]) -> tuple[bool, list[float], list[float]]:
    listed = run(["restic", "-r", repo, "snapshots", "--json", "--no-lock"], env, 600)
    if listed.returncode != 0:
        return False, [], []
    text = listed.stdout[listed.stdout.find("[") :]
    times = [parse(s["time"]) for s in json.loads(text or "[]")]
    locks: list[float] = []
    ids = run(["restic", "-r", repo, "list", "locks", "--no-lock"], env, 120)
    for lock_id in re.findall(r"^[0-9a-f]{64}$", ids.stdout, re.MULTILINE):
        shown = run(["restic", "-r", repo, "cat", "lock", lock_id, "--no-lock"], env, 60)
        if shown.returncode == 0:
            locks.append(parse(json.loads(shown.stdout[shown.stdout.find("{") :])["time"]))
    return True, times, locks


def borg_times(repo: str, env: dict[str, str]) -> tuple[bool, list[float], list[float]]:
    listed = run(
        ["borg", "list", "--format", "{time:%Y-%m-%dT%H:%M:%S}{NL}", repo],
        {**env, "TZ": "UTC"},
        600,
    )
    if listed.returncode not in (0, 1):
        return False, [], []
    times = [parse(line + "+00:00") for line in listed.stdout.split()]
    locks: list[float] = []
    folder = os.path.join(repo, "lock.exclusive")
    if os.path.isdir(folder):  # a repository on this host: its lock files' times
        locks = [os.stat(os.path.join(folder, name)).st_mtime for name in os.listdir(folder)]
    return True, times, locks


def parse(text: str) -> float:
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    when = datetime.fromisoformat(text)
    utc = timezone.utc  # noqa: UP017 - backup hosts may run Python < 3.11 (no datetime.UTC)
    return (when if when.tzinfo else when.replace(tzinfo=utc)).timestamp()


def check(kind: str, repo: str, env: dict[str, str], subset: str | None) -> bool:
    if kind == "restic":
        argv = ["restic", "-r", repo, "check"] + (
            [f"--read-data-subset={subset}"] if subset else []
        )
    else:
        argv = ["borg", "check", repo]
    return run(argv, env, 6 * 3600).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["restic", "borg"], required=True)
    parser.add_argument("--name", required=True, help="the repository's name in homelab-agents")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--password-file")
    parser.add_argument("--dir", required=True, help="node_exporter's textfile directory")
    parser.add_argument("--check", action="store_true", help="also run check")
    parser.add_argument("--read-data-subset", help="restic: check reads this subset (1/7)")
    parser.add_argument("--label", action="append", default=[], help="extra label name=value")
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", args.name):
        parser.error("--name: letters, digits and _.@- only")
    env = dict(os.environ)
    if args.password_file:
        if args.kind == "restic":
            env["RESTIC_PASSWORD_FILE"] = args.password_file
        else:
            env["BORG_PASSCOMMAND"] = shlex.join(["cat", args.password_file])
    labels = {"kind": args.kind, "repository": args.name}
    for pair in args.label:
        name, _, value = pair.partition("=")
        labels[name] = value
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    reader = restic_times if args.kind == "restic" else borg_times
    ok, times, locks = reader(args.repo, env)
    lines = []

    def metric(name: str, help_text: str, value: float) -> None:
        lines.extend(
            [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} gauge",
                f"{name}{{{selector}}} {value:.3f}",
            ]
        )

    metric(
        "backup_collector_success",
        "Whether the repository's snapshots could be listed.",
        1 if ok else 0,
    )
    metric("backup_collector_timestamp_seconds", "When these metrics were written.", time.time())
    if ok:
        metric(
            "backup_snapshots",
            "Snapshots (restic) or archives (borg) in the repository.",
            len(times),
        )
        if times:
            metric(
                "backup_last_snapshot_timestamp_seconds", "Time of the newest snapshot.", max(times)
            )
        metric("backup_locks", "Locks held on the repository.", len(locks))
        if locks:
            metric("backup_oldest_lock_timestamp_seconds", "Time of the oldest lock.", min(locks))
        if args.check:
            passed = check(args.kind, args.repo, env, args.read_data_subset)
            metric(
                "backup_check_success",
                "Whether the last check found no errors.",
                1 if passed else 0,
            )
    target = os.path.join(args.dir, f"backup_{args.kind}_{args.name}.prom")
    handle, temporary = tempfile.mkstemp(dir=args.dir, prefix=".backup_", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
