"""A fake Proxmox Backup Server API (``/api2/json``) over HTTPS, written from the documented API.

PBS differs from PVE in the details the toolset depends on, and the fake keeps them:
``Authorization: PBSAPIToken=USER@REALM!NAME:SECRET`` (a colon before the secret), field names in
kebab-case (``backup-type``, ``last-run-state``, ``gc-status``), and errors sent as the plain-text
response body with the standard reason phrase (status 400 unless the error carries its own).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.tls import Certs, serve_https


class PbsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Datastore:
    name: str
    total: int
    used: int
    full_in_days: float | None = None
    gc_upid: str = ""
    gc: dict[str, Any] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)


class FakePBS:
    def __init__(self, certs: Certs, tokens: dict[str, str]) -> None:
        self.certs = certs
        self.tokens = dict(tokens)
        self.lock = threading.Lock()
        self.datastores: dict[str, Datastore] = {}
        self.verify_jobs: list[dict[str, Any]] = []
        self.sync_jobs: list[dict[str, Any]] = []
        self.prune_jobs: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._server: ThreadingHTTPServer | None = None

    # --- setup ---------------------------------------------------------------------------------

    def add_datastore(
        self,
        name: str,
        total: int,
        used: int,
        full_in_days: float | None = None,
        gc_ok: bool = True,
    ) -> Datastore:
        upid = f"UPID:localhost:00001234:00005678:00000001:{int(time.time()) - 7200:08X}:garbage_collection:{name}:root@pam:"
        self.tasks[upid] = {
            "upid": upid,
            "node": "localhost",
            "type": "garbage_collection",
            "id": name,
            "user": "root@pam",
            "starttime": int(time.time()) - 7200,
            "status": "stopped",
            "exitstatus": "OK" if gc_ok else "unable to access chunk store - permission denied",
        }
        store = Datastore(
            name=name, total=total, used=used, full_in_days=full_in_days, gc_upid=upid
        )
        store.gc = {
            "upid": upid,
            "index-file-count": 12,
            "index-data-bytes": used * 3,
            "disk-bytes": used,
            "disk-chunks": 4096,
            "removed-bytes": 1024**3,
            "removed-chunks": 321,
            "pending-bytes": 0,
            "pending-chunks": 0,
            "removed-bad": 0,
            "still-bad": 0,
        }
        self.datastores[name] = store
        return store

    def add_snapshot(
        self, store: str, backup_type: str, backup_id: str, when: float, verified: str | None = "ok"
    ) -> None:
        snap: dict[str, Any] = {
            "backup-type": backup_type,
            "backup-id": backup_id,
            "backup-time": int(when),
            "files": [{"filename": "index.json.blob", "size": 500}],
            "size": 2 * 1024**3,
            "owner": "backup@pbs!homelab",
            "protected": False,
        }
        if verified:
            snap["verification"] = {"state": verified, "upid": "UPID:localhost:verify"}
        self.datastores[store].snapshots.append(snap)

    # --- server --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakePBS:
        self._server = serve_https(self.certs, self._serve)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        length = int(req.headers.get("Content-Length") or 0)
        if length:
            req.rfile.read(length)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        status = 200
        try:
            self._authorize(req.headers.get("Authorization", ""))
            if req.command != "GET":
                raise PbsError(501, f"Method '{req.command} {path}' not implemented")
            with self.lock:
                raw = json.dumps({"data": self._route(path.removeprefix("/api2/json/"), query)})
        except PbsError as err:
            status, raw = err.status, err.message
        with self.lock:
            self.requests.append((req.command, path, status))
        body = raw.encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json;charset=UTF-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _authorize(self, header: str) -> None:
        if not header.startswith("PBSAPIToken="):
            raise PbsError(401, "authentication failed - no authentication credentials provided.")
        token_id, sep, secret = header.removeprefix("PBSAPIToken=").rpartition(":")
        if not sep or self.tokens.get(token_id) != secret:
            raise PbsError(401, "authentication failed - invalid API token")

    def _store(self, name: str) -> Datastore:
        if name not in self.datastores:
            raise PbsError(400, f"datastore '{name}' does not exist")
        return self.datastores[name]

    def _route(self, rel: str, query: dict[str, str]) -> Any:
        rel = rel.rstrip("/")
        if rel == "version":
            return {"version": "3.2", "release": "7", "repoid": "c46e0e2b"}
        if rel == "admin/datastore":
            return [{"store": s.name, "comment": ""} for s in self.datastores.values()]
        if rel == "status/datastore-usage":
            now = time.time()
            return [
                {
                    "store": s.name,
                    "total": s.total,
                    "used": s.used,
                    "avail": s.total - s.used,
                    "estimated-full-date": int(now + s.full_in_days * 86400)
                    if s.full_in_days
                    else 0,
                    "gc-status": s.gc,
                    "backend-type": "filesystem",
                }
                for s in self.datastores.values()
            ]
        if rel in ("admin/verify", "admin/sync", "admin/prune"):
            jobs = {"admin/verify": self.verify_jobs, "admin/sync": self.sync_jobs}.get(
                rel, self.prune_jobs
            )
            now = int(time.time())
            return [
                {"next-run": now + 3600, "last-run-endtime": now - 3600, "last-run-upid": "UPID:x"}
                | job
                for job in jobs
            ]
        match = re.fullmatch(r"nodes/([^/]+)/tasks/([^/]+)/status", rel)
        if match:
            task = self.tasks.get(match.group(2))
            if task is None:
                raise PbsError(400, "no such task")
            return task
        match = re.fullmatch(r"admin/datastore/([^/]+)(/.*)?", rel)
        if match:
            store = self._store(match.group(1))
            sub = match.group(2) or ""
            if sub == "/status":
                counts: dict[str, dict[str, int]] = {}
                for snap in store.snapshots:
                    entry = counts.setdefault(snap["backup-type"], {"groups": 0, "snapshots": 0})
                    entry["snapshots"] += 1
                for kind, _ident in {(s["backup-type"], s["backup-id"]) for s in store.snapshots}:
                    counts[kind]["groups"] += 1
                data: dict[str, Any] = {
                    "total": store.total,
                    "used": store.used,
                    "avail": store.total - store.used,
                    "backend-type": "filesystem",
                }
                if query.get("verbose") in ("1", "true"):
                    data["gc-status"] = store.gc
                    data["counts"] = counts
                return data
            if sub == "/gc":
                return store.gc
            if sub == "/groups":
                groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
                for snap in store.snapshots:
                    groups.setdefault((snap["backup-type"], snap["backup-id"]), []).append(snap)
                return [
                    {
                        "backup-type": kind,
                        "backup-id": ident,
                        "last-backup": max(s["backup-time"] for s in snaps),
                        "backup-count": len(snaps),
                        "files": ["index.json.blob"],
                        "owner": "backup@pbs!homelab",
                    }
                    for (kind, ident), snaps in sorted(groups.items())
                ]
            if sub == "/snapshots":
                return [
                    s
                    for s in store.snapshots
                    if (not query.get("backup-type") or s["backup-type"] == query["backup-type"])
                    and (not query.get("backup-id") or s["backup-id"] == query["backup-id"])
                ]
        raise PbsError(404, f"Path '/api2/json/{rel}' not found.")

    def count(self, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for _, _, s in self.requests if status is None or s == status)
