"""The PBS fake (HTTPS, CA-verified, API-token auth) with verify and garbage-collection tasks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.pbs import FakePBS
from tests.fakes.tls import make_certs

TOKEN_ID = "backup@pbs!homelab"
TOKEN_SECRET = "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"
AUDITOR_ID = "audit@pbs!readonly"
AUDITOR_SECRET = "11111111-2222-4333-8444-555555555555"
GIB = 1024**3


@pytest.fixture
def pbs(tmp_path: Path) -> Iterator[FakePBS]:
    """store1: ct/200 verified, vm/100 failed verification (its chunks are damaged), host/nas
    never verified; store2: its last GC failed and 100 GiB are pending removal."""
    fake = FakePBS(
        make_certs(tmp_path / "certs"), {TOKEN_ID: TOKEN_SECRET, AUDITOR_ID: AUDITOR_SECRET}
    )
    fake.audit_only.add(AUDITOR_ID)
    now = time.time()
    fake.add_datastore("store1", total=2000 * GIB, used=1500 * GIB)
    fake.add_snapshot("store1", "ct", "200", now - 4 * 3600, verified="ok")
    fake.add_snapshot("store1", "vm", "100", now - 3600, verified="failed", corrupt=True)
    fake.add_snapshot("store1", "vm", "100", now - 86400, verified="failed")
    fake.add_snapshot("store1", "host", "nas", now - 3600, verified=None)
    store2 = fake.add_datastore("store2", total=1000 * GIB, used=950 * GIB, gc_ok=False)
    store2.gc["pending-bytes"] = 100 * GIB
    fake.start()
    yield fake
    fake.stop()


def pbs_target(fake: FakePBS, **overrides: Any) -> dict[str, Any]:
    target: dict[str, Any] = {
        "name": "backup",
        "host": "127.0.0.1",
        "port": fake.port,
        "token_id": TOKEN_ID,
        "token_secret": TOKEN_SECRET,
        "verify_ssl": str(fake.certs.ca_file),
        "timeout": 5,
        "task_timeout": "20s",
    }
    target.update(overrides)
    return target
