"""A real store (SQLite) and real incident memory (qdrant-client's embedded mode) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.memory.activities import MemoryActivities
from activities.memory.qdrant import close_local
from activities.records import RecordActivities
from activities.store import Store
from core.config import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.store_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def records(store: Store, settings: Settings) -> RecordActivities:
    return RecordActivities(store, settings.memory)


@pytest.fixture
def memory_factory(store: Store) -> Iterator[Any]:
    """MemoryActivities for a settings object; embedded stores are closed after the test."""
    opened: list[str] = []

    def build(settings: Settings, **kwargs: Any) -> MemoryActivities:
        opened.append(settings.memory_location)
        return MemoryActivities(settings, store, **kwargs)

    yield build
    for location in opened:
        close_local(location)


@pytest.fixture
def memory(memory_factory: Any, settings: Settings) -> MemoryActivities:
    built: MemoryActivities = memory_factory(settings)
    return built
