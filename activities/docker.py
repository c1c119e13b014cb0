"""Docker engine toolset (docker SDK), on any configured engine (unix socket or tcp).

Reads cover what an operator checks first (state, logs, stats, images, networks, volumes, engine
health); writes are restart/start/stop, resource updates, image pruning, log truncation and
recreation on another image, each with an exact preview, a before-state and a compensation.
Writes are idempotent against their captured before-state, so a retried activity never acts twice.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import NoParams, ToolContext, ToolFailure, Toolset
from core.config import DockerTarget
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_size as mib
from core.units import parse_size

MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses limits below 6 MiB
LOG_LINE_LIMIT = 2000


def translate(exc: Exception) -> ToolFailure | None:
    if isinstance(exc, NotFound | ImageNotFound):
        return ToolFailure(ToolErrorKind.NOT_FOUND, _explain(exc))
    if isinstance(exc, APIError):
        if exc.status_code == 409:
            return ToolFailure(ToolErrorKind.CONFLICT, _explain(exc))
        if exc.status_code is not None and exc.status_code >= 500 and "connect" in str(exc).lower():
            return ToolFailure(ToolErrorKind.UNREACHABLE, _explain(exc))
        return ToolFailure(ToolErrorKind.FAILED, _explain(exc))
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"docker engine unreachable: {exc}")
    if isinstance(exc, DockerException):
        return ToolFailure(ToolErrorKind.UNREACHABLE, f"docker engine unreachable: {exc}")
    return None


def _explain(exc: Exception) -> str:
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


# --- read tools --------------------------------------------------------------------------------


@TOOLSET.read(
    "inspect", "A container's state, exit code, OOM kill, restarts, health log and limits."
)
def inspect(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    data = describe_container(container_for(ctx))
    state = data["state"]
    data["_summary"] = (
        f"{ctx.where()}: {state['status']}, exit {state['exit_code']}, "
        f"oom={state['oom_killed']}, health={state['health']}, restarts={data['restart_count']}"
    )
    return data


class LogsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tail: int = Field(default=100, ge=1, le=5000)
    since_seconds: int | None = Field(default=None, ge=1, description="only lines newer than this")


@TOOLSET.read("logs", "The last lines of a container's log (stdout and stderr).", LogsParams)
def logs(ctx: ToolContext[LogsParams]) -> dict[str, Any]:
    container = container_for(ctx)
    since = None
    if ctx.params.since_seconds:
        since = datetime.now(UTC) - timedelta(seconds=ctx.params.since_seconds)
    raw = container.logs(tail=ctx.params.tail, since=since, timestamps=True)
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    lines = [line[:LOG_LINE_LIMIT] for line in text.splitlines()]
    return {"lines": lines, "count": len(lines), "_summary": f"{len(lines)} log lines"}


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = True
    status: str | None = Field(default=None, description="created|running|exited|paused|dead")


@TOOLSET.read(
    "containers",
    "Containers on an engine with state, health and image.",
    ListParams,
    needs_resource=False,
)
def containers(ctx: ToolContext[ListParams]) -> dict[str, Any]:
    filters = {"status": ctx.params.status} if ctx.params.status else None
    items = client_for(ctx).containers.list(all=ctx.params.all, filters=filters)
    rows = [
        {
            "name": d["name"],
            "id": d["id"],
            "image": d["image"],
            "status": d["state"]["status"],
            "health": d["state"]["health"],
            "exit_code": d["state"]["exit_code"],
            "restart_count": d["restart_count"],
        }
        for d in (describe_container(c) for c in items)
    ]
    return {"containers": rows, "count": len(rows)}


@TOOLSET.read(
    "images", "Images with tags and sizes, the dangling ones and the total.", needs_resource=False
)
def images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    rows = []
    for image in client.images.list():
        rows.append(
            {
                "id": image.id,
                "tags": image.tags,
                "size": image.attrs.get("Size", 0),
                "created": image.attrs.get("Created"),
                "dangling": not image.tags,
                "in_use": image.id in used,
            }
        )
    dangling = [r for r in rows if r["dangling"]]
    return {
        "images": rows,
        "count": len(rows),
        "total_size": sum(r["size"] for r in rows),
        "dangling_count": len(dangling),
        "dangling_size": sum(r["size"] for r in dangling),
    }


@TOOLSET.read(
    "networks", "Networks with driver, IPAM and attached containers.", needs_resource=False
)
def networks(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    rows = []
    for net in client_for(ctx).networks.list(greedy=True):
        attrs = net.attrs
        rows.append(
            {
                "name": attrs.get("Name"),
                "id": attrs.get("Id", "")[:12],
                "driver": attrs.get("Driver"),
                "scope": attrs.get("Scope"),
                "internal": attrs.get("Internal", False),
                "ipam": (attrs.get("IPAM") or {}).get("Config") or [],
                "containers": sorted(
                    v.get("Name", k) for k, v in (attrs.get("Containers") or {}).items()
                ),
            }
        )
    return {"networks": rows, "count": len(rows)}


@TOOLSET.read(
    "volumes", "Volumes, which containers mount them, and the orphaned ones.", needs_resource=False
)
def volumes(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    mounted: dict[str, list[str]] = {}
    for c in client.containers.list(all=True):
        for mount in c.attrs.get("Mounts") or []:
            if mount.get("Type") == "volume":
                mounted.setdefault(mount.get("Name", ""), []).append(c.name)
    rows = [
        {
            "name": v.name,
            "driver": v.attrs.get("Driver"),
            "mountpoint": v.attrs.get("Mountpoint"),
            "created": v.attrs.get("CreatedAt"),
            "used_by": sorted(mounted.get(v.name, [])),
            "orphaned": v.name not in mounted,
        }
        for v in client.volumes.list()
    ]
    return {
        "volumes": rows,
        "count": len(rows),
        "orphaned": [r["name"] for r in rows if r["orphaned"]],
    }


def _cpu_percent(stats: dict[str, Any]) -> float | None:
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if system_delta <= 0:
        return None
    return round(cpu_delta / system_delta * online * 100, 2)


@TOOLSET.read("stats", "A container's CPU %, memory use vs limit, network and block I/O.")
def stats(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if container.status != "running":
        return {"running": False, "_summary": f"{ctx.where()} is {container.status}: no live stats"}
    raw = container.stats(stream=False)
    memory = raw.get("memory_stats") or {}
    inner = memory.get("stats") or {}
    cache = inner.get("total_inactive_file", inner.get("inactive_file", inner.get("cache", 0))) or 0
    usage = max((memory.get("usage") or 0) - cache, 0)
    limit = memory.get("limit") or 0
    host_limit = container.attrs.get("HostConfig", {}).get("Memory") or 0
    nets = raw.get("networks") or {}
    blkio = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    percent = round(usage / limit * 100, 2) if limit else None
    return {
        "running": True,
        "cpu_percent": _cpu_percent(raw),
        "memory_usage": usage,
        "memory_limit": limit,
        "memory_limited": bool(host_limit),
        "memory_percent": percent,
        "pids": (raw.get("pids_stats") or {}).get("current"),
        "net_rx_bytes": sum(n.get("rx_bytes", 0) for n in nets.values()),
        "net_tx_bytes": sum(n.get("tx_bytes", 0) for n in nets.values()),
        "block_read_bytes": sum(
            e.get("value", 0) for e in blkio if e.get("op", "").lower() == "read"
        ),
        "block_write_bytes": sum(
            e.get("value", 0) for e in blkio if e.get("op", "").lower() == "write"
        ),
        "_summary": f"{ctx.where()}: memory {mib(usage)} of {mib(limit)} ({percent}%)",
    }


@TOOLSET.read(
    "engine",
    "Engine version, health, counts and reclaimable space (system df).",
    needs_resource=False,
)
def engine(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    client = client_for(ctx)
    client.ping()
    info, version, df = client.info(), client.version(), client.df()
    images_df = df.get("Images") or []
    containers_df = df.get("Containers") or []
    volumes_df = df.get("Volumes") or []
    cache_df = df.get("BuildCache") or []
    reclaimable = {
        "images": sum(i.get("Size", 0) for i in images_df if not i.get("Containers")),
        "containers": sum(
            c.get("SizeRw", 0) or 0 for c in containers_df if c.get("State") != "running"
        ),
        "volumes": sum(
            (v.get("UsageData") or {}).get("Size", 0) or 0
            for v in volumes_df
            if (v.get("UsageData") or {}).get("RefCount", 0) == 0
        ),
        "build_cache": sum(b.get("Size", 0) for b in cache_df if not b.get("InUse")),
    }
    return {
        "server_version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "os": info.get("OperatingSystem"),
        "kernel": info.get("KernelVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "ncpu": info.get("NCPU"),
        "memory_total": info.get("MemTotal"),
        "containers": info.get("Containers"),
        "containers_running": info.get("ContainersRunning"),
        "containers_stopped": info.get("ContainersStopped"),
        "images": info.get("Images"),
        "warnings": info.get("Warnings") or [],
        "layers_size": df.get("LayersSize", 0),
        "reclaimable": reclaimable,
        "reclaimable_total": sum(reclaimable.values()),
        "_summary": f"engine {version.get('Version')}: {info.get('ContainersRunning')} running, "
        f"{mib(sum(reclaimable.values()))} reclaimable",
    }


class DiskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mountpoint: str | None = Field(
        default=None, description="a filesystem an alert names: is the engine's data on it?"
    )


@TOOLSET.read(
    "disk_usage",
    "Free space where the engine keeps its data, the largest container logs and dangling images.",
    DiskParams,
    needs_resource=False,
)
def disk_usage(ctx: ToolContext[DiskParams]) -> dict[str, Any]:
    client = client_for(ctx)
    root = str(client.info().get("DockerRootDir") or "")
    if not root or not os.path.isdir(root):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"the data root of engine {ctx.ref.target} ({root or 'unknown'}) is not on this host; "
            "disk diagnostics need the agent on the engine's host",
        )
    stat = os.statvfs(root)
    size, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    mountpoint = ctx.params.mountpoint
    on_mountpoint = True
    if mountpoint is not None:
        on_mountpoint = (
            os.path.isdir(mountpoint) and os.stat(mountpoint).st_dev == os.stat(root).st_dev
        )
    logs = []
    for container in client.containers.list(all=True):
        path = container.attrs.get("LogPath") or ""
        if path and os.path.exists(path):
            logs.append({"container": container.name, "size": os.path.getsize(path)})
    logs.sort(key=lambda entry: -int(entry["size"]))
    dangling = client.images.list(filters={"dangling": True})
    dangling_size = sum(image.attrs.get("Size", 0) for image in dangling)
    return {
        "data_root": root,
        "mountpoint": mountpoint,
        "on_mountpoint": on_mountpoint,
        "size_bytes": size,
        "free_bytes": free,
        "free_percent": round(free / size * 100, 2) if size else None,
        "largest_log": logs[0] if logs else None,
        "logs": logs[:5],
        "dangling_count": len(dangling),
        "dangling_size": dangling_size,
        "_summary": f"{mib(free)} free of {mib(size)} at {root}; largest log "
        f"{logs[0]['container'] + ' ' + mib(logs[0]['size']) if logs else 'none'}; "
        f"{len(dangling)} dangling images ({mib(dangling_size)})",
    }


# --- write tools -------------------------------------------------------------------------------


def capture_state(ctx: ToolContext[Any]) -> dict[str, Any]:
    data = describe_container(container_for(ctx))
    return {
        "status": data["state"]["status"],
        "running": data["state"]["running"],
        "started_at": data["state"]["started_at"],
        "exit_code": data["state"]["exit_code"],
        "restart_count": data["restart_count"],
        "image": data["image"],
    }


def _already_restarted(ctx: ToolContext[Any], container: Container) -> bool:
    """Guard for retried activities: a new start time means this change already happened."""
    before = ctx.before or {}
    state = container.attrs.get("State", {})
    return bool(
        before.get("started_at")
        and state.get("Running")
        and state.get("StartedAt") != before["started_at"]
    )


class StopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int = Field(default=10, ge=0, le=300, description="seconds before SIGKILL")


def _state_after(container: Container, note: str) -> dict[str, Any]:
    container.reload()
    data = capture_state_from(container)
    data["_summary"] = note
    return data


def capture_state_from(container: Container) -> dict[str, Any]:
    state = container.attrs.get("State", {})
    return {
        "status": state.get("Status"),
        "running": bool(state.get("Running")),
        "started_at": state.get("StartedAt"),
        "exit_code": state.get("ExitCode"),
        "restart_count": container.attrs.get("RestartCount", 0),
    }


@TOOLSET.write(
    "start",
    "Start a stopped or exited container.",
    level=RiskLevel.NONE,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_state,
    preview=lambda ctx, b: (
        f"no-op: container {ctx.where()} is already running"
        if b["running"]
        else f"start container {ctx.where()} (now {b['status']}, exit code {b['exit_code']})"
    ),
    compensate=lambda ctx, b: None if b["running"] else ("docker.stop", {}),
    is_noop=lambda ctx, b: bool(b["running"]),
)
def start(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if container.status == "running":
        return _state_after(container, f"{ctx.where()} already running")
    container.start()
    return _state_after(container, f"started {ctx.where()}")


@TOOLSET.write(
    "restart",
    "Restart a container (stop with a timeout, then start).",
    StopParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.STATELESS,
    capture=capture_state,
    preview=lambda ctx, b: (
        f"restart container {ctx.where()} (now {b['status']}, restart count {b['restart_count']}, "
        f"stop timeout {ctx.params.timeout}s)"
    ),
)
def restart(ctx: ToolContext[StopParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if _already_restarted(ctx, container):
        return _state_after(container, f"{ctx.where()} was already restarted by this change")
    container.restart(timeout=ctx.params.timeout)
    return _state_after(container, f"restarted {ctx.where()}")


@TOOLSET.write(
    "stop",
    "Stop a running container.",
    StopParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_state,
    preview=lambda ctx, b: (
        f"stop container {ctx.where()} (timeout {ctx.params.timeout}s)"
        if b["running"]
        else f"no-op: container {ctx.where()} is already {b['status']}"
    ),
    compensate=lambda ctx, b: ("docker.start", {}) if b["running"] else None,
    is_noop=lambda ctx, b: not b["running"],
)
def stop(ctx: ToolContext[StopParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if container.status != "running":
        return _state_after(container, f"{ctx.where()} already {container.status}")
    container.stop(timeout=ctx.params.timeout)
    return _state_after(container, f"stopped {ctx.where()}")


class ResourceParams(BaseModel):
    """Absolute limits; sizes in bytes or docker units (512m, 1g). Unset means unchanged."""

    model_config = ConfigDict(extra="forbid")
    memory: int | None = Field(default=None, description="memory limit (bytes or 512m)")
    memory_swap: int | None = Field(default=None, description="memory+swap limit; -1 = unlimited")
    cpus: float | None = Field(default=None, gt=0, le=512)
    cpu_shares: int | None = Field(default=None, ge=2, le=262144)

    @field_validator("memory", "memory_swap", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None or isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return -1 if value.strip() == "-1" else parse_size(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ResourceParams:
        if all(v is None for v in (self.memory, self.memory_swap, self.cpus, self.cpu_shares)):
            raise ValueError("give at least one of memory, memory_swap, cpus, cpu_shares")
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise ValueError(f"memory must be at least {MIN_MEMORY} bytes (6 MiB)")
        if self.memory_swap is not None and self.memory_swap != -1:
            if self.memory_swap < MIN_MEMORY:
                raise ValueError("memory_swap must be -1 or at least 6 MiB")
            if self.memory is not None and self.memory_swap < self.memory:
                raise ValueError("memory_swap must be at least memory")
        return self


def capture_limits(ctx: ToolContext[ResourceParams]) -> dict[str, Any]:
    host = container_for(ctx).attrs.get("HostConfig", {})
    return {
        "memory": host.get("Memory", 0) or 0,
        "memory_swap": host.get("MemorySwap", 0) or 0,
        "nano_cpus": host.get("NanoCpus", 0) or 0,
        "cpu_shares": host.get("CpuShares", 0) or 0,
    }


def planned_limits(params: ResourceParams, before: dict[str, Any]) -> dict[str, Any]:
    """The limits the engine will hold afterwards (keeps the swap allowance when memory moves)."""
    after = dict(before)
    if params.memory is not None:
        after["memory"] = params.memory
        if params.memory_swap is None and before["memory_swap"] > 0 and before["memory"] > 0:
            after["memory_swap"] = params.memory + (before["memory_swap"] - before["memory"])
        elif params.memory_swap is None and before["memory_swap"] > 0:
            after["memory_swap"] = max(before["memory_swap"], params.memory)
    if params.memory_swap is not None:
        after["memory_swap"] = params.memory_swap
    if params.cpus is not None:
        after["nano_cpus"] = int(params.cpus * 1e9)
    if params.cpu_shares is not None:
        after["cpu_shares"] = params.cpu_shares
    return after


def _limits_preview(ctx: ToolContext[ResourceParams], before: dict[str, Any]) -> str:
    after = planned_limits(ctx.params, before)
    parts = []
    if after["memory"] != before["memory"]:
        parts.append(f"memory {mib(before['memory'])} → {mib(after['memory'])}")
    if after["memory_swap"] != before["memory_swap"]:
        parts.append(f"memory-swap {mib(before['memory_swap'])} → {mib(after['memory_swap'])}")
    if after["nano_cpus"] != before["nano_cpus"]:
        cpus = [
            f"{v / 1e9:g}" if v else "unlimited" for v in (before["nano_cpus"], after["nano_cpus"])
        ]
        parts.append(f"cpus {cpus[0]} → {cpus[1]}")
    if after["cpu_shares"] != before["cpu_shares"]:
        parts.append(f"cpu-shares {before['cpu_shares'] or 'default'} → {after['cpu_shares']}")
    if not parts:
        return f"no-op: limits of container {ctx.where()} already as requested"
    return ", ".join(parts) + f" on container {ctx.where()}"


def _limits_compensation(
    ctx: ToolContext[ResourceParams], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | Reversibility | None:
    after = planned_limits(ctx.params, before)
    if after == before:
        return None
    if (after["memory"] != before["memory"] and before["memory"] == 0) or (
        after["nano_cpus"] != before["nano_cpus"] and before["nano_cpus"] == 0
    ):
        return Reversibility.IRREVERSIBLE  # the engine cannot lift a limit back to "unlimited"
    params: dict[str, Any] = {}
    if after["memory"] != before["memory"]:
        params["memory"] = before["memory"]
    if after["memory_swap"] != before["memory_swap"]:
        params["memory_swap"] = before["memory_swap"] if before["memory_swap"] > 0 else -1
    if after["nano_cpus"] != before["nano_cpus"]:
        params["cpus"] = before["nano_cpus"] / 1e9
    if after["cpu_shares"] != before["cpu_shares"] and before["cpu_shares"]:
        params["cpu_shares"] = before["cpu_shares"]
    return ("docker.update_resources", params)


@TOOLSET.write(
    "update_resources",
    "Change a container's memory, swap, CPU or CPU-share limits in place (no restart).",
    ResourceParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_limits,
    preview=_limits_preview,
    compensate=_limits_compensation,
    is_noop=lambda ctx, b: planned_limits(ctx.params, b) == b,
)
def update_resources(ctx: ToolContext[ResourceParams]) -> dict[str, Any]:
    container = container_for(ctx)
    current = capture_limits(ctx)
    after = planned_limits(ctx.params, ctx.before or current)
    kwargs: dict[str, Any] = {}
    if after["memory"] != current["memory"]:
        kwargs["mem_limit"] = after["memory"]
    if after["memory_swap"] != current["memory_swap"]:
        kwargs["memswap_limit"] = after["memory_swap"]
    if after["nano_cpus"] != current["nano_cpus"]:
        kwargs["nano_cpus"] = after["nano_cpus"]
    if after["cpu_shares"] != current["cpu_shares"]:
        kwargs["cpu_shares"] = after["cpu_shares"]
    if kwargs:  # idempotent: a retry after success finds nothing to change
        container.update(**kwargs)
    result = capture_limits(ctx)
    result["_summary"] = _limits_preview(ctx, ctx.before or current).removeprefix("no-op: ")
    return result


def _images(ctx: ToolContext[Any], *, dangling_only: bool) -> dict[str, Any]:
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    found = []
    for image in client.images.list(filters={"dangling": True} if dangling_only else None):
        if image.id in used:
            continue
        found.append({"id": image.id, "tags": image.tags, "size": image.attrs.get("Size", 0)})
    return {"images": found, "total_size": sum(i["size"] for i in found)}


def _prune_preview(what: str) -> Any:
    def preview(ctx: ToolContext[Any], before: dict[str, Any]) -> str:
        images = before["images"]
        if not images:
            return f"no-op: no {what} images on engine {ctx.ref.target}"
        names = ", ".join((i["tags"] or [i["id"][:19]])[0] for i in images[:10])
        more = f" and {len(images) - 10} more" if len(images) > 10 else ""
        return (
            f"remove {len(images)} {what} image(s) ({mib(before['total_size'])}) on engine "
            f"{ctx.ref.target}: {names}{more}"
        )

    return preview


def _remove_images(ctx: ToolContext[Any]) -> dict[str, Any]:
    """Remove exactly the images that were previewed and approved, skipping any now in use."""
    client = client_for(ctx)
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    removed, skipped, reclaimed = [], [], 0
    for image in (ctx.before or {}).get("images", []):
        if image["id"] in used:
            skipped.append({"id": image["id"], "reason": "now in use"})
            continue
        try:
            client.images.remove(image["id"], force=False, noprune=False)
        except NotFound:
            skipped.append({"id": image["id"], "reason": "already gone"})
            continue
        except APIError as exc:
            skipped.append({"id": image["id"], "reason": _explain(exc)})
            continue
        removed.append(image["id"])
        reclaimed += image["size"]
    return {
        "removed": removed,
        "skipped": skipped,
        "space_reclaimed": reclaimed,
        "_summary": f"removed {len(removed)} image(s), reclaimed {mib(reclaimed)}",
    }


@TOOLSET.write(
    "prune_images",
    "Remove dangling (untagged, unused) images.",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=lambda ctx: _images(ctx, dangling_only=True),
    preview=_prune_preview("dangling"),
    is_noop=lambda ctx, b: not b["images"],
    needs_resource=False,
)
def prune_images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return _remove_images(ctx)


@TOOLSET.write(
    "prune_unused_images",
    "Remove every image no container uses (tagged ones too).",
    level=RiskLevel.HARD,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=lambda ctx: _images(ctx, dangling_only=False),
    preview=_prune_preview("unused"),
    is_noop=lambda ctx, b: not b["images"],
    needs_resource=False,
)
def prune_unused_images(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    return _remove_images(ctx)


def capture_log(ctx: ToolContext[Any]) -> dict[str, Any]:
    attrs = container_for(ctx).attrs
    driver = (attrs.get("HostConfig", {}).get("LogConfig") or {}).get("Type", "")
    path = attrs.get("LogPath") or ""
    if driver != "json-file":
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"{ctx.where()} logs with {driver or 'no'} driver, not json-file",
        )
    if not path or not os.path.exists(path):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"the log file of {ctx.where()} is not on this host ({path or 'no path'}); "
            "clearing logs needs the agent on the engine's host",
        )
    return {"log_path": path, "size": os.path.getsize(path)}


@TOOLSET.write(
    "clear_logs",
    "Truncate a container's json-file log (frees disk; the old lines are lost).",
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture_log,
    preview=lambda ctx, b: (
        f"truncate the json-file log of container {ctx.where()} ({mib(b['size'])} at {b['log_path']})"
    ),
    is_noop=lambda ctx, b: b["size"] == 0,
)
def clear_logs(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    info = capture_log(ctx)
    with open(info["log_path"], "r+b") as handle:
        handle.truncate(0)
    return {
        "log_path": info["log_path"],
        "freed": info["size"],
        "_summary": f"truncated log of {ctx.where()}, freed {mib(info['size'])}",
    }


class RecreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(
        min_length=1, description="image reference to run (must exist or be pullable)"
    )
    pull: bool = False
    stop_timeout: int = Field(default=10, ge=0, le=300)


_CONFIG_KEYS = {
    "Cmd": "command",
    "Entrypoint": "entrypoint",
    "Env": "environment",
    "Labels": "labels",
    "WorkingDir": "working_dir",
    "User": "user",
    "Healthcheck": "healthcheck",
    "StopSignal": "stop_signal",
    "StopTimeout": "stop_timeout",
    "Tty": "tty",
    "OpenStdin": "stdin_open",
    "Domainname": "domainname",
}


def capture_recreate(ctx: ToolContext[RecreateParams]) -> dict[str, Any]:
    container = container_for(ctx)
    attrs = container.attrs
    config = attrs.get("Config", {})
    spec = {_CONFIG_KEYS[k]: config[k] for k in _CONFIG_KEYS if config.get(k) not in (None, "", [])}
    if config.get("Hostname") and config["Hostname"] != attrs.get("Id", "")[:12]:
        spec["hostname"] = config["Hostname"]
    if config.get("ExposedPorts"):
        spec["ports"] = list(config["ExposedPorts"])
    if config.get("Volumes"):
        spec["volumes"] = list(config["Volumes"])
    networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
    mode = attrs.get("HostConfig", {}).get("NetworkMode", "")
    endpoints = {
        name: {"Aliases": ep.get("Aliases")}
        for name, ep in networks.items()
        if name not in ("host", "none", "bridge", "default") and name != mode
    }
    return {
        "name": attrs.get("Name", "").lstrip("/"),
        "image": config.get("Image", ""),
        "image_id": attrs.get("Image", ""),
        "running": bool(attrs.get("State", {}).get("Running")),
        "config": spec,
        "host_config": attrs.get("HostConfig", {}),
        "endpoints": endpoints,
    }


def _recreate_preview(ctx: ToolContext[RecreateParams], before: dict[str, Any]) -> str:
    if before["image"] == ctx.params.image:
        return f"no-op: container {ctx.where()} already runs {ctx.params.image}"
    mounts = len(before["host_config"].get("Binds") or []) + len(
        before["host_config"].get("Mounts") or []
    )
    env = len(before["config"].get("environment") or [])
    return (
        f"recreate container {ctx.where()}: image {before['image']} → {ctx.params.image} "
        f"(same config: {env} env vars, {mounts} mounts, network "
        f"{before['host_config'].get('NetworkMode') or 'default'}, restart policy "
        f"{(before['host_config'].get('RestartPolicy') or {}).get('Name') or 'no'})"
    )


@TOOLSET.write(
    "recreate",
    "Recreate a container on another image tag with the same configuration.",
    RecreateParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_recreate,
    preview=_recreate_preview,
    compensate=lambda ctx, b: (
        None if b["image"] == ctx.params.image else ("docker.recreate", {"image": b["image"]})
    ),
    is_noop=lambda ctx, b: b["image"] == ctx.params.image,
    timeout=timedelta(minutes=10),
)
def recreate(ctx: ToolContext[RecreateParams]) -> dict[str, Any]:
    client = client_for(ctx)
    container = container_for(ctx)
    before = ctx.before or capture_recreate(ctx)
    if container.attrs.get("Config", {}).get("Image") == ctx.params.image:
        return _state_after(container, f"{ctx.where()} already runs {ctx.params.image}")
    try:
        client.images.get(ctx.params.image)
    except ImageNotFound:
        if not ctx.params.pull:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"image {ctx.params.image!r} is not on engine {ctx.ref.target} (set pull: true)",
            ) from None
        client.images.pull(ctx.params.image)

    name = before["name"]
    suffix = (ctx.change_id or datetime.now(UTC).strftime("%H%M%S"))[:8]
    old_name = f"{name}-replaced-{suffix}"
    was_running = container.status == "running"
    if was_running:
        container.stop(timeout=ctx.params.stop_timeout)
    container.rename(old_name)
    new_id = None
    try:
        networking = (
            client.api.create_networking_config(
                {
                    net: client.api.create_endpoint_config(aliases=ep.get("Aliases"))
                    for net, ep in before["endpoints"].items()
                }
            )
            if before["endpoints"]
            else None
        )
        created = client.api.create_container(
            image=ctx.params.image,
            name=name,
            host_config=before["host_config"],
            networking_config=networking,
            **before["config"],
        )
        new_id = created["Id"]
        if was_running or before["running"]:
            client.api.start(new_id)
    except (APIError, DockerException) as exc:
        # Put the old container back exactly as it was; the change did not happen.
        if new_id:
            client.api.remove_container(new_id, force=True)
        container.rename(name)
        if was_running:
            container.start()
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"recreate of {ctx.where()} failed and was undone: {_explain(exc)}",
        ) from exc
    container.remove(force=True)
    fresh = client.containers.get(new_id)
    return _state_after(fresh, f"recreated {ctx.where()} on {ctx.params.image}") | {
        "image": ctx.params.image
    }
