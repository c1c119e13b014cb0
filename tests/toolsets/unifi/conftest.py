"""The UniFi controller fake with a small site: a gateway, a PoE switch feeding two APs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.unifi import Dev, FakeUnifi

USER = "homelab"
PASSWORD = "unifi-Pw-5Tg7Hj9K"
GATEWAY = "74:ac:b9:00:00:01"
SWITCH = "74:ac:b9:00:00:02"
AP_LIVING = "74:ac:b9:00:00:0a"
AP_GARDEN = "74:ac:b9:00:00:0b"


@pytest.fixture
def controller() -> Iterator[FakeUnifi]:
    fake = FakeUnifi(USER, PASSWORD, boot_seconds=0.5)
    fake.add(Dev(GATEWAY, "Gateway", "ugw", "UXG-Lite"))
    poe = {"poe_enable": True, "poe_mode": "auto", "port_poe": True, "up": True, "speed": 1000}
    fake.add(
        Dev(
            SWITCH,
            "Switch Office",
            "usw",
            "USW-Lite-8-PoE",
            uplink=(GATEWAY, 1),
            ports={
                1: {
                    "name": "Uplink",
                    "port_poe": False,
                    "poe_mode": "off",
                    "up": True,
                    "speed": 1000,
                },
                5: {"name": "AP Living", "poe_power": "3.92", **poe},
                6: {"name": "AP Garden", "poe_power": "4.10", **poe},
                7: {
                    "name": "Printer",
                    "port_poe": False,
                    "poe_mode": "off",
                    "up": True,
                    "speed": 100,
                },
            },
        )
    )
    fake.add(
        Dev(
            AP_LIVING, "AP Living", "uap", "U6-Lite", uplink=(SWITCH, 5), clients=9, upgradable=True
        )
    )
    fake.add(Dev(AP_GARDEN, "AP Garden", "uap", "U6-Mesh", uplink=(SWITCH, 6), clients=2))
    yield fake
    fake.stop()


def unifi_target(fake: FakeUnifi, **extra: Any) -> dict[str, Any]:
    return {
        "name": "home",
        "url": fake.url,
        "username": USER,
        "password": PASSWORD,
        "timeout": 3,
        **extra,
    }
