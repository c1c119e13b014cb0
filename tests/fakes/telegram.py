"""A fake Telegram Bot API: a real HTTP server speaking the documented protocol.

It serves ``/bot<token>/<method>`` like api.telegram.org (form, JSON or multipart parameters; the
``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code", "description", "parameters"}``
envelopes), keeps state (chats, messages, pending updates, callback queries, webhook) and validates
what Telegram validates for the methods the project uses:

* ``getMe``, ``deleteWebhook``, ``setWebhook``, ``getWebhookInfo``, ``setMyCommands``;
* ``getUpdates``: long-polled (held until an update arrives or ``timeout`` passes), ``offset``
  confirms earlier updates, a second concurrent poller makes the first one fail with 409
  "terminated by other getUpdates request", and polling while a webhook is set is a 409;
* ``sendMessage`` / ``editMessageText``: unknown chat, empty or over-long text (4096 UTF-16 units
  after entity parsing), inline keyboards (callback data 1-64 bytes), "message is not modified",
  "message to edit not found", and HTML parse mode parsed the way Telegram's parser does (tdlib
  ``parse_html``): unsupported or unclosed tags, unmatched end tags, bare ``<`` all give 400 "can't
  parse entities" with Telegram's wording. Other parse modes are refused (the project uses HTML);
* ``answerCallbackQuery``: a query answers once; unknown or repeated ids are a 400.

Test hooks: `inject` / `press` / `command` add updates (also ``POST /_inject``), `calls` records
every request with its answer (also ``GET /_calls``), `flood` makes methods answer 429 with
``retry_after``, `go_down` / `come_up` stop and restart listening on the same port. With a webhook
set, updates are POSTed to it with ``X-Telegram-Bot-Api-Secret-Token`` (plain http is accepted here
so tests can run a local receiver; Telegram itself requires https).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "123456:TEST-token"
BOT_ID = 123456
MAX_TEXT = 4096

TAG_TYPES = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


class ApiError(Exception):
    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(text: str, i: int) -> tuple[str, int] | None:
    m = ENTITY.match(text, i)
    if not m:
        return None
    body = m.group(1)
    if body.startswith(("#x", "#X")):
        code = int(body[2:], 16)
    elif body.startswith("#"):
        code = int(body[1:])
    elif body in NAMED_ENTITIES:
        return NAMED_ENTITIES[body], m.end()
    else:
        return None
    if code == 0 or code > 0x10FFFF:
        return None
    return chr(code), m.end()


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode (after tdlib's parse_html): plain text and entities, or 400."""

    def offset(i: int) -> int:
        return len(text[:i].encode("utf-8"))

    def fail(message: str) -> ApiError:
        return bad(f"can't parse entities: {message}")

    n = len(text)
    out: list[str] = []
    u16 = 0
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i)
            if decoded is not None:
                out.append(decoded[0])
                u16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
        if c != "<":
            out.append(c)
            u16 += utf16_len(c)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n:
            raise fail(f"Unclosed start tag at byte offset {offset(begin)}")
        if text[i] != "/":
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise fail(f"Unclosed start tag at byte offset {offset(begin)}")
            name = text[i:j].lower()
            if name not in TAG_TYPES:
                raise fail(f'Unsupported start tag "{name}" at byte offset {offset(begin)}')
            i = j
            attrs: dict[str, str] = {}
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise fail(f'Unclosed start tag "{name}" at byte offset {offset(i)}')
                if text[i] == ">":
                    break
                attr_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attr = text[attr_begin:i].lower()
                if not attr:
                    raise fail(
                        f'Empty attribute name in the tag "{name}" at byte offset {offset(attr_begin)}'
                    )
                while i < n and text[i].isspace():
                    i += 1
                if i >= n or text[i] != "=":
                    raise fail(
                        f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                        f"at byte offset {offset(i)}"
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise fail(f'Unclosed start tag "{name}" at byte offset {offset(i)}')
                if text[i] in "'\"":
                    quote = text[i]
                    i += 1
                    value_begin = i
                    while i < n and text[i] != quote:
                        i += 1
                    if i >= n:
                        raise fail(f"Unclosed end of attribute value at byte offset {offset(i)}")
                    raw = text[value_begin:i]
                    i += 1
                    value = ENTITY.sub(
                        lambda m: (_decode_entity(m.group(0), 0) or (m.group(0), 0))[0], raw
                    )
                else:
                    value_begin = i
                    while i < n and (text[i].isalnum() or text[i] in ".-"):
                        i += 1
                    value = text[value_begin:i]
                    if not value:
                        raise fail(
                            f'Expected quotes in declaration of an attribute of the tag "{name}" '
                            f"at byte offset {offset(i)}"
                        )
                attrs[attr] = value
            i += 1  # '>'
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise fail(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {offset(begin)}'
                )
            stack.append((name, u16, attrs))
        else:
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {offset(begin)}")
            i += 1
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            end_name = text[i:j].lower()
            while j < n and text[j].isspace():
                j += 1
            if j >= n or text[j] != ">":
                raise fail(f"Unclosed end tag at byte offset {offset(begin)}")
            name, start, attrs = stack[-1]
            if end_name and end_name != name:
                raise fail(
                    f'Unmatched end tag at byte offset {offset(begin)}, expected "</{name}>", '
                    f'found "</{end_name}>"'
                )
            stack.pop()
            i = j + 1
            if u16 > start:
                entity: dict[str, Any] = {
                    "type": TAG_TYPES[name],
                    "offset": start,
                    "length": u16 - start,
                }
                if name == "a":
                    href = attrs.get("href", "")
                    if not href.startswith(("http://", "https://", "tg://")):
                        continue  # Telegram drops links it cannot use and keeps the text
                    entity["url"] = href
                entities.append(entity)
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    result: Any = None
    description: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200


def user(user_id: int, first_name: str = "", username: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": user_id,
        "is_bot": False,
        "first_name": first_name or f"user{user_id}",
    }
    if username:
        out["username"] = username
    return out


class FakeTelegram:
    """One bot token's view of the Bot API, served on 127.0.0.1."""

    def __init__(self, token: str = TOKEN, chats: list[int] | None = None) -> None:
        self.token = token
        self.me = {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Homelab",
            "username": "homelab_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.cond = threading.Condition()
        self.chats: dict[int, dict[str, Any]] = {}
        for chat_id in chats or []:
            self.add_chat(chat_id)
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self.updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1000)
        self.queries: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] = []
        self.flooded: dict[str, int] = {}  # method -> retry_after while flooding
        self._flood_once: list[tuple[str, int]] = []
        self._poller = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._webhook_thread: threading.Thread | None = None
        self.down = False
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        self._listen()
        return self

    def _listen(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def go_down(self) -> None:
        """Stop listening: clients get connection refused; held long polls are cut."""
        with self.cond:
            self.down = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def come_up(self) -> None:
        with self.cond:
            self.down = False
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What `telegram.base_url` should be (PTB appends the token)."""
        return f"{self.url}/bot"

    # --- test hooks ------------------------------------------------------------------------------

    def add_chat(self, chat_id: int, kind: str = "") -> None:
        self.chats[chat_id] = {
            "id": chat_id,
            "type": kind or ("private" if chat_id > 0 else "supergroup"),
            **({"title": f"chat {chat_id}"} if chat_id < 0 else {"first_name": "owner"}),
        }

    def flood(self, method: str, retry_after: int | None) -> None:
        """Answer every call of ``method`` with 429 (``None`` lifts it)."""
        with self.cond:
            if retry_after is None:
                self.flooded.pop(method, None)
            else:
                self.flooded[method] = retry_after

    def flood_once(self, method: str, retry_after: int) -> None:
        with self.cond:
            self._flood_once.append((method, retry_after))

    def inject(self, update: dict[str, Any]) -> int:
        with self.cond:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self.cond.notify_all()
            return int(update["update_id"])

    def command(self, sender: dict[str, Any], chat_id: int, text: str) -> int:
        """A user's message with a command, as delivered; returns its message id."""
        chat = self.chats.get(chat_id) or {"id": chat_id, "type": "private"}
        word = text.split()[0]
        with self.cond:
            message = {
                "message_id": next(self._ids(chat_id)),
                "from": sender,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(word)}],
            }
            self.messages[(chat_id, message["message_id"])] = message
        self.inject({"message": message})
        return int(message["message_id"])

    def replies_to(self, chat_id: int, message_id: int) -> list[dict[str, Any]]:
        return [
            m
            for m in self.sent(chat_id)
            if m.get("reply_to_message", {}).get("message_id") == message_id
        ]

    def press(self, sender: dict[str, Any], chat_id: int, message_id: int, data: str) -> str:
        """A button press as Telegram delivers it (the data is whatever the client sent)."""
        with self.cond:
            message = self.messages.get((chat_id, message_id)) or {
                "message_id": message_id,
                "from": self.me,
                "chat": self.chats.get(chat_id) or {"id": chat_id, "type": "supergroup"},
                "date": int(time.time()),
                "text": "(a message in another chat)",
            }
            query_id = str(next(self._query_ids))
            self.queries[query_id] = {"answered": False, "answer": None, "data": data}
        self.inject(
            {
                "callback_query": {
                    "id": query_id,
                    "from": sender,
                    "message": message,
                    "chat_instance": str(abs(chat_id)),
                    "data": data,
                }
            }
        )
        return query_id

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent successfully, in order."""
        return [
            c.result
            for c in self.calls_of("sendMessage")
            if c.ok and (chat_id is None or c.result["chat"]["id"] == chat_id)
        ]

    def calls_of(self, method: str) -> list[Call]:
        with self.cond:
            return [c for c in self.calls if c.method == method]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        with self.cond:
            return dict(self.messages[(chat_id, message_id)])

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
        """Block until ``predicate(self)`` is truthy (call from a thread, not the event loop)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"fake Telegram: timed out waiting for {what or predicate}"
                    )
                self.cond.wait(min(left, 0.2))

    async def until(self, predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
        import asyncio

        return await asyncio.to_thread(self.wait_for, predicate, timeout, what)

    # --- the API ---------------------------------------------------------------------------------

    def _ids(self, chat_id: int) -> itertools.count[int]:
        return self._message_ids.setdefault(chat_id, itertools.count(1))

    def handle(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            with self.cond:
                self._check_flood(method)
            result = self._dispatch(method, params)
            status, body = 200, {"ok": True, "result": result}
        except ApiError as err:
            status = err.code
            body = {"ok": False, "error_code": err.code, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
        with self.cond:
            self.calls.append(
                Call(
                    method,
                    params,
                    status,
                    body.get("result"),
                    str(body.get("description", "")),
                )
            )
            self.cond.notify_all()
        return status, body

    def _check_flood(self, method: str) -> None:
        retry = self.flooded.get(method)
        for i, (m, after) in enumerate(self._flood_once):
            if m == method:
                retry = after
                del self._flood_once[i]
                break
        if retry is not None:
            raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})

    def _dispatch(self, method: str, p: dict[str, Any]) -> Any:
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        return handler(p)

    def _m_getMe(self, p: dict[str, Any]) -> Any:
        return self.me

    def _m_setMyCommands(self, p: dict[str, Any]) -> Any:
        commands = _json_param(p, "commands") or []
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")):
                raise bad("BOT_COMMAND_INVALID")
        with self.cond:
            self.commands = commands
        return True

    def _m_deleteWebhook(self, p: dict[str, Any]) -> Any:
        with self.cond:
            self.webhook = None
            if _bool(p.get("drop_pending_updates")):
                self.updates.clear()
            self.cond.notify_all()
        return True

    def _m_setWebhook(self, p: dict[str, Any]) -> Any:
        url = str(p.get("url", ""))
        if not url:
            return self._m_deleteWebhook(p)
        if not url.startswith(("https://", "http://127.0.0.1")):
            raise bad("bad webhook: HTTPS url must be provided for webhook")
        secret = str(p.get("secret_token", ""))
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad("secret token contains unallowed characters")
        with self.cond:
            self.webhook = {"url": url, "secret_token": secret}
            if _bool(p.get("drop_pending_updates")):
                self.updates.clear()
            self.cond.notify_all()
        if self._webhook_thread is None or not self._webhook_thread.is_alive():
            self._webhook_thread = threading.Thread(target=self._deliver_webhooks, daemon=True)
            self._webhook_thread.start()
        return True

    def _m_getWebhookInfo(self, p: dict[str, Any]) -> Any:
        with self.cond:
            return {
                "url": self.webhook["url"] if self.webhook else "",
                "has_custom_certificate": False,
                "pending_update_count": len(self.updates),
            }

    def _m_getUpdates(self, p: dict[str, Any]) -> Any:
        offset = int(p.get("offset") or 0)
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        timeout = float(p.get("timeout") or 0)
        allowed = _json_param(p, "allowed_updates")
        deadline = time.monotonic() + timeout
        with self.cond:
            if self.webhook is not None:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            self._poller += 1
            me = self._poller
            self.cond.notify_all()
            if offset > 0:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            elif offset < 0:
                self.updates = self.updates[offset:]
            while True:
                if self._poller != me:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                if self.down or self._closing:
                    raise _Drop()
                ready = [u for u in self.updates if not allowed or any(k in u for k in allowed)][
                    :limit
                ]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready
                self.cond.wait(min(left, 0.5))

    def _chat(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            chat_id = int(p.get("chat_id", ""))
        except ValueError as exc:
            raise bad("chat not found") from exc
        chat = self.chats.get(chat_id)
        if chat is None:
            raise bad("chat not found")
        return chat

    def _text(self, p: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        raw = p.get("text")
        if raw is None or raw == "":
            raise bad("message text is empty")
        mode = str(p.get("parse_mode") or "")
        if mode == "":
            text, entities = str(raw), []
        elif mode.upper() == "HTML":
            text, entities = parse_html(str(raw))
        else:
            raise bad(f"unsupported parse_mode {mode!r} (this fake models HTML only)")
        if not text.strip():
            raise bad("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad("message is too long")
        return text, entities

    def _markup(self, p: dict[str, Any]) -> dict[str, Any] | None:
        markup = _json_param(p, "reply_markup")
        if markup is None:
            return None
        rows = markup.get("inline_keyboard")
        if not isinstance(rows, list):
            raise bad("can't parse reply keyboard markup JSON object")
        for row in rows:
            for button in row:
                if not button.get("text"):
                    raise bad("can't parse inline keyboard button: Text must be non-empty")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise bad("BUTTON_DATA_INVALID")
                if data is None and not button.get("url"):
                    raise bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
        return {"inline_keyboard": rows}

    def _m_sendMessage(self, p: dict[str, Any]) -> Any:
        with self.cond:
            chat = self._chat(p)
            text, entities = self._text(p)
            markup = self._markup(p)
            message: dict[str, Any] = {
                "message_id": next(self._ids(chat["id"])),
                "from": self.me,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            if entities:
                message["entities"] = entities
            if markup and markup["inline_keyboard"]:
                message["reply_markup"] = markup
            reply = _json_param(p, "reply_parameters")
            if reply and (chat["id"], int(reply["message_id"])) in self.messages:
                message["reply_to_message"] = self.messages[(chat["id"], int(reply["message_id"]))]
            self.messages[(chat["id"], message["message_id"])] = message
            return message

    def _m_editMessageText(self, p: dict[str, Any]) -> Any:
        with self.cond:
            chat = self._chat(p)
            key = (chat["id"], int(p.get("message_id") or 0))
            old = self.messages.get(key)
            if old is None:
                raise bad("message to edit not found")
            text, entities = self._text(p)
            markup = self._markup(p)
            new_markup = markup if markup and markup["inline_keyboard"] else None
            if (
                old["text"] == text
                and old.get("entities", []) == entities
                and old.get("reply_markup") == new_markup
            ):
                raise bad(
                    "message is not modified: specified new message content and reply markup are "
                    "exactly the same as a current content and reply markup of the message"
                )
            message = {**old, "text": text, "edit_date": int(time.time())}
            message.pop("entities", None)
            message.pop("reply_markup", None)
            if entities:
                message["entities"] = entities
            if new_markup:
                message["reply_markup"] = new_markup
            self.messages[key] = message
            return message

    def _m_answerCallbackQuery(self, p: dict[str, Any]) -> Any:
        with self.cond:
            query = self.queries.get(str(p.get("callback_query_id", "")))
            if query is None or query["answered"]:
                raise bad("query is too old and response timeout expired or query ID is invalid")
            text = str(p.get("text") or "")
            if len(text) > 200:
                raise bad("MESSAGE_TOO_LONG")
            query["answered"] = True
            query["answer"] = text
            query["show_alert"] = _bool(p.get("show_alert"))
            return True

    # --- webhook delivery ------------------------------------------------------------------------

    def _deliver_webhooks(self) -> None:
        while True:
            with self.cond:
                while not self._closing and (self.webhook is None or not self.updates):
                    self.cond.wait(0.5)
                    if self.webhook is None and not self._closing:
                        return
                if self._closing:
                    return
                hook = dict(self.webhook or {})
                update = self.updates[0]
            request = urllib.request.Request(
                hook["url"],
                data=json.dumps(update).encode(),
                headers={
                    "content-type": "application/json",
                    **(
                        {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]}
                        if hook.get("secret_token")
                        else {}
                    ),
                },
                method="POST",
            )
            ok = False
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(request, timeout=10) as response:
                    ok = 200 <= response.status < 300
            with self.cond:
                self.calls.append(
                    Call("webhook", {"update_id": update["update_id"]}, 200 if ok else 502)
                )
                if ok and self.updates and self.updates[0] is update:
                    self.updates.pop(0)
                self.cond.notify_all()
            if not ok:
                time.sleep(0.2)


class _Drop(Exception):
    """Close the connection without an answer (the server went away)."""


def _bool(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _json_param(p: dict[str, Any], key: str) -> Any:
    value = p.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise bad(f"can't parse {key} JSON object") from exc
    return value


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx/1.18.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _params(self) -> dict[str, Any]:
        split = urlsplit(self.path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("content-type", "")
        if body and ctype.startswith("application/json"):
            params.update(json.loads(body))
        elif body and ctype.startswith("application/x-www-form-urlencoded"):
            params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
        elif body and ctype.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    payload = part.get_payload(decode=True) or b""
                    params[str(name)] = payload.decode(errors="replace")
        return params

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client went away (e.g. a cancelled long poll)
            self.wfile.write(data)

    def _route(self) -> None:
        fake: FakeTelegram = self.server.fake  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        try:
            params = self._params()
        except (ValueError, json.JSONDecodeError):
            self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request"})
            return
        if path == "/_inject":
            self._reply(200, {"ok": True, "result": fake.inject(params)})
            return
        if path == "/_calls":
            with fake.cond:
                calls = [
                    {"method": c.method, "params": c.params, "status": c.status} for c in fake.calls
                ]
            self._reply(200, {"ok": True, "result": calls})
            return
        m = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        if not m:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        if m.group(1) != fake.token:
            self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        try:
            status, body = fake.handle(m.group(2), params)
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        self._reply(status, body)

    do_GET = _route
    do_POST = _route
