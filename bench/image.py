"""The image, built and run here: a Debian base from Debian's packages, the project image built on a
private Docker engine, and its worker and intake containers serving real incidents.

1. `deploy/scripts/debian-base-image.sh`: debootstrap (bookworm, minbase, python3-venv) and
   `docker import` into a private dockerd: no registry;
2. a wheelhouse of the runtime dependencies at the versions this checkout's venv runs (pip download
   on the host: the build cannot verify PyPI's certificate from inside a container here), served
   on loopback for the build (`PIP_NO_INDEX=1`, `PIP_FIND_LINKS`);
3. `docker build --network host --build-arg BASE=local/debian-python:bookworm`;
4. `homelab-agents worker` and `intake` containers (`--network host`, uid 10001, the engine's socket
   mounted, config read-only, state and SQLite store in a volume directory) against a Temporal dev
   server on this machine;
5. two real incidents on the same engine: a container that dies (the intake container's events
   watcher opens the incident) and an Alertmanager webhook posted to the intake container; each
   must close resolved with the container running again.

Takes 5-10 minutes (the build dominates: vfs storage copies every layer), so it is a benchmark,
not part of the test suite. Prints and writes bench/results/image-<time>.json.

    .venv/bin/python bench/image.py
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import write
from bench.restore import EventLog
from bench.services import BIN, incident_result
from core.models import Outcome
from workers.docker_events import fingerprint
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.processes import free_port
from workflows import search_attributes

REPO = Path(__file__).resolve().parents[1]
BASE_TAG = "local/debian-python:bookworm"
IMAGE_TAG = "local/homelab-agents:bench"
# Markers the host's Python (3.11.7) does not select but Debian 12's 3.11.2 does.
IMAGE_PYTHON_EXTRAS = ["async-timeout>=4.0.3"]  # redis, below Python 3.11.3
DIES_ONCE = (
    "sleep 1; if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"
)


def sh(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run a command to completion, output to ``log``; its wall time. Raises with the log's tail."""
    started = time.perf_counter()
    with open(log, "ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {done.returncode}:\n{tail}")
    return time.perf_counter() - started


def wheelhouse(dest: Path, log: Path) -> float:
    """The runtime dependencies, pinned to this venv's versions, as wheels."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = dest.parent / "requirements.txt"
    requirements.write_text(
        "\n".join(project["project"]["dependencies"] + project["build-system"]["requires"])
    )
    constraints = dest.parent / "constraints.txt"
    frozen = subprocess.run(
        [str(BIN / "pip"), "freeze", "--exclude-editable"], capture_output=True, text=True
    )
    constraints.write_text(frozen.stdout)
    pip = [str(BIN / "pip"), "download", "-q", "-d", str(dest), "--only-binary=:all:"]
    seconds = sh([*pip, "-c", str(constraints), "-r", str(requirements)], log)
    return seconds + sh([*pip, "-c", str(constraints), *IMAGE_PYTHON_EXTRAS], log)


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on loopback (pip's --find-links reads the listing)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def capture(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def run_container(docker: list[str], log: Path, *args: str) -> str:
    out = subprocess.run([*docker, "run", "-d", *args], capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"docker run failed: {out.stderr}")
    return out.stdout.strip()


async def wait_http(url: str, timeout: float, what: str) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).is_success:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} did not answer {url} within {timeout}s")


async def main() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hl-image-"))
    log = root / "image.log"
    engine = DockerEngine(root / "docker").start()
    docker = ["docker", "-H", engine.url]
    env = {**os.environ, "DOCKER_HOST": engine.url}
    timings: dict[str, float] = {}
    incidents: dict[str, Any] = {}
    containers: list[str] = []
    events = EventLog(engine)
    events.start()
    temporal: WorkflowEnvironment | None = None
    try:
        print("Debian base image (debootstrap, docker import) …", flush=True)
        timings["base_image_s"] = sh(
            [str(REPO / "deploy/scripts/debian-base-image.sh"), BASE_TAG], log, env
        )
        print("wheelhouse (pip download, this venv's versions) …", flush=True)
        wheels = root / "wheels"
        timings["wheelhouse_s"] = wheelhouse(wheels, log)
        print("docker build …", flush=True)
        with served(wheels) as links:
            timings["build_s"] = sh(
                [
                    *docker,
                    "build",
                    "--network",
                    "host",
                    "--build-arg",
                    f"BASE={BASE_TAG}",
                    "--build-arg",
                    "PIP_NO_INDEX=1",
                    "--build-arg",
                    f"PIP_FIND_LINKS={links}",
                    "-t",
                    IMAGE_TAG,
                    str(REPO),
                ],
                log,
            )
        size = capture([*docker, "image", "inspect", IMAGE_TAG, "--format", "{{.Size}}"]).strip()

        temporal = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=search_attributes.ALL,
            dev_server_startup_timeout=timedelta(seconds=60),
        )
        address = temporal.client.service_client.config.target_host
        queue = f"image-{uuid.uuid4().hex[:8]}"
        intake_port = free_port()
        etc, state = root / "etc", root / "state"
        etc.mkdir()
        state.mkdir()
        os.chown(state, 10001, 10001)  # the image's homelab user
        (etc / "homelab.yaml").write_text(
            yaml.safe_dump(
                {
                    "temporal": {"address": address, "task_queue": queue},
                    "store": {"url": "sqlite:////var/lib/homelab-agents/store.db"},
                    "intake": {"port": intake_port},
                    "worker": {"metrics_port": free_port()},
                    "docker": [{"name": "lab", "url": "unix:///var/run/docker.sock"}],
                }
            )
        )
        common = [
            "--network",
            "host",
            "--group-add",
            str(engine.socket.stat().st_gid),
            "-v",
            f"{engine.socket}:/var/run/docker.sock",
            "-v",
            f"{etc / 'homelab.yaml'}:/etc/homelab-agents/homelab.yaml:ro",
            "-v",
            f"{state}:/var/lib/homelab-agents",
        ]
        print("worker and intake containers …", flush=True)
        started = time.perf_counter()
        containers.append(
            run_container(docker, log, "--name", "hl-worker", *common, IMAGE_TAG, "worker")
        )
        containers.append(
            run_container(docker, log, "--name", "hl-intake", *common, IMAGE_TAG, "intake")
        )
        await wait_http(f"http://127.0.0.1:{intake_port}/healthz", 180, "the intake container")
        timings["containers_ready_s"] = time.perf_counter() - started
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        dc = engine.client()
        await asyncio.sleep(2)  # the watcher subscribes to the engine's events

        print("incident 1: a container dies (events watcher in the intake container) …", flush=True)
        name = f"dies-{uuid.uuid4().hex[:6]}"
        dc.containers.run(BUSYBOX_IMAGE, ["sh", "-c", DIES_ONCE], name=name, detach=True)
        died = await events.wait(name, "die", timeout=30)
        restarted = await events.wait(name, "start", after=died, timeout=120)
        state_1 = await incident_result(
            client, f"incident-{fingerprint('lab', name, 'ContainerKilled')}", timeout=120
        )
        dc.containers.get(name).reload()
        incidents["events_watcher"] = {
            "outcome": state_1.outcome.value,
            "die_to_start_s": round(restarted - died, 3),
            "container": dc.containers.get(name).status,
        }

        print("incident 2: an Alertmanager webhook to the intake container …", flush=True)
        other = f"posted-{uuid.uuid4().hex[:6]}"
        crashed = dc.containers.run(
            BUSYBOX_IMAGE,
            [
                "sh",
                "-c",
                "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 0",
            ],
            name=other,
            detach=True,
        )
        while crashed.status != "exited":
            await asyncio.sleep(0.1)
            crashed.reload()
        fp = uuid.uuid4().hex[:16]
        posted = time.perf_counter()
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            answer = await http.post(
                f"http://127.0.0.1:{intake_port}/alerts/alertmanager",
                json={
                    "version": "4",
                    "status": "firing",
                    "receiver": "bench",
                    "groupKey": "{}",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "ContainerKilled", "name": other},
                            "annotations": {},
                            "startsAt": datetime.now(UTC).isoformat(),
                            "fingerprint": fp,
                        }
                    ],
                },
            )
        state_2 = await incident_result(client, f"incident-{fp}", timeout=120)
        crashed.reload()
        incidents["webhook"] = {
            "http_status": answer.status_code,
            "outcome": state_2.outcome.value,
            "post_to_closed_s": round(time.perf_counter() - posted, 2),
            "container": crashed.status,
        }
        dc.close()
        for name in ("hl-worker", "hl-intake"):
            (root / f"{name}.log").write_text(capture([*docker, "logs", "--tail", "50", name]))
    finally:
        for container in containers:
            capture([*docker, "rm", "-f", container])
        events.close()
        engine.stop()
        if temporal is not None:
            await temporal.shutdown()
    ok = all(
        i["outcome"] == Outcome.RESOLVED.value and i["container"] == "running"
        for i in incidents.values()
    )
    result = {
        "benchmark": "image-built-and-run-here",
        "at": datetime.now(UTC).isoformat(),
        "base": f"{BASE_TAG}: debootstrap --variant=minbase bookworm from deb.debian.org, docker import",
        "dependencies": "wheels pip-downloaded on the host at this venv's versions, served on "
        "loopback to the build (PyPI's certificate cannot be verified from inside a container here)",
        "image_size_mb": round(int(size or 0) / 1e6),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "incidents": incidents,
        "summary": {"built": True, "served_real_incidents": ok},
        "note": "private dockerd (vfs storage, no bridge): containers use --network host and reach "
        "the dev server on 127.0.0.1; the engine's socket is the docker target of the worker",
    }
    shutil.rmtree(wheels, ignore_errors=True)
    return result


if __name__ == "__main__":
    report = asyncio.run(main())
    out = write("image", report)
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash the interpreter at exit (sdk-python#300)
