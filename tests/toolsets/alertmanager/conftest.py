"""A real Alertmanager 0.25 (Debian package), started once for these tests; alerts are posted to
its API v2 as Prometheus would, and ``amtool`` is the independent witness of its silences."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from workers.lab.monitoring import Alertmanager, binary
from workers.lab.processes import free_port


@pytest.fixture(scope="session")
def alertmanager(session_root: Path) -> Iterator[Alertmanager]:
    root = session_root / "alertmanager"
    root.mkdir(parents=True, exist_ok=True)
    token = root / "intake-token"
    token.write_text("am-webhook-secret-0123456789")
    am = Alertmanager(root, free_port())
    am.write_config(f"http://127.0.0.1:{free_port()}/alerts/alertmanager", token)
    am.start()
    yield am
    if am.proc is not None:
        am.proc.stop()


def post_alert(am: Alertmanager, alertname: str, **labels: str) -> dict[str, str]:
    """Push one firing alert as Prometheus does (POST /api/v2/alerts); its labels."""
    full = {"alertname": alertname, "instance": f"host-{uuid.uuid4().hex[:6]}:9100", **labels}
    now = datetime.now(UTC)
    body = [
        {
            "labels": full,
            "annotations": {"summary": f"{alertname} test"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "generatorURL": "http://prometheus:9090/graph",
        }
    ]
    httpx.post(f"{am.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()
    return full


def amtool(am: Alertmanager, *args: str) -> Any:
    done = subprocess.run(
        [binary("amtool"), f"--alertmanager.url={am.url}", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "null")
