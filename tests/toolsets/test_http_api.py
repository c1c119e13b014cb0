"""The one HTTP client: every status and transport failure becomes the same typed error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.catalog import ToolFailure
from activities.tools import retryable
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from workers.lab.processes import free_port


class Handler(BaseHTTPRequestHandler):
    """``/status/<code>`` answers that code; ``/echo`` returns the request's method and headers."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            body = json.dumps({"message": f"status {code} password=hunter2"}).encode()
            self.send_response(code)
            if code == 429:
                self.send_header("Retry-After", "7")
            if code == 302:
                self.send_header("Location", "https://elsewhere/login")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/text":
            body = b"plain"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        elif path == "/badjson":
            body = b"{not json"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            length = int(self.headers.get("content-length") or 0)
            sent = self.rfile.read(length).decode() if length else ""
            body = json.dumps(
                {"method": self.command, "auth": self.headers.get("authorization"), "body": sent}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def test_json_and_text_answers(server: str) -> None:
    api = HttpApi(server, product="Test", headers={"Authorization": "Bearer s3cret"})
    try:
        echoed = await api.post("/echo", json_body={"a": 1})
        assert echoed == {"method": "POST", "auth": "Bearer s3cret", "body": '{"a":1}'}
        assert await api.get("/text") == "plain"
        with pytest.raises(ToolFailure) as bad:
            await api.get("/badjson")
        assert bad.value.kind is ToolErrorKind.FAILED
    finally:
        await api.aclose()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, ToolErrorKind.INVALID),
        (401, ToolErrorKind.UNAUTHORIZED),
        (403, ToolErrorKind.UNAUTHORIZED),
        (404, ToolErrorKind.NOT_FOUND),
        (409, ToolErrorKind.CONFLICT),
        (422, ToolErrorKind.INVALID),
        (429, ToolErrorKind.RATE_LIMITED),
        (500, ToolErrorKind.FAILED),
        (502, ToolErrorKind.UNREACHABLE),
        (503, ToolErrorKind.UNREACHABLE),
        (302, ToolErrorKind.INVALID),
    ],
)
async def test_statuses_become_typed_failures(server: str, code: int, kind: ToolErrorKind) -> None:
    api = HttpApi(server, product="Test")
    try:
        with pytest.raises(ToolFailure) as raised:
            await api.get(f"/status/{code}")
    finally:
        await api.aclose()
    assert raised.value.kind is kind
    assert "hunter2" not in raised.value.message  # quoted bodies are redacted
    if code != 302:
        assert f"HTTP {code}" in raised.value.message and f"/status/{code}" in raised.value.message
    if code == 429:
        assert raised.value.retry_after == 7
        assert raised.value.transient
        delay = retryable(raised.value).next_retry_delay
        assert delay is not None and delay.total_seconds() == 7


async def test_unreachable_and_timeouts_are_transient() -> None:
    api = HttpApi(f"http://127.0.0.1:{free_port()}", product="Test", timeout=1)
    try:
        with pytest.raises(ToolFailure) as raised:
            await api.get("/")
    finally:
        await api.aclose()
    assert raised.value.kind is ToolErrorKind.UNREACHABLE and raised.value.transient
