"""Every Alertmanager tool against the real Alertmanager; ``amtool`` confirms the silences."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.models import Reversibility, RiskLevel, ToolErrorKind
from tests.conftest import make_settings
from tests.toolsets.alertmanager.conftest import amtool, post_alert
from tests.toolsets.calls import CATALOG, Tools
from workers.lab.monitoring import Alertmanager, binary
from workers.lab.processes import free_port


def am_targets(am: Alertmanager, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": "lab", "url": am.url, "max_silence": "12h", **extra}]


@pytest.fixture
async def tools(alertmanager: Alertmanager, tmp_path: Path) -> AsyncIterator[Tools]:
    t = Tools(make_settings(tmp_path, alertmanager=am_targets(alertmanager)), "alertmanager")
    yield t
    await t.aclose()


def live_silences(am: Alertmanager, incident: str) -> list[dict[str, Any]]:
    return [
        s
        for s in amtool(am, "silence", "query")
        if f"incident={incident}]" in s["comment"] and s["status"]["state"] == "active"
    ]


async def test_status_reports_version_reload_and_receivers_without_secrets(tools: Tools) -> None:
    result = await tools.read("status")
    assert result.ok, result.error
    assert result.data["version"] == "0.25.0" and result.data["reload_successful"] is True
    assert result.data["receivers"] == ["homelab-agents"]
    assert result.data["cluster_status"] == "disabled"
    assert "alerts/alertmanager" not in str(result.data)  # the webhook URL stays private


async def test_silence_own_alert_is_live_in_amtool_and_the_compensation_expires_it(
    tools: Tools, alertmanager: Alertmanager
) -> None:
    labels = post_alert(alertmanager, "HostOutOfMemory", severity="warning")
    other = post_alert(alertmanager, "HostOutOfMemory", severity="warning")
    spec = CATALOG.get("alertmanager.silence")
    assert spec.level is RiskLevel.NONE and spec.reversibility is Reversibility.COMPENSATED
    incident = "incident-4f2a"
    comment = "waiting for approval: http://127.0.0.1:8233/namespaces/default/workflows/x"
    prepared, result = await tools.write(
        "silence", incident=incident, labels=labels, duration="30m", comment=comment
    )
    assert prepared.preview.startswith('silence {alertname="HostOutOfMemory", instance="')
    assert "for 30m00s on alertmanager lab (1 alert(s) match now)" in prepared.preview
    assert prepared.compensation is not None
    assert prepared.compensation.tool == "alertmanager.expire_silence"
    assert prepared.compensation.params["incident"] == incident
    assert result.ok, result.error
    silence_id = result.data["silence_id"]
    assert result.data["url"].endswith(f"/#/silences/{silence_id}")

    (seen,) = live_silences(alertmanager, incident)
    assert seen["id"] == silence_id and seen["createdBy"] == "homelab-agents"
    assert seen["comment"] == f"{comment} [homelab-agents incident={incident}]"
    assert sorted((m["name"], m["value"], m["isRegex"]) for m in seen["matchers"]) == sorted(
        (k, v, False) for k, v in labels.items()
    )
    for _ in range(50):  # Alertmanager marks the alert silenced at its next look
        alerts = await tools.read(
            "alerts", matchers=[{"name": "alertname", "value": "HostOutOfMemory"}]
        )
        by_instance = {a["labels"]["instance"]: a for a in alerts.data["alerts"]}
        if by_instance[labels["instance"]]["silenced_by"]:
            break
        await asyncio.sleep(0.1)
    assert by_instance[labels["instance"]]["silenced_by"] == [silence_id]
    assert by_instance[labels["instance"]]["state"] == "suppressed"
    assert by_instance[other["instance"]]["state"] == "active"  # only that one alert

    # a retried attempt extends the same silence instead of adding another
    _, again = await tools.write(
        "silence", incident=incident, labels=labels, duration="30m", comment=comment
    )
    assert again.ok and again.data["silence_id"] == silence_id and again.data["extended"]
    assert len(live_silences(alertmanager, incident)) == 1

    undone = await tools.compensate(prepared)
    assert undone.ok, undone.error
    assert undone.data["expired"] == [silence_id]
    assert live_silences(alertmanager, incident) == []
    expired = [
        s for s in amtool(alertmanager, "silence", "query", "--expired") if s["id"] == silence_id
    ]
    assert expired and expired[0]["status"]["state"] == "expired"
    noop = await tools.runner.prepare(prepared.compensation)
    assert noop.noop and noop.preview.startswith("no-op")


async def test_silence_bounds_and_wider_silences(tools: Tools, alertmanager: Alertmanager) -> None:
    only_name = await tools.prepare("silence", labels={"alertname": "X"})
    assert only_name.error is not None and only_name.error.kind is ToolErrorKind.INVALID
    too_long = await tools.prepare("silence", labels={"alertname": "X", "a": "b"}, duration="2d")
    assert too_long.error is not None and "max_silence" in too_long.error.message
    empty = await tools.prepare(
        "silence_matching", matchers=[{"name": "a", "value": ".*", "is_regex": True}]
    )
    assert empty.error is not None and empty.error.kind is ToolErrorKind.INVALID
    assert CATALOG.get("alertmanager.silence_matching").level is RiskLevel.HARD

    labels = post_alert(alertmanager, "PrometheusTargetMissing", job="wide-test")
    prepared, result = await tools.write(
        "silence_matching",
        incident="incident-wide",
        matchers=[
            {"name": "alertname", "value": "PrometheusTargetMissing"},
            {"name": "job", "value": "wide-.*", "is_regex": True},
        ],
        duration="5m",
    )
    assert result.ok, result.error
    assert 'job=~"wide-.*"' in prepared.preview
    (seen,) = live_silences(alertmanager, "incident-wide")
    assert any(m["isRegex"] for m in seen["matchers"])
    assert labels["job"] == "wide-test"
    assert (await tools.compensate(prepared)).ok
    bad_regex = await tools.prepare(
        "silence_matching", matchers=[{"name": "job", "value": "(", "is_regex": True}]
    )
    assert bad_regex.error is not None and bad_regex.error.kind is ToolErrorKind.INVALID
    assert "HTTP 400" in bad_regex.error.message and "regexp" in bad_regex.error.message


async def test_expire_refuses_a_silence_someone_else_made(
    tools: Tools, alertmanager: Alertmanager
) -> None:
    done = subprocess.run(
        [
            binary("amtool"),
            f"--alertmanager.url={alertmanager.url}",
            "silence",
            "add",
            "alertname=Maintenance",
            "--comment=planned",
            "--author=alice",
            "--duration=1h",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    theirs = done.stdout.strip()
    prepared = await tools.prepare("expire_silence", silence_id=theirs)
    assert prepared.error is not None and prepared.error.kind is ToolErrorKind.INVALID
    assert "alice" in prepared.error.message
    assert any(s["id"] == theirs for s in amtool(alertmanager, "silence", "query"))
    listed = await tools.read("silences")
    mine = [s for s in listed.data["silences"] if s["id"] == theirs]
    assert mine and mine[0]["incident"] is None and mine[0]["created_by"] == "alice"


async def test_check_config_names_the_line_and_unreachable_is_typed(
    alertmanager: Alertmanager, tmp_path: Path
) -> None:
    broken = tmp_path / "alertmanager.yml"
    shutil.copy(alertmanager.root / "alertmanager.yml", broken)
    broken.write_text(broken.read_text() + "bogus_key: 1\n")
    tools = Tools(
        make_settings(
            tmp_path,
            alertmanager=[
                *am_targets(alertmanager, config_file=str(alertmanager.root / "alertmanager.yml")),
                {"name": "broken", "url": alertmanager.url, "config_file": str(broken)},
                {"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "timeout": 2},
            ],
        ),
        "alertmanager",
    )
    try:
        good = await tools.read("check_config")
        assert good.ok and good.data["ok"] is True
        tools.target = "broken"
        bad = await tools.read("check_config")
        assert bad.ok and bad.data["ok"] is False
        line = len(broken.read_text().splitlines())
        assert bad.data["errors"][0]["line"] == line and "bogus_key" in bad.data["first_error"]
        tools.target = "gone"
        down = await tools.read("silences")
        assert not down.ok and down.error is not None
        assert down.error.kind is ToolErrorKind.UNREACHABLE
    finally:
        await tools.aclose()
    await asyncio.sleep(0)


async def test_doctor_probe(tools: Tools) -> None:
    from activities.toolsets.alertmanager import probe

    found = await asyncio.to_thread(probe, tools.settings.alertmanager[0])
    assert found == "Alertmanager 0.25.0, cluster disabled"
