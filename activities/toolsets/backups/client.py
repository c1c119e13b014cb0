"""The backups toolset, its repositories, and the one way to run restic or borg against them.

Every run goes through the command runner (locally, or over SSH with the host key checked). The
repository password never reaches an argument vector, a result or a log: ``password_file`` is
named to restic/borg by environment (``RESTIC_PASSWORD_FILE``, ``BORG_PASSCOMMAND=cat <file>``)
and read by them on the host; an inline ``password`` is written to the tool's stdin (restic reads
it there when stdin is not a terminal; borg with ``BORG_PASSPHRASE_FD=0``). restic 0.14 exits 1
for every fatal error and borg 2, so failures are typed from their messages.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.commands import CommandResult, run_on
from core.models import ToolErrorKind
from core.redact import redact_text
from core.targets import BackupRepository, BackupsTarget

TOOLSET = Toolset(
    service="backups",
    description="restic and borg repositories: snapshots, checks, stats, locks, encryption, "
    "unlock, prune.",
)

RESTIC_STALE_LOCK = timedelta(minutes=30)  # restic's own rule (it refreshes live locks every 5m)
BORG_STALE_LOCK = timedelta(hours=24)  # borg never refreshes a lock: long runs hold old ones

_KINDS: list[tuple[ToolErrorKind, tuple[str, ...]]] = [
    (
        ToolErrorKind.UNAUTHORIZED,
        (
            "wrong password",
            "no key found",
            "is incorrect",
            "can not acquire a passphrase",
            "empty password is not a password",
            "resolving password failed",
            "permission denied (publickey",
        ),
    ),
    (
        ToolErrorKind.NOT_FOUND,
        (
            "does not exist",
            "is there a repository at the following location",
            "unable to open config file",
            "repository not found",
            "is not a valid repository",
        ),
    ),
    (
        ToolErrorKind.CONFLICT,
        (
            "already locked",
            "failed to create/acquire the lock",
            "locktimeout",
            "unable to create lock",
        ),
    ),
    (
        ToolErrorKind.UNREACHABLE,
        (
            "connection refused",
            "no route to host",
            "connection timed out",
            "connection closed by remote host",
            "i/o timeout",
            "name or service not known",
            "temporary failure in name resolution",
            "network is unreachable",
            "dial tcp",
        ),
    ),
]


@dataclass(frozen=True)
class Repo:
    """A configured repository on its target's host."""

    target: BackupsTarget
    spec: BackupRepository

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def label(self) -> str:
        return f"{self.kind} repository {self.name} ({self.spec.repository})"

    @property
    def binary(self) -> str:
        return self.spec.binary or self.spec.kind

    @property
    def stale_lock_after(self) -> timedelta:
        if self.spec.stale_lock_after is not None:
            return self.spec.stale_lock_after
        return RESTIC_STALE_LOCK if self.kind == "restic" else BORG_STALE_LOCK

    @property
    def is_local_path(self) -> bool:
        """A repository directory on the host (borg's lock files can be read directly)."""
        return self.spec.repository.startswith("/")


def repo_of(ctx: ToolContext[Any]) -> Repo:
    target = ctx.clients.target("backups", ctx.ref.target)
    assert isinstance(target, BackupsTarget)
    name = ctx.ref.resource.strip()
    spec = target.repository(name)
    if spec is None:
        names = ", ".join(r.name for r in target.repositories)
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND if name else ToolErrorKind.INVALID,
            f"backups target {target.name} has no repository {name!r} (repositories: {names})"
            if name
            else f"name the repository: backups:{target.name}/<{names}>",
        )
    return Repo(target, spec)


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None


def invocation(repo: Repo, args: list[str]) -> Invocation:
    """restic: ``restic -r REPO args``; borg: ``borg args`` with ``{repo}`` replaced. The
    password as the module docstring says; borg shows times in UTC (``TZ=UTC``)."""
    spec = repo.spec
    env = dict(spec.env)
    stdin = None
    if repo.kind == "restic":
        argv = [repo.binary, "-r", spec.repository, *args]
        if spec.password_file:
            env["RESTIC_PASSWORD_FILE"] = spec.password_file
        elif spec.password is not None:
            stdin = spec.password.get_secret_value().encode() + b"\n"
    else:
        argv = [repo.binary, *(a.replace("{repo}", spec.repository) for a in args)]
        env.setdefault("TZ", "UTC")
        if spec.password_file:
            env["BORG_PASSCOMMAND"] = shlex.join(["cat", spec.password_file])
        elif spec.password is not None:
            env["BORG_PASSPHRASE_FD"] = "0"
            stdin = spec.password.get_secret_value().encode() + b"\n"
    return Invocation(argv, env, stdin)


def failure(repo: Repo, result: CommandResult, what: str) -> ToolFailure:
    """The typed failure of a run that did not do its job, with the tool's own words."""
    text = redact_text((result.stderr.strip() or result.stdout.strip())[-800:])
    lowered = text.lower()
    if result.exit_status == 127 or "command not found" in lowered:
        return ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{repo.binary} is not installed on {result.where}"
        )
    kind = next(
        (kind for kind, words in _KINDS if any(w in lowered for w in words)), ToolErrorKind.FAILED
    )
    hint = {
        ToolErrorKind.UNAUTHORIZED: " (check password/password_file)",
        ToolErrorKind.NOT_FOUND: " (check the repository location)",
        ToolErrorKind.CONFLICT: " (see backups.locks)",
    }.get(kind, "")
    last = " | ".join(line.strip() for line in text.splitlines()[-4:] if line.strip())
    return ToolFailure(
        kind,
        f"{what} of {repo.label} on {result.where} failed (exit {result.exit_status}): {last}{hint}",
    )


async def run(repo: Repo, args: list[str], *, limit: float) -> CommandResult:
    """Run restic/borg for ``repo`` (not checked: the caller decides what an exit means)."""
    call = invocation(repo, args)
    return await run_on(repo.target.ssh, call.argv, limit=limit, stdin=call.stdin, env=call.env)


async def run_ok(repo: Repo, args: list[str], *, limit: float, what: str) -> CommandResult:
    result = await run(repo, args, limit=limit)
    if not result.ok and not (repo.kind == "borg" and result.exit_status == 1):
        raise failure(repo, result, what)
    return result


async def host_command(repo: Repo, argv: list[str], limit: float = 30) -> CommandResult:
    """A plain command on the repository's host (hostname, process table, lock files, logs)."""
    return await run_on(repo.target.ssh, argv, limit=limit)


def error_lines(text: str, limit: int = 20) -> list[str]:
    """The lines of a check's output that report a problem."""
    wanted = re.compile(
        r"error|mismatch|does not match|damaged|corrupt|missing|not found|invalid|fatal|"
        r"unreferenced|integrity",
        re.IGNORECASE,
    )
    lines = [redact_text(line.strip())[:300] for line in text.splitlines() if wanted.search(line)]
    return lines[:limit]


def probe(target: BackupsTarget) -> str:
    """``doctor``: each repository opens with its password (a read-only listing)."""
    import asyncio

    async def check() -> str:
        parts = []
        for spec in target.repositories:
            repo = Repo(target, spec)
            args = (
                ["snapshots", "--json", "--no-lock", "--latest", "1"]
                if repo.kind == "restic"
                else ["list", "--short", "--last", "1", "{repo}"]
            )
            result = await run(repo, args, limit=60)
            parts.append(
                f"{spec.name} ({spec.kind}): "
                + ("ok" if result.ok else failure(repo, result, "listing").message)
            )
        return "; ".join(parts)

    return asyncio.run(check())


TOOLSET.probe = probe
