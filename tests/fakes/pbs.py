"""A fake Proxmox Backup Server API (``/api2/json``) over HTTPS, written from the documented API.

PBS differs from PVE in the details the toolset depends on, and the fake keeps them:
``Authorization: PBSAPIToken=USER@REALM!NAME:SECRET`` (a colon before the secret), field names in
kebab-case (``backup-type``, ``last-run-state``, ``gc-status``), and errors sent as the plain-text
response body with the standard reason phrase (status 400 unless the error carries its own).

Verification and garbage collection are worker tasks as on a real server: the POST answers a
UPID at once, the task runs for ``task_delay`` seconds (``status: running``), then stops with
``exitstatus`` OK or the server's error ("verification failed - please check the log for
details"), writes its log, and changes the datastore (snapshot verification states, freed
chunks). Task ids follow PBS's worker types and ids (``verify_group`` on ``store:/vm/100``).
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
    def __init__(self, certs: Certs, tokens: dict[str, str], task_delay: float = 0.3) -> None:
        self.certs = certs
        self.tokens = dict(tokens)
        self.task_delay = task_delay
        self.audit_only: set[str] = set()  # token ids with Datastore.Audit only: POSTs get 403
        self.posts: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.datastores: dict[str, Datastore] = {}
        self.verify_jobs: list[dict[str, Any]] = []
        self.sync_jobs: list[dict[str, Any]] = []
        self.prune_jobs: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.corrupt: set[tuple[str, str, str, int]] = set()
        self.gc_error = ""  # the next garbage collections end with this error
        self._task_seq = 0
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
            "worker_type": "garbage_collection",
            "worker_id": name,
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
        self,
        store: str,
        backup_type: str,
        backup_id: str,
        when: float,
        verified: str | None = "ok",
        corrupt: bool = False,
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
        if corrupt:
            self.corrupt.add((store, backup_type, backup_id, int(when)))
        self.datastores[store].snapshots.append(snap)

    # --- tasks ---------------------------------------------------------------------------------

    def _new_task(self, worker_type: str, worker_id: str, user: str) -> dict[str, Any]:
        now = time.time()
        self._task_seq += 1
        escaped = worker_id.replace("-", "\\x2d").replace(":", "\\x3a").replace("/", "-")
        upid = (
            f"UPID:localhost:0000{self._task_seq:04X}:00012345:{self._task_seq:08X}:"
            f"{int(now):08X}:{worker_type}:{escaped}:{user}:"
        )
        task = {
            "upid": upid,
            "node": "localhost",
            "pid": 4096 + self._task_seq,
            "pstart": 12345,
            "type": worker_type,
            "worker_type": worker_type,
            "worker_id": worker_id,
            "id": worker_id,
            "user": user,
            "starttime": int(now),
            "status": "running",
            "_ends": now + self.task_delay,
            "_log": [f"starting {worker_type} on {worker_id}"],
            "_finish": None,
        }
        self.tasks[upid] = task
        return task

    def _settle(self) -> None:
        """Finish every task whose time has come (called under the lock on each request)."""
        now = time.time()
        for task in self.tasks.values():
            if task.get("status") == "running" and now >= task.get("_ends", 0):
                finish = task.get("_finish")
                exitstatus = finish() if finish else "OK"
                task.update({"status": "stopped", "exitstatus": exitstatus, "endtime": int(now)})
                task["_log"].append(
                    f"TASK {'OK' if exitstatus == 'OK' else 'ERROR: ' + exitstatus}"
                )

    def _start_verify(self, store: Datastore, body: dict[str, str], user: str) -> str:
        kind, ident = body.get("backup-type"), body.get("backup-id")
        if bool(kind) != bool(ident):
            raise PbsError(400, "parameters do not specify a backup group or snapshot")
        worker_type, worker_id = (
            ("verify_group", f"{store.name}:/{kind}/{ident}") if kind else ("verify", store.name)
        )
        ignore = body.get("ignore-verified", "1") not in ("0", "false")
        chosen = [
            s
            for s in store.snapshots
            if (not kind or (s["backup-type"] == kind and s["backup-id"] == ident))
            and not (ignore and (s.get("verification") or {}).get("state") == "ok")
        ]
        if kind and not any(
            s["backup-type"] == kind and s["backup-id"] == ident for s in store.snapshots
        ):
            raise PbsError(400, f"group '{kind}/{ident}' does not exist")
        task = self._new_task(worker_type, worker_id, user)

        def finish() -> str:
            failed = []
            for snap in chosen:
                key = (store.name, snap["backup-type"], snap["backup-id"], snap["backup-time"])
                state = "failed" if key in self.corrupt else "ok"
                snap["verification"] = {"state": state, "upid": task["upid"]}
                task["_log"].append(
                    f"verify {store.name}:{snap['backup-type']}/{snap['backup-id']}/{snap['backup-time']:08X}: {state}"
                )
                if state == "failed":
                    failed.append(f"{snap['backup-type']}/{snap['backup-id']}")
            if failed:
                task["_log"].append("Failed to verify the following snapshots/groups:")
                task["_log"].extend(f"\t{name}" for name in failed)
                return "verification failed - please check the log for details"
            return "OK"

        task["_finish"] = finish
        return str(task["upid"])

    def _start_gc(self, store: Datastore, user: str) -> str:
        running = [
            t
            for t in self.tasks.values()
            if t["worker_type"] == "garbage_collection"
            and t["worker_id"] == store.name
            and t["status"] == "running"
        ]
        if running:
            raise PbsError(400, "garbage collection already running")
        task = self._new_task("garbage_collection", store.name, user)

        def finish() -> str:
            if self.gc_error:
                return self.gc_error
            freed = int(store.gc.get("pending-bytes") or 0)
            store.used -= freed
            store.gc.update(
                {
                    "upid": task["upid"],
                    "removed-bytes": freed,
                    "pending-bytes": 0,
                    "disk-bytes": store.used,
                }
            )
            store.gc_upid = task["upid"]
            task["_log"].append(f"Removed garbage: {freed} bytes")
            return "OK"

        task["_finish"] = finish
        return str(task["upid"])

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
        body_text = req.rfile.read(length).decode() if length else ""
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        status = 200
        try:
            token = self._authorize(req.headers.get("Authorization", ""))
            rel = path.removeprefix("/api2/json/")
            with self.lock:
                self._settle()
                if req.command == "POST":
                    body = {k: v[-1] for k, v in parse_qs(body_text).items()} | query
                    if token in self.audit_only:
                        raise PbsError(403, "permission check failed")
                    self.posts.append((rel, body))
                    raw = json.dumps({"data": self._post(rel, body, token)})
                elif req.command == "GET":
                    raw = json.dumps({"data": self._route(rel, query)})
                else:
                    raise PbsError(501, f"Method '{req.command} {path}' not implemented")
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

    def _authorize(self, header: str) -> str:
        if not header.startswith("PBSAPIToken="):
            raise PbsError(401, "authentication failed - no authentication credentials provided.")
        token_id, sep, secret = header.removeprefix("PBSAPIToken=").rpartition(":")
        if not sep or self.tokens.get(token_id) != secret:
            raise PbsError(401, "authentication failed - invalid API token")
        return token_id

    def _post(self, rel: str, body: dict[str, str], token: str) -> Any:
        rel = rel.rstrip("/")
        match = re.fullmatch(r"admin/datastore/([^/]+)/(verify|gc)", rel)
        if not match:
            raise PbsError(404, f"Path '/api2/json/{rel}' not found.")
        store = self._store(match.group(1))
        if match.group(2) == "verify":
            return self._start_verify(store, body, token)
        return self._start_gc(store, token)

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
        match = re.fullmatch(r"nodes/([^/]+)/tasks/([^/]+)/(status|log)", rel)
        if match:
            task = self.tasks.get(match.group(2))
            if task is None:
                raise PbsError(400, "no such task")
            if match.group(3) == "log":
                start, limit = int(query.get("start", 0)), int(query.get("limit", 50))
                lines = task.get("_log") or []
                return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start : start + limit]
            return {k: v for k, v in task.items() if not k.startswith("_")}
        if re.fullmatch(r"nodes/[^/]+/tasks", rel):
            since = int(query.get("since", 0))
            rows = [
                {k: v for k, v in t.items() if not k.startswith("_")}
                for t in self.tasks.values()
                if t["starttime"] >= since
                and (not query.get("typefilter") or query["typefilter"] in t["worker_type"])
                and (
                    not query.get("store")
                    or t["worker_id"] == query["store"]
                    or t["worker_id"].startswith(query["store"] + ":")
                )
                and (query.get("running") not in ("1", "true") or t["status"] == "running")
            ]
            rows.sort(key=lambda t: t["starttime"], reverse=True)
            return rows[: int(query.get("limit", 50))]
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
