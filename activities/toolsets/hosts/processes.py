"""Processes: the top consumers of memory and CPU, with the host's memory and load."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext
from activities.toolsets.hosts.client import TOOLSET, run, where
from core.units import human_bytes

PS_FIELDS = "pid,ppid,user,rss,pcpu,etimes,comm,args"


class TopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top: int = Field(default=10, ge=1, le=100)


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


async def _processes(ctx: ToolContext[TopParams], sort: str) -> list[dict[str, Any]]:
    done = await run(ctx, ["ps", "-eo", PS_FIELDS, f"--sort=-{sort}", "--no-headers"])
    done.check("ps")
    rows = []
    for line in done.stdout.splitlines()[: ctx.params.top]:
        parts = line.split(None, 7)
        if len(parts) < 7 or not parts[0].isdigit():
            continue
        rows.append(
            {
                "pid": int(parts[0]),
                "ppid": int(parts[1]),
                "user": parts[2],
                "rss": int(parts[3]) * 1024,
                "cpu_percent": float(parts[4]),
                "age_seconds": int(parts[5]) if parts[5].isdigit() else None,
                "command": parts[6],
                "args": (parts[7] if len(parts) > 7 else "")[:300],
            }
        )
    return rows


async def _memory(ctx: ToolContext[Any]) -> dict[str, Any]:
    done = await run(ctx, ["cat", "/proc/meminfo"])
    done.check("cat /proc/meminfo")
    info = parse_meminfo(done.stdout)
    total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    return {
        "total": total,
        "available": available,
        "available_percent": round(100 * available / total, 1) if total else None,
        "swap_total": info.get("SwapTotal", 0),
        "swap_free": info.get("SwapFree", 0),
    }


@TOOLSET.read(
    "memory_top",
    "Memory in use and available (/proc/meminfo) and the processes with the largest RSS.",
    TopParams,
    needs_resource=False,
)
async def memory_top(ctx: ToolContext[TopParams]) -> dict[str, Any]:
    memory = await _memory(ctx)
    rows = await _processes(ctx, "rss")
    top = rows[0] if rows else None
    return {
        "memory": memory,
        "processes": rows,
        "_summary": f"{where(ctx)}: {human_bytes(memory['available'])} of "
        f"{human_bytes(memory['total'])} available"
        + (
            f"; largest {top['command']} (pid {top['pid']}) {human_bytes(top['rss'])}"
            if top
            else ""
        ),
    }


@TOOLSET.read(
    "cpu_top",
    "Load averages and CPU count, and the processes using the most CPU.",
    TopParams,
    needs_resource=False,
)
async def cpu_top(ctx: ToolContext[TopParams]) -> dict[str, Any]:
    load = await run(ctx, ["cat", "/proc/loadavg"])
    load.check("cat /proc/loadavg")
    fields = load.stdout.split()
    cpus = await run(ctx, ["cat", "/proc/cpuinfo"])
    count = sum(1 for line in cpus.stdout.splitlines() if line.startswith("processor"))
    rows = await _processes(ctx, "pcpu")
    load1 = float(fields[0]) if fields else None
    return {
        "load1": load1,
        "load5": float(fields[1]) if len(fields) > 1 else None,
        "load15": float(fields[2]) if len(fields) > 2 else None,
        "cpus": count,
        "load_per_cpu": round(load1 / count, 2) if load1 is not None and count else None,
        "processes": rows,
        "_summary": f"{where(ctx)}: load {load1} on {count} CPU(s)"
        + (f"; busiest {rows[0]['command']} {rows[0]['cpu_percent']}%" if rows else ""),
    }
