"""Telegram HTML rendering, checked by the fake Bot API's copy of Telegram's HTML parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from approval.telegram_format import (
    MAX_TEXT,
    Doc,
    approval_text,
    clip,
    note_text,
    utf16_len,
)
from core.models import Action, ApprovalRequest, Notification, RiskLevel, TargetRef
from tests.fakes.telegram import ApiError, parse_html

MDV2_SPECIALS = "_*[]()~`>#+-=|{}.!\\"
NASTY = [
    f"web{MDV2_SPECIALS}",
    "a < b && c > d",
    "&lt; is not an entity here &amp; neither is &quot;",
    "<b>not bold</b> <script>alert(1)</script>",
    "emoji 😀🔥 and ünïcödé",
    "tab\tnew\nline",
]


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<a href=>x</a>", 'Expected quotes in declaration of an attribute of the tag "a"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
    ],
)
def test_fake_rejects_what_telegram_rejects(html: str, error: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_html(html)
    assert info.value.code == 400
    assert info.value.description.startswith("Bad Request: can't parse entities: ")
    assert error in info.value.description


def test_fake_parses_entities_like_telegram() -> None:
    text, entities = parse_html(
        '<b>bold</b> &lt;x&gt; &amp;amp; <a href="https://e.x/?a=1&amp;b=2">l</a> & x'
    )
    assert text == "bold <x> &amp; l & x"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "text_link", "offset": 15, "length": 1, "url": "https://e.x/?a=1&b=2"},
    ]
    # Offsets are UTF-16 code units: the emoji counts twice.
    assert parse_html("😀<i>x</i>")[1] == [{"type": "italic", "offset": 2, "length": 1}]


@pytest.mark.parametrize("raw", NASTY)
def test_any_text_round_trips_through_telegram_html(raw: str) -> None:
    html = (
        Doc()
        .b(raw)
        .add(" ")
        .code(raw)
        .nl()
        .add(raw, "pre")
        .link(raw, "https://ui/x?a=<1>&b")
        .render()
    )
    text, entities = parse_html(html)
    assert text == f"{raw} {raw}\n{raw}{raw}"
    assert [e["type"] for e in entities] == ["bold", "code", "pre", "text_link"]
    assert entities[-1]["url"] == "https://ui/x?a=<1>&b"


def test_unescaped_markup_is_what_the_fake_refuses() -> None:
    """The negative control: the same text without escaping is a 400 from Telegram."""
    with pytest.raises(ApiError, match="can't parse entities"):
        parse_html(f"<b>{NASTY[1]}</b>")


def test_long_text_is_truncated_inside_the_limit_without_breaking_markup() -> None:
    preview = ("😀<&> " * 3000)[:15000]
    html = Doc().b("headline that must stay").nl().add(preview, "pre").nl().add("tail").render()
    text, entities = parse_html(html)
    assert utf16_len(text) <= MAX_TEXT
    assert text.startswith("headline that must stay\n")
    assert text.endswith("…\ntail")
    assert [e["type"] for e in entities] == ["bold", "pre"]


def test_clip_counts_utf16_units() -> None:
    assert clip("abc😀def", 5) == "abc…"
    assert clip("short", 10) == "short"
    assert utf16_len(clip("😀" * 300, 200)) <= 200


def _request(target: str, preview: str = "start container") -> ApprovalRequest:
    return ApprovalRequest(
        incident_id="incident-x",
        workflow_id="incident-x",
        action=Action(
            id="a1",
            tool="docker.start",
            target=TargetRef(service="docker", target="lab", resource=target),
            params={"why": target},
        ),
        level=RiskLevel.HARD,
        reasons=[f"target docker:lab/{target} matches critical pattern 'docker:*/*'"],
        preview=preview,
        rollback_plan="docker.stop {}",
        deadline=datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC),
    )


@pytest.mark.parametrize("raw", NASTY)
def test_approval_and_note_texts_parse(raw: str) -> None:
    req = _request(raw, preview=raw * 400)
    for verdict in ("", "approved", "denied", "timeout", "not_required"):
        text, _ = parse_html(approval_text(req, "http://127.0.0.1:8233/x", verdict, f"{raw} (cli)"))
        assert utf16_len(text) <= MAX_TEXT
        assert f"docker:lab/{raw}" in text
        assert "Auto-deny at 12:00:05 UTC" in text
    assert "Approved by" in parse_html(approval_text(req, "", "approved", "Alice"))[0]
    assert "Auto-denied: nobody decided" in parse_html(approval_text(req, "", "timeout"))[0]
    note = Notification(
        kind="escalated",
        incident_id="incident-x",
        workflow_id="incident-x",
        title=f"Escalated: {raw}",
        lines=[raw * 50, raw],
        ui_url="http://127.0.0.1:8233/namespaces/default/workflows/incident-x",
    )
    text, entities = parse_html(note_text(note))
    assert text.startswith(f"🆘 Escalated: {raw}"[:20])
    assert entities[-1]["type"] == "text_link"


def test_secrets_are_redacted_before_they_leave() -> None:
    html = Doc().add("dsn postgresql://app:hunter2@db/x password=hunter2").render()
    text, _ = parse_html(html)
    assert "hunter2" not in text and "postgresql://app:***@db/x" in text
