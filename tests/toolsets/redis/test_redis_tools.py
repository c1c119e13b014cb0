"""Every redis tool against a real redis-server, as the least-privilege ACL user: reads,
the maxmemory fault (noeviction refuses writes) and its fix and compensation, BGSAVE, idle clients,
MEMORY PURGE, and typed failures (bad password, unreachable, a command the ACL forbids)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import redis

from core.models import Reversibility, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.redis.conftest import redis_target
from tests.toolsets.runner import Tools
from workers.lab.processes import free_port
from workers.lab.redis import Redis

pytestmark = pytest.mark.integration


def fill(admin: redis.Redis, prefix: str, count: int, size: int = 1000) -> int:
    """Write keys until done or redis refuses (OOM under noeviction); how many were written."""
    written = 0
    for i in range(count):
        try:
            admin.set(f"{prefix}:{i}", "x" * size)
        except redis.exceptions.ResponseError as exc:
            assert "maxmemory" in str(exc) or "OOM" in str(exc)
            break
        written += 1
    return written


async def test_info_reports_memory_clients_persistence(tools: Tools, admin: redis.Redis) -> None:
    admin.set("info:probe", "1")
    data = await tools.ok("redis.info")
    assert data["server"] in ("redis", "valkey") and data["role"] == "master"
    assert data["memory"]["used_memory"] > 0
    assert data["clients"]["maxclients"] == 64 and data["clients"]["connected"] >= 1
    assert data["persistence"]["rdb_last_bgsave_status"] == "ok"
    assert "db0" in data["keyspace"]


async def test_config_reads_without_secrets(tools: Tools) -> None:
    data = await tools.ok(
        "redis.config", {"parameters": ["maxmemory*", "requirepass", "maxclients"]}
    )
    assert data["config"]["maxclients"] == "64"
    assert "maxmemory-policy" in data["config"]
    assert "requirepass" not in data["config"]
    bad = await tools.run("redis.config", {"parameters": ["max memory"]})
    assert not bad.ok and bad.error is not None and bad.error.kind is ToolErrorKind.INVALID


async def test_slowlog_and_bigkeys(tools: Tools, admin: redis.Redis) -> None:
    admin.config_set("slowlog-log-slower-than", 0)
    try:
        admin.set("big:one", "y" * 200_000)
        for i in range(300):
            admin.set(f"small:{i}", "z")
        slow = await tools.ok("redis.slowlog", {"limit": 10})
        assert slow["length"] >= 1 and slow["entries"]
        big = await tools.ok("redis.bigkeys", {"max_keys": 100, "count": 50, "limit": 3})
        assert big["scanned"] >= 100 and len(big["biggest"]) <= 3
        full = await tools.ok("redis.bigkeys", {"max_keys": 100_000, "limit": 1})
        assert full["complete"] and full["biggest"][0]["key"] == "big:one"
        assert full["biggest"][0]["bytes"] >= 200_000 and full["biggest"][0]["type"] == "string"
    finally:
        admin.config_set("slowlog-log-slower-than", 10000)
        admin.delete("big:one", *[f"small:{i}" for i in range(300)])


async def test_maxmemory_fault_fixed_and_compensated(tools: Tools, admin: redis.Redis) -> None:
    used = int(admin.info("memory")["used_memory"])
    limit = used + 2 * 1024 * 1024
    admin.config_set("maxmemory", limit)
    admin.config_set("maxmemory-policy", "noeviction")
    try:
        assert fill(admin, "oom", 20_000) < 20_000  # the real fault: writes refused
        info = await tools.ok("redis.info")
        assert info["writes_refused"] and info["used_percent"] >= 99
        assert info["can_grow"] and info["suggested_maxmemory"] == int(limit * 1.5)

        new = info["suggested_maxmemory"]
        prepared, result = await tools.apply(
            "redis.config_set", {"parameter": "maxmemory", "value": new}
        )
        assert prepared.preview.startswith(f"CONFIG SET maxmemory {new} on redis:cache:")
        assert prepared.reversibility is Reversibility.COMPENSATED
        assert prepared.compensation is not None
        assert prepared.compensation.params == {"parameter": "maxmemory", "value": str(limit)}
        assert result.ok, result.error
        assert admin.config_get("maxmemory")["maxmemory"] == str(new)
        admin.set("oom:after", "x" * 1000)  # writes accepted again

        retry = await tools.run("redis.config_set", {"parameter": "maxmemory", "value": new})
        assert retry.ok  # idempotent
        noop = await tools.prepare("redis.config_set", {"parameter": "maxmemory", "value": new})
        assert noop.noop and noop.preview.startswith("no-op")

        undo = await tools.compensate(prepared)
        assert undo.ok, undo.error
        assert admin.config_get("maxmemory")["maxmemory"] == str(limit)
    finally:
        admin.config_set("maxmemory", 0)
        for key in admin.scan_iter("oom:*", count=1000):
            admin.delete(key)


async def test_config_set_refusals_and_policy_compensation(
    tools: Tools, admin: redis.Redis
) -> None:
    admin.config_set("maxmemory", 0)
    over = await tools.prepare("redis.config_set", {"parameter": "maxmemory", "value": "8g"})
    assert "[REFUSED: above this target's maxmemory_ceiling" in over.preview
    # from "no limit" the change cannot be undone automatically
    assert over.reversibility is Reversibility.IRREVERSIBLE
    refused = await tools.run("redis.config_set", {"parameter": "maxmemory", "value": "8g"})
    assert not refused.ok and refused.error is not None
    assert refused.error.kind is ToolErrorKind.INVALID
    assert admin.config_get("maxmemory")["maxmemory"] == "0"
    for bad in (
        {"parameter": "maxmemory", "value": "0"},
        {"parameter": "save", "value": ""},
        {"parameter": "maxmemory-policy", "value": "evict-all"},
    ):
        result = await tools.run("redis.config_set", bad)
        assert not result.ok and result.error is not None
        assert result.error.kind is ToolErrorKind.INVALID

    prepared, result = await tools.apply(
        "redis.config_set", {"parameter": "maxmemory-policy", "value": "allkeys-lru"}
    )
    assert result.ok and admin.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert "noeviction → allkeys-lru" in prepared.preview
    assert (await tools.compensate(prepared)).ok
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


async def test_bgsave_writes_a_snapshot(
    tools: Tools, admin: redis.Redis, redis_server: Redis
) -> None:
    admin.set("persist:me", "1")
    time.sleep(1.1)  # LASTSAVE has one-second resolution
    before = admin.lastsave()
    prepared, result = await tools.apply("redis.bgsave")
    assert prepared.preview.startswith("BGSAVE on redis:cache")
    assert result.ok, result.error
    assert admin.lastsave() > before
    assert (redis_server.root / "dump.rdb").stat().st_size > 0
    assert result.data["rdb_last_bgsave_status"] == "ok"


async def test_client_kill_ends_only_the_idle_normal_clients(
    tools: Tools, admin: redis.Redis, redis_server: Redis
) -> None:
    idle = [socket.create_connection(("127.0.0.1", redis_server.port)) for _ in range(3)]
    for i, sock in enumerate(idle):
        sock.sendall(f"CLIENT SETNAME idle-{i}\r\n".encode())
        assert sock.recv(16).startswith(b"+OK")
    busy = redis.Redis(port=redis_server.port, client_name="busy")
    try:
        time.sleep(2.2)
        busy.ping()  # active: never idle ≥ 2s
        listing = await tools.ok("redis.clients", {"min_idle_seconds": 2})
        names = {c["name"] for c in listing["clients"]}
        assert {"idle-0", "idle-1", "idle-2"} <= names and "busy" not in names
        ours = [c for c in listing["clients"] if c["ours"]]
        assert all(c["protected"] for c in ours)

        refused = await tools.run("redis.client_kill", {"min_idle_seconds": 5})
        assert not refused.ok and refused.error.kind is ToolErrorKind.INVALID  # ge=30
        # nothing here is idle for 30 s (the floor): a no-op, said so
        prepared = await tools.prepare("redis.client_kill", {"min_idle_seconds": 30})
        assert prepared.noop and prepared.preview.startswith("no-op")
    finally:
        for sock in idle:
            sock.close()
        busy.close()


async def test_client_kill_kills_previewed_ids_only(
    tools: Tools, admin: redis.Redis, redis_server: Redis
) -> None:
    # Waiting 30 s (the floor) for idle clients is for the bench; run() acts on the before-state
    # prepare captured, so give it one built like capture's, with three real idle connections.
    idle = [socket.create_connection(("127.0.0.1", redis_server.port)) for _ in range(3)]
    for i, sock in enumerate(idle):
        sock.sendall(f"CLIENT SETNAME old-{i}\r\n".encode())
        assert sock.recv(16).startswith(b"+OK")
    try:
        time.sleep(1.1)
        listing = await tools.ok("redis.clients", {"min_idle_seconds": 1})
        victims = [c for c in listing["clients"] if c["name"].startswith("old-")]
        keep = victims.pop()  # previewed set excludes it: it must survive
        before = {
            "min_idle_seconds": 1,
            "total": listing["total"],
            "clients": victims,
            "protected": [],
        }
        call = tools.call("redis.client_kill", {"min_idle_seconds": 30}, None)
        call = call.model_copy(update={"before": before})
        result = await tools.runner.run(call)
        assert result.ok, result.error
        # min_idle_seconds from the before-state (1 s) is what run() re-checks
        assert sorted(c["id"] for c in result.data["killed"]) == sorted(c["id"] for c in victims)
        names = {c.get("name") for c in admin.client_list()}
        assert keep["name"] in names and not any(v["name"] in names for v in victims)
        again = await tools.runner.run(call)  # retry: already gone, nothing more killed
        assert again.ok and again.data["killed_count"] == 0
    finally:
        for sock in idle:
            sock.close()


async def test_memory_purge(tools: Tools) -> None:
    prepared, result = await tools.apply("redis.memory_purge")
    assert prepared.preview.startswith("MEMORY PURGE on redis:cache")
    if "REFUSED" in prepared.preview:
        assert not result.ok and result.error.kind is ToolErrorKind.UNSUPPORTED
    else:
        assert result.ok and result.data["used_memory_rss"] > 0


async def test_typed_failures(redis_server: Redis, tmp_path: Path, admin: redis.Redis) -> None:
    settings = make_settings(
        tmp_path,
        redis=[
            redis_target(redis_server, "wrongpass", password="nope"),
            {"name": "down", "url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 1},
            {"name": "default", "url": redis_server.url, "timeout": 2},
        ],
    )
    tools = Tools(settings, "redis:wrongpass")
    try:
        bad = await tools.run("redis.info")
        assert not bad.ok and bad.error.kind is ToolErrorKind.UNAUTHORIZED
        assert "nope" not in bad.error.message
        down = await tools.run("redis.info", target="redis:down")
        assert not down.ok and down.error.kind is ToolErrorKind.UNREACHABLE
        missing = await tools.run("redis.info", target="redis:nosuch")
        assert not missing.ok and missing.error.kind is ToolErrorKind.NOT_FOUND
    finally:
        await tools.aclose()
    # least privilege: the agents' ACL user may not run what the toolset never needs
    agent = redis.Redis(port=redis_server.port, username="homelab", password=redis_server.password)
    try:
        for command in (("FLUSHALL",), ("SET", "k", "v"), ("GET", "k"), ("CONFIG", "REWRITE")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                agent.execute_command(*command)
    finally:
        agent.close()


async def test_doctor_probe(redis_server: Redis) -> None:
    from activities.toolsets.redis import TOOLSET
    from core.targets import RedisTarget

    assert TOOLSET.probe is not None
    found = await asyncio.to_thread(TOOLSET.probe, RedisTarget(**redis_target(redis_server)))
    assert "as ACL user homelab" in found and "noeviction" in found
