"""Redis alerts in → fixed, on the Temporal dev server with the real worker and intake against a
real redis-server: maxmemory reached under noeviction (writes refused) → maxmemory raised by half
(SOFT, the old value registered as compensation) → verified → writes accepted again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel
from tests.integration.stack import running_stack
from tests.toolsets.alerts import evidence, incident
from tests.toolsets.redis.conftest import redis_target
from tests.toolsets.redis.test_redis_tools import fill
from workers.lab.dockerd import DockerEngine
from workers.lab.redis import Redis

RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"

pytestmark = pytest.mark.integration


@pytest.fixture
def full(admin: redis.Redis) -> Iterator[int]:
    """Redis at its maxmemory with noeviction: the limit it was given."""
    limit = int(admin.info("memory")["used_memory"]) + 2 * 1024 * 1024
    admin.config_set("maxmemory", limit)
    admin.config_set("maxmemory-policy", "noeviction")
    assert fill(admin, "e2e", 20_000) < 20_000
    yield limit
    admin.config_set("maxmemory", 0)
    for key in admin.scan_iter("e2e:*", count=1000):
        admin.delete(key)


async def test_out_of_memory_raises_maxmemory_and_verifies(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    redis_server: Redis,
    admin: redis.Redis,
    full: int,
    tmp_path: Path,
) -> None:
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        redis=[redis_target(redis_server, instances=["redis-exporter:9121"])],
    ) as stack:
        state = await incident(
            stack, "RedisOutOfConfiguredMaxmemory", instance="redis-exporter:9121"
        )
        assert state.outcome is Outcome.RESOLVED, state.notes
        assert str(state.triage.target) == "redis:cache"
        info = evidence(state, "info")
        assert info["writes_refused"] and info["used_percent"] >= 99
        (done,) = state.actions
        assert (done.action.tool, done.level, done.result) == (
            "redis.config_set",
            RiskLevel.SOFT,
            ChangeResult.APPLIED,
        )
        want = int(full * 1.5)
        assert done.action.params == {"parameter": "maxmemory", "value": want}
        assert done.compensation is not None
        assert done.compensation.params == {"parameter": "maxmemory", "value": str(full)}
        assert state.verification is not None and state.verification.passed
        (change,) = stack.store.list_changes(state.workflow_id)
        assert change.before["value"] == str(full) and change.after["value"] == str(want)
        assert change.preview.startswith(f"CONFIG SET maxmemory {want} on redis:cache")
    assert admin.config_get("maxmemory")["maxmemory"] == str(want)
    admin.set("e2e:after", "x" * 1000)  # the real system accepts writes again


async def test_raise_that_does_not_hold_is_rolled_back(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    redis_server: Redis,
    admin: redis.Redis,
    full: int,
    tmp_path: Path,
) -> None:
    """A writer keeps filling whatever room there is: the raise never brings usage under 90 %,
    verification fails, and the saga's compensation puts the old maxmemory back on the server."""
    runbook = yaml.safe_load((RUNBOOKS / "redis" / "out-of-memory.yaml").read_text())
    runbook["verification"]["timeout"] = "4s"  # the same runbook, a shorter wait (a user override)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "out-of-memory.yaml").write_text(yaml.safe_dump(runbook))
    stop = threading.Event()

    def writer() -> None:
        client = redis.Redis(port=redis_server.port)
        i = 0
        while not stop.is_set():
            try:
                client.set(f"e2e:w{i}", "x" * 1000)
                i += 1
            except redis.exceptions.ResponseError:
                time.sleep(0.01)
        client.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        async with running_stack(
            dev_env,
            docker_engine,
            tmp_path,
            redis=[redis_target(redis_server)],
            runbook_dirs=[str(tmp_path / "runbooks")],
        ) as stack:
            state = await incident(stack, "RedisOutOfConfiguredMaxmemory", instance="r:9121")
            assert state.outcome is Outcome.ROLLED_BACK, state.notes
            assert state.verification is not None and not state.verification.passed
            changes = stack.store.list_changes(state.workflow_id)
            applied = [c for c in changes if c.action == "redis.config_set"]
            assert [c.params for c in applied] == [
                {"parameter": "maxmemory", "value": int(full * 1.5)},
                {"parameter": "maxmemory", "value": str(full)},
            ]
    finally:
        stop.set()
        thread.join(5)
    assert admin.config_get("maxmemory")["maxmemory"] == str(full)  # the previous value, restored
