"""Closed incidents as Qdrant points: qdrant-client's embedded mode by default, a server by URL.

Layout. Each embedder has its own collections (``incidents-<embedder>-<dimension>``), so vectors
of different embedders never meet. A Qdrant server holds one collection per embedder with keyword
indexes on ``service`` and ``alert`` and filters on them. The embedded mode (qdrant-client's local
mode, pure Python) evaluates a payload filter point by point, ~13 µs each: 130 ms per recall at
10,000 incidents. So there the filter is the layout: one collection per embedder, service and
alert, searched whole (a few ms). Either way a recall sees only incidents of its service and
alert.

A point's id is derived from the workflow id and run id, so a retried or replayed write
overwrites the same point instead of adding one.

The embedded store is a directory one process may open at a time (qdrant-client locks it); the
worker opens it on first use and keeps it, and every user in one process shares that client.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POINT_NAMESPACE = uuid.UUID("6f1c3c52-3f0e-4d55-9b5e-6d2b8a1f4c11")
_KEYWORDS = ("service", "alert", "target")

_local_clients: dict[str, Any] = {}
_local_lock = threading.Lock()


class MemoryUnavailable(Exception):
    """The vector store cannot be reached or opened (the message is safe to log)."""


def point_id(workflow_id: str, run_id: str) -> str:
    """The same incident run always maps to the same point."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{workflow_id}/{run_id}"))


def _part(text: str) -> str:
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean}-{digest}" if clean else digest


@dataclass(frozen=True)
class Hit:
    score: float
    payload: dict[str, Any]


def open_local(path: str) -> Any:
    """The process's one client for an embedded store directory."""
    with _local_lock:
        client = _local_clients.get(path)
        if client is None:
            from qdrant_client import QdrantClient

            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                client = QdrantClient(path=path, force_disable_check_same_thread=True)
            except RuntimeError as exc:  # locked by another process
                raise MemoryUnavailable(
                    f"incident memory at {path} is open in another process ({exc}); "
                    "stop the worker or use a Qdrant server (memory.qdrant: http://...)"
                ) from None
            _local_clients[path] = client
        return client


def close_local(path: str) -> None:
    """Close the embedded store at ``path`` (tests, CLI commands done with it)."""
    with _local_lock:
        client = _local_clients.pop(path, None)
    if client is not None:
        client.close()


@atexit.register
def _close_all_local() -> None:
    """Close embedded stores while the interpreter can still import (qdrant-client's ``__del__``
    at shutdown cannot)."""
    for path in list(_local_clients):
        try:
            close_local(path)
        except Exception:  # exiting anyway: never mask the real exit status
            pass


class VectorStore:
    """Incident points over one qdrant-client (embedded or server); thread-safe, blocking."""

    def __init__(self, location: str, api_key: str | None = None, timeout: float = 5.0) -> None:
        self.location = location
        self.server = location.startswith(("http://", "https://"))
        self.api_key = api_key
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._ready: set[str] = set()

    # --- client and collections -----------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            if self.server:
                from qdrant_client import QdrantClient

                self._client = QdrantClient(
                    url=self.location,
                    api_key=self.api_key,
                    timeout=int(self.timeout),
                    check_compatibility=False,  # a version probe per process start, not per call
                )
            else:
                self._client = open_local(self.location)
        return self._client

    def collection(self, embedder: str, service: str, alert: str) -> str:
        base = f"incidents-{embedder}"
        return base if self.server else f"{base}--{_part(service)}--{_part(alert)}"

    def _filter(self, service: str, alert: str) -> Any:
        if not self.server:
            return None  # the collection is the filter (see the module docstring)
        from qdrant_client import models

        return models.Filter(
            must=[
                models.FieldCondition(key="service", match=models.MatchValue(value=service)),
                models.FieldCondition(key="alert", match=models.MatchValue(value=alert)),
            ]
        )

    def _ensure(self, name: str, dimension: int) -> None:
        if name in self._ready:
            return
        from qdrant_client import models

        client = self.client()
        if not client.collection_exists(name):
            try:
                client.create_collection(
                    name,
                    # Vectors arrive at unit length: dot product is their cosine, without
                    # the embedded mode re-normalising every stored vector on each search.
                    vectors_config=models.VectorParams(
                        size=dimension, distance=models.Distance.DOT
                    ),
                )
            except Exception:
                if not client.collection_exists(name):  # not a lost race with another writer
                    raise
            if self.server:
                for key in _KEYWORDS:
                    client.create_payload_index(
                        name, key, field_schema=models.PayloadSchemaType.KEYWORD
                    )
        self._ready.add(name)

    # --- points ---------------------------------------------------------------------------------

    def upsert(self, embedder: str, pid: str, vector: list[float], payload: dict[str, Any]) -> str:
        from qdrant_client import models

        name = self.collection(embedder, payload["service"], payload["alert"])
        with self._lock:
            try:
                self._ensure(name, len(vector))
                self.client().upsert(
                    name, [models.PointStruct(id=pid, vector=vector, payload=payload)], wait=True
                )
            except MemoryUnavailable:
                raise
            except Exception as exc:
                raise MemoryUnavailable(_describe(exc)) from None
        return name

    def search(
        self,
        embedder: str,
        service: str,
        alert: str,
        vector: list[float],
        limit: int,
        min_score: float,
    ) -> list[Hit]:
        name = self.collection(embedder, service, alert)
        with self._lock:
            try:
                client = self.client()
                if name not in self._ready and not client.collection_exists(name):
                    return []
                self._ready.add(name)
                found = client.query_points(
                    name,
                    query=vector,
                    query_filter=self._filter(service, alert),
                    limit=limit,
                    score_threshold=min_score,
                    with_payload=True,
                )
            except MemoryUnavailable:
                raise
            except Exception as exc:
                raise MemoryUnavailable(_describe(exc)) from None
        return [Hit(float(p.score), dict(p.payload or {})) for p in found.points]

    def get(self, embedder: str, service: str, alert: str, pid: str) -> dict[str, Any] | None:
        """One stored point's payload and whether it has a vector (tests, diagnostics)."""
        name = self.collection(embedder, service, alert)
        with self._lock:
            client = self.client()
            if not client.collection_exists(name):
                return None
            found = client.retrieve(name, [pid], with_payload=True, with_vectors=True)
        if not found:
            return None
        return {"payload": dict(found[0].payload or {}), "vector": found[0].vector}

    def count(self, embedder: str | None = None) -> dict[str, int]:
        """Points per collection (of one embedder, or all): ``homelab-agents memory status``."""
        with self._lock:
            client = self.client()
            names = [c.name for c in client.get_collections().collections]
            prefix = f"incidents-{embedder}" if embedder else "incidents-"
            return {
                n: int(client.count(n, exact=True).count)
                for n in sorted(names)
                if n == prefix or n.startswith(prefix + ("--" if embedder else ""))
            }

    def close(self) -> None:
        """Release the client (an embedded store's directory lock too: for every user of it in
        this process, so only its owner calls this)."""
        with self._lock:
            if self._client is not None:
                if self.server:
                    self._client.close()
                else:
                    close_local(self.location)
            self._client = None
            self._ready.clear()


def _describe(exc: BaseException) -> str:
    from core.redact import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")[:300]
