"""Three real Unbound servers per module: two upstreams answering lab.lan from local data, and
the resolver under test forwarding lab.lan to the first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workers.lab.unbound import Unbound, make_keys

ZONE = "lab.lan."
DATA = ["app.lab.lan. 60 IN A 10.0.0.5", "nas.lab.lan. 60 IN A 10.0.0.6"]


@dataclass
class DnsLab:
    resolver: Unbound
    old: Unbound
    new: Unbound

    def target(self, **extra: Any) -> dict[str, Any]:
        return {
            "name": "resolver",
            "resolver": self.resolver.resolver,
            "config": str(self.resolver.config),
            "probe_names": ["app.lab.lan", "nas.lab.lan"],
            "timeout": 2,
            **extra,
        }


@pytest.fixture(scope="module")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    root: Path = tmp_path_factory.mktemp("unbound")
    keys = make_keys(root / "keys")
    old = Unbound(root / "old", local_zones=[ZONE], local_data=DATA, keys=keys).start()
    new = Unbound(root / "new", local_zones=[ZONE], local_data=DATA, keys=keys).start()
    resolver = Unbound(root / "resolver", forwards={ZONE: [old.address]}, keys=keys).start()
    try:
        yield DnsLab(resolver, old, new)
    finally:
        for server in (resolver, old, new):
            server.stop()
