"""Intake bad input: every malformed request gets a 4xx with a reason, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.integration.stack import alertmanager_payload, am_alert, running_stack
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration

TOKEN = "s3cret-intake-token"


def valid() -> dict[str, Any]:
    return alertmanager_payload(am_alert("NoRunbookForThis", f"x-{uuid.uuid4().hex[:6]}"))


CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("no token", {"headers": {"authorization": ""}}, 401, "bearer token"),
    ("wrong token", {"headers": {"authorization": "Bearer nope"}}, 401, "bearer token"),
    ("wrong content type", {"headers": {"content-type": "text/plain"}}, 415, "application/json"),
    ("not json", {"raw": b"{not json"}, 400, "not valid JSON"),
    ("not utf-8", {"raw": b"\xff\xfe\x00"}, 400, "not valid JSON"),
    ("oversize", {"raw": b"[" + b"1," * 40000 + b"1]"}, 413, "max_body_bytes"),
    ("json array", {"payload": []}, 422, "webhook v4"),
    (
        "wrong version",
        {"payload": {**alertmanager_payload(am_alert("A", "c")), "version": "3"}},
        422,
        "version",
    ),
    (
        "no alerts",
        {"payload": {**alertmanager_payload(am_alert("A", "c")), "alerts": []}},
        422,
        "alerts",
    ),
    (
        "alert without labels",
        {
            "payload": alertmanager_payload(
                {"status": "firing", "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "abc"}
            )
        },
        422,
        "labels",
    ),
    (
        "alert without alertname",
        {"payload": alertmanager_payload({**am_alert("A", "c"), "labels": {"x": "y"}})},
        422,
        "alertname",
    ),
    (
        "bad fingerprint",
        {"payload": alertmanager_payload({**am_alert("A", "c"), "fingerprint": "../../etc"})},
        422,
        "fingerprint",
    ),
    (
        "bad status",
        {"payload": alertmanager_payload({**am_alert("A", "c"), "status": "exploding"})},
        422,
        "status",
    ),
    (
        "bad startsAt",
        {"payload": alertmanager_payload({**am_alert("A", "c"), "startsAt": "yesterday"})},
        422,
        "startsAt",
    ),
    # --- found when tried as a new user and as an attacker would (issues 18, 19) ---
    ("5,000 nested objects", {"raw": b'{"a":' * 5000 + b"1" + b"}" * 5000}, 400, "nested"),
    ("10,000-deep array", {"raw": b"[" * 10000 + b"]" * 10000}, 400, "nested"),
    *[
        (
            f"numeric startsAt {value}",
            {"payload": alertmanager_payload({**am_alert("A", "c"), "startsAt": value})},
            422,
            "RFC 3339",
        )
        for value in (5, -7, 1.5)
    ],
    *[
        (
            f"firing since {when}",
            {"payload": alertmanager_payload({**am_alert("A", "c"), "startsAt": when})},
            422,
            reason,
        )
        for when, reason in (
            ("0001-01-01T00:00:00Z", "before 2000"),
            ("9999-12-31T00:00:00Z", "in the future"),
        )
    ],
    (
        "startsAt without a zone",
        {"payload": alertmanager_payload({**am_alert("A", "c"), "startsAt": "2026-01-01T00:00"})},
        422,
        "time zone",
    ),
    (
        "NUL in a label",
        {"payload": alertmanager_payload(am_alert("A", "c", team="ops\x00root"))},
        422,
        "NUL",
    ),
    (
        "lone surrogate in a label",
        {
            "raw": json.dumps(alertmanager_payload(am_alert("A", "c", team="X")))
            .replace('"X"', '"\\ud800"')
            .encode()
        },
        422,
        "surrogate",
    ),
    (
        "2 KB label",
        {"payload": alertmanager_payload(am_alert("A", "c", team="x" * 2048))},
        422,
        "limit 1024",
    ),
    (
        "2,000 labels",
        {
            "payload": alertmanager_payload(
                am_alert("A", "c", **{f"l{i}": "v" for i in range(2000)})
            )
        },
        422,
        "limit 64",
    ),
    (
        "label name that is not Prometheus'",
        {"payload": alertmanager_payload(am_alert("A", "c", **{"bad-name": "v"}))},
        422,
        "label name",
    ),
    (
        "non-ASCII bearer token",
        {"headers": {"authorization": "Bearer s3cr\u00e9t".encode()}},
        401,
        "token",
    ),
    (
        "too many alerts in one post",
        {"payload": alertmanager_payload(*[am_alert("A", f"c{i}") for i in range(51)])},
        413,
        "max_alerts_per_post",
    ),
]


@pytest.fixture
async def guarded_stack(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path
) -> Any:
    async with running_stack(
        dev_env,
        docker_engine,
        tmp_path,
        intake={"token": TOKEN, "max_body_bytes": 65536, "max_alerts_per_post": 50},
    ) as stack:
        yield stack


async def test_bad_requests_get_4xx_with_reason(guarded_stack: Any) -> None:
    stack = guarded_stack
    for label, case, status, reason in CASES:
        headers = {"authorization": f"Bearer {TOKEN}", **case.get("headers", {})}
        raw = case.get("raw")
        payload = case.get("payload", valid())
        response = await stack.post(payload, headers=headers, raw=raw)
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        assert reason in response.text, f"{label}: {response.text}"
    # still serving, and a good request still works
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(f"{stack.intake_url}/healthz")).status_code == 200
        metrics = (await http.get(f"{stack.intake_url}/metrics")).text
        assert "homelab_intake_rejected_total" in metrics
    ok = await stack.post(valid(), headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202, ok.text


async def test_mixed_batch_routes_valid_alerts_and_names_the_bad_one(guarded_stack: Any) -> None:
    stack = guarded_stack
    good = am_alert("NoRunbookForThis", "good")
    bad = {**am_alert("A", "bad"), "labels": {"no": "alertname"}}
    response = await stack.post(
        alertmanager_payload(good, bad, good), headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == [0, 2]
    # the same notification twice is delivered once (fingerprint, status, startsAt)
    assert [r["action"] for r in body["results"]] == ["accepted", "duplicate"]
    assert body["rejected"][0]["index"] == 1 and "alertname" in body["rejected"][0]["reason"]
    state = await stack.result(f"incident-{good['fingerprint']}")
    assert state.alerts_received == 1
    assert any("no runbook" in note for note in state.notes)


async def test_real_alertmanager_example_payload_is_accepted(guarded_stack: Any) -> None:
    example = Path(__file__).resolve().parents[1] / "data" / "alertmanager-webhook-example.json"
    payload = json.loads(example.read_text())
    payload["alerts"][0]["fingerprint"] = uuid.uuid4().hex[:16]
    response = await guarded_stack.post(payload, headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["alertname"] == "TargetDown"


async def test_a_rejected_body_leaves_the_keep_alive_connection_usable(guarded_stack: Any) -> None:
    """A nested body once raised RecursionError: a 500, then a reset on the same connection."""
    url = httpx.URL(guarded_stack.intake_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)

    async def send(body: bytes) -> int:
        writer.write(
            b"POST /alerts/alertmanager HTTP/1.1\r\nHost: intake\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nConnection: keep-alive\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])

    try:
        assert await send(b'{"a":' * 5000 + b"1" + b"}" * 5000) == 400
        assert await send(b"[" * 10000 + b"]" * 10000) == 400
        assert await send(json.dumps(valid()).encode()) == 202  # same connection, still serving
    finally:
        writer.close()


async def test_a_refused_alert_is_rejected_alone(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Only Temporal outages are 503 (Alertmanager retries the whole group); an alert Temporal
    refuses for what it is goes into `rejected` and the others of its group are routed."""
    from workers.routing import AlertRefused, AlertRouter

    router = AlertRouter(dev_env.client, task_queue="q" * 2000)  # a name Temporal refuses
    from core.models import AlertmanagerAlert

    alert = AlertmanagerAlert.model_validate(am_alert("A", "c")).to_alert(datetime.now(UTC))
    with pytest.raises(AlertRefused, match="INVALID_ARGUMENT"):
        await router.route(alert)
