"""Docker engine toolset (docker SDK), on any configured engine (unix socket or tcp).

Reads cover what an operator checks first (state, logs, stats, images, networks, volumes, engine
health); writes are restart/start/stop, resource updates, image pruning, log truncation and
recreation on another image, each with an exact preview, a before-state and a compensation.
Writes are idempotent against their captured before-state, so a retried activity never acts twice.
"""

from __future__ import annotations

from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from activities.catalog import ToolContext, ToolFailure, Toolset
from core.models import ToolErrorKind
from core.targets import DockerTarget

MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses limits below 6 MiB
LOG_LINE_LIMIT = 2000


def translate(exc: Exception) -> ToolFailure | None:
    if isinstance(exc, NotFound | ImageNotFound):
        return ToolFailure(ToolErrorKind.NOT_FOUND, explain(exc))
    if isinstance(exc, APIError):
        if exc.status_code == 409:
            return ToolFailure(ToolErrorKind.CONFLICT, explain(exc))
        if exc.status_code is not None and exc.status_code >= 500 and "connect" in str(exc).lower():
            return ToolFailure(ToolErrorKind.UNREACHABLE, explain(exc))
        return ToolFailure(ToolErrorKind.FAILED, explain(exc))
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"docker engine unreachable: {exc}")
    if isinstance(exc, DockerException):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"docker engine unreachable: {exc}")
    return None


def explain(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


TOOLSET = Toolset(
    service="docker",
    description="Docker engines: containers, images, networks, volumes and the engine itself.",
    translate=translate,
)


# --- clients and helpers -----------------------------------------------------------------------


def make_client(target: DockerTarget) -> docker.DockerClient:
    return docker.DockerClient(base_url=target.url, timeout=int(target.timeout), version="auto")


def probe(target: DockerTarget) -> str:
    client = make_client(target)
    try:
        version = client.version()
        info = client.info()
    finally:
        client.close()
    return (
        f"engine {version.get('Version')} (API {version.get('ApiVersion')}), "
        f"{info.get('ContainersRunning')} running / {info.get('Containers')} containers"
    )


TOOLSET.probe = probe


def canonical(ctx: ToolContext[Any]) -> str:
    """A container's name, whether the alert named it by name, id or id prefix."""
    return str(container_for(ctx).attrs.get("Name", "")).lstrip("/") or ctx.ref.resource


def client_for(ctx: ToolContext[Any]) -> docker.DockerClient:
    return ctx.clients.client("docker", ctx.ref.target, make_client)


def container_for(ctx: ToolContext[Any]) -> Container:
    try:
        return client_for(ctx).containers.get(ctx.ref.resource)
    except NotFound:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND, f"no container {ctx.ref.resource!r} on engine {ctx.ref.target}"
        ) from None


def _health(state: dict[str, Any]) -> str:
    health = state.get("Health")
    return str(health.get("Status", "none")) if health else "none"


def describe_container(c: Container) -> dict[str, Any]:
    attrs = c.attrs
    state = attrs.get("State", {})
    host = attrs.get("HostConfig", {})
    config = attrs.get("Config", {})
    health = state.get("Health") or {}
    return {
        "name": attrs.get("Name", "").lstrip("/"),
        "id": attrs.get("Id", "")[:12],
        "image": config.get("Image", ""),
        "image_id": attrs.get("Image", ""),
        "created": attrs.get("Created"),
        "state": {
            "status": state.get("Status"),
            "running": bool(state.get("Running")),
            "restarting": bool(state.get("Restarting")),
            "paused": bool(state.get("Paused")),
            "exit_code": state.get("ExitCode"),
            "oom_killed": bool(state.get("OOMKilled")),
            "error": state.get("Error", ""),
            "started_at": state.get("StartedAt"),
            "finished_at": state.get("FinishedAt"),
            "pid": state.get("Pid"),
            "health": _health(state),
        },
        "restart_count": attrs.get("RestartCount", 0),
        "restart_policy": {
            "name": (host.get("RestartPolicy") or {}).get("Name", ""),
            "max_retries": (host.get("RestartPolicy") or {}).get("MaximumRetryCount", 0),
        },
        "memory_limit": host.get("Memory", 0) or 0,
        "memory_swap": host.get("MemorySwap", 0) or 0,
        "nano_cpus": host.get("NanoCpus", 0) or 0,
        "cpu_shares": host.get("CpuShares", 0) or 0,
        "healthcheck": config.get("Healthcheck"),
        "health_failing_streak": health.get("FailingStreak", 0),
        "health_log": [
            {
                "start": entry.get("Start"),
                "exit_code": entry.get("ExitCode"),
                "output": (entry.get("Output") or "")[-500:],
            }
            for entry in (health.get("Log") or [])[-5:]
        ],
        "log_driver": (host.get("LogConfig") or {}).get("Type", ""),
        "log_path": attrs.get("LogPath", ""),
        "labels": config.get("Labels") or {},
    }


TOOLSET.canonical = canonical
