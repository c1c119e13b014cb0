"""The Grafana fake (tests/fakes/grafana.py: Grafana's documented HTTP API), started once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.grafana import FakeGrafana


@pytest.fixture(scope="session")
def grafana_server() -> Iterator[FakeGrafana]:
    fake = FakeGrafana(
        datasources=[
            {
                "id": 1,
                "uid": "prom1",
                "name": "Prometheus",
                "type": "prometheus",
                "url": "http://prometheus:9090",
                "access": "proxy",
                "isDefault": True,
            },
            {
                "id": 2,
                "uid": "loki1",
                "name": "Loki",
                "type": "loki",
                "url": "http://loki:3100",
                "access": "proxy",
                "isDefault": False,
            },
        ],
        failing_sources={"loki1": "Unable to connect with Loki. Please check the server logs."},
        dashboards=[
            {
                "id": 3,
                "uid": "node-full",
                "title": "Node Exporter Full",
                "type": "dash-db",
                "tags": ["linux", "node"],
                "url": "/d/node-full/node-exporter-full",
                "folderTitle": "Hosts",
            },
            {
                "id": 4,
                "uid": "agents",
                "title": "homelab-agents",
                "type": "dash-db",
                "tags": ["homelab"],
                "url": "/d/agents/homelab-agents",
            },
        ],
    ).start()
    yield fake
    fake.stop()


@pytest.fixture
def grafana(grafana_server: FakeGrafana) -> FakeGrafana:
    """The fake with a clean request log and no annotations or injected failures."""
    grafana_server.requests.clear()
    grafana_server.annotations.clear()
    grafana_server.fail_next.clear()
    return grafana_server
