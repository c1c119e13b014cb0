"""Every Prometheus tool against the real server: queries as evidence, targets, rules, TSDB,
config status, promtool naming the broken file and line, reload refused then accepted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from core.models import ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.calls import Tools
from tests.toolsets.prometheus.conftest import PromLab, prom_target
from workers.lab.processes import free_port

BROKEN = """groups:
  - name: broken
    rules:
      - alert: Broken
        expr: up ==
"""


@pytest.fixture
async def tools(prom_lab: PromLab, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, prometheus=[prom_target(prom_lab)]), "prometheus")
    yield t
    await t.aclose()


async def test_query_returns_series_values_and_bounds(tools: Tools) -> None:
    result = await tools.read("query", query='up{job="prometheus"}')
    assert result.ok, result.error
    assert result.data["result_type"] == "vector" and result.data["count"] == 1
    assert result.data["value"] == 1.0
    assert result.data["series"][0]["labels"]["job"] == "prometheus"
    every = await tools.read("query", query="up", limit=1)
    assert every.data["count"] == 3 and len(every.data["series"]) == 1
    assert every.data["truncated"] == 2 and every.data["min"] == 0.0 and every.data["max"] == 1.0
    scalar = await tools.read("query", query="1 + 1")
    assert scalar.data["result_type"] == "scalar" and scalar.data["value"] == 2.0


async def test_bad_promql_is_a_typed_invalid_error(tools: Tools) -> None:
    result = await tools.read("query", query="up ==")
    assert not result.ok and result.error is not None
    assert result.error.kind is ToolErrorKind.INVALID
    assert "HTTP 400" in result.error.message and "parse error" in result.error.message


async def test_query_range_never_exceeds_max_points(prom_lab: PromLab, tmp_path: Path) -> None:
    tools = Tools(
        make_settings(tmp_path, prometheus=[prom_target(prom_lab, max_points=10)]), "prometheus"
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # the server started seconds ago: wait until a 7 s step lands on samples
            result = await tools.read("query_range", query="up", range="1m", step="1s")
            assert result.ok, result.error
            if result.data["count"] == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert result.data["step_seconds"] == 7.0 and "raised to 7s" in result.data["note"]
        assert result.data["count"] == 3
        for series in result.data["series"]:
            assert 1 <= len(series["points"]) <= 10
            assert series["max"] in (0.0, 1.0)
        bad = await tools.read("query_range", query="up", range="soon")
        assert not bad.ok and bad.error is not None and bad.error.kind is ToolErrorKind.INVALID
    finally:
        await tools.aclose()


async def test_targets_list_the_down_one_with_its_scrape_error(
    tools: Tools, prom_lab: PromLab
) -> None:
    result = await tools.read("targets")
    assert result.ok, result.error
    assert result.data["down"] == 1 and result.data["total"] == 3
    (down,) = result.data["targets"]
    assert down["job"] == "missing" and down["instance"] == f"127.0.0.1:{prom_lab.dead_port}"
    assert "connection refused" in down["last_error"]
    assert result.data["jobs"]["node"] == {"up": 1, "total": 1}
    only_node = await tools.read("targets", job="node", only_down=False)
    assert [t["job"] for t in only_node.data["targets"]] == ["node"]


async def test_rules_report_a_group_that_fails_at_evaluation(
    tools: Tools, prom_lab: PromLab
) -> None:
    clean = await tools.read("rules")
    assert clean.ok and clean.data["failing_rules"] == 0 and clean.data["total_rules"] > 10
    path = prom_lab.rules / "zz-evaluation.rules.yml"
    path.write_text(
        "groups:\n  - name: many-to-many\n    interval: 1s\n    rules:\n"
        "      - record: job:up:bad\n        expr: up + on() up\n"
    )
    try:
        prom_lab.prom.reload()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            failing = await tools.read("rules")
            if failing.data["failing_rules"]:
                break
            await asyncio.sleep(0.5)
        (group,) = failing.data["groups"]
        assert group["name"] == "many-to-many" and group["file"] == str(path)
        assert (
            "many-to-many" in group["failing"][0]["last_error"]
            or "duplicate" in (group["failing"][0]["last_error"])
        )
    finally:
        path.unlink()
        prom_lab.prom.reload()


async def test_alerts_and_tsdb_status(tools: Tools) -> None:
    deadline = time.monotonic() + 20
    while True:  # the down target's rule fires after its compressed `for:`
        alerts = await tools.read("alerts", alertname="PrometheusTargetMissing")
        if alerts.data.get("count") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert alerts.ok and alerts.data["count"] == 1
    assert alerts.data["alerts"][0]["labels"]["job"] == "missing"
    tsdb = await tools.read("tsdb_status", top=3)
    assert tsdb.ok, tsdb.error
    assert tsdb.data["head_series"] > 100 and len(tsdb.data["series_by_metric"]) == 3
    assert tsdb.data["compactions_failed"] == 0.0 and tsdb.data["wal_corruptions"] == 0.0


async def test_broken_rule_file_check_names_file_and_line_and_reload_is_refused_then_taken(
    tools: Tools, prom_lab: PromLab
) -> None:
    status = await tools.read("config_status")
    assert status.ok and status.data["reload_successful"] is True
    assert status.data["lifecycle"] is True and status.data["config_file"] == str(prom_lab.config)
    broken = prom_lab.rules / "zz-broken.rules.yml"
    broken.write_text(BROKEN)
    try:
        check = await tools.read("check_config")
        assert check.ok, check.error
        assert check.data["ok"] is False and check.data["files"] == [str(broken)]
        (error,) = check.data["errors"]
        assert error["line"] == 5 and error["column"] == 15 and "parse" in error["message"]
        assert check.summary.startswith(f"promtool: {broken}:5:")

        prepared, result = await tools.write("reload")
        assert prepared.preview.startswith("POST /-/reload on prometheus lab (config ")
        assert "last reload succeeded" in prepared.preview
        assert not result.ok and result.error is not None
        assert result.error.kind is ToolErrorKind.FAILED
        assert "refused the configuration" in result.error.message
        after = await tools.read("config_status")
        assert after.data["reload_successful"] is False
    finally:
        broken.unlink()
    fixed = await tools.read("check_config")
    assert fixed.data["ok"] is True and fixed.data["errors"] == []
    prepared, result = await tools.write("reload")
    assert "last reload failed" in prepared.preview
    assert result.ok, result.error
    assert result.data["before"]["reload_successful"] is False
    assert result.data["after"]["reload_successful"] is True


async def test_reload_without_lifecycle_and_unreachable_server(
    prom_lab: PromLab, tmp_path: Path
) -> None:
    tools = Tools(
        make_settings(
            tmp_path,
            prometheus=[
                prom_target(prom_lab, lifecycle=False),
                {"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "timeout": 2},
            ],
        ),
        "prometheus",
    )
    try:
        _, result = await tools.write("reload")
        assert not result.ok and result.error is not None
        assert result.error.kind is ToolErrorKind.UNSUPPORTED
        assert "--web.enable-lifecycle" in result.error.message
        tools.target = "gone"
        down = await tools.read("query", query="up")
        assert not down.ok and down.error is not None
        assert down.error.kind is ToolErrorKind.UNREACHABLE
        with pytest.raises(ApplicationError, match="unreachable"):  # transient: retried
            await tools.prepare("reload")
    finally:
        await tools.aclose()


async def test_doctor_probe(tools: Tools) -> None:
    from activities.toolsets.prometheus import probe

    found = await asyncio.to_thread(probe, tools.settings.prometheus[0])
    assert found.startswith("Prometheus 2.42.0") and found.endswith(", last config reload ok")
