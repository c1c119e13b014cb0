"""Running a command on a host: locally or over SSH with the host key checked. One way for all.

Commands are argument vectors, never shell strings: locally they are exec'd directly, over SSH they
are quoted with ``shlex.join`` so the remote shell sees exactly these words. Output is capped, the
run has a deadline, and every failure is a typed ``ToolFailure`` naming the host: a missing binary
is UNSUPPORTED, a refused key UNAUTHORIZED, an unknown host key or a timeout FAILED, a host that
cannot be reached UNREACHABLE (Temporal retries those).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from activities.catalog import ToolFailure
from core.models import ToolErrorKind
from core.redact import redact_text
from core.targets import SshAccess

OUTPUT_LIMIT = 256 * 1024
"""Bytes of stdout (and of stderr) kept per run; the rest is cut with a marker."""

UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_.@\\-]{0,200}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    where: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, chars: int = 500) -> str:
        """The end of stderr (else stdout): what a failure message should quote."""
        return redact_text((self.stderr.strip() or self.stdout.strip())[-chars:])

    def check(self, what: str = "") -> CommandResult:
        """Raise FAILED with the output's tail unless the command exited 0."""
        if not self.ok:
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"{what or shlex.join(self.argv)} on {self.where} exited {self.exit_status}: "
                f"{self.tail()}",
            )
        return self


def _cap(data: bytes) -> str:
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    if len(data) > OUTPUT_LIMIT:
        text += f"\n[… {len(data) - OUTPUT_LIMIT} more bytes cut]"
    return text


def _as_bytes(data: bytes | str | None) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data or b"")


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ToolFailure(ToolErrorKind.INVALID, f"not a command: {argv!r}")
    if any("\x00" in a for a in argv):
        raise ToolFailure(ToolErrorKind.INVALID, "a command argument contains a NUL byte")
    return tuple(argv)


async def run_local(
    argv: Sequence[str],
    *,
    limit: float,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Exec ``argv`` on this machine; the process group is killed at the deadline."""
    args = _check_argv(argv)
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"{args[0]} is not installed on this host"
        ) from exc
    except PermissionError as exc:
        raise ToolFailure(ToolErrorKind.UNAUTHORIZED, f"{args[0]}: permission denied") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    except TimeoutError:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"{shlex.join(args)} did not finish within {limit:g}s"
        ) from None
    finally:  # a timeout or a cancelled activity: nothing it started outlives it
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return CommandResult(
        argv=args,
        where="localhost",
        exit_status=proc.returncode if proc.returncode is not None else 255,
        stdout=_cap(out),
        stderr=_cap(err),
        seconds=time.monotonic() - started,
    )


def known_hosts_file(ssh: SshAccess) -> Path:
    known = ssh.known_hosts or Path.home() / ".ssh" / "known_hosts"
    if not known.is_file():
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"no known_hosts file at {known}: the host key must be trusted (set ssh.known_hosts)",
        )
    return known


def with_env(args: tuple[str, ...], env: Mapping[str, str] | None) -> tuple[str, ...]:
    """``env NAME=VALUE ... argv``: environment for a remote command without the server's
    ``AcceptEnv``. The values are in the remote argv (a process list shows them): never secrets,
    which go on stdin."""
    if not env:
        return args
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name) or "\x00" in value:
            raise ToolFailure(ToolErrorKind.INVALID, f"{name!r} is not an environment variable")
    return ("env", *(f"{k}={v}" for k, v in env.items()), *args)


async def run_ssh(
    ssh: SshAccess,
    argv: Sequence[str],
    *,
    limit: float,
    host: str | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` on ``host`` (default ``ssh.host``) over SSH, host key checked, no agent.

    ``env`` must hold no secret (see ``with_env``); pass secrets on ``stdin``."""
    import asyncssh

    args = _check_argv(argv)
    remote = with_env(args, env)
    address = host or ssh.host
    if not address:
        raise ToolFailure(ToolErrorKind.INVALID, "ssh settings name no host")
    known = await asyncio.to_thread(known_hosts_file, ssh)
    where = f"{ssh.user}@{address}:{ssh.port}"
    started = time.monotonic()
    try:
        async with asyncssh.connect(
            address,
            port=ssh.port,
            username=ssh.user,
            client_keys=[str(ssh.key_file)],
            known_hosts=str(known),
            agent_path=None,
            config=[],
            connect_timeout=ssh.timeout,
        ) as conn:
            result = await asyncio.wait_for(
                conn.run(shlex.join(remote), check=False, input=stdin, encoding=None), limit
            )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"host key of {address}:{ssh.port} is not in {known}: {exc.reason}",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise ToolFailure(
            ToolErrorKind.UNAUTHORIZED, f"SSH to {where} refused the key {ssh.key_file}"
        ) from exc
    except TimeoutError as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{shlex.join(args)} on {where} did not finish within {limit:g}s",
        ) from exc
    except (OSError, asyncssh.Error) as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"SSH to {where} failed: {type(exc).__name__}: {exc}"
        ) from exc
    status = result.exit_status
    return CommandResult(
        argv=args,
        where=where,
        exit_status=int(status if status is not None else 255),
        stdout=_cap(_as_bytes(result.stdout)),
        stderr=_cap(_as_bytes(result.stderr)),
        seconds=time.monotonic() - started,
    )


async def run_on(
    ssh: SshAccess | None,
    argv: Sequence[str],
    *,
    limit: float,
    host: str | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Over SSH when the target has ``ssh`` settings, else on this machine.

    ``env`` is added to the command's environment; over SSH it is visible in the remote process
    list, so it must hold no secret (secrets go on ``stdin``)."""
    if ssh is None:
        return await run_local(argv, limit=limit, stdin=stdin, env=env)
    return await run_ssh(ssh, argv, limit=limit, host=host, stdin=stdin, env=env)


def unit_name(name: str) -> str:
    """A systemd unit name (``nginx`` → ``nginx.service``), refused if it could be anything else."""
    if not UNIT_NAME.fullmatch(name) or name.startswith("-"):
        raise ToolFailure(ToolErrorKind.INVALID, f"{name!r} is not a systemd unit name")
    known = (".service", ".socket", ".timer", ".target", ".path", ".mount")
    return name if name.endswith(known) else f"{name}.service"
