"""The same change-log behaviour on a real PostgreSQL as on SQLite."""

from __future__ import annotations

import uuid

import pytest

from activities.store import Store
from tests.unit.test_store import exercise
from workers.lab.postgres import Postgres

pytestmark = pytest.mark.integration


def test_postgres_store_behaves_like_sqlite(postgres: Postgres) -> None:
    name = f"store_{uuid.uuid4().hex[:8]}"
    postgres.createdb(name)
    store = Store(postgres.url(name))
    assert store.dialect == "postgresql"
    exercise(store)
    again = Store(postgres.url(name))
    assert again.migrate() == []  # a second process finds the schema in place
    again.close()
    store.close()
