"""One fake Proxmox node for the tests: the PVE API fake, a real sshd with ``pct``, and a PBS fake.

``build_lab`` fills the node with what the tools and runbooks look at: containers on LVM-thin
(snapshots) and on a dir storage (none), a VM, a template, a backup job, backups on a storage, an
HA-managed guest, and a container service run by a real process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes import pct
from tests.fakes.pbs import FakePBS
from tests.fakes.pve import GIB, MIB, FakePVE
from tests.fakes.sshd import SshServer
from tests.fakes.tls import Certs, make_certs

TOKEN_ID = "root@pam!homelab"
TOKEN_SECRET = "6f1e2a7c-3d4b-4c55-9a6e-0b1c2d3e4f50"
PBS_TOKEN_ID = "backup@pbs!homelab"
PBS_TOKEN_SECRET = "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"
NODE = "pve1"


@dataclass
class Lab:
    pve: FakePVE
    pbs: FakePBS
    sshd: SshServer
    certs: Certs
    state: Path

    def proxmox_target(self, name: str = "pve", **overrides: Any) -> dict[str, Any]:
        target: dict[str, Any] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.pve.port,
            "token_id": TOKEN_ID,
            "token_secret": TOKEN_SECRET,
            "verify_ssl": str(self.certs.ca_file),
            "timeout": 5,
            "task_timeout": "20s",
            "ssh": {
                "host": "127.0.0.1",
                "port": self.sshd.port,
                "user": self.sshd.user,
                "key_file": str(self.sshd.client_key),
                "known_hosts": str(self.sshd.known_hosts),
                "timeout": 10,
            },
        }
        target.update(overrides)
        return target

    def pbs_target(self, name: str = "backup", **overrides: Any) -> dict[str, Any]:
        target: dict[str, Any] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.pbs.port,
            "token_id": PBS_TOKEN_ID,
            "token_secret": PBS_TOKEN_SECRET,
            "verify_ssl": str(self.certs.ca_file),
            "timeout": 5,
        }
        target.update(overrides)
        return target


def build_lab(pve: FakePVE, pbs: FakePBS) -> None:
    pve.add_node(NODE, memory_total=16 * GIB, base_used=3 * GIB)
    pve.add_storage(NODE, "local", "dir", "iso,vztmpl,backup,rootdir", 100 * GIB, 20 * GIB)
    pve.add_storage(NODE, "local-lvm", "lvmthin", "images,rootdir", 400 * GIB, 40 * GIB)
    pve.add_storage(NODE, "backups", "dir", "backup", 1000 * GIB, 930 * GIB)
    # 200: a healthy web container; 201: a database container (tests make it critical);
    # 202: on dir storage (cannot snapshot); 203: stopped; 100: a VM; 9000: a template.
    pve.add_guest(200, "lxc", NODE, "web", mem_used=300 * MIB)
    pve.add_guest(201, "lxc", NODE, "db", mem_used=480 * MIB)
    pve.add_guest(
        202,
        "lxc",
        NODE,
        "scratch",
        config={"rootfs": "local:202/vm-202-disk-0.raw,size=4G"},
        snapshot_capable=False,
    )
    pve.add_guest(203, "lxc", NODE, "batch", status="stopped")
    pve.add_guest(100, "qemu", NODE, "vm-app", mem_used=1500 * MIB)
    pve.add_guest(9000, "lxc", NODE, "tmpl", status="stopped", template=True)
    pve.backup_jobs.append(
        {
            "id": "backup-nightly",
            "type": "vzdump",
            "schedule": "01:00",
            "enabled": 1,
            "storage": "backups",
            "vmid": "100,200,201",
            "mode": "snapshot",
        }
    )
    pve.add_backup(NODE, "backups", 200, age_seconds=5 * 3600)
    pve.add_backup(NODE, "backups", 201, age_seconds=3 * 86400)
    pve.add_finished_task(200, NODE, "vzdump", "OK", age_seconds=5 * 3600)
    pve.ha_resources["vm:100"] = {"sid": "vm:100", "type": "vm", "state": "started"}
    now = time.time()
    pbs.add_datastore("store1", total=2000 * GIB, used=1500 * GIB, full_in_days=40)
    pbs.add_snapshot("store1", "ct", "200", now - 4 * 3600, verified="ok")
    pbs.add_snapshot("store1", "ct", "200", now - 28 * 3600, verified="ok")
    pbs.add_snapshot("store1", "vm", "100", now - 10 * 86400, verified="failed")
    pbs.add_snapshot("store1", "host", "nas", now - 3600, verified=None)
    pbs.verify_jobs.append(
        {"id": "v-weekly", "store": "store1", "schedule": "sat 02:00", "last-run-state": "OK"}
    )
    pbs.sync_jobs.append(
        {
            "id": "s-offsite",
            "store": "store1",
            "remote": "offsite",
            "remote-store": "mirror",
            "schedule": "hourly",
            "last-run-state": "connection refused",
        }
    )
    pbs.prune_jobs.append(
        {"id": "p-daily", "store": "store1", "schedule": "daily", "last-run-state": "OK"}
    )


@contextmanager
def proxmox_lab(root: Path, task_delay: float = 0.15) -> Iterator[Lab]:
    certs = make_certs(root / "certs")
    state = root / "node-state"
    pve = FakePVE(certs, {TOKEN_ID: TOKEN_SECRET}, task_delay=task_delay, state_dir=state)
    pbs = FakePBS(certs, {PBS_TOKEN_ID: PBS_TOKEN_SECRET})
    build_lab(pve, pbs)
    sshd = SshServer(root / "sshd")
    pve.start()
    pbs.start()
    try:
        sshd.start()
        pct.install_pct(sshd.bin_dir, state, NODE)
        pct.add_service(state, 200, "demo")
        yield Lab(pve=pve, pbs=pbs, sshd=sshd, certs=certs, state=state)
    finally:
        sshd.stop()
        pct.stop_all(state)
        pve.stop()
        pbs.stop()
