"""Telegram message text: HTML parse mode, escaped by construction, always within Telegram's limits.

Why HTML and not MarkdownV2: in HTML only ``<``, ``>`` and ``&`` are special, so a target name, an
alert annotation or a container log line full of ``_*[]()~`>#+-=|{}.!`` renders as typed. Every
message is assembled from plain-text pieces (`Doc`), each escaped once when rendered, so no caller
can forget to escape; truncation happens on the plain text, so it never cuts a tag or an entity in
half (a classic cause of "can't parse entities" on long alerts). Secret-looking text is redacted.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.models import ApprovalRequest, Notification
from core.redact import redact_text

MAX_TEXT = 4096  # sendMessage/editMessageText: 1-4096 characters after entity parsing
MAX_ANSWER = 200  # answerCallbackQuery text
MAX_LINE = 900  # one notification line, before the message budget applies
ELLIPSIS = "…"

KIND_ICONS = {
    "opened": "🚨",
    "plan": "🧭",
    "approval": "🔐",
    "approval_closed": "🔏",
    "action": "🛠",
    "verification": "🔎",
    "rollback": "↩️",
    "resolved": "✅",
    "escalated": "🆘",
}

VERDICT_LINES = {
    "approved": ("✅", "Approved"),
    "denied": ("❌", "Denied"),
    "timeout": ("⌛", "Auto-denied"),
    "not_required": ("➖", "No longer needed"),
    "forbidden": ("⛔", "Forbidden"),
    "cancelled": ("🛑", "Cancelled"),
}


def esc(text: object) -> str:
    """Escape text for Telegram's HTML parse mode: only ``<``, ``>`` and ``&`` are special."""
    return html.escape(str(text), quote=False)


def esc_attr(text: object) -> str:
    return html.escape(str(text), quote=True)


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """Plain text cut to ``limit`` UTF-16 units, marked with an ellipsis when cut."""
    if utf16_len(text) <= limit:
        return text
    if limit <= 1:
        return ELLIPSIS[:limit]
    out: list[str] = []
    used = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > limit - 1:
            break
        out.append(ch)
        used += width
    return "".join(out) + ELLIPSIS


@dataclass
class _Part:
    text: str
    tag: str = ""
    href: str = ""
    trim: bool = True


class Doc:
    """An HTML message built from plain-text parts; `render` escapes and fits it to the limit."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []

    def add(self, text: object, tag: str = "", *, trim: bool = True) -> Doc:
        if tag not in ("", "b", "i", "u", "code", "pre"):
            raise ValueError(f"unsupported tag {tag!r}")
        self.parts.append(_Part(str(text), tag=tag, trim=trim))
        return self

    def b(self, text: object) -> Doc:
        return self.add(text, "b")

    def code(self, text: object) -> Doc:
        return self.add(text, "code")

    def nl(self, count: int = 1) -> Doc:
        return self.add("\n" * count, trim=False)

    def link(self, label: str, url: str) -> Doc:
        if url.startswith(("http://", "https://")):
            self.parts.append(_Part(label, href=url, trim=False))
        return self

    def line(self, *pieces: tuple[object, str] | object) -> Doc:
        """One line from pieces: plain values, or ``(value, tag)`` pairs."""
        for piece in pieces:
            if isinstance(piece, tuple):
                self.add(piece[0], piece[1])
            else:
                self.add(piece)
        return self.nl()

    def extend(self, other: Doc) -> Doc:
        self.parts.extend(_Part(p.text, p.tag, p.href, p.trim) for p in other.parts)
        return self

    def visible_len(self) -> int:
        return sum(utf16_len(p.text) for p in self.parts)

    def render(self, limit: int = MAX_TEXT) -> str:
        # Secrets never leave the process: a DSN or token in a preview or log line is masked.
        parts = [_Part(redact_text(p.text), p.tag, redact_text(p.href), p.trim) for p in self.parts]
        while parts and not parts[-1].text.strip():  # Telegram strips trailing blank lines
            parts.pop()
        total = sum(utf16_len(p.text) for p in parts)
        # Trim the longest trimmable parts first: previews and log lines, never the headline.
        while total > limit:
            candidates = [p for p in parts if p.trim and utf16_len(p.text) > 1]
            if not candidates:
                raise ValueError("message cannot fit Telegram's limit without its fixed parts")
            longest = max(candidates, key=lambda p: utf16_len(p.text))
            before = utf16_len(longest.text)
            longest.text = clip(longest.text, max(1, before - (total - limit)))
            total += utf16_len(longest.text) - before
        out = []
        for p in parts:
            body = esc(p.text)
            if p.href:
                out.append(f'<a href="{esc_attr(p.href)}">{body}</a>')
            elif p.tag:
                out.append(f"<{p.tag}>{body}</{p.tag}>")
            else:
                out.append(body)
        return "".join(out)


def _when(moment: datetime) -> str:
    return f"{moment:%H:%M:%S} UTC"


def _params(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str) if params else "{}"


def approval_doc(req: ApprovalRequest, ui_url: str = "") -> Doc:
    """What a human needs to decide: action, target, parameters, level and why, preview, rollback."""
    doc = Doc()
    doc.line(KIND_ICONS["approval"] + " ", ("Approval needed", "b"), f" ({req.level.value})")
    doc.line((req.action.tool, "b"), " on ", (str(req.action.target), "code"))
    doc.line("Incident: ", (req.workflow_id, "code"), " · action ", (req.action.id, "code"))
    doc.line("Parameters: ", (_params(req.action.params), "code"))
    if req.action.rationale:
        doc.line("Why this action: ", req.action.rationale)
    if req.reasons:
        doc.line(("Why approval is needed:", "b"))
        for reason in req.reasons:
            doc.line("• ", clip(reason, MAX_LINE))
    doc.line(("Dry-run preview:", "b"))
    doc.add(req.preview or "(no preview)", "pre").nl()
    doc.line(("Rollback plan: ", "b"), clip(req.rollback_plan, MAX_LINE))
    doc.line("Auto-deny at ", (_when(req.deadline), "b"), " if nobody decides.")
    doc.link("Open in the Temporal Web UI", ui_url)
    return doc


def verdict_doc(verdict: str, decided_by: str, req: ApprovalRequest | None) -> Doc:
    icon, label = VERDICT_LINES.get(verdict, ("🔏", verdict or "closed"))
    doc = Doc().add(f"{icon} ").b(label)
    if verdict == "timeout":
        when = f" at {_when(req.deadline)}" if req else ""
        doc.add(f": nobody decided before the deadline{when}; nothing was changed.")
    elif verdict == "not_required":
        doc.add(": the alert resolved before a decision; nothing was changed.")
    elif verdict == "cancelled":
        doc.add(": the incident was cancelled before a decision; nothing was changed.")
    elif decided_by:
        doc.add(" by ").b(decided_by)
    return doc


def approval_text(
    req: ApprovalRequest, ui_url: str = "", verdict: str = "", decided_by: str = ""
) -> str:
    """The approval message; with a verdict, the same message as edited after the decision."""
    doc = approval_doc(req, ui_url)
    if verdict:
        doc.nl().extend(verdict_doc(verdict, decided_by, req))
    return doc.render()


def note_text(note: Notification) -> str:
    """Any incident event other than an approval request."""
    icon = KIND_ICONS.get(note.kind, "ℹ️")
    doc = Doc().add(f"{icon} ").b(clip(note.title, 600)).nl()
    doc.line("Incident ", (note.workflow_id, "code"), f" · severity {note.severity}")
    for line in note.lines:
        doc.line("• ", clip(line, MAX_LINE))
    doc.link("Open in the Temporal Web UI", note.ui_url)
    return doc.render()


def answer(text: str) -> str:
    """A callback answer (plain text, at most 200 characters)."""
    return clip(text, MAX_ANSWER)
