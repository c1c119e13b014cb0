"""A fake Cloudflare: the API v4 (``/client/v4``) over HTTP and the zones' authoritative DNS.

What it models, from Cloudflare's API documentation, because the toolset depends on it:

* the v4 envelope on every answer: ``success``, ``errors`` (``code``/``message``, an
  ``error_chain`` for header errors), ``messages``, ``result`` and, for lists, ``result_info``
  (``page``, ``per_page``, ``count``, ``total_count``, ``total_pages``); ``per_page`` bounds
  (zones 5–50, records 5–5000) answered with 400 ``code 1004``;
* ``Authorization: Bearer <token>``: a malformed header is ``400 code 6003 Invalid request
  headers`` (chain ``6111``), an unknown token ``403 code 9109 Invalid access token``, a token
  without the permission (Zone.Zone read, Zone.DNS read/edit) or the zone ``403 code 10000
  Authentication error``; ``GET /user/tokens/verify``;
* rate limits: more than ``rate_limit`` requests in ``rate_window`` seconds (or the next ``n``
  after ``throttle(n)``) answer ``429 code 971 Please wait and consider throttling your request
  speed`` with ``Retry-After``;
* records: list with ``name``/``type`` filters, create, PATCH, PUT, DELETE; an A record whose
  content is no IPv4 address is ``400 code 9005``, an identical record ``400 code 81058``;
* each zone's records are served by an authoritative DNS server on loopback UDP (``dns_port``),
  which can lag behind the API (``dns_lag``) as a slow propagation would.

Every request is recorded (method, path, query, Authorization, body) so tests assert shapes.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

READ_ZONE = "zone:read"
READ_DNS = "dns:read"
EDIT_DNS = "dns:edit"


class CfError(Exception):
    def __init__(
        self, status: int, code: int, message: str, chain: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.chain = chain
        self.retry_after: int | None = None


@dataclass
class Token:
    value: str
    permissions: set[str]
    zones: set[str] | None = None  # zone names; None = all


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


@dataclass
class FakeZone:
    id: str
    name: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "active"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeCloudflare:
    def __init__(
        self, tokens: list[Token], *, rate_limit: int = 1200, rate_window: float = 300
    ) -> None:
        self.tokens = {t.value: t for t in tokens}
        self.zones: dict[str, FakeZone] = {}
        self.requests: list[Request] = []
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.retry_after = 1
        self.throttled = 0
        self.hits: list[float] = []
        self.dns_lag = False  # the authoritative servers keep answering the old content
        self.dns_snapshot: dict[tuple[str, str], list[str]] = {}
        self.lock = threading.RLock()
        self._http: ThreadingHTTPServer | None = None
        self._dns: socket.socket | None = None
        self.port = 0
        self.dns_port = 0

    # --- setup ----------------------------------------------------------------------------------

    def add_zone(self, name: str) -> FakeZone:
        zone = FakeZone(id=uuid.uuid4().hex, name=name)
        self.zones[zone.id] = zone
        return zone

    def zone(self, name: str) -> FakeZone:
        return next(z for z in self.zones.values() if z.name == name)

    def add_record(
        self, zone: str, type: str, name: str, content: str, **extra: Any
    ) -> dict[str, Any]:
        z = self.zone(zone)
        record = {
            "id": uuid.uuid4().hex,
            "zone_id": z.id,
            "zone_name": z.name,
            "name": name,
            "type": type,
            "content": content,
            "proxiable": type in ("A", "AAAA", "CNAME"),
            "proxied": bool(extra.get("proxied", False)),
            "ttl": int(extra.get("ttl", 1)),
            "comment": extra.get("comment"),
            "tags": [],
            "created_on": _now(),
            "modified_on": _now(),
        }
        z.records[record["id"]] = record
        return record

    def find(self, name: str, type: str = "A") -> list[dict[str, Any]]:
        return [
            r
            for z in self.zones.values()
            for r in z.records.values()
            if r["name"] == name and r["type"] == type
        ]

    def throttle(self, count: int, retry_after: int = 1) -> None:
        """The next ``count`` requests answer 429 with this Retry-After."""
        self.throttled = count
        self.retry_after = retry_after

    def lag_dns(self) -> None:
        """Freeze what the authoritative servers answer at the current records."""
        with self.lock:
            self.dns_snapshot = self._dns_view()
            self.dns_lag = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    # --- the API --------------------------------------------------------------------------------

    def _auth(self, header: str | None) -> Token:
        if not header or not header.startswith("Bearer ") or len(header.split()) != 2:
            raise CfError(
                400,
                6003,
                "Invalid request headers",
                [{"code": 6111, "message": "Invalid format for Authorization header"}],
            )
        token = self.tokens.get(header.split()[1])
        if token is None:
            raise CfError(403, 9109, "Invalid access token")
        return token

    def _rate(self) -> None:
        now = time.monotonic()
        self.hits = [t for t in self.hits if now - t < self.rate_window]
        self.hits.append(now)
        if self.throttled > 0 or len(self.hits) > self.rate_limit:
            self.throttled = max(0, self.throttled - 1)
            error = CfError(
                429,
                971,
                f"More than {self.rate_limit} requests per {int(self.rate_window)} seconds "
                "reached. Please wait and consider throttling your request speed",
            )
            error.retry_after = self.retry_after
            raise error

    @staticmethod
    def _need(token: Token, permission: str, zone: FakeZone | None = None) -> None:
        if permission not in token.permissions or (
            zone is not None and token.zones is not None and zone.name not in token.zones
        ):
            raise CfError(403, 10000, "Authentication error")

    @staticmethod
    def _page(
        items: list[Any], query: dict[str, list[str]], low: int, high: int, default: int
    ) -> tuple[list[Any], dict[str, int]]:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", [str(default)])[0])
        except ValueError:
            raise CfError(400, 1004, "page and per_page must be numbers") from None
        if not low <= per_page <= high or page < 1:
            raise CfError(400, 1004, f"per_page must be between {low} and {high}")
        total_pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": total_pages,
        }
        return chunk, info

    def _zone_json(self, zone: FakeZone) -> dict[str, Any]:
        return {
            "id": zone.id,
            "name": zone.name,
            "status": zone.status,
            "paused": False,
            "type": "full",
            "name_servers": [self.nameserver],
            "original_name_servers": [],
            "plan": {"name": "Free Website"},
        }

    def _validate(self, record: dict[str, Any]) -> None:
        if record["type"] == "A":
            try:
                ipaddress.IPv4Address(record["content"])
            except ValueError:
                raise CfError(
                    400, 9005, "Content for A record must be a valid IPv4 address."
                ) from None

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], auth: str | None, body: Any
    ) -> tuple[int, Any, dict[str, Any] | None]:
        """(status, result, result_info) of one request, or CfError."""
        with self.lock:
            self.requests.append(Request(method, path, query, auth, body))
            token = self._auth(auth)
            self._rate()
            parts = [p for p in path.removeprefix("/client/v4").split("/") if p]
            if parts == ["user", "tokens", "verify"] and method == "GET":
                return 200, {"id": "tok-" + token.value[:6], "status": "active"}, None
            if parts == ["zones"] and method == "GET":
                self._need(token, READ_ZONE)
                zones = [
                    z
                    for z in sorted(self.zones.values(), key=lambda z: z.name)
                    if (token.zones is None or z.name in token.zones)
                    and z.name == query.get("name", [z.name])[0]
                ]
                chunk, info = self._page(zones, query, 5, 50, 20)
                return 200, [self._zone_json(z) for z in chunk], info
            if len(parts) >= 2 and parts[0] == "zones":
                zone = self.zones.get(parts[1])
                if zone is None:
                    raise CfError(
                        404,
                        7003,
                        "Could not route to /zones/"
                        + parts[1]
                        + ", perhaps your object identifier is invalid?",
                    )
                if len(parts) == 2 and method == "GET":
                    self._need(token, READ_ZONE, zone)
                    return 200, self._zone_json(zone), None
                if len(parts) >= 3 and parts[2] == "dns_records":
                    return self._records(token, zone, method, parts[3:], query, body)
            raise CfError(404, 7000, "No route for that URI")

    def _records(
        self,
        token: Token,
        zone: FakeZone,
        method: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: Any,
    ) -> tuple[int, Any, dict[str, Any] | None]:
        if method == "GET" and not rest:
            self._need(token, READ_DNS, zone)
            items = sorted(
                zone.records.values(), key=lambda r: (r["name"], r["type"], r["content"])
            )
            if "name" in query:
                items = [r for r in items if r["name"] == query["name"][0]]
            if "type" in query:
                items = [r for r in items if r["type"] == query["type"][0]]
            chunk, info = self._page(items, query, 5, 5000, 100)
            return 200, chunk, info
        self._need(token, EDIT_DNS if method != "GET" else READ_DNS, zone)
        if method == "POST" and not rest:
            if not isinstance(body, dict) or not {"type", "name", "content"} <= set(body):
                raise CfError(400, 9000, "DNS name, type and content are required")
            record = {"type": body["type"], "name": body["name"], "content": body["content"]}
            self._validate(record)
            if any(
                r["name"] == body["name"]
                and r["type"] == body["type"]
                and r["content"] == body["content"]
                for r in zone.records.values()
            ):
                raise CfError(400, 81058, "An identical record already exists.")
            created = self.add_record(
                zone.name,
                body["type"],
                body["name"],
                body["content"],
                proxied=body.get("proxied", False),
                ttl=body.get("ttl", 1),
                comment=body.get("comment"),
            )
            return 200, created, None
        record = zone.records.get(rest[0]) if rest else None
        if record is None:
            raise CfError(404, 81044, "Record does not exist.")
        if method == "GET":
            return 200, record, None
        if method in ("PATCH", "PUT"):
            if not isinstance(body, dict):
                raise CfError(400, 9207, "Request body is invalid.")
            changed = dict(record)
            if method == "PUT":
                if not {"type", "name", "content"} <= set(body):
                    raise CfError(400, 9000, "DNS name, type and content are required")
                changed.update(proxied=False, ttl=1, comment=None)
            for key in ("type", "name", "content", "proxied", "ttl", "comment"):
                if key in body:
                    changed[key] = body[key]
            self._validate(changed)
            changed["modified_on"] = _now()
            zone.records[record["id"]] = changed
            return 200, changed, None
        if method == "DELETE":
            del zone.records[record["id"]]
            return 200, {"id": record["id"]}, None
        raise CfError(405, 10405, "Method not allowed")

    # --- DNS ------------------------------------------------------------------------------------

    def _dns_view(self) -> dict[tuple[str, str], list[str]]:
        view: dict[tuple[str, str], list[str]] = {}
        for zone in self.zones.values():
            for record in zone.records.values():
                content = (
                    "104.16.0.1"
                    if record["proxied"] and record["type"] == "A"
                    else record["content"]
                )
                view.setdefault((record["name"].lower(), record["type"]), []).append(content)
        return view

    def _answer(self, wire: bytes) -> bytes:
        request = dns.message.from_wire(wire)
        response = dns.message.make_response(request)
        response.flags |= dns.flags.AA
        question = request.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        with self.lock:
            view = self.dns_snapshot if self.dns_lag else self._dns_view()
            in_zone = any(
                name == z.name or name.endswith("." + z.name) for z in self.zones.values()
            )
        values = view.get((name, rtype), [])
        if not in_zone:
            response.set_rcode(dns.rcode.REFUSED)
        elif values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 300, "IN", rtype, values)
            )
        elif not any(key[0] == name for key in view):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve_dns(self, sock: socket.socket) -> None:
        while True:
            try:
                wire, peer = sock.recvfrom(4096)
            except OSError:
                return
            try:
                sock.sendto(self._answer(wire), peer)
            except Exception:  # a malformed query gets no answer, like a real server
                continue

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeCloudflare:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                headers: dict[str, str] = {}
                try:
                    status, result, info = fake.handle(
                        self.command,
                        split.path,
                        parse_qs(split.query),
                        self.headers.get("authorization"),
                        body,
                    )
                    payload: dict[str, Any] = {
                        "success": True,
                        "errors": [],
                        "messages": [],
                        "result": result,
                    }
                    if info is not None:
                        payload["result_info"] = info
                except CfError as exc:
                    status = exc.status
                    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
                    if exc.chain:
                        error["error_chain"] = exc.chain
                    payload = {"success": False, "errors": [error], "messages": [], "result": None}
                    if exc.retry_after is not None:
                        headers["Retry-After"] = str(exc.retry_after)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._dns.bind(("127.0.0.1", 0))
        self.dns_port = self._dns.getsockname()[1]
        threading.Thread(target=self._serve_dns, args=(self._dns,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._dns is not None:
            self._dns.close()


class PublicIp:
    """A what-is-my-IP service on loopback: answers ``address`` as text/plain."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.requests: list[dict[str, str]] = []
        self._http: ThreadingHTTPServer | None = None

    def start(self) -> PublicIp:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                service.requests.append(dict(self.headers))
                data = service.address.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}/"

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


@contextmanager
def cloudflare(tokens: list[Token]) -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(tokens).start()
    try:
        yield fake
    finally:
        fake.stop()
