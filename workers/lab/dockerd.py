"""A private Docker engine (dockerd on its own socket and data root) with a busybox image.

No bridge, no iptables, vfs storage: it runs anywhere dockerd runs, beside any other engine.
Containers use ``--network host``; ``local/busybox:latest`` is imported from the host's static
busybox, so nothing is pulled from a registry.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import time
from pathlib import Path

import docker

from workers.lab.processes import Proc, wait_for

BUSYBOX_IMAGE = "local/busybox:latest"
BUSYBOX_APPLETS = [
    "sh",
    "tr",
    "fold",
    "test",
    "[",
    "httpd",
    "dd",
    "sleep",
    "wget",
    "cat",
    "echo",
    "ls",
    "true",
    "false",
    "head",
    "tail",
    "yes",
    "rm",
    "mkdir",
    "touch",
    "date",
    "kill",
    "ps",
    "nc",
    "sed",
]


class DockerEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.proc: Proc | None = None

    def start(self, timeout: float = 30.0) -> DockerEngine:
        binary = shutil.which("dockerd")
        if binary is None:
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        for sub in ("data", "exec"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.proc = Proc.spawn(
            "dockerd",
            [
                binary,
                "--host",
                self.url,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ],
            self.root / "dockerd.log",
        )
        wait_for(self._ready, timeout, f"dockerd at {self.socket} ({self.proc.tail(5)})")
        self.ensure_busybox()
        return self

    def _ready(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise RuntimeError(f"dockerd exited:\n{self.proc.tail()}")
        with contextlib.closing(self.client()) as client:
            return bool(client.ping())

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=60)

    def ensure_busybox(self) -> None:
        with contextlib.closing(self.client()) as client:
            try:
                client.images.get(BUSYBOX_IMAGE)
                return
            except docker.errors.ImageNotFound:
                pass
            busybox = shutil.which("busybox") or "/bin/busybox"
            if not Path(busybox).exists():
                raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for directory in ("bin", "tmp", "www", "etc", "data"):
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o1777 if directory == "tmp" else 0o755
                    tar.addfile(info)
                tar.add(busybox, arcname="bin/busybox")
                for applet in BUSYBOX_APPLETS:
                    link = tarfile.TarInfo(f"bin/{applet}")
                    link.type = tarfile.SYMTYPE
                    link.linkname = "busybox"
                    tar.addfile(link)
                index = b"ok\n"
                info = tarfile.TarInfo("www/index.html")
                info.size = len(index)
                tar.addfile(info, io.BytesIO(index))
            repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
            client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)

    def remove_all_containers(self) -> None:
        with contextlib.closing(self.client()) as client:
            for container in client.containers.list(all=True):
                container.remove(force=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.remove_all_containers()
        except Exception:
            pass
        self.proc.stop(grace=15)
        time.sleep(0.2)
        self.proc = None
