"""Shared fixtures: real services (dockerd, PostgreSQL, Temporal) started once per session.

Nothing here is skipped when a service is missing: a missing binary fails the run, so a green CI
means the real components really ran.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from workers.lab.dockerd import DockerEngine
from workers.lab.postgres import Postgres
from workers.lab.processes import free_port
from workers.temporal_client import DATA_CONVERTER, ensure_search_attributes
from workflows import search_attributes

BIN = Path(sys.prefix) / "bin"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="hl-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine(session_root: Path) -> Iterator[DockerEngine]:
    engine = DockerEngine(session_root / "docker").start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def postgres(session_root: Path) -> Iterator[Postgres]:
    server = Postgres(session_root / "pg", free_port()).start()
    yield server
    server.stop()


@dataclass
class PgCluster:
    """A primary with pg_stat_statements preloaded and few connections, and its streaming replica
    (replicating through the physical slot ``replica_slot``)."""

    primary: Postgres
    replica: Postgres


@pytest.fixture(scope="session")
def pg_cluster(session_root: Path) -> Iterator[PgCluster]:
    primary = Postgres(
        session_root / "pg-primary",
        free_port(),
        {
            "shared_preload_libraries": "pg_stat_statements",
            "max_connections": "30",
            "superuser_reserved_connections": "3",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "max_replication_slots": "5",
        },
    ).start()
    replica = Postgres.replica_of(
        primary, session_root / "pg-replica", free_port(), slot="replica_slot"
    )
    try:
        replica.start()
    except BaseException:
        primary.stop()
        raise
    yield PgCluster(primary, replica)
    replica.stop()
    primary.stop()


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_startup_timeout=timedelta(seconds=60),  # 5 s is not enough on a busy machine
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


def make_settings(tmp: Path, task_queue: str = "homelab-agents", **overrides: Any) -> Settings:
    """Settings for a test: its own state dir and SQLite store; sections merged from overrides."""
    data: dict[str, Any] = {
        "temporal": {"state_dir": str(tmp / "state"), "task_queue": task_queue},
        "store": {"url": f"sqlite:///{tmp / 'store.db'}"},
        "approval": {"approvers": ["alice", "bob"]},
        "docker": [],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Settings(**data)


@pytest.fixture
def settings_factory(tmp_path: Path, task_queue: str) -> Any:
    def build(**overrides: Any) -> Settings:
        return make_settings(tmp_path, task_queue, **overrides)

    return build


async def connect_client(env: WorkflowEnvironment) -> Client:
    return env.client
