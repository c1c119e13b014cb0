"""Telegram approvals, notifications and commands: the real worker, intake and bot on the Temporal
dev server and a private dockerd, talking to the fake Bot API over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from core.models import ApprovalDecision, ApprovalVerdict, ChangeResult, Outcome, Phase
from tests.fakes.telegram import TOKEN, FakeTelegram, user
from tests.integration.stack import (
    Stack,
    alertmanager_payload,
    am_alert,
    running_stack,
    target_host,
)
from workers.lab.dockerd import DockerEngine
from workers.lab.processes import free_port
from workers.telegram import serve_bot
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.integration

CHAT = -1001000
OTHER_CHAT = -1002000
ALICE = user(111, "Alice", "alice")
MALLORY = user(666, "Mallory", "mallory")
APPROVE, DENY, INFO = "✅ Approve", "❌ Deny", "🔍 More info"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram(chats=[CHAT, OTHER_CHAT]).start()
    yield server
    server.stop()


def telegram(fake: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {
        "token": TOKEN,
        "chat_id": CHAT,
        "base_url": fake.base_url,
        "poll_timeout": 2,
        **extra,
    }


@contextlib.asynccontextmanager
async def tg_stack(
    env: WorkflowEnvironment,
    engine: DockerEngine,
    tmp: Path,
    fake: FakeTelegram,
    *,
    bot: bool = True,
    critical: str = "crit-*",
    approval: dict[str, Any] | None = None,
    runbook_dirs: list[str] | None = None,
    **tg: Any,
) -> AsyncIterator[Stack]:
    async with running_stack(
        env,
        engine,
        tmp,
        bot=bot,
        runbook_dirs=runbook_dirs or [],
        telegram=telegram(fake, **tg),
        approval={
            "approvers": ["alice", "telegram:111"],
            "critical": [f"docker:*/{critical}"],
            **(approval or {}),
        },
    ) as stack:
        yield stack


def approvals(fake: FakeTelegram) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.sent(CHAT)
        if m.get("reply_markup", {}).get("inline_keyboard", [[{}]])[0][0].get("text") == APPROVE
    ]


async def approval_message(fake: FakeTelegram, count: int = 1) -> dict[str, Any]:
    found = await fake.until(
        lambda f: len(approvals(f)) >= count and approvals(f), what="an approval message"
    )
    return dict(found[count - 1])


def button(message: dict[str, Any], label: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"].startswith(label):
                return str(b["callback_data"])
    raise AssertionError(f"no button {label!r} in {message['reply_markup']}")


async def press(
    fake: FakeTelegram, who: dict[str, Any], message: dict[str, Any], data: str, chat: int = CHAT
) -> str:
    """Press a button and return the bot's callback answer."""
    qid = fake.press(who, chat, message["message_id"], data)
    await fake.until(lambda f: f.queries[qid]["answered"], what=f"answer to query {qid}")
    return str(fake.queries[qid]["answer"])


async def command(fake: FakeTelegram, who: dict[str, Any], text: str, chat: int = CHAT) -> str:
    """Send a command and return the text of the bot's reply."""
    mid = fake.command(who, chat, text)
    replies = await fake.until(lambda f: f.replies_to(chat, mid), what=f"reply to {text}")
    return str(replies[0]["text"])


async def critical_incident(stack: Stack, prefix: str = "crit") -> tuple[Any, str]:
    return await stack.crash_and_alert(f"{prefix}-{uuid.uuid4().hex[:6]}")


def no_api_errors(fake: FakeTelegram) -> None:
    bad = [
        (c.method, c.status, c.description)
        for c in fake.calls
        if c.status >= 400 and c.method not in ("getUpdates",)
    ]
    assert bad == []


async def test_approve_button_runs_the_real_action_and_edits_the_message(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with tg_stack(dev_env, docker_engine, tmp_path, fake) as stack:
        container, wid = await critical_incident(stack)
        message = await approval_message(fake)
        assert f"docker.start on docker:lab/{container.name}" in message["text"]
        assert "Why approval is needed" in message["text"] and "critical pattern" in message["text"]
        assert (
            "Dry-run preview:" in message["text"]
            and "Rollback plan: docker.stop" in message["text"]
        )
        kinds = [m["text"].split("\n")[0] for m in fake.sent(CHAT)]
        assert kinds[0].startswith("🚨 Incident opened") and kinds[1].startswith("🧭 Plan")

        assert await press(fake, ALICE, message, button(message, INFO)) == "🔍 Details sent below."
        [details] = await fake.until(lambda f: f.replies_to(CHAT, message["message_id"]))
        assert "Alert: ContainerKilled" in details["text"] and "Evidence:" in details["text"]
        container.reload()
        assert container.status == "exited"  # More info decides nothing

        assert await press(fake, ALICE, message, button(message, APPROVE)) == "✅ Approved: a1"
        state = await stack.result(wid)
        container.reload()
        assert container.status == "running"
        assert state.outcome is Outcome.RESOLVED
        assert [(a.result, a.approver) for a in state.actions] == [
            (ChangeResult.APPLIED, "telegram:111")
        ]
        accepted = [r for r in stack.store.list_approvals(wid) if r["accepted"]]
        # proven by the bot's signature for the user it authenticated
        assert [(r["approver"], r["via"]) for r in accepted] == [
            ("telegram:111", "signed:telegram-bot")
        ]

        edited = fake.message(CHAT, message["message_id"])
        assert "✅ Approved by Alice (telegram:111)" in edited["text"]
        assert "reply_markup" not in edited

        resolution = await fake.until(
            lambda f: [m for m in f.sent(CHAT) if m["text"].startswith("✅ resolved")]
        )
        assert (
            "👍 a1 docker.start" in resolution[0]["reply_markup"]["inline_keyboard"][0][0]["text"]
        )
        thumbs_up = button(resolution[0], "👍")
        assert await press(fake, MALLORY, resolution[0], thumbs_up) == (
            "⛔ Refused: telegram:666 is not an approver."
        )
        assert await press(fake, ALICE, resolution[0], thumbs_up) == "Thanks: 👍 recorded for a1."
        feedback = stack.store.list_feedback(wid)
        assert [(f["action_id"], f["rating"], f["user"]) for f in feedback] == [
            ("a1", 1, "telegram:111")
        ]
        no_api_errors(fake)


async def test_forged_presses_are_refused_and_recorded_then_deny_and_double_press(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with tg_stack(dev_env, docker_engine, tmp_path, fake) as stack:
        container, wid = await critical_incident(stack)
        message = await approval_message(fake)
        approve = button(message, APPROVE)

        assert await press(fake, MALLORY, message, approve) == (
            "⛔ Refused: telegram:666 is not an approver."
        )
        # A press arriving from another chat (the bot's message there), by a real approver.
        other = fake.press(ALICE, OTHER_CHAT, 1, approve)
        await fake.until(lambda f: f.queries[other]["answered"])
        assert fake.queries[other]["answer"] == "⛔ Refused: this chat cannot decide anything."
        tampered = approve[:-1] + ("A" if approve[-1] != "A" else "B")
        assert (
            await press(fake, ALICE, message, tampered) == "⛔ Refused: this button is not valid."
        )
        assert (
            await press(fake, ALICE, message, "x" * 64) == "⛔ Refused: this button is not valid."
        )

        state = await stack.handle(wid).query(IncidentWorkflow.get_state)
        assert state.pending_approval is not None and state.phase is Phase.AWAITING_APPROVAL
        container.reload()
        assert container.status == "exited"

        assert await press(fake, ALICE, message, button(message, DENY)) == "❌ Denied: a1"
        assert await press(fake, ALICE, message, approve) == (
            "Already decided: denied by Alice (telegram:111). Nothing changed."
        )
        state = await stack.result(wid)
        assert [a.result for a in state.actions] == [ChangeResult.DENIED]
        assert state.outcome is Outcome.ESCALATED
        container.reload()
        assert container.status == "exited"
        assert (
            "❌ Denied by Alice (telegram:111)" in fake.message(CHAT, message["message_id"])["text"]
        )

        refusals = stack.store.telegram_refusals()
        assert [(r["user_id"], r["chat_id"], r["reason"]) for r in refusals] == [
            (666, CHAT, "telegram:666 is not an approver"),
            (111, OTHER_CHAT, "press from a chat that is not allowed"),
            (111, CHAT, "unknown or tampered callback data"),
            (111, CHAT, "unknown or tampered callback data"),
            (111, CHAT, "already decided (denied)"),
        ]
        assert refusals[0]["workflow_id"] == wid and refusals[0]["action_id"] == "a1"
        assert refusals[2]["data"] == tampered
        accepted = [r for r in stack.store.list_approvals(wid) if r["accepted"]]
        assert [(r["verdict"], r["approver"]) for r in accepted] == [("denied", "telegram:111")]


async def test_timeout_edits_the_message_and_a_late_press_changes_nothing(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with tg_stack(
        dev_env, docker_engine, tmp_path, fake, approval={"timeout": "3s"}
    ) as stack:
        container, wid = await critical_incident(stack)
        message = await approval_message(fake)
        state = await stack.result(wid)
        assert [(a.approval, a.result) for a in state.actions] == [
            (ApprovalVerdict.TIMEOUT, ChangeResult.TIMEOUT)
        ]
        edited = await fake.until(
            lambda f: (
                "Auto-denied" in f.message(CHAT, message["message_id"])["text"]
                and f.message(CHAT, message["message_id"])
            )
        )
        assert "⌛ Auto-denied: nobody decided before the deadline" in edited["text"]
        assert "reply_markup" not in edited
        answer = await press(fake, ALICE, message, button(message, APPROVE))
        assert answer == "Already decided: timeout. Nothing changed."
        container.reload()
        assert container.status == "exited"
        assert [c.result for c in stack.store.list_changes(wid)] == [ChangeResult.TIMEOUT]


@pytest.mark.parametrize("outage", ["down", "429"])
async def test_telegram_outage_never_blocks_an_incident_cli_still_decides(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    tmp_path: Path,
    fake: FakeTelegram,
    outage: str,
) -> None:
    if outage == "down":
        fake.go_down()
    else:
        for method in ("sendMessage", "editMessageText"):
            fake.flood(method, 30)
    async with tg_stack(dev_env, docker_engine, tmp_path, fake, bot=False) as stack:
        container, wid = await critical_incident(stack)
        await stack.wait_state(wid, lambda s: s.pending_approval is not None, timeout=60)
        record = await stack.decide(
            wid,
            ApprovalDecision(approve=True, approver="alice", via="cli"),
        )
        assert record.verdict is ApprovalVerdict.APPROVED
        state = await stack.result(wid, timeout=120)
        container.reload()
        assert container.status == "running"
        assert state.outcome is Outcome.RESOLVED
    if outage == "429":
        sends = fake.calls_of("sendMessage")
        assert sends and all(c.status == 429 for c in sends)
        # After a 429 with retry_after=30 nothing called sendMessage again within those 30 s.
        assert all(b.at - a.at >= 30 for a, b in zip(sends, sends[1:], strict=False))


async def test_telegram_down_and_nobody_decides_means_denied_never_approved(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    fake.go_down()
    async with tg_stack(
        dev_env, docker_engine, tmp_path, fake, bot=False, approval={"timeout": "3s"}
    ) as stack:
        container, wid = await critical_incident(stack)
        state = await stack.result(wid, timeout=120)
        assert [(a.approval, a.result) for a in state.actions] == [
            (ApprovalVerdict.TIMEOUT, ChangeResult.TIMEOUT)
        ]
        assert state.outcome is Outcome.ESCALATED
        container.reload()
        assert container.status == "exited"
        assert [c.result for c in stack.store.list_changes(wid)] == [ChangeResult.TIMEOUT]


async def test_commands_pause_resume_approve_deny_and_refusals(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with tg_stack(dev_env, docker_engine, tmp_path, fake) as stack:
        assert "/approve ID [ACTION]" in await command(fake, MALLORY, "/help")
        assert "You are telegram:111: approver." in await command(
            fake, ALICE, "/help@homelab_test_bot"
        )
        assert await command(fake, ALICE, "/status", chat=OTHER_CHAT) == (
            "⛔ This bot only answers in its configured chat."
        )
        assert (
            await command(fake, MALLORY, "/pause") == "⛔ Refused: telegram:666 is not an approver."
        )
        assert "Writes: ▶️ allowed" in await command(fake, ALICE, "/status")

        assert "Writes paused by Alice (telegram:111)" in await command(
            fake, ALICE, "/pause maintenance"
        )
        assert "PAUSED by telegram:111" in await command(fake, ALICE, "/status")
        # A non-critical incident: no approval needed, but the kill switch holds its write.
        container, wid = await critical_incident(stack, prefix="plain")
        await stack.wait_state(wid, lambda s: s.paused and s.phase is Phase.PAUSED)
        await asyncio.sleep(1.5)
        container.reload()
        assert container.status == "exited"
        assert wid in await command(fake, ALICE, "/incidents")
        shown = await command(fake, ALICE, f"/incident {wid}")
        assert f"Alert: ContainerKilled · phase {Phase.PAUSED.value}" in shown
        assert "Writes resumed" in await command(fake, ALICE, "/resume")
        state = await stack.result(wid)
        container.reload()
        assert container.status == "running" and state.outcome is Outcome.RESOLVED

        # /approve and /deny by incident id (the fingerprint alone works too).
        approved, wid_a = await critical_incident(stack)
        message = await approval_message(fake, 1)
        denied, wid_d = await critical_incident(stack)
        await approval_message(fake, 2)
        assert await command(fake, MALLORY, f"/approve {wid_a}") == (
            "⛔ Refused: telegram:666 is not an approver."
        )
        assert await command(fake, ALICE, f"/approve {wid_a.removeprefix('incident-')}") == (
            f"✅ Approved action a1 of {wid_a}"
        )
        assert await command(fake, ALICE, f"/deny {wid_d}") == f"❌ Denied action a1 of {wid_d}"
        again = await command(fake, ALICE, f"/deny {wid_d}")
        assert "already decided" in again
        assert "usage: /approve ID [ACTION]" in await command(fake, ALICE, "/approve")
        assert "Unknown command /frobnicate" in await command(fake, ALICE, "/frobnicate")
        state_a, state_d = await stack.result(wid_a), await stack.result(wid_d)
        assert [a.result for a in state_a.actions] == [ChangeResult.APPLIED]
        assert [a.result for a in state_d.actions] == [ChangeResult.DENIED]
        approved.reload()
        denied.reload()
        assert (approved.status, denied.status) == ("running", "exited")
        assert (
            "✅ Approved by Alice (telegram:111)"
            in fake.message(CHAT, message["message_id"])["text"]
        )

        refusals = [(r["kind"], r["user_id"], r["data"]) for r in stack.store.telegram_refusals()]
        assert refusals == [
            ("command", 111, "/status"),
            ("command", 666, "/pause"),
            ("command", 666, f"/approve {wid_a}"),
        ]
        assert stack.store.paused()["by"] == "telegram:111"
        no_api_errors(fake)


async def test_names_full_of_markup_characters_render_without_api_errors(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    weird = "db_*[x](y)~`>#+-=|{}.!\\<b>&amp;"
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "look.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "look-only",
                "service": "docker",
                "alerts": ["LookAtIt"],
                "incident_type": "look",
                "resource_labels": ["name"],
                "hypotheses": [f"the {weird} container is <fine> & well"],
                "diagnostics": [{"key": "inspect", "tool": "docker.inspect"}],
            }
        )
    )
    async with tg_stack(
        dev_env, docker_engine, tmp_path, fake, bot=False, runbook_dirs=[str(runbooks)]
    ) as stack:
        alert = am_alert("LookAtIt", weird)
        alert["annotations"]["summary"] = "<script>_*bold*_ & [link](http://x)</script>"
        response = await stack.post(alertmanager_payload(alert))
        assert response.status_code == 202
        state = await stack.result(f"incident-{alert['fingerprint']}")
        assert state.outcome is Outcome.RECOVERED
        sent = await fake.until(
            lambda f: (
                [m for m in f.sent(CHAT) if m["text"].startswith("✅ recovered")] and f.sent(CHAT)
            )
        )
        heads = [m["text"].split("\n")[0] for m in sent]
        assert heads[0] == f"🚨 Incident opened: LookAtIt on docker:lab/{weird}"
        assert heads[1].startswith("🧭 Plan (") and heads[1].endswith("0 action(s)")
        assert heads[2:] == ["🔎 Verification passed", "✅ recovered: LookAtIt"]
        assert all(c.ok for c in fake.calls_of("sendMessage"))
        no_api_errors(fake)


async def test_webhook_mode_accepts_only_telegram_signed_updates(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/tg/hook"
    async with tg_stack(
        dev_env,
        docker_engine,
        tmp_path,
        fake,
        mode="webhook",
        webhook_url=hook,
        webhook_port=port,
        webhook_secret="s3cret-Token_1",
    ):
        assert fake.webhook == {"url": hook, "secret_token": "s3cret-Token_1"}
        assert "/pause" in await command(fake, ALICE, "/help")
        forged = {
            "update_id": 999,
            "message": {
                "message_id": 77,
                "from": ALICE,
                "chat": {"id": CHAT, "type": "supergroup"},
                "date": 0,
                "text": "/pause",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.post(hook, json=forged)).status_code == 403
            wrong = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
            assert (await http.post(hook, json=forged, headers=wrong)).status_code == 403
        await asyncio.sleep(0.5)
        assert fake.replies_to(CHAT, 77) == []


async def test_bot_command_runs_as_its_own_process(
    dev_env: WorkflowEnvironment, tmp_path: Path, fake: FakeTelegram
) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "temporal": {"address": target_host(dev_env), "state_dir": str(tmp_path / "st")},
                "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
                "approval": {"approvers": ["telegram:111"]},
                "docker": [],
            }
        )
    )
    exe = str(Path(sys.executable).parent / "homelab-agents")
    env = {**os.environ, "HOMELAB_CONFIG": str(config)}
    missing = await asyncio.create_subprocess_exec(exe, "bot", env=env, stdout=PIPE, stderr=PIPE)
    _, missing_err = await asyncio.wait_for(missing.communicate(), timeout=60)
    assert missing.returncode == 2 and "telegram is not configured" in missing_err.decode()

    env |= {
        "HOMELAB_TELEGRAM__TOKEN": TOKEN,
        "HOMELAB_TELEGRAM__CHAT_ID": str(CHAT),
        "HOMELAB_TELEGRAM__BASE_URL": fake.base_url,
        "HOMELAB_TELEGRAM__POLL_TIMEOUT": "1",
    }
    proc = await asyncio.create_subprocess_exec(exe, "bot", env=env, stdout=PIPE, stderr=PIPE)
    try:
        reply = await asyncio.wait_for(command(fake, ALICE, "/help"), timeout=60)
        assert "You are telegram:111: approver." in reply
        assert [c["command"] for c in fake.commands][:3] == ["status", "incidents", "incident"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert TOKEN not in (out + err).decode()


async def test_a_press_made_while_the_bot_was_down_is_handled_when_it_starts(
    dev_env: WorkflowEnvironment, docker_engine: DockerEngine, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with tg_stack(dev_env, docker_engine, tmp_path, fake, bot=False) as stack:
        container, wid = await critical_incident(stack)
        message = await approval_message(fake)
        qid = fake.press(ALICE, CHAT, message["message_id"], button(message, APPROVE))
        await asyncio.sleep(1)
        container.reload()
        assert container.status == "exited" and not fake.queries[qid]["answered"]

        started = asyncio.Event()
        bot = asyncio.create_task(
            serve_bot(stack.settings, stack.client, stack.store, started=started)
        )
        try:
            await asyncio.wait_for(started.wait(), timeout=30)
            await fake.until(lambda f: f.queries[qid]["answered"])
            assert fake.queries[qid]["answer"] == "✅ Approved: a1"
            state = await stack.result(wid)
        finally:
            bot.cancel()
            await asyncio.gather(bot, return_exceptions=True)
        container.reload()
        assert container.status == "running" and state.outcome is Outcome.RESOLVED
        assert fake.updates == []  # confirmed through getUpdates offsets, never redelivered
