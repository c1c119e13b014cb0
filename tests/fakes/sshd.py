"""A real OpenSSH server on loopback for the tests: own host key, own authorized_keys, free port.

It plays a Proxmox node's SSH side; ``bin_dir`` is first on the PATH of its sessions, where
tests/fakes/pct.py installs ``pct``. Missing ``sshd`` fails the run (install it with
deploy/scripts/install-system-deps.sh); it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import asyncssh

from workers.lab.processes import Proc, free_port, wait_for


def _write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    path.with_suffix(".pub").write_bytes(key.export_public_key())
    return key


class SshServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.bin_dir = root / "bin"
        self.client_key = root / "client_key"
        self.known_hosts = root / "known_hosts"
        self.proc: Proc | None = None

    def start(self) -> SshServer:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            raise RuntimeError(
                "sshd is not installed (openssh-server): run deploy/scripts/install-system-deps.sh"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.bin_dir.mkdir(exist_ok=True)
        host_key = _write_key(self.root / "host_key")
        client = _write_key(self.client_key)
        (self.root / "authorized_keys").write_bytes(client.export_public_key())
        self.port = free_port()
        public = host_key.export_public_key().decode().strip()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public}\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.root / 'host_key'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel VERBOSE",
                    f"SetEnv PATH={self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "",
                ]
            )
        )
        self.proc = Proc.spawn(
            "sshd", [sshd, "-D", "-e", "-f", str(config)], self.root / "sshd.log"
        )

        def listening() -> bool:
            if self.proc is not None and not self.proc.alive():
                raise RuntimeError(f"sshd exited: {self.proc.tail()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        wait_for(listening, 10, "sshd")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()
