"""The Cloudflare fake (API v4 + authoritative DNS) and a what-is-my-IP service, once per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.cloudflare import EDIT_DNS, READ_DNS, READ_ZONE, FakeCloudflare, PublicIp, Token

TOKEN = "cf-token-Zr9wQx7LmN2pK4vT8yB1"
READONLY = "cf-token-readonly-7Hq2Lm9Xw3"
OTHER_ZONE = "cf-token-otherzone-4Kd8Pq1Zs6"
WAN = "203.0.113.7"
OLD_WAN = "198.51.100.4"


@pytest.fixture(scope="module")
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(
        [
            Token(TOKEN, {READ_ZONE, READ_DNS, EDIT_DNS}, {"example.test", "big.test"}),
            Token(READONLY, {READ_ZONE, READ_DNS}),
            Token(OTHER_ZONE, {READ_ZONE, READ_DNS, EDIT_DNS}, {"big.test"}),
        ]
    ).start()
    fake.add_zone("example.test")
    fake.add_zone("big.test")
    fake.add_zone("unlisted.test")
    for i in range(230):  # more than two pages of 100
        fake.add_record("big.test", "A", f"host{i:03d}.big.test", f"10.1.{i // 250}.{i % 250}")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def wan() -> Iterator[PublicIp]:
    service = PublicIp(WAN).start()
    yield service
    service.stop()


def cf_target(
    cf: FakeCloudflare, wan: PublicIp, token: str = TOKEN, **extra: Any
) -> dict[str, Any]:
    return {
        "name": "cf",
        "api_url": cf.url,
        "token": token,
        "zones": ["example.test", "big.test"],
        "public_ip_url": wan.url,
        "nameservers": [cf.nameserver],
        "timeout": 3,
        "records": [
            {"name": "www.example.test", "type": "A", "content": "192.0.2.10"},
            {"name": "home.example.test", "type": "A", "content": "public_ip"},
            {"name": "mail.example.test", "type": "A", "content": "192.0.2.25", "ttl": 300},
            {"name": "shop.example.test", "type": "A", "content": "192.0.2.30"},
        ],
        **extra,
    }
