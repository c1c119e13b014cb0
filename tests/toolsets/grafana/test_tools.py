"""Grafana tools against the fake of Grafana's HTTP API: health, data sources, search, annotations
(request shapes asserted), and every failure typed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.models import ToolErrorKind
from tests.conftest import make_settings
from tests.fakes.grafana import FakeGrafana
from tests.toolsets.calls import Tools
from workers.lab.processes import free_port


def grafana_target(fake: FakeGrafana, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    token = tmp_path / "grafana-token"
    token.write_text(fake.token + "\n")
    return {"name": "lab", "url": fake.url, "token_file": str(token), "org_id": 2, **extra}


@pytest.fixture
async def tools(grafana: FakeGrafana, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, grafana=[grafana_target(grafana, tmp_path)]), "grafana")
    yield t
    await t.aclose()


async def test_health_datasources_and_search(tools: Tools, grafana: FakeGrafana) -> None:
    health = await tools.read("health")
    assert health.ok and health.data["ok"] is True and health.data["version"] == "10.4.2"
    sources = await tools.read("datasources")
    assert sources.ok, sources.error
    assert sources.data["failing"] == 1
    status = {s["name"]: (s["status"], s["message"]) for s in sources.data["datasources"]}
    assert status["Prometheus"][0] == "OK"
    assert status["Loki"][0] == "ERROR" and "Unable to connect with Loki" in status["Loki"][1]
    found = await tools.read("dashboards", query="node", tags=["linux"])
    assert [d["uid"] for d in found.data["dashboards"]] == ["node-full"]
    assert found.data["dashboards"][0]["folder"] == "Hosts"

    checks = [r for r in grafana.requests if r.path.endswith("/health") and "uid" in r.path]
    assert [r.path for r in checks] == [
        "/api/datasources/uid/prom1/health",
        "/api/datasources/uid/loki1/health",
    ]
    for request in grafana.requests:
        assert request.headers["authorization"] == f"Bearer {grafana.token}"
        assert request.headers["x-grafana-org-id"] == "2"
    search = next(r for r in grafana.requests if r.path == "/api/search")
    assert search.query == {
        "type": ["dash-db"],
        "limit": ["50"],
        "query": ["node"],
        "tag": ["linux"],
    }
    assert grafana.token not in str(sources.data)


async def test_annotate_posts_the_documented_body_once(tools: Tools, grafana: FakeGrafana) -> None:
    prepared, result = await tools.write(
        "annotate",
        text="incident-ab12 opened: HostOutOfDiskSpace on nas /srv",
        tags=["incident-ab12", "opened"],
        dashboard_uid="node-full",
        panel_id=7,
    )
    assert prepared.preview.startswith("annotate grafana lab dashboard node-full at ")
    assert "['homelab-agents', 'incident-ab12', 'opened']" in prepared.preview
    assert prepared.compensation is None and not prepared.noop
    assert result.ok, result.error
    (posted,) = [r for r in grafana.requests if r.method == "POST"]
    assert posted.path == "/api/annotations"
    assert posted.body == {
        "time": prepared.before["time_ms"],
        "tags": ["homelab-agents", "incident-ab12", "opened"],
        "text": "incident-ab12 opened: HostOutOfDiskSpace on nas /srv",
        "dashboardUID": "node-full",
        "panelId": 7,
    }
    assert isinstance(posted.body["time"], int)
    assert result.data["annotation_id"] == grafana.annotations[0]["id"]

    # a retried activity (same before-state) finds its annotation instead of adding a second
    call = tools.call(
        "annotate",
        text="incident-ab12 opened: HostOutOfDiskSpace on nas /srv",
        tags=["incident-ab12", "opened"],
        dashboard_uid="node-full",
        panel_id=7,
    ).model_copy(update={"before": prepared.before})
    again = await tools.runner.run(call)
    assert again.ok and again.data["annotation_id"] == result.data["annotation_id"]
    assert len(grafana.annotations) == 1
    org_wide = await tools.write("annotate", text="resolved", tags=["incident-ab12", "resolved"])
    assert org_wide[1].ok and "dashboardUID" not in grafana.requests[-1].body
    bad = await tools.prepare("annotate", text="x", tags=["a,b"])
    assert bad.error is not None and bad.error.kind is ToolErrorKind.INVALID


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, ToolErrorKind.RATE_LIMITED),
        (500, ToolErrorKind.FAILED),
        (403, ToolErrorKind.UNAUTHORIZED),
        (400, ToolErrorKind.INVALID),
    ],
)
async def test_failures_are_typed(
    tools: Tools, grafana: FakeGrafana, status: int, kind: ToolErrorKind
) -> None:
    headers = {"Retry-After": "3"} if status == 429 else {}
    grafana.fail_next.append((status, {"message": f"injected {status}"}, headers))
    grafana.fail_next.append((status, {"message": f"injected {status}"}, headers))
    result = await tools.read("dashboards")
    assert not result.ok and result.error is not None
    assert result.error.kind is kind and f"injected {status}" in result.error.message


async def test_wrong_token_and_unreachable(grafana: FakeGrafana, tmp_path: Path) -> None:
    tools = Tools(
        make_settings(
            tmp_path,
            grafana=[
                {"name": "lab", "url": grafana.url, "token": "glsa_wrong_0000000000"},
                {"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "timeout": 2},
            ],
        ),
        "grafana",
    )
    try:
        denied = await tools.read("datasources")
        assert not denied.ok and denied.error is not None
        assert denied.error.kind is ToolErrorKind.UNAUTHORIZED
        assert "invalid API key" in denied.error.message
        assert "glsa_wrong" not in denied.error.message
        tools.target = "gone"
        down = await tools.read("health")
        assert not down.ok and down.error is not None
        assert down.error.kind is ToolErrorKind.UNREACHABLE
    finally:
        await tools.aclose()


async def test_doctor_probe(tools: Tools) -> None:
    import asyncio

    from activities.toolsets.grafana import probe

    found = await asyncio.to_thread(probe, tools.settings.grafana[0])
    assert found == "Grafana 10.4.2, database ok, 2 data source(s) visible to the token"
