"""Property-based fuzzing of the real intake process against the real Temporal dev server.

Whatever the body — junk JSON, wrong types, hostile text (NUL, lone surrogates, huge labels),
odd times — the answer is a 2xx or a 4xx with a reason, never a 5xx while Temporal is up, every
alert of a group is either routed or rejected by index, and no rejected alert starts a workflow.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from workers.lab.processes import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.prefix) / "bin"
OK = {202, 400, 413, 415, 422}

hostile = st.characters(codec=None, exclude_categories=())
junk_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(hostile),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)

# Each breakage turns a valid alert into one the intake must reject (the generator knows what it
# broke, so the oracle is exact: broken → rejected, untouched → routed).
BREAKAGES: dict[str, Any] = {
    "numeric startsAt": lambda a, d: a.update(
        startsAt=d(st.one_of(st.integers(), st.floats(allow_nan=False)))
    ),
    "startsAt before 2000": lambda a, d: a.update(startsAt="0001-01-01T00:00:00Z", status="firing"),
    "startsAt in the future": lambda a, d: a.update(
        startsAt="9999-12-31T00:00:00Z", status="firing"
    ),
    "startsAt without zone": lambda a, d: a.update(startsAt="2026-12-01T03:00:00"),
    "startsAt not a time": lambda a, d: a.update(startsAt=d(st.text(hostile, max_size=20))),
    "NUL in a label": lambda a, d: a["labels"].update(team=d(plain) + "\x00" + d(plain)),
    "surrogate in a label": lambda a, d: a["labels"].update(
        team=d(plain) + d(st.sampled_from(["\ud800", "\udfff"]))
    ),
    "surrogate in a label name": lambda a, d: a["labels"].update({"t\udc80": "x"}),
    "label name not Prometheus'": lambda a, d: a["labels"].update(
        {d(st.sampled_from(["9x", "a-b", "a b", "", "é"])): "v"}
    ),
    "oversize label": lambda a, d: a["labels"].update(team="x" * d(st.integers(1025, 3000))),
    "too many labels": lambda a, d: a["labels"].update({f"l{i}": "v" for i in range(70)}),
    "no alertname": lambda a, d: a["labels"].pop("alertname"),
    "labels not a mapping": lambda a, d: a.update(
        labels=d(st.one_of(st.lists(st.integers()), st.text(), st.integers()))
    ),
    "bad fingerprint": lambda a, d: a.update(
        fingerprint=d(st.sampled_from(["", "../x", "a" * 200, "x y", 5]))
    ),
    "bad status": lambda a, d: a.update(status=d(st.sampled_from(["exploding", "", 1, None]))),
    "NUL in an annotation": lambda a, d: a["annotations"].update(summary="a\x00b"),
    "alert not an object": lambda a, d: a.update(__replace__=d(junk_json)),
}


@st.composite
def alert(draw: Any) -> tuple[Any, list[str]]:
    fp = draw(st.text("0123456789abcdef", min_size=16, max_size=16))
    item: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": {
            "alertname": "FuzzAlert",
            **draw(
                st.dictionaries(
                    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), plain, max_size=4
                )
            ),
        },
        "annotations": draw(
            st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), plain, max_size=2)
        ),
        "startsAt": "2026-12-01T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fp,
    }
    broken = draw(st.lists(st.sampled_from(sorted(BREAKAGES)), max_size=2, unique=True))
    last = ("labels not a mapping", "alert not an object")  # they replace what others edit
    for name in sorted(broken, key=lambda n: n in last):
        BREAKAGES[name](item, draw)
    if "__replace__" in item:
        return item["__replace__"], broken
    return item, broken


@st.composite
def payload(draw: Any) -> tuple[Any, list[list[str]]]:
    """A body and, per alert, what was broken in it (empty: a valid alert)."""
    if draw(st.integers(0, 14)) == 0:
        return draw(junk_json), []
    drawn = draw(st.lists(alert(), min_size=1, max_size=4))
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "fuzz",
        "alerts": [a for a, _ in drawn],
        "groupLabels": draw(st.one_of(st.just({}), junk_json)),
    }
    return body, [b for _, b in drawn]


@pytest.fixture(scope="module")
def intake(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz-intake")
    port = free_port()
    config = root / "homelab.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "temporal": {
                    "address": dev_env.client.service_client.config.target_host,
                    "task_queue": "fuzz-no-worker",
                    "state_dir": str(root / "state"),
                },
                "intake": {"port": port},
                "docker": [],
            }
        )
    )
    env = {**os.environ, "HOMELAB_CONFIG": str(config), "NO_PROXY": "*"}
    proc = subprocess.Popen(
        [str(BIN / "homelab-agents"), "intake"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "intake.log", "wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"intake did not start: {(root / 'intake.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def _existing(address: str, workflow_ids: set[str]) -> set[str]:
    """Which of these workflows exist (checked from a thread with its own client and loop)."""
    found: set[str] = set()

    async def check() -> None:
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        for wid in workflow_ids:
            try:
                await client.get_workflow_handle(wid).describe()
                found.add(wid)
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise

    thread = threading.Thread(target=lambda: asyncio.run(check()))
    thread.start()
    thread.join(60)
    return found


def test_no_body_makes_the_intake_fail_or_route_a_rejected_alert(
    intake: str, dev_env: WorkflowEnvironment
) -> None:
    rejected: set[str] = set()
    routed: set[str] = set()
    http = httpx.Client(trust_env=False, timeout=30)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(drawn=payload())
    def post(drawn: tuple[Any, list[list[str]]]) -> None:
        body, breakages = drawn
        raw = json.dumps(body).encode()  # ensure_ascii: surrogates travel as \ud800 escapes
        response = http.post(
            f"{intake}/alerts/alertmanager",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert response.status_code in OK, (response.status_code, response.text, raw[:300])
        answer = response.json()
        assert isinstance(answer, dict)
        if not breakages:  # a junk body
            assert response.status_code in (400, 422), response.text
            return
        results = {r["index"]: r for r in answer.get("results", [])}
        refused = {r["index"] for r in answer.get("rejected", [])}
        for index, broken in enumerate(breakages):
            item = body["alerts"][index]
            fp = item.get("fingerprint") if isinstance(item, dict) else None
            wid = f"incident-{fp}" if isinstance(fp, str) else ""
            if broken:
                assert index not in results, (broken, answer)
                if response.status_code == 202:
                    assert index in refused, (broken, answer)
                if wid:
                    rejected.add(wid)
            else:
                assert response.status_code == 202 and index in results, (item, answer)
                routed.add(results[index]["workflow_id"])

    try:
        post()
    finally:
        http.close()
    assert routed, "the fuzzer never produced a valid alert: the strategies are too hostile"
    # A fingerprint may be drawn twice (once good, once bad): only the never-routed ones count.
    never_routed = {wid for wid in rejected - routed if len(wid) < 300}
    address = dev_env.client.service_client.config.target_host
    assert _existing(address, never_routed) == set()
