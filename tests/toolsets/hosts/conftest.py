"""A host for the hosts toolset: the real test sshd (host key checked) with ``systemctl`` and
``journalctl`` stand-ins first on its PATH (no systemd here), a real loop-mounted ext4 data mount,
real logrotate with a config for that mount's logs, and real ``ip`` on a veth pair."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import systemd
from tests.fakes.sshd import SshServer
from workers.lab.lab import mount_disk, mounts_under

LOGROTATE = """{logs}/*.log {{
    rotate 1
    compress
    missingok
    notifempty
}}
"""


@dataclass
class HostLab:
    sshd: SshServer
    state: Path
    mount: Path
    logrotate: Path
    logrotate_state: Path

    @property
    def logs(self) -> Path:
        return self.mount / "logs"

    def target(self, **extra: Any) -> dict[str, Any]:
        return {
            "name": "lab",
            "ssh": {
                "host": "127.0.0.1",
                "port": self.sshd.port,
                "user": self.sshd.user,
                "key_file": str(self.sshd.client_key),
                "known_hosts": str(self.sshd.known_hosts),
            },
            "units": ["web"],
            "logrotate": [str(self.logrotate)],
            "logrotate_state": str(self.logrotate_state),
            "journal_min_size": "1m",
            **extra,
        }

    def fill_log(self, name: str, mib: int) -> Path:
        """A compressible log of ``mib`` MiB (what a chatty service writes)."""
        self.logs.mkdir(exist_ok=True)
        path = self.logs / name
        line = b"2026-12-02T04:00:00Z GET /api/items 200 12ms user=guest agent=curl/8.0\n"
        with open(path, "wb") as handle:
            for _ in range(mib * 1024 * 1024 // len(line)):
                handle.write(line)
        return path


@pytest.fixture(scope="session")
def host_lab(session_root: Path) -> Iterator[HostLab]:
    root = session_root / "host"
    sshd = SshServer(root / "sshd").start()
    state = root / "systemd"
    systemd.install(sshd.bin_dir, state)
    mount = root / "data"
    if not mount_disk(root / "data.img", mount, size_mb=32):
        sshd.stop()
        raise RuntimeError("loop mount failed: the hosts tests need root and loop devices")
    config_dir = root / "logrotate.d"
    config_dir.mkdir(mode=0o755)
    config = config_dir / "app"
    config.write_text(LOGROTATE.format(logs=mount / "logs"))
    config.chmod(0o644)
    (mount / "logs").mkdir(mode=0o755)
    try:
        yield HostLab(sshd, state, mount, config, root / "logrotate.state")
    finally:
        for unit_dir in (state / "ct").glob("*/*"):
            systemd.Unit(state, systemd.HOST, unit_dir.name).stop()
        for mountpoint in mounts_under(root):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        sshd.stop()


@pytest.fixture
def veth() -> Iterator[str]:
    """A veth pair on this machine, both ends up; the name of the end the tests bounce."""
    name = f"hlm{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"], check=True
    )
    subprocess.run(["ip", "link", "set", "dev", name, "up"], check=True)
    subprocess.run(["ip", "link", "set", "dev", f"{name}p", "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)
