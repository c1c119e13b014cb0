"""A fake Grafana HTTP API (plain HTTP on loopback), written from Grafana's documented API.

What it models, because the toolset depends on it:

* ``GET /api/health`` without auth: ``{"commit", "database": "ok", "version"}``;
* every other path needs ``Authorization: Bearer <service account token>``: none or a wrong one
  is ``401 {"message": "Unauthorized"}`` / ``{"message": "invalid API key"}``;
  ``X-Grafana-Org-Id`` is recorded;
* ``GET /api/datasources`` and ``GET /api/datasources/uid/<uid>/health``: ``200 {"status": "OK",
  "message"}``, a failing source ``400 {"status": "ERROR", "message"}``, an unknown uid
  ``404 {"message": "Data source not found"}``;
* ``GET /api/search`` (``type=dash-db``, ``query`` on titles, repeated ``tag`` all required,
  ``limit``);
* ``POST /api/annotations`` (``time``/``timeEnd`` epoch ms, ``tags``, ``text`` required,
  ``dashboardUID``, ``panelId``) → ``{"message": "Annotation added", "id"}``; ``GET
  /api/annotations`` with ``from``/``to`` (overlap), ``tags`` (all must match), ``dashboardUID``,
  ``limit``, newest first; ``DELETE /api/annotations/<id>``;
* ``fail_next``: the next N requests answer a given status (429 with ``Retry-After``, 500, ...).

Every request is kept (method, path, query, headers, JSON body) so tests assert the shapes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from workers.lab.processes import free_port


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    token: str = "glsa_test_token_0123456789"
    version: str = "10.4.2"
    port: int = 0
    datasources: list[dict[str, Any]] = field(default_factory=list)
    failing_sources: dict[str, str] = field(default_factory=dict)
    dashboards: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    fail_next: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGrafana:
        self.port = self.port or free_port()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = "<invalid json>"
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake._lock:
                    fake.requests.append(request)
                    status, payload, headers = fake.dispatch(request)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- the API ------------------------------------------------------------------------------

    def dispatch(self, r: Request) -> tuple[int, Any, dict[str, str]]:
        if self.fail_next:
            return self.fail_next.pop(0)
        if r.method == "GET" and r.path == "/api/health":
            return 200, {"commit": "5e8b6e4", "database": "ok", "version": self.version}, {}
        auth = r.headers.get("authorization", "")
        if not auth:
            return 401, {"message": "Unauthorized"}, {}
        if auth != f"Bearer {self.token}":
            return 401, {"message": "invalid API key"}, {}
        if r.method == "GET" and r.path == "/api/datasources":
            return 200, self.datasources, {}
        if r.method == "GET" and r.path.startswith("/api/datasources/uid/"):
            uid = r.path.split("/")[4]
            if not any(d["uid"] == uid for d in self.datasources) or not r.path.endswith("/health"):
                return 404, {"message": "Data source not found"}, {}
            if uid in self.failing_sources:
                return 400, {"status": "ERROR", "message": self.failing_sources[uid]}, {}
            return 200, {"status": "OK", "message": "Successfully queried the Prometheus API."}, {}
        if r.method == "GET" and r.path == "/api/search":
            return 200, self._search(r.query), {}
        if r.path == "/api/annotations":
            if r.method == "POST":
                return self._add_annotation(r.body)
            if r.method == "GET":
                return 200, self._find_annotations(r.query), {}
        if r.method == "DELETE" and r.path.startswith("/api/annotations/"):
            ident = r.path.rsplit("/", 1)[1]
            before = len(self.annotations)
            self.annotations = [a for a in self.annotations if str(a["id"]) != ident]
            if len(self.annotations) == before:
                return 404, {"message": "Annotation not found"}, {}
            return 200, {"message": "Annotation deleted"}, {}
        return 404, {"message": "Not found"}, {}

    def _search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        kind = query.get("type", ["dash-db"])[0]
        text = query.get("query", [""])[0].lower()
        tags = query.get("tag", [])
        limit = int(query.get("limit", ["1000"])[0])
        found = [
            d
            for d in self.dashboards
            if d.get("type", "dash-db") == kind
            and text in d["title"].lower()
            and all(t in d.get("tags", []) for t in tags)
        ]
        return found[:limit]

    def _add_annotation(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return 400, {"message": "bad request data"}, {}
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return 400, {"message": "bad request data"}, {}
        when = body.get("time")
        if when is not None and not isinstance(when, int):
            return 400, {"message": "bad request data"}, {}
        ident = len(self.annotations) + 1
        self.annotations.append(
            {
                "id": ident,
                "dashboardUID": body.get("dashboardUID", ""),
                "panelId": body.get("panelId", 0),
                "time": when or 0,
                "timeEnd": body.get("timeEnd", when or 0),
                "tags": tags,
                "text": body["text"],
            }
        )
        return 200, {"message": "Annotation added", "id": ident}, {}

    def _find_annotations(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        start = int(query.get("from", ["0"])[0])
        end = int(query.get("to", [str(2**62)])[0])
        tags = query.get("tags", [])
        uid = query.get("dashboardUID", [None])[0]
        limit = int(query.get("limit", ["100"])[0])
        found = [
            a
            for a in self.annotations
            if a["time"] <= end
            and a["timeEnd"] >= start
            and all(t in a["tags"] for t in tags)
            and (uid is None or a["dashboardUID"] == uid)
        ]
        return sorted(found, key=lambda a: -a["time"])[:limit]
