"""One threaded loopback HTTP server for the JSON API fakes (AdGuard Home, Tailscale, UniFi):
each fake supplies ``answer(request) -> Reply``; requests are recorded for shape assertions."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def text_error(status: int, message: str) -> Reply:
    """Go's ``http.Error``: the message and a newline as text/plain."""
    return Reply(status, message + "\n", content_type="text/plain; charset=utf-8")


class Answers(Protocol):
    requests: list[Request]

    def answer(self, request: Request) -> Reply: ...


class FakeServer:
    def __init__(self, fake: Answers) -> None:
        self.fake = fake
        self.delay = 0.0  # seconds every answer waits (timeouts)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                kind = self.headers.get("content-type") or ""
                body: Any = None
                if raw and "json" in kind:
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError:
                        body = None
                elif raw and "form" in kind:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                request = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    raw,
                )
                outer.fake.requests.append(request)
                if outer.delay:
                    threading.Event().wait(outer.delay)
                reply = outer.fake.answer(request)
                data = reply.encoded()
                self.send_response(reply.status)
                if data:
                    self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
