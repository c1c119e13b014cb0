"""Every Cloudflare tool against the API v4 fake and its authoritative DNS: paginated reads, drift
against the desired state (dynamic records against the WAN address), exact previews that change
nothing, writes with their compensations, idempotent retries, and typed errors for a bad token, a
token without the permission, 429 and a server that never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from core.models import Reversibility, ToolErrorKind
from tests.fakes.cloudflare import FakeCloudflare, PublicIp
from tests.toolsets.cloudflare.conftest import OLD_WAN, OTHER_ZONE, READONLY, TOKEN, WAN, cf_target
from tests.toolsets.harness import Tools


@pytest.fixture
def zone(cf: FakeCloudflare) -> FakeCloudflare:
    """example.test as each test starts: www ok, home on the old WAN address, shop drifted,
    mail missing."""
    with cf.lock:
        cf.zone("example.test").records.clear()
        cf.add_record("example.test", "A", "www.example.test", "192.0.2.10")
        cf.add_record("example.test", "A", "home.example.test", OLD_WAN)
        cf.add_record(
            "example.test", "A", "shop.example.test", "192.0.2.99", comment="edited by hand"
        )
        cf.dns_lag = False
        cf.throttled = 0
        cf.requests.clear()
    return cf


@pytest_asyncio.fixture
async def tools(zone: FakeCloudflare, wan: PublicIp) -> AsyncIterator[Tools]:
    tools = Tools(cloudflare=[cf_target(zone, wan)])
    yield tools
    await tools.aclose()


async def test_zones_and_every_page_of_records(tools: Tools, zone: FakeCloudflare) -> None:
    zones = await tools.run("cloudflare.zones")
    assert zones.ok, zones.error
    assert [z["name"] for z in zones.data["zones"]] == ["big.test", "example.test"]
    assert zones.data["zones"][0]["name_servers"] == [zone.nameserver]

    big = await tools.run("cloudflare.records", "big.test", limit=5)
    assert big.ok and big.data["count"] == 230 and big.data["truncated"]
    pages = [r.query["page"] for r in zone.requests if r.path.endswith("/dns_records")]
    assert pages == [["1"], ["2"], ["3"]]
    assert all(
        r.query["per_page"] == ["100"] for r in zone.requests if r.path.endswith("/dns_records")
    )
    assert all(r.authorization == f"Bearer {TOKEN}" for r in zone.requests)

    one = await tools.run("cloudflare.records", "www.example.test")
    assert [(r["name"], r["content"]) for r in one.data["records"]] == [
        ("www.example.test", "192.0.2.10")
    ]
    assert zone.requests[-1].query["name"] == ["www.example.test"]


async def test_drift_against_the_desired_state_and_the_wan_address(
    tools: Tools, wan: PublicIp
) -> None:
    result = await tools.run("cloudflare.drift")
    assert result.ok, result.error
    states = {
        r["name"]: (r["state"], r["actual_content"], r["desired_content"])
        for r in result.data["records"]
    }
    assert states == {
        "www.example.test": ("ok", "192.0.2.10", "192.0.2.10"),
        "home.example.test": ("drifted", OLD_WAN, WAN),
        "mail.example.test": ("missing", None, "192.0.2.25"),
        "shop.example.test": ("drifted", "192.0.2.99", "192.0.2.30"),
    }
    assert result.data["drifted_count"] == 3 and result.data["public_ip"] == WAN
    # the token never goes to the what-is-my-IP service
    assert all("authorization" not in {k.lower() for k in h} for h in wan.requests)

    home = await tools.run("cloudflare.drift", "home.example.test")
    assert home.data["record"]["source"] == "public_ip" and home.data["drifted_count"] == 1
    unknown = await tools.run("cloudflare.drift", "nope.example.test")
    assert not unknown.ok and unknown.error is not None
    assert unknown.error.kind is ToolErrorKind.NOT_FOUND


async def test_resolve_asks_the_authoritative_servers(tools: Tools) -> None:
    result = await tools.run("cloudflare.resolve", "shop.example.test")
    assert result.ok, result.error
    assert result.data["servers"][0]["answers"] == ["192.0.2.99"]
    assert result.data["matches_desired"] is False
    www = await tools.run("cloudflare.resolve", "www.example.test")
    assert www.data["matches_desired"] is True and www.data["servers"][0]["rcode"] == "NOERROR"


async def test_update_previews_exactly_applies_and_compensates(
    tools: Tools, zone: FakeCloudflare
) -> None:
    (before,) = zone.find("shop.example.test")
    dry = await tools.runner.run(
        tools.call(
            "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
        ).model_copy(update={"dry_run": True})
    )
    assert dry.data["preview"] == (
        f"update A shop.example.test in zone example.test (record {before['id']}): "
        "content 192.0.2.99 → 192.0.2.30"
    )
    assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"  # a dry run changes nothing

    prepared, result = await tools.apply(
        "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
    )
    assert result.ok, result.error
    assert prepared.reversibility is Reversibility.COMPENSATED and not prepared.noop
    assert (
        prepared.before["content"] == "192.0.2.99"
        and prepared.before["comment"] == "edited by hand"
    )
    assert prepared.compensation is not None
    assert prepared.compensation.params == {
        "type": "A",
        "content": "192.0.2.99",
        "proxied": False,
        "ttl": 1,
    }
    (after,) = zone.find("shop.example.test")
    assert after["content"] == "192.0.2.30" and after["id"] == before["id"]
    patch = [r for r in zone.requests if r.method == "PATCH"]
    assert len(patch) == 1 and patch[0].body == {"content": "192.0.2.30"}

    # a retried activity (same before-state) finds the change made and sends nothing
    again = await tools.runner.run(
        tools.call(
            "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
        ).model_copy(update={"before": prepared.before})
    )
    assert again.ok and len([r for r in zone.requests if r.method == "PATCH"]) == 1
    assert (
        await tools.prepare("cloudflare.update_record", "shop.example.test", content="192.0.2.30")
    ).noop

    undo = await tools.compensate(prepared)
    assert undo.ok, undo.error
    assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"


async def test_create_and_delete_compensate_each_other(tools: Tools, zone: FakeCloudflare) -> None:
    prepared, created = await tools.apply(
        "cloudflare.create_record", "mail.example.test", content="192.0.2.25", ttl=300
    )
    assert created.ok, created.error
    assert prepared.before["exists"] is False
    second = await tools.prepare(
        "cloudflare.create_record", "mail.example.test", content="192.0.2.26"
    )
    assert second.preview == (
        "create A mail.example.test → 192.0.2.26 in zone example.test (proxied False, ttl auto); "
        "1 other A record(s) of that name stay"
    )
    (record,) = zone.find("mail.example.test")
    assert record["ttl"] == 300
    post = [r for r in zone.requests if r.method == "POST"]
    assert post[-1].body == {
        "type": "A",
        "name": "mail.example.test",
        "content": "192.0.2.25",
        "proxied": False,
        "ttl": 300,
    }
    assert prepared.compensation is not None
    assert prepared.compensation.tool == "cloudflare.delete_record"
    undo = await tools.compensate(prepared)
    assert undo.ok and zone.find("mail.example.test") == []

    bad = await tools.run("cloudflare.create_record", "mail.example.test", content="not-an-ip")
    assert not bad.ok and bad.error is not None and bad.error.kind is ToolErrorKind.INVALID
    assert "code 9005" in bad.error.message


async def test_wrong_tokens_are_unauthorized_and_never_quoted(
    zone: FakeCloudflare, wan: PublicIp
) -> None:
    for token, code in (("cf-token-unknown-000000", "9109"), (READONLY, "10000")):
        tools = Tools(cloudflare=[cf_target(zone, wan, token=token)])
        try:
            result = await tools.run(
                "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
            )
            prepared = await tools.prepare(
                "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
            )
        finally:
            await tools.aclose()
        error = result.error if token != READONLY else None
        if token == READONLY:  # it may read the record, the edit itself is refused
            assert prepared.error is None
            tools = Tools(cloudflare=[cf_target(zone, wan, token=token)])
            try:
                _, applied = await tools.apply(
                    "cloudflare.update_record", "shop.example.test", content="192.0.2.30"
                )
            finally:
                await tools.aclose()
            error = applied.error
        assert error is not None and error.kind is ToolErrorKind.UNAUTHORIZED
        assert f"code {code}" in error.message and token not in error.message
    assert zone.find("shop.example.test")[0]["content"] == "192.0.2.99"

    tools = Tools(cloudflare=[cf_target(zone, wan, token=OTHER_ZONE)])
    try:
        hidden = await tools.run("cloudflare.drift", "shop.example.test")
    finally:
        await tools.aclose()
    assert hidden.error is not None and hidden.error.kind is ToolErrorKind.NOT_FOUND


async def test_rate_limit_is_retried_after_retry_after(tools: Tools, zone: FakeCloudflare) -> None:
    zone.throttle(1, retry_after=7)
    result = await tools.run("cloudflare.zones")
    assert result.error is not None and result.error.kind is ToolErrorKind.RATE_LIMITED
    assert "code 971" in result.error.message
    zone.throttle(1, retry_after=7)
    with pytest.raises(ApplicationError) as raised:  # what the worker hands Temporal
        await tools.runner.run(tools.call("cloudflare.zones"), raise_transient=True)
    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert (await tools.run("cloudflare.zones")).ok  # the next attempt goes through


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(sock.accept())
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/client/v4"
    stop.set()
    sock.close()


async def test_a_server_that_never_answers_is_unreachable(
    zone: FakeCloudflare, wan: PublicIp, silent: str
) -> None:
    tools = Tools(cloudflare=[cf_target(zone, wan, api_url=silent, timeout=0.5)])
    try:
        result = await tools.run("cloudflare.zones")
    finally:
        await tools.aclose()
    assert result.error is not None and result.error.kind is ToolErrorKind.UNREACHABLE
    assert "did not answer" in result.error.message and TOKEN not in result.error.message
