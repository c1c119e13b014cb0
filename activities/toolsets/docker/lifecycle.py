"""Docker writes on one container: start, restart, stop, resource limits, recreate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound
from docker.models.containers import Container
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.docker.client import (
    MIN_MEMORY,
    TOOLSET,
    client_for,
    container_for,
    describe_container,
    explain,
)
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_size as mib
from core.units import parse_size


def capture_state(ctx: ToolContext[Any]) -> dict[str, Any]:
    container = container_for(ctx)
    data = describe_container(container)
    config = container.attrs.get("Config", {})
    return {
        "status": data["state"]["status"],
        "running": data["state"]["running"],
        "started_at": data["state"]["started_at"],
        "exit_code": data["state"]["exit_code"],
        "restart_count": data["restart_count"],
        "image": data["image"],
        "stop_timeout": config.get("StopTimeout"),
        "stop_signal": config.get("StopSignal") or "",
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


DOCKER_STOP_TIMEOUT = 10  # the engine's default grace between SIGTERM and SIGKILL


class StopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int | None = Field(
        default=None,
        ge=0,
        le=300,
        description="seconds between SIGTERM and SIGKILL; default: the container's own stop "
        "timeout (docker run --stop-timeout), else Docker's 10 s",
    )


def stop_grace(ctx: ToolContext[StopParams], before: dict[str, Any]) -> int:
    """The stop timeout the write will use: the call's, the container's, or Docker's default."""
    if ctx.params.timeout is not None:
        return ctx.params.timeout
    own = before.get("stop_timeout")
    return int(own) if isinstance(own, int) else DOCKER_STOP_TIMEOUT


def _stop_note(ctx: ToolContext[StopParams], before: dict[str, Any]) -> str:
    grace = stop_grace(ctx, before)
    signal = before.get("stop_signal") or "SIGTERM"
    return f"{signal}, then SIGKILL after {grace}s: it may take up to {grace}s to stop"


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
        f"restart container {ctx.where()} (now {b['status']}, restart count {b['restart_count']}): "
        f"{_stop_note(ctx, b)}, then start"
    ),
)
def restart(ctx: ToolContext[StopParams]) -> dict[str, Any]:
    container = container_for(ctx)
    if _already_restarted(ctx, container):
        return _state_after(container, f"{ctx.where()} was already restarted by this change")
    container.restart(timeout=stop_grace(ctx, ctx.before or capture_state(ctx)))
    return _state_after(container, f"restarted {ctx.where()}")


@TOOLSET.write(
    "stop",
    "Stop a running container.",
    StopParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_state,
    preview=lambda ctx, b: (
        f"stop container {ctx.where()}: {_stop_note(ctx, b)}"
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
    container.stop(timeout=stop_grace(ctx, ctx.before or capture_state(ctx)))
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


def _shrinks(ctx: ToolContext[ResourceParams], before: dict[str, Any]) -> list[str]:
    """A lower limit than the container runs with now starves it: a human decides."""
    after = planned_limits(ctx.params, before)
    risks = []
    for key, label, show in (
        ("memory", "memory", mib),
        ("memory_swap", "memory-swap", mib),
        ("nano_cpus", "cpus", lambda v: f"{v / 1e9:g}"),
        ("cpu_shares", "cpu-shares", str),
    ):
        old, new = before.get(key) or 0, after.get(key) or 0
        if new and (not old or new < old):
            was = show(old) if old else "unlimited"
            risks.append(f"lowers {label} of {ctx.where()}: {was} → {show(new)}")
    return risks


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
    risks=_shrinks,
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


def recreate_spec(container: Container) -> dict[str, Any]:
    """Everything ``create_container`` needs to make the same container again.

    It carries the environment's values (passwords, tokens), so it never leaves the activity:
    the write reads it from the container itself, and the before-state only names what it holds.
    """
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
    return {"config": spec, "host_config": attrs.get("HostConfig", {}), "endpoints": endpoints}


def capture_recreate(ctx: ToolContext[RecreateParams]) -> dict[str, Any]:
    """What the approval and the change log show: the image and the *names* of what the new
    container keeps (environment variables, labels), never their values."""
    container = container_for(ctx)
    attrs = container.attrs
    config = attrs.get("Config", {})
    spec = recreate_spec(container)
    host = spec["host_config"]
    return {
        "name": attrs.get("Name", "").lstrip("/"),
        "id": attrs.get("Id", ""),
        "image": config.get("Image", ""),
        "image_id": attrs.get("Image", ""),
        "running": bool(attrs.get("State", {}).get("Running")),
        "env": sorted(item.split("=", 1)[0] for item in config.get("Env") or []),
        "labels": sorted(config.get("Labels") or {}),
        "mounts": len(host.get("Binds") or []) + len(host.get("Mounts") or []),
        "network_mode": host.get("NetworkMode") or "default",
        "networks": sorted(spec["endpoints"]),
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name") or "no",
    }


def _recreate_preview(ctx: ToolContext[RecreateParams], before: dict[str, Any]) -> str:
    if before["image"] == ctx.params.image:
        return f"no-op: container {ctx.where()} already runs {ctx.params.image}"
    return (
        f"recreate container {ctx.where()}: image {before['image']} → {ctx.params.image} "
        f"(same config: {len(before['env'])} env vars, {before['mounts']} mounts, network "
        f"{before['network_mode']}, restart policy {before['restart_policy']})"
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
    if container.attrs.get("Config", {}).get("Image") == ctx.params.image:
        return _state_after(container, f"{ctx.where()} already runs {ctx.params.image}")
    if ctx.before and ctx.before.get("id") not in (None, container.id):
        raise ToolFailure(
            ToolErrorKind.CONFLICT,
            f"container {ctx.where()} was replaced since this change was prepared "
            f"({str(ctx.before['id'])[:12]} → {container.id[:12]}): prepare it again",
        )
    spec = recreate_spec(container)
    name = container.name
    try:
        client.images.get(ctx.params.image)
    except ImageNotFound:
        if not ctx.params.pull:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"image {ctx.params.image!r} is not on engine {ctx.ref.target} (set pull: true)",
            ) from None
        client.images.pull(ctx.params.image)

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
                    for net, ep in spec["endpoints"].items()
                }
            )
            if spec["endpoints"]
            else None
        )
        created = client.api.create_container(
            image=ctx.params.image,
            name=name,
            host_config=spec["host_config"],
            networking_config=networking,
            **spec["config"],
        )
        new_id = created["Id"]
        if was_running or (ctx.before or {}).get("running"):
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
            f"recreate of {ctx.where()} failed and was undone: {explain(exc)}",
        ) from exc
    container.remove(force=True)
    fresh = client.containers.get(new_id)
    return _state_after(fresh, f"recreated {ctx.where()} on {ctx.params.image}") | {
        "image": ctx.params.image
    }
