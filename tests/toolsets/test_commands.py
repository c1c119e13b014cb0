"""The one command runner: local exec and SSH (a real OpenSSH server), typed failures, no shell."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.catalog import ToolFailure
from activities.toolsets.commands import run_local, run_on, run_ssh, unit_name
from core.models import ToolErrorKind
from core.targets import SshAccess
from tests.fakes.sshd import SshServer


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def access(server: SshServer, **overrides: object) -> SshAccess:
    data: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "key_file": server.client_key,
        "known_hosts": server.known_hosts,
    }
    data.update(overrides)
    return SshAccess.model_validate(data)


async def test_local_runs_an_argument_vector_not_a_shell_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = await run_local(["echo", f"$(touch {marker}); echo hi"], limit=5)
    assert result.ok and result.where == "localhost"
    assert result.stdout.strip() == f"$(touch {marker}); echo hi"
    assert not marker.exists()


async def test_local_failures_are_typed() -> None:
    failed = await run_local(["sh", "-c", "echo oops >&2; exit 3"], limit=5)
    assert failed.exit_status == 3 and failed.tail() == "oops"
    with pytest.raises(ToolFailure) as raised:
        failed.check("the thing")
    assert raised.value.kind is ToolErrorKind.FAILED
    assert "the thing on localhost exited 3: oops" in raised.value.message

    with pytest.raises(ToolFailure) as missing:
        await run_local(["no-such-binary-here"], limit=5)
    assert missing.value.kind is ToolErrorKind.UNSUPPORTED

    with pytest.raises(ToolFailure) as nul:
        await run_local(["echo", "a\x00b"], limit=5)
    assert nul.value.kind is ToolErrorKind.INVALID


async def test_local_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(ToolFailure) as raised:
        await run_local(["sh", "-c", f"sleep 30 & echo $! > {child_pid}; wait"], limit=0.5)
    assert time.monotonic() - started < 5
    assert raised.value.kind is ToolErrorKind.FAILED and "within 0.5s" in raised.value.message
    pid = int(child_pid.read_text())
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the background child outlived the timeout"


async def test_output_is_capped() -> None:
    result = await run_local(["head", "-c", "600000", "/dev/zero"], limit=10)
    assert len(result.stdout) < 300_000 and "more bytes cut" in result.stdout


async def test_ssh_runs_with_the_host_key_checked(sshd: SshServer) -> None:
    result = await run_ssh(access(sshd), ["echo", "a b", "$HOME"], limit=10)
    assert result.ok and result.stdout.strip() == "a b $HOME"  # quoted word for word
    assert result.where == f"{sshd.user}@127.0.0.1:{sshd.port}"
    same = await run_on(access(sshd), ["sh", "-c", "exit 4"], limit=10)
    assert same.exit_status == 4


async def test_ssh_refuses_an_unknown_host_key(sshd: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMl3y\n")
    with pytest.raises(ToolFailure) as raised:
        await run_ssh(access(sshd, known_hosts=other), ["true"], limit=10)
    assert raised.value.kind is ToolErrorKind.FAILED

    with pytest.raises(ToolFailure) as absent:
        await run_ssh(access(sshd, known_hosts=tmp_path / "none"), ["true"], limit=10)
    assert absent.value.kind is ToolErrorKind.FAILED and "no known_hosts" in absent.value.message


async def test_ssh_wrong_key_and_dead_port_are_typed(sshd: SshServer, tmp_path: Path) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    stranger = tmp_path / "stranger"
    stranger.write_bytes(key.export_private_key())
    stranger.chmod(0o600)
    with pytest.raises(ToolFailure) as refused:
        await run_ssh(access(sshd, key_file=stranger), ["true"], limit=10)
    assert refused.value.kind is ToolErrorKind.UNAUTHORIZED

    with pytest.raises(ToolFailure) as dead:
        await run_ssh(access(sshd, port=1, timeout=2), ["true"], limit=10)
    assert dead.value.kind is ToolErrorKind.UNREACHABLE


def test_unit_names_are_validated() -> None:
    assert unit_name("nginx") == "nginx.service"
    assert unit_name("backup.timer") == "backup.timer"
    for bad in ["--now", "a b", "x;reboot", "", "../etc"]:
        with pytest.raises(ToolFailure):
            unit_name(bad)


async def test_environment_reaches_the_command_locally_and_over_ssh(sshd: SshServer) -> None:
    """Over SSH without AcceptEnv: an `env NAME=value` prefix, quoted like every other word."""
    value = "two words; $(touch /tmp/pwned) 'quoted'"
    argv = ["sh", "-c", 'printf %s "$GREETING"']
    local = await run_on(None, argv, limit=10, env={"GREETING": value})
    remote = await run_on(access(sshd), argv, limit=10, env={"GREETING": value})
    assert local.stdout == remote.stdout == value
    assert remote.argv == tuple(argv)  # messages show the command, not the environment
    with pytest.raises(ToolFailure) as bad:
        await run_ssh(access(sshd), ["true"], limit=10, env={"NOT-A-NAME": "x"})
    assert bad.value.kind is ToolErrorKind.INVALID
