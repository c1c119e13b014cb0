"""A fake Proxmox VE API (``/api2/json``) over HTTPS, written from the documented API.

What it models, because the toolset depends on it:

* TLS with a certificate from a private CA (clients verify against the CA file);
* ``Authorization: PVEAPIToken=USER@REALM!NAME=SECRET``; a missing header is ``401 No ticket``, an
  unknown token ``401 no such token 'NAME' for user 'USER@REALM'``, a wrong secret
  ``401 invalid token value!``, a read-only token ``403 Permission check failed (...)``;
* errors as PVE sends them: the message in the HTTP reason phrase, ``{"data": null}`` as body,
  parameter errors as ``400 Parameter verification failed.`` with an ``errors`` object, an
  offline node as ``595 No route to host``;
* stateful nodes, storages, guests (config, runtime, snapshots with their config), backup jobs,
  backups, HA; writes that PVE runs as workers return a UPID, hold the guest's lock while running
  and finish after ``task_delay`` seconds with an exit status (``OK`` or the error message);
* the LXC runtime state is mirrored to ``state_dir`` so the fake ``pct`` behind the test sshd
  (tests/fakes/pct.py) sees the same node.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.tls import Certs, serve_https

MIB = 1024 * 1024
GIB = 1024 * MIB


class ApiError(Exception):
    """An error response: status, reason phrase (PVE's message) and optional ``errors``."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    finish_at: float
    effect: Callable[[], str | None]
    pid: int
    pstart: int
    log: list[str] = field(default_factory=list)
    exitstatus: str | None = None
    endtime: int | None = None

    @property
    def done(self) -> bool:
        return self.exitstatus is not None


@dataclass
class Node:
    name: str
    ip: str = "127.0.0.1"
    online: bool = True
    memory_total: int = 16 * GIB
    base_used: int = 2 * GIB
    cpus: int = 8
    cpu: float = 0.07
    rootfs_total: int = 100 * GIB
    rootfs_used: int = 12 * GIB
    loadavg: tuple[float, float, float] = (0.42, 0.38, 0.30)
    uptime: int = 864_000


@dataclass
class Guest:
    vmid: int
    type: str  # lxc | qemu
    node: str
    name: str
    config: dict[str, Any]
    status: str = "running"
    mem_used: int = 200 * MIB
    leak: float = 0.0  # >0: usage follows the limit (this fraction of it), like a leaking service
    disk_used: int = 1 * GIB
    cpu: float = 0.03
    pid: int = 0
    started: float = 0.0
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: str | None = None
    snapshot_capable: bool = True
    template: bool = False
    pending: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "CT" if self.type == "lxc" else "VM"

    @property
    def maxmem(self) -> int:
        raw = str(self.config.get("memory", 512))
        return int(re.search(r"\d+", raw).group(0)) * MIB  # type: ignore[union-attr]

    @property
    def mem(self) -> int:
        if self.status != "running":
            return 0
        if self.leak:
            return int(self.maxmem * self.leak)
        return min(self.mem_used, self.maxmem)


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip(), re.IGNORECASE)
    if not match:
        raise ApiError(400, "Parameter verification failed.", {"size": f"unable to parse '{text}'"})
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))


def _disk_size(value: str) -> int:
    match = re.search(r"size=(\d+(?:\.\d+)?)([KMGT]?)", value)
    if not match:
        return 0
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))


def _with_size(value: str, size: int) -> str:
    text = f"{size // GIB}G" if size % GIB == 0 else f"{size // MIB}M"
    if "size=" in value:
        return re.sub(r"size=[^,]+", f"size={text}", value)
    return f"{value},size={text}"


class FakePVE:
    """One Proxmox VE cluster (one or more nodes) behind one API endpoint."""

    def __init__(
        self,
        certs: Certs,
        tokens: dict[str, str],
        *,
        cluster: str = "lab",
        task_delay: float = 0.2,
        state_dir: Path | None = None,
        ha_delay: float = 1.0,
    ) -> None:
        self.certs = certs
        self.tokens = dict(tokens)
        self.readonly_tokens: set[str] = set()
        self.cluster = cluster
        self.task_delay = task_delay
        self.ha_delay = ha_delay
        # (due, effect): what the HA stack (CRM/LRM) does some time after a hastart/hastop task
        self.ha_transitions: list[tuple[float, Callable[[], str | None]]] = []
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.nodes: dict[str, Node] = {}
        self.storages: dict[str, dict[str, dict[str, Any]]] = {}
        self.guests: dict[int, Guest] = {}
        self.tasks: dict[str, Task] = {}
        self.backup_jobs: list[dict[str, Any]] = []
        self.backups: list[dict[str, Any]] = []
        self.ha_resources: dict[str, dict[str, Any]] = {}
        self.fail: dict[tuple[int, str], str] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._pid = 4000
        self._server: ThreadingHTTPServer | None = None

    # --- setup helpers -------------------------------------------------------------------------

    def add_node(self, name: str, **kwargs: Any) -> Node:
        node = Node(name=name, **kwargs)
        self.nodes[name] = node
        self.storages.setdefault(name, {})
        return node

    def add_storage(
        self,
        node: str,
        name: str,
        type: str,
        content: str,
        total: int,
        used: int,
        shared: bool = False,
    ) -> None:
        self.storages[node][name] = {
            "storage": name,
            "type": type,
            "content": content,
            "total": total,
            "used": used,
            "shared": int(shared),
            "active": 1,
            "enabled": 1,
        }

    def add_guest(self, vmid: int, type: str, node: str, name: str, **kwargs: Any) -> Guest:
        config: dict[str, Any] = kwargs.pop("config", {})
        base: dict[str, Any]
        if type == "lxc":
            base = {
                "hostname": name,
                "arch": "amd64",
                "cores": 1,
                "memory": 512,
                "swap": 512,
                "ostype": "debian",
                "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G",
                "net0": f"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:{vmid % 100:02d}:01,ip=dhcp,type=veth",
                "onboot": 1,
                "unprivileged": 1,
                "features": "nesting=1",
            }
        else:
            base = {
                "name": name,
                "cores": 2,
                "sockets": 1,
                "memory": "2048",
                "ostype": "l26",
                "scsi0": f"local-lvm:vm-{vmid}-disk-0,iothread=1,size=32G",
                "net0": f"virtio=BC:24:11:00:{vmid % 100:02d}:02,bridge=vmbr0,firewall=1",
                "onboot": 1,
                "boot": "order=scsi0",
            }
        base.update(config)
        guest = Guest(vmid=vmid, type=type, node=node, name=name, config=base, **kwargs)
        if guest.status == "running":
            guest.pid = self._next_pid()
            guest.started = time.time() - 3600
        self.guests[vmid] = guest
        self._mirror()
        return guest

    def add_backup(
        self, node: str, storage: str, vmid: int, age_seconds: float, verified: str | None = "ok"
    ) -> None:
        guest = self.guests[vmid]
        ctime = int(time.time() - age_seconds)
        stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(ctime))
        item: dict[str, Any] = {
            "node": node,
            "storage": storage,
            "volid": f"{storage}:backup/vzdump-{guest.type}-{vmid}-{stamp}.tar.zst",
            "content": "backup",
            "ctime": ctime,
            "format": "tar.zst",
            "size": 300 * MIB,
            "vmid": vmid,
            "subtype": guest.type,
        }
        if verified:
            item["verification"] = {"state": verified, "upid": "UPID:x"}
        self.backups.append(item)

    # --- server --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> FakePVE:
        self._server = serve_https(self.certs, self._serve)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, method: str | None = None, path_re: str = "", status: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for m, p, s in self.requests
                if (method is None or m == method)
                and re.search(path_re, p)
                and (status is None or s == status)
            )

    # --- request handling ----------------------------------------------------------------------

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = unquote(parts.path)
        status, reason, payload = 200, "OK", {"data": None}
        try:
            if not path.startswith("/api2/json/"):
                raise ApiError(501, f"Unsupported path '{path}'")
            rel = path.removeprefix("/api2/json/").rstrip("/")
            self._authorize(req.command, rel, req.headers.get("Authorization", ""))
            with self.lock:
                self._advance()
                payload = {"data": self._route(req.command, rel, query | form)}
                self._mirror()
        except ApiError as err:
            status, reason = err.status, err.reason
            payload = {"data": None}
            if err.errors:
                payload["errors"] = err.errors
        with self.lock:
            self.requests.append((req.command, path, status))
        raw = json.dumps(payload).encode()
        req.send_response(status, reason)
        req.send_header("Content-Type", "application/json;charset=UTF-8")
        req.send_header("Content-Length", str(len(raw)))
        req.end_headers()
        req.wfile.write(raw)

    def _authorize(self, method: str, rel: str, header: str) -> None:
        if not header.startswith("PVEAPIToken="):
            raise ApiError(401, "No ticket")
        token_id, sep, secret = header.removeprefix("PVEAPIToken=").partition("=")
        user, _, name = token_id.partition("!")
        if not sep or not name:
            raise ApiError(401, "invalid token value!")
        if token_id not in self.tokens:
            raise ApiError(401, f"no such token '{name}' for user '{user}'")
        if self.tokens[token_id] != secret:
            raise ApiError(401, "invalid token value!")
        if method != "GET" and token_id in self.readonly_tokens:
            match = re.search(r"/(lxc|qemu)/(\d+)", rel)
            where = f"/vms/{match.group(2)}" if match else "/"
            raise ApiError(403, f"Permission check failed ({where}, VM.PowerMgmt)")

    def _route(self, method: str, rel: str, args: dict[str, str]) -> Any:
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            (
                "GET",
                r"version",
                lambda: {"version": "8.2.4", "release": "8.2", "repoid": "faa83925"},
            ),
            ("GET", r"cluster/status", self._cluster_status),
            ("GET", r"cluster/resources", lambda: self._resources(args.get("type"))),
            ("GET", r"cluster/backup", lambda: copy.deepcopy(self.backup_jobs)),
            ("GET", r"cluster/backup-info/not-backed-up", self._not_backed_up),
            ("GET", r"cluster/ha/status/current", self._ha_current),
            ("GET", r"cluster/ha/resources", lambda: list(self.ha_resources.values())),
            ("GET", r"nodes", self._nodes),
            ("GET", r"nodes/(?P<node>[^/]+)/status", self._node_status),
            ("GET", r"nodes/(?P<node>[^/]+)/storage", lambda node: self._storage(node, args)),
            (
                "GET",
                r"nodes/(?P<node>[^/]+)/storage/(?P<store>[^/]+)/content",
                lambda node, store: self._content(node, store, args),
            ),
            ("GET", r"nodes/(?P<node>[^/]+)/tasks", lambda node: self._task_list(node, args)),
            ("GET", r"nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/status", self._task_status),
            ("GET", r"nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/log", self._task_log),
            ("GET", r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)", self._guest_list),
            (
                "GET",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/status/current",
                self._status_current,
            ),
            ("GET", r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/config", self._config),
            (
                "PUT",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/config",
                lambda **kw: self._set_config(args=args, sync=True, **kw),
            ),
            (
                "POST",
                r"nodes/(?P<node>[^/]+)/(?P<kind>qemu)/(?P<vmid>\d+)/config",
                lambda **kw: self._set_config(args=args, sync=False, **kw),
            ),
            ("GET", r"nodes/(?P<node>[^/]+)/(?P<kind>qemu)/(?P<vmid>\d+)/pending", self._pending),
            (
                "POST",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/status/(?P<op>start|shutdown|stop|reboot)",
                lambda **kw: self._power(args=args, **kw),
            ),
            (
                "GET",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/snapshot",
                self._snapshot_list,
            ),
            (
                "POST",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/snapshot",
                lambda **kw: self._snapshot_create(args=args, **kw),
            ),
            (
                "GET",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/snapshot/(?P<snap>[^/]+)/config",
                self._snapshot_config,
            ),
            (
                "DELETE",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/snapshot/(?P<snap>[^/]+)",
                self._snapshot_delete,
            ),
            (
                "POST",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/snapshot/(?P<snap>[^/]+)/rollback",
                lambda **kw: self._snapshot_rollback(args=args, **kw),
            ),
            (
                "GET",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/feature",
                lambda **kw: self._feature(args=args, **kw),
            ),
            (
                "PUT",
                r"nodes/(?P<node>[^/]+)/(?P<kind>lxc|qemu)/(?P<vmid>\d+)/resize",
                lambda **kw: self._resize(args=args, **kw),
            ),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, rel)
            if match and verb == method:
                kwargs = match.groupdict()
                node = kwargs.get("node")
                if node is not None:
                    if node not in self.nodes:
                        raise ApiError(
                            500,
                            f"hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known",
                        )
                    if not self.nodes[node].online:
                        raise ApiError(595, "No route to host")
                return handler(**kwargs)
        raise ApiError(501, f"Method '{method} /{rel}' not implemented")

    # --- helpers -------------------------------------------------------------------------------

    def _next_pid(self) -> int:
        self._pid += 7
        return self._pid

    def _guest(self, node: str, kind: str, vmid: str) -> Guest:
        guest = self.guests.get(int(vmid))
        if guest is None or guest.node != node or guest.type != kind:
            suffix = "lxc" if kind == "lxc" else "qemu-server"
            raise ApiError(
                500, f"Configuration file 'nodes/{node}/{suffix}/{vmid}.conf' does not exist"
            )
        return guest

    def _check_lock(self, guest: Guest) -> None:
        if guest.lock:
            raise ApiError(500, f"{guest.kind} is locked ({guest.lock})")

    def _ha_status(self, sid: str) -> dict[str, Any]:
        if sid not in self.ha_resources:
            return {"managed": 0}
        return {"managed": 1, "state": self.ha_resources[sid].get("state", "started")}

    def _task(
        self,
        guest: Guest | None,
        node: str,
        type: str,
        effect: Callable[[], str | None],
        lock: str | None = None,
        delay: float | None = None,
    ) -> str:
        now = int(time.time())
        pid = self._next_pid()
        ident = str(guest.vmid) if guest else ""
        upid = f"UPID:{node}:{pid:08X}:{pid * 13:08X}:{now:08X}:{type}:{ident}:root@pam!homelab:"
        failure = self.fail.pop((guest.vmid, type), None) if guest else None
        if lock and guest is not None:
            guest.lock = lock

        def run() -> str | None:
            if guest is not None and lock:
                guest.lock = None
            if failure:
                return failure
            return effect()

        self.tasks[upid] = Task(
            upid=upid,
            node=node,
            type=type,
            id=ident,
            user="root@pam!homelab",
            starttime=now,
            finish_at=time.monotonic() + (self.task_delay if delay is None else delay),
            effect=run,
            pid=pid,
            pstart=pid * 13,
            log=[f"starting {type} {ident}".strip()],
        )
        return upid

    def _advance(self) -> None:
        now = time.monotonic()
        due = [t for t in self.ha_transitions if now >= t[0]]
        self.ha_transitions = [t for t in self.ha_transitions if now < t[0]]
        for _, effect in due:
            effect()
        for task in self.tasks.values():
            if not task.done and now >= task.finish_at:
                try:
                    error = task.effect()
                except ApiError as err:
                    error = err.reason
                task.exitstatus = error or "OK"
                task.endtime = int(time.time())
                task.log.append(f"TASK ERROR: {error}" if error else "TASK OK")

    def settle(self) -> None:
        """Finish every task whose time has come (tests inspect state after this)."""
        with self.lock:
            self._advance()
            self._mirror()

    def _mirror(self) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for guest in self.guests.values():
            if guest.type != "lxc":
                continue
            path = self.state_dir / f"ct-{guest.vmid}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"status": guest.status, "node": guest.node}))
            os.replace(tmp, path)

    def node_used(self, node: str) -> int:
        return self.nodes[node].base_used + sum(
            g.mem for g in self.guests.values() if g.node == node
        )

    # --- cluster -------------------------------------------------------------------------------

    def _cluster_status(self) -> list[dict[str, Any]]:
        online = [n for n in self.nodes.values() if n.online]
        rows: list[dict[str, Any]] = []
        if len(self.nodes) > 1:
            rows.append(
                {
                    "type": "cluster",
                    "id": "cluster",
                    "name": self.cluster,
                    "nodes": len(self.nodes),
                    "quorate": int(len(online) * 2 > len(self.nodes)),
                    "version": 5,
                }
            )
        for i, node in enumerate(self.nodes.values(), start=1):
            rows.append(
                {
                    "type": "node",
                    "id": f"node/{node.name}",
                    "name": node.name,
                    "ip": node.ip,
                    "online": int(node.online),
                    "local": int(i == 1),
                    "nodeid": i,
                    "level": "",
                }
            )
        return rows

    def _guest_resource(self, g: Guest) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": f"{g.type}/{g.vmid}",
            "type": g.type,
            "vmid": g.vmid,
            "node": g.node,
            "name": g.name,
            "status": g.status if self.nodes[g.node].online else "unknown",
            "maxmem": g.maxmem,
            "mem": g.mem,
            "maxcpu": int(g.config.get("cores", 1)),
            "cpu": g.cpu if g.status == "running" else 0,
            "maxdisk": _disk_size(str(g.config.get("rootfs") or g.config.get("scsi0") or "")),
            "disk": g.disk_used if g.type == "lxc" else 0,
            "uptime": int(time.time() - g.started) if g.status == "running" else 0,
            "template": int(g.template),
        }
        if g.config.get("tags"):
            row["tags"] = g.config["tags"]
        sid = f"{'ct' if g.type == 'lxc' else 'vm'}:{g.vmid}"
        if sid in self.ha_resources:
            row["hastate"] = self.ha_resources[sid].get("state", "started")
        if g.lock:
            row["lock"] = g.lock
        return row

    def _resources(self, kind: str | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if kind in (None, "vm"):
            rows += [self._guest_resource(g) for g in self.guests.values()]
        if kind in (None, "node"):
            rows += [
                {
                    "id": f"node/{n.name}",
                    "type": "node",
                    "node": n.name,
                    "status": "online" if n.online else "offline",
                    "maxmem": n.memory_total,
                    "mem": self.node_used(n.name) if n.online else 0,
                    "maxcpu": n.cpus,
                    "cpu": n.cpu if n.online else 0,
                }
                for n in self.nodes.values()
            ]
        if kind in (None, "storage"):
            for node, stores in self.storages.items():
                for s in stores.values():
                    rows.append(
                        {
                            "id": f"storage/{node}/{s['storage']}",
                            "type": "storage",
                            "storage": s["storage"],
                            "node": node,
                            "status": "available" if self.nodes[node].online else "unknown",
                            "plugintype": s["type"],
                            "maxdisk": s["total"],
                            "disk": s["used"],
                            "content": s["content"],
                            "shared": s["shared"],
                        }
                    )
        return rows

    def _covered(self, g: Guest) -> bool:
        for job in self.backup_jobs:
            if str(job.get("enabled", 1)) == "0":
                continue
            excluded = {int(v) for v in str(job.get("exclude", "")).split(",") if v}
            if str(job.get("all", 0)) == "1" and g.vmid not in excluded:
                return True
            if g.vmid in {int(v) for v in str(job.get("vmid", "")).split(",") if v}:
                return True
        return False

    def _not_backed_up(self) -> list[dict[str, Any]]:
        return [
            {"vmid": g.vmid, "name": g.name, "type": g.type}
            for g in self.guests.values()
            if not g.template and not self._covered(g)
        ]

    def _ha_current(self) -> list[dict[str, Any]]:
        if not self.ha_resources:
            return [
                {
                    "id": "quorum",
                    "type": "quorum",
                    "node": next(iter(self.nodes)),
                    "status": "OK",
                    "quorate": 1,
                }
            ]
        first = next(iter(self.nodes))
        rows: list[dict[str, Any]] = [
            {"id": "quorum", "type": "quorum", "node": first, "status": "OK", "quorate": 1},
            {
                "id": "master",
                "type": "master",
                "node": first,
                "status": "active",
                "timestamp": int(time.time()),
            },
        ]
        rows += [
            {
                "id": f"lrm:{n.name}",
                "type": "lrm",
                "node": n.name,
                "status": "active" if n.online else "old timestamp - dead?",
            }
            for n in self.nodes.values()
        ]
        for sid, res in self.ha_resources.items():
            vmid = int(sid.split(":")[1])
            guest = self.guests.get(vmid)
            rows.append(
                {
                    "id": f"service:{sid}",
                    "type": "service",
                    "sid": sid,
                    "node": guest.node if guest else first,
                    "state": res.get("crm_state", res.get("state", "started")),
                    "request_state": res.get("state", "started"),
                    "crm_state": res.get("crm_state", "started"),
                    "status": f"{sid} ({guest.node if guest else first}, {res.get('crm_state', 'started')})",
                }
            )
        return rows

    # --- nodes ---------------------------------------------------------------------------------

    def _nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "node": n.name,
                "id": f"node/{n.name}",
                "type": "node",
                "status": "online" if n.online else "offline",
                "cpu": n.cpu if n.online else 0,
                "maxcpu": n.cpus,
                "mem": self.node_used(n.name) if n.online else 0,
                "maxmem": n.memory_total,
                "disk": n.rootfs_used,
                "maxdisk": n.rootfs_total,
                "uptime": n.uptime if n.online else 0,
                "level": "",
            }
            for n in self.nodes.values()
        ]

    def _node_status(self, node: str) -> dict[str, Any]:
        n = self.nodes[node]
        used = self.node_used(node)
        return {
            "cpu": n.cpu,
            "wait": 0.001,
            "idle": 0,
            "loadavg": [f"{x:.2f}" for x in n.loadavg],
            "memory": {"total": n.memory_total, "used": used, "free": n.memory_total - used},
            "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
            "rootfs": {
                "total": n.rootfs_total,
                "used": n.rootfs_used,
                "free": n.rootfs_total - n.rootfs_used,
                "avail": n.rootfs_total - n.rootfs_used,
            },
            "cpuinfo": {
                "cpus": n.cpus,
                "model": "Fake CPU @ 3.00GHz",
                "sockets": 1,
                "cores": n.cpus,
            },
            "uptime": n.uptime,
            "pveversion": "pve-manager/8.2.4/faa83925c9641325",
            "kversion": "Linux 6.8.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2",
            "ksm": {"shared": 0},
        }

    def _storage(self, node: str, args: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        for s in self.storages.get(node, {}).values():
            if args.get("content") and args["content"] not in s["content"].split(","):
                continue
            used = s["used"] + sum(
                _disk_size(str(v))
                for g in self.guests.values()
                for k, v in g.config.items()
                if re.fullmatch(r"rootfs|mp\d+|scsi\d+|virtio\d+", k)
                and str(v).startswith(f"{s['storage']}:")
                and g.node == node
            )
            rows.append(
                s | {"used": used, "avail": s["total"] - used, "used_fraction": used / s["total"]}
            )
        return rows

    def _content(self, node: str, store: str, args: dict[str, str]) -> list[dict[str, Any]]:
        if store not in self.storages.get(node, {}):
            raise ApiError(500, f"storage '{store}' does not exist")
        rows: list[dict[str, Any]] = []
        for item in self.backups:
            if item["storage"] == store and (
                item["node"] == node or self.storages[node][store]["shared"]
            ):
                rows.append({k: v for k, v in item.items() if k not in ("node", "storage")})
        for g in self.guests.values():
            for key, value in g.config.items():
                if re.fullmatch(r"rootfs|mp\d+|scsi\d+|virtio\d+", key) and str(value).startswith(
                    f"{store}:"
                ):
                    rows.append(
                        {
                            "volid": str(value).split(",")[0],
                            "content": "rootdir" if g.type == "lxc" else "images",
                            "size": _disk_size(str(value)),
                            "vmid": g.vmid,
                            "format": "raw",
                            "ctime": int(g.started or time.time()),
                        }
                    )
        if args.get("content"):
            rows = [r for r in rows if r["content"] == args["content"]]
        return rows

    # --- tasks ---------------------------------------------------------------------------------

    def _task_list(self, node: str, args: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        for t in sorted(self.tasks.values(), key=lambda t: (t.starttime, t.pid), reverse=True):
            if t.node != node:
                continue
            if args.get("vmid") and t.id != args["vmid"]:
                continue
            if args.get("typefilter") and t.type != args["typefilter"]:
                continue
            if args.get("errors") in ("1", "true") and (not t.done or t.exitstatus == "OK"):
                continue
            row: dict[str, Any] = {
                "upid": t.upid,
                "node": t.node,
                "pid": t.pid,
                "pstart": t.pstart,
                "starttime": t.starttime,
                "type": t.type,
                "id": t.id,
                "user": t.user,
            }
            if t.done:
                row["status"] = t.exitstatus
                row["endtime"] = t.endtime
            rows.append(row)
        return rows[: int(args.get("limit", 50))]

    def _get_task(self, node: str, upid: str) -> Task:
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise ApiError(
                500,
                f"unable to parse worker upid '{upid}'"
                if not upid.startswith("UPID:")
                else "no such task",
            )
        return task

    def _task_status(self, node: str, upid: str) -> dict[str, Any]:
        t = self._get_task(node, upid)
        row: dict[str, Any] = {
            "upid": t.upid,
            "node": t.node,
            "pid": t.pid,
            "pstart": t.pstart,
            "starttime": t.starttime,
            "type": t.type,
            "id": t.id,
            "user": t.user,
            "status": "stopped" if t.done else "running",
        }
        if t.done:
            row["exitstatus"] = t.exitstatus
        return row

    def _task_log(self, node: str, upid: str) -> list[dict[str, Any]]:
        t = self._get_task(node, upid)
        return [{"n": i, "t": line} for i, line in enumerate(t.log, start=1)]

    def add_finished_task(
        self, vmid: int | None, node: str, type: str, exitstatus: str, age_seconds: float = 3600
    ) -> str:
        guest = self.guests.get(vmid) if vmid else None
        upid = self._task(
            guest, node, type, lambda: None if exitstatus == "OK" else exitstatus, delay=0
        )
        task = self.tasks[upid]
        task.starttime = int(time.time() - age_seconds)
        self._advance()
        return upid

    # --- guests --------------------------------------------------------------------------------

    def _guest_list(self, node: str, kind: str) -> list[dict[str, Any]]:
        return [
            self._guest_resource(g)
            for g in self.guests.values()
            if g.node == node and g.type == kind
        ]

    def _status_current(self, node: str, kind: str, vmid: str) -> dict[str, Any]:
        g = self._guest(node, kind, vmid)
        maxswap = int(g.config.get("swap", 0)) * MIB if kind == "lxc" else 0
        row: dict[str, Any] = {
            "vmid": g.vmid,
            "name": g.name,
            "status": g.status,
            "type": kind,
            "cpus": int(g.config.get("cores", 1)),
            "cpu": g.cpu if g.status == "running" else 0,
            "mem": g.mem,
            "maxmem": g.maxmem,
            "swap": 0,
            "maxswap": maxswap,
            "disk": g.disk_used if kind == "lxc" and g.status == "running" else 0,
            "maxdisk": _disk_size(str(g.config.get("rootfs") or g.config.get("scsi0") or "")),
            "uptime": int(time.time() - g.started) if g.status == "running" else 0,
            "netin": 123456,
            "netout": 65432,
            "diskread": 0,
            "diskwrite": 0,
            "ha": self._ha_status(f"{'ct' if kind == 'lxc' else 'vm'}:{g.vmid}"),
        }
        if g.status == "running":
            row["pid"] = g.pid
        if kind == "qemu":
            row["qmpstatus"] = g.status
            row["agent"] = 0
        if g.lock:
            row["lock"] = g.lock
        if g.template:
            row["template"] = 1
        return row

    def _config(self, node: str, kind: str, vmid: str) -> dict[str, Any]:
        g = self._guest(node, kind, vmid)
        data = copy.deepcopy(g.config)
        data["digest"] = f"{abs(hash(json.dumps(g.config, sort_keys=True))):040x}"[:40]
        if g.lock:
            data["lock"] = g.lock
        return data

    def _pending(self, node: str, kind: str, vmid: str) -> list[dict[str, Any]]:
        g = self._guest(node, kind, vmid)
        rows = []
        for key, value in g.config.items():
            row = {"key": key, "value": value}
            if key in g.pending:
                row["pending"] = g.pending[key]
            rows.append(row)
        return rows

    def _apply_config(self, g: Guest, args: dict[str, str]) -> None:
        errors: dict[str, str] = {}
        allowed = {"memory", "swap", "cores", "delete", "digest", "onboot", "description", "tags"}
        for key in args:
            if key not in allowed:
                errors[key] = (
                    "property is not defined in schema and the schema does not allow additional properties"
                )
        if "memory" in args and (not args["memory"].isdigit() or int(args["memory"]) < 16):
            errors["memory"] = "value must have a minimum value of 16"
        if "swap" in args and (not args["swap"].isdigit()):
            errors["swap"] = "type check ('integer') failed - got '" + args["swap"] + "'"
        if "swap" in args and g.type == "qemu":
            errors["swap"] = (
                "property is not defined in schema and the schema does not allow additional properties"
            )
        if "cores" in args and (not args["cores"].isdigit() or not 1 <= int(args["cores"]) <= 8192):
            errors["cores"] = "value must have a minimum value of 1"
        if errors:
            raise ApiError(400, "Parameter verification failed.", errors)
        changes = {k: v for k, v in args.items() if k not in ("delete", "digest")}
        if g.type == "qemu" and g.status == "running":
            hotplug = str(g.config.get("hotplug", "network,disk,usb"))
            for key, value in changes.items():
                if key == "memory" and "memory" not in hotplug:
                    g.pending[key] = value
                else:
                    g.config[key] = value
        else:
            for key, value in changes.items():
                g.config[key] = int(value) if str(value).isdigit() else value
        for key in [k for k in str(args.get("delete", "")).split(",") if k]:
            g.config.pop(key, None)

    def _set_config(self, node: str, kind: str, vmid: str, args: dict[str, str], sync: bool) -> Any:
        g = self._guest(node, kind, vmid)
        self._check_lock(g)
        if sync:
            self._apply_config(g, args)
            return None
        # Validate before forking, as qemu-server does, then apply in the worker.
        self._apply_config(copy.deepcopy(g), args)
        return self._task(g, node, "qmconfig", lambda: self._apply_config(g, args))

    def _power(self, node: str, kind: str, vmid: str, op: str, args: dict[str, str]) -> str:
        g = self._guest(node, kind, vmid)
        self._check_lock(g)
        prefix = "vz" if kind == "lxc" else "qm"
        if op == "start" and g.status == "running":
            raise ApiError(500, f"{g.kind} {g.vmid} already running")
        if op in ("shutdown", "reboot", "stop") and g.status != "running":
            raise ApiError(500, f"{g.kind} {g.vmid} not running")

        def start() -> str | None:
            if g.status == "running":
                return f"{g.kind} {g.vmid} already running"
            g.status = "running"
            g.pid = self._next_pid()
            g.started = time.time()
            for key, value in list(g.pending.items()):
                g.config[key] = value
            g.pending.clear()
            return None

        def stop() -> str | None:
            g.status = "stopped"
            g.pid = 0
            return None

        def reboot() -> str | None:
            stop()
            return start()

        effect = {"start": start, "shutdown": stop, "stop": stop, "reboot": reboot}[op]
        sid = f"{'ct' if kind == 'lxc' else 'vm'}:{g.vmid}"
        if sid in self.ha_resources and op in ("start", "shutdown", "stop"):
            # pve-container/qemu-server: an HA-managed guest's start or stop only asks the HA
            # stack (`ha-manager set <sid> --state ...` in a hastart/hastop task, which ends at
            # once); the LRM acts later.
            return self._task(
                g, node, "hastart" if op == "start" else "hastop", self._ha_request(sid, op, effect)
            )
        return self._task(g, node, f"{prefix}{op}", effect)

    def _ha_request(
        self, sid: str, op: str, effect: Callable[[], str | None]
    ) -> Callable[[], str | None]:
        def request() -> str | None:
            resource = self.ha_resources[sid]
            if resource.get("state") == "error":
                return f"service '{sid}' in error state, must be disabled and fixed first"
            resource["state"] = "started" if op == "start" else "stopped"
            if not resource.get("stuck"):  # stuck: the HA stack never acts (LRM down)
                self.ha_transitions.append((time.monotonic() + self.ha_delay, effect))
            return None

        return request

    def _snapshot_list(self, node: str, kind: str, vmid: str) -> list[dict[str, Any]]:
        g = self._guest(node, kind, vmid)
        rows: list[dict[str, Any]] = []
        for name, snap in g.snapshots.items():
            row = {"name": name, "description": snap["description"], "snaptime": snap["snaptime"]}
            if snap.get("parent"):
                row["parent"] = snap["parent"]
            rows.append(row)
        current: dict[str, Any] = {
            "name": "current",
            "description": "You are here!",
            "running": int(g.status == "running"),
        }
        if g.config.get("parent"):
            current["parent"] = g.config["parent"]
        return [*rows, current]

    def _snapshot_create(self, node: str, kind: str, vmid: str, args: dict[str, str]) -> str:
        g = self._guest(node, kind, vmid)
        name = args.get("snapname", "")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]+", name) or len(name) > 40:
            raise ApiError(
                400,
                "Parameter verification failed.",
                {"snapname": "invalid format - invalid configuration ID '" + name + "'"},
            )
        self._check_lock(g)

        def effect() -> str | None:
            if name in g.snapshots:
                return f"snapshot name '{name}' already used"
            if not g.snapshot_capable:
                return "snapshot feature is not available"
            config = {k: v for k, v in g.config.items() if k not in ("parent", "lock")}
            g.snapshots[name] = {
                "description": args.get("description", "") + "\n",
                "snaptime": int(time.time()),
                "parent": g.config.get("parent"),
                "config": copy.deepcopy(config),
            }
            g.config["parent"] = name
            return None

        return self._task(
            g, node, "vzsnapshot" if kind == "lxc" else "qmsnapshot", effect, lock="snapshot"
        )

    def _snapshot_config(self, node: str, kind: str, vmid: str, snap: str) -> dict[str, Any]:
        g = self._guest(node, kind, vmid)
        if snap not in g.snapshots:
            raise ApiError(500, f"snapshot '{snap}' does not exist")
        data = copy.deepcopy(g.snapshots[snap]["config"])
        data["snaptime"] = g.snapshots[snap]["snaptime"]
        if g.snapshots[snap].get("parent"):
            data["parent"] = g.snapshots[snap]["parent"]
        return data

    def _snapshot_delete(self, node: str, kind: str, vmid: str, snap: str) -> str:
        g = self._guest(node, kind, vmid)
        self._check_lock(g)

        def effect() -> str | None:
            if snap not in g.snapshots:
                return f"snapshot '{snap}' does not exist"
            parent = g.snapshots.pop(snap).get("parent")
            for other in g.snapshots.values():
                if other.get("parent") == snap:
                    other["parent"] = parent
            if g.config.get("parent") == snap:
                if parent:
                    g.config["parent"] = parent
                else:
                    g.config.pop("parent", None)
            return None

        return self._task(
            g,
            node,
            "vzdelsnapshot" if kind == "lxc" else "qmdelsnapshot",
            effect,
            lock="snapshot-delete",
        )

    def _snapshot_rollback(
        self, node: str, kind: str, vmid: str, snap: str, args: dict[str, str]
    ) -> str:
        g = self._guest(node, kind, vmid)
        self._check_lock(g)
        start_after = args.get("start") in ("1", "true")

        def effect() -> str | None:
            if snap not in g.snapshots:
                return f"snapshot '{snap}' does not exist"
            g.status = "stopped"
            g.pid = 0
            g.config = copy.deepcopy(g.snapshots[snap]["config"])
            g.config["parent"] = snap
            g.pending.clear()
            if start_after:
                g.status = "running"
                g.pid = self._next_pid()
                g.started = time.time()
            return None

        return self._task(
            g, node, "vzrollback" if kind == "lxc" else "qmrollback", effect, lock="rollback"
        )

    def _feature(self, node: str, kind: str, vmid: str, args: dict[str, str]) -> dict[str, Any]:
        g = self._guest(node, kind, vmid)
        if args.get("feature") not in ("snapshot", "clone", "copy"):
            raise ApiError(
                400,
                "Parameter verification failed.",
                {
                    "feature": "value '"
                    + args.get("feature", "")
                    + "' does not have a value in the enumeration 'snapshot, clone, copy'"
                },
            )
        has = g.snapshot_capable if args["feature"] == "snapshot" else True
        return (
            {"hasFeature": int(has)} if kind == "lxc" else {"hasFeature": int(has), "nodes": [node]}
        )

    def _resize(self, node: str, kind: str, vmid: str, args: dict[str, str]) -> str:
        g = self._guest(node, kind, vmid)
        self._check_lock(g)
        disk = args.get("disk", "")
        if disk not in g.config:
            raise ApiError(
                500,
                f"unable to parse volume ID '{disk}'"
                if kind == "lxc"
                else f"disk '{disk}' does not exist",
            )
        text = args.get("size", "")
        grow = text.startswith("+")
        amount = _size(text.lstrip("+"))

        def effect() -> str | None:
            current = _disk_size(str(g.config[disk]))
            wanted = current + amount if grow else amount
            if wanted < current:
                return "unable to shrink disk size"
            g.config[disk] = _with_size(str(g.config[disk]), wanted)
            return None

        return self._task(g, node, "resize", effect)


@contextmanager
def running(fake: FakePVE) -> Iterator[FakePVE]:
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
