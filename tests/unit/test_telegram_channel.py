"""The Telegram notification channel against the fake Bot API (a real HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.store import Store
from approval.telegram_notifier import DeliveryError, TelegramNotifier, approval_key
from core.config import TelegramSettings
from core.models import (
    Action,
    ApprovalRecord,
    ApprovalRequest,
    ApprovalVerdict,
    Notification,
    RiskLevel,
    TargetRef,
)
from tests.fakes.telegram import TOKEN, FakeTelegram

CHAT = -1001234


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram(chats=[CHAT]).start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def notifier(fake: FakeTelegram, store: Store) -> TelegramNotifier:
    settings = TelegramSettings(token=TOKEN, chat_id=CHAT, base_url=fake.base_url)
    return TelegramNotifier(settings, store)


def request(resource: str = "db") -> ApprovalRequest:
    return ApprovalRequest(
        incident_id="incident-f1",
        workflow_id="incident-f1",
        action=Action(
            id="a1",
            tool="docker.start",
            target=TargetRef(service="docker", target="lab", resource=resource),
        ),
        level=RiskLevel.HARD,
        reasons=["critical"],
        preview="start container",
        rollback_plan="docker.stop {}",
        deadline=datetime.now(UTC) + timedelta(minutes=5),
    )


def note(kind: str, req: ApprovalRequest | None = None, verdict: str = "") -> Notification:
    return Notification(
        kind=kind,  # type: ignore[arg-type]
        incident_id="incident-f1",
        workflow_id="incident-f1",
        title=f"{kind} title",
        approval=req,
        action_id=req.action.id if req else "",
        verdict=verdict,
    )


async def test_approval_message_has_opaque_buttons_and_is_sent_once(
    fake: FakeTelegram, store: Store
) -> None:
    channel = notifier(fake, store)
    req = request("db_*[weird](name)~`>#+-=|{}.!<&>")
    await channel.send(note("approval", req))
    await channel.send(note("approval", req))  # an activity retry after a lost result
    sent = fake.sent(CHAT)
    assert len(sent) == 1
    message = sent[0]
    assert "docker:lab/db_*[weird](name)~`>#+-=|{}.!<&>" in message["text"]
    rows = message["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in rows] == [
        ["✅ Approve", "❌ Deny"],
        ["🔍 More info"],
    ]
    tokens = [b["callback_data"] for row in rows for b in row]
    assert len(set(tokens)) == 3 and all(len(t.encode()) <= 64 for t in tokens)
    assert not any("incident" in t or "a1" in t for t in tokens)  # nothing to edit into another
    verbs = {t: store.telegram_token(t) for t in tokens}
    assert {v["verb"] for v in verbs.values() if v} == {"approve", "deny", "info"}
    row = store.telegram_message(approval_key(req))
    assert row is not None and row["message_id"] == message["message_id"]

    await channel.send(note("approval_closed", req, verdict="timeout"))
    edited = fake.message(CHAT, message["message_id"])
    assert "Auto-denied: nobody decided before the deadline" in edited["text"]
    assert "reply_markup" not in edited  # the buttons are gone
    await channel.send(note("approval_closed", req, verdict="timeout"))  # retry: no second edit
    assert len(fake.calls_of("editMessageText")) == 1
    await channel.aclose()


async def test_429_retry_after_is_honoured_within_the_attempt(
    fake: FakeTelegram, store: Store
) -> None:
    channel = notifier(fake, store)
    fake.flood_once("sendMessage", 1)
    await channel.send(note("opened"))
    calls = fake.calls_of("sendMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0  # waited as told, not hammering
    await channel.aclose()


async def test_long_flood_fails_fast_without_calling_telegram_again(
    fake: FakeTelegram, store: Store
) -> None:
    channel = notifier(fake, store)
    fake.flood("sendMessage", 30)
    with pytest.raises(DeliveryError, match="flood control"):
        await channel.send(note("opened"))
    with pytest.raises(DeliveryError, match="flood control"):
        await channel.send(note("plan"))  # the ban is remembered: no request at all
    assert [c.status for c in fake.calls_of("sendMessage")] == [429]
    await channel.aclose()


async def test_unreachable_api_raises_without_leaking_the_token(
    fake: FakeTelegram, store: Store
) -> None:
    channel = notifier(fake, store)
    fake.go_down()
    with pytest.raises(DeliveryError) as info:
        await channel.send(note("opened"))
    assert TOKEN not in str(info.value) and "TEST-token" not in str(info.value)
    fake.come_up()
    await channel.send(note("opened"))
    assert len(fake.sent(CHAT)) == 1
    await channel.aclose()


async def test_closing_an_approval_that_never_reached_the_chat_says_how_it_ended(
    fake: FakeTelegram, store: Store
) -> None:
    channel = notifier(fake, store)
    req = request()
    store.record_approval(
        "incident-f1",
        ApprovalRecord(
            action_id="a1",
            verdict=ApprovalVerdict.APPROVED,
            approver="alice",
            via="cli",
            at=datetime.now(UTC),
        ),
    )
    await channel.send(note("approval_closed", req, verdict="approved"))
    [message] = fake.sent(CHAT)
    assert "Approved by alice (via cli)" in message["text"]
    await channel.aclose()
