"""A Qdrant server's REST API (real HTTP) for the memory's server mode: no Qdrant binary runs here.

The HTTP layer follows Qdrant's OpenAPI (api.qdrant.tech): the paths the incident memory uses,
the ``api-key`` header, the ``{"result", "status": "ok", "time"}`` envelope and the
``{"status": {"error": ...}, "time"}`` error bodies (404 for a missing collection, 401 without a
valid key). Behind it the engine is qdrant-client's own local implementation, so collection,
index, upsert, filter and scoring semantics are Qdrant's, not this file's. Requests are recorded
(method, path, body) so tests can assert what the client sent.

* ``GET /collections``, ``GET /collections/{name}/exists``, ``PUT /collections/{name}``
* ``PUT /collections/{name}/index`` (keyword payload indexes)
* ``PUT /collections/{name}/points`` (upsert), ``POST /collections/{name}/points`` (retrieve)
* ``POST /collections/{name}/points/query``, ``POST /collections/{name}/points/count``

``fail_with = 503`` answers every request with that status (a server in trouble).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from qdrant_client import QdrantClient, models

from tests.fakes.httpfake import FakeServer, Reply, Request

_ROUTES = [
    ("GET", re.compile(r"^/collections$"), "collections"),
    ("GET", re.compile(r"^/collections/(?P<name>[^/]+)/exists$"), "exists"),
    ("PUT", re.compile(r"^/collections/(?P<name>[^/]+)$"), "create"),
    ("PUT", re.compile(r"^/collections/(?P<name>[^/]+)/index$"), "index"),
    ("PUT", re.compile(r"^/collections/(?P<name>[^/]+)/points$"), "upsert"),
    ("POST", re.compile(r"^/collections/(?P<name>[^/]+)/points$"), "retrieve"),
    ("POST", re.compile(r"^/collections/(?P<name>[^/]+)/points/query$"), "query"),
    ("POST", re.compile(r"^/collections/(?P<name>[^/]+)/points/count$"), "count"),
]


def _ok(result: Any, started: float) -> Reply:
    return Reply(200, {"result": result, "status": "ok", "time": time.monotonic() - started})


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"status": {"error": message}, "time": 0.0})


class FakeQdrant:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.fail_with: int | None = None
        self.requests: list[Request] = []
        self.indexes: dict[str, dict[str, str]] = {}
        self.engine = QdrantClient(":memory:")
        self._lock = threading.Lock()
        self.server = FakeServer(self)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.engine.close()

    def calls(self, kind: str) -> list[Request]:
        found = []
        for r in self.requests:
            for method, pattern, name in _ROUTES:
                if name == kind and r.method == method and pattern.match(r.path):
                    found.append(r)
        return found

    def answer(self, request: Request) -> Reply:
        if self.api_key is not None:
            key = request.header("api-key")
            if not key:
                return _error(401, "Must provide an API key or an Authorization bearer token")
            if key != self.api_key:
                return _error(401, "Invalid API key or JWT")
        if self.fail_with is not None:
            return _error(self.fail_with, "Service Unavailable: the fake is failing on purpose")
        for method, pattern, kind in _ROUTES:
            match = pattern.match(request.path)
            if match and request.method == method:
                with self._lock:
                    return self._handle(kind, match.groupdict().get("name", ""), request.body)
        return _error(404, f"Not found: {request.method} {request.path}")

    def _missing(self, name: str) -> Reply | None:
        if not self.engine.collection_exists(name):
            return _error(404, f"Not found: Collection `{name}` doesn't exist!")
        return None

    def _handle(self, kind: str, name: str, body: Any) -> Reply:
        started = time.monotonic()
        body = body if isinstance(body, dict) else {}
        if kind == "collections":
            names = [{"name": c.name} for c in self.engine.get_collections().collections]
            return _ok({"collections": names}, started)
        if kind == "exists":
            return _ok({"exists": self.engine.collection_exists(name)}, started)
        if kind == "create":
            if self.engine.collection_exists(name):
                return _error(409, f"Wrong input: Collection `{name}` already exists!")
            spec = models.CreateCollection.model_validate(body)
            self.engine.create_collection(name, vectors_config=spec.vectors)
            return _ok(True, started)
        missing = self._missing(name)
        if missing is not None:
            return missing
        if kind == "index":
            index = models.CreateFieldIndex.model_validate(body)
            schema = index.field_schema
            self.indexes.setdefault(name, {})[index.field_name] = str(
                getattr(schema, "value", schema)
            )
            return _ok({"operation_id": 0, "status": "completed"}, started)
        if kind == "upsert":
            points = models.PointsList.model_validate(body)
            try:
                self.engine.upsert(name, points=points.points)
            except ValueError as exc:
                return _error(400, f"Wrong input: {exc}")
            return _ok({"operation_id": 0, "status": "completed"}, started)
        if kind == "retrieve":
            wanted = models.PointRequest.model_validate(body)
            found = self.engine.retrieve(
                name,
                wanted.ids,
                with_payload=wanted.with_payload if wanted.with_payload is not None else True,
                with_vectors=wanted.with_vector or False,
            )
            return _ok([p.model_dump(mode="json") for p in found], started)
        if kind == "query":
            query = models.QueryRequest.model_validate(body)
            try:
                result = self.engine.query_points(
                    name,
                    query=query.query,
                    query_filter=query.filter,
                    limit=query.limit or 10,
                    score_threshold=query.score_threshold,
                    with_payload=query.with_payload if query.with_payload is not None else False,
                )
            except ValueError as exc:
                return _error(400, f"Wrong input: {exc}")
            return _ok(result.model_dump(mode="json"), started)
        if kind == "count":
            spec = models.CountRequest.model_validate(body)
            counted = self.engine.count(name, count_filter=spec.filter, exact=True)
            return _ok({"count": counted.count}, started)
        return _error(404, f"Not found: {kind}")
