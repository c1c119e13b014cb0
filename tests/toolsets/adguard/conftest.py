"""The AdGuard Home fake, fresh for each test (its state is the scenario)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.adguard import FakeAdGuard

USER = "homelab"
PASSWORD = "agh-Pw-91Lk3mZq"


@pytest.fixture
def agh() -> Iterator[FakeAdGuard]:
    fake = FakeAdGuard(USER, PASSWORD)
    yield fake
    fake.stop()


def agh_target(agh: FakeAdGuard, **extra: Any) -> dict[str, Any]:
    return {
        "name": "dns",
        "url": agh.url,
        "username": USER,
        "password": PASSWORD,
        "timeout": 3,
        "instances": ["http://adguard.lan:3000"],
        **extra,
    }
