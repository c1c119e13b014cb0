"""A fake UniFi Network application (self-hosted controller API), written from the community
documentation of the controller API (the Network application has no official spec for it).

What it models, because the toolset depends on it:

* ``POST /api/login`` (``username``, ``password``) sets the ``unifises`` session cookie and a
  ``csrf_token`` (also sent as ``X-CSRF-Token``); a wrong password is ``400
  {"meta":{"rc":"error","msg":"api.err.Invalid"},"data":[]}``; five bad logins in a row answer
  ``429 api.err.LoginRateLimited`` with ``Retry-After``;
* every ``/api/...`` call without a live session answers ``401 api.err.LoginRequired``;
  ``expire_sessions()`` ends them (as a controller restart does); POSTs need the CSRF header;
* ``/api/self/sites``, ``/api/s/{site}/stat/device`` (``state`` codes, ``uptime``, ``version``,
  ``upgradable``, ``num_sta``, ``uplink``/``last_uplink``, ``port_table`` with PoE fields),
  ``/stat/sta``, ``/list/alarm``, ``/cmd/devmgr`` (``restart``, ``power-cycle`` with
  ``port_idx``; an unknown MAC or a port without PoE is ``400 api.err.Invalid...``);
* behaviour: a device restarted or whose PoE port was cycled is disconnected, then connected
  again after ``boot_seconds`` with its uptime reset; a ``hung`` AP (disconnected from the
  controller) only comes back through a power cycle; the controller cannot restart it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.httpfake import FakeServer, Reply, Request


def meta_error(status: int, msg: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"meta": {"rc": "error", "msg": msg}, "data": []}, headers or {})


@dataclass
class Dev:
    mac: str
    name: str
    type: str  # uap | usw | ugw
    model: str
    state: int = 1
    booted: float = field(default_factory=lambda: time.time() - 14 * 86400)
    uplink: tuple[str, int] | None = None  # (switch mac, port)
    ports: dict[int, dict[str, Any]] = field(default_factory=dict)
    clients: int = 0
    hung: bool = False
    version: str = "6.6.77.15402"
    upgradable: bool = False

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "_id": self.mac.replace(":", ""),
            "mac": self.mac,
            "name": self.name,
            "type": self.type,
            "model": self.model,
            "state": self.state,
            "adopted": True,
            "ip": "192.168.1." + str(int(self.mac[-2:], 16)),
            "version": self.version,
            "upgradable": self.upgradable,
            "uptime": int(time.time() - self.booted) if self.state == 1 else 0,
            "last_seen": int(time.time()) if self.state == 1 else int(self.booted),
            "num_sta": self.clients if self.state == 1 else 0,
        }
        if self.upgradable:
            data["upgrade_to_firmware"] = "6.7.10.15500"
        if self.uplink:
            link = {
                "uplink_mac": self.uplink[0],
                "uplink_remote_port": self.uplink[1],
                "type": "wire",
            }
            data["uplink" if self.state == 1 else "last_uplink"] = link
        if self.ports:
            data["port_table"] = [{"port_idx": i, **p} for i, p in sorted(self.ports.items())]
        return data


class FakeUnifi:
    def __init__(
        self, username: str, password: str, site: str = "default", boot_seconds: float = 1.0
    ) -> None:
        self.username = username
        self.password = password
        self.site = site
        self.boot_seconds = boot_seconds
        self.sessions: dict[str, str] = {}  # cookie -> csrf
        self.bad_logins = 0
        self.devices: dict[str, Dev] = {}
        self.alarms: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.server = FakeServer(self)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def add(self, device: Dev) -> Dev:
        self.devices[device.mac] = device
        return device

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def hang(self, mac: str) -> None:
        """The AP stops answering its controller (state disconnected) until power-cycled."""
        device = self.devices[mac]
        device.state, device.hung = 0, True
        self.alarms.append(
            {
                "_id": secrets.token_hex(8),
                "key": "EVT_AP_Lost_Contact",
                "msg": f"AP[{mac}] was disconnected",
                "time": int(time.time() * 1000),
                "datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "ap": mac,
                "ap_name": device.name,
                "archived": False,
            }
        )

    def _reboot(self, device: Dev) -> None:
        device.state = 0

        def back() -> None:
            device.hung = False
            device.state = 1
            device.booted = time.time()

        threading.Timer(self.boot_seconds, back).start()

    def _session(self, request: Request) -> str | None:
        cookie = request.header("cookie") or ""
        for part in cookie.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "unifises" and value in self.sessions:
                return value
        return None

    def answer(self, request: Request) -> Reply:
        if request.path == "/api/login" and request.method == "POST":
            return self._login(request)
        session = self._session(request)
        if session is None:
            return meta_error(401, "api.err.LoginRequired")
        if request.method == "POST" and request.header("x-csrf-token") != self.sessions[session]:
            return meta_error(403, "api.err.InvalidCSRFToken")
        if request.path == "/api/self/sites":
            return Reply(
                body={
                    "meta": {"rc": "ok"},
                    "data": [
                        {"_id": "5f1a", "name": self.site, "desc": "Default", "role": "admin"}
                    ],
                }
            )
        prefix = f"/api/s/{self.site}"
        if not request.path.startswith(prefix + "/"):
            return meta_error(400, "api.err.NoSiteContext")
        path = request.path.removeprefix(prefix)
        if path == "/stat/device":
            return self._ok([d.json() for d in self.devices.values()])
        if path == "/stat/sta":
            stations = []
            for device in self.devices.values():
                if device.type == "uap" and device.state == 1:
                    stations += [
                        {
                            "mac": f"02:00:00:00:{int(device.mac[-2:], 16):02x}:{i:02x}",
                            "hostname": f"phone-{i}",
                            "ip": f"192.168.1.{100 + i}",
                            "is_wired": False,
                            "ap_mac": device.mac,
                            "signal": -61,
                        }
                        for i in range(device.clients)
                    ]
            return self._ok(stations)
        if path == "/list/alarm":
            archived = request.query.get("archived", ["true"])[0] == "true"
            return self._ok([a for a in self.alarms if archived or not a["archived"]])
        if path == "/cmd/devmgr" and request.method == "POST":
            return self._command(request.body or {})
        return meta_error(404, "api.err.NotFound")

    def _ok(self, data: list[Any]) -> Reply:
        return Reply(body={"meta": {"rc": "ok"}, "data": data})

    def _login(self, request: Request) -> Reply:
        body = request.body or {}
        if self.bad_logins >= 5:
            return meta_error(429, "api.err.LoginRateLimited", {"Retry-After": "30"})
        if body.get("username") != self.username or body.get("password") != self.password:
            self.bad_logins += 1
            return meta_error(400, "api.err.Invalid")
        self.bad_logins = 0
        cookie, csrf = secrets.token_hex(16), secrets.token_hex(16)
        self.sessions[cookie] = csrf
        return Reply(
            body={"meta": {"rc": "ok"}, "data": []},
            headers={"Set-Cookie": f"unifises={cookie}; Path=/; HttpOnly", "X-CSRF-Token": csrf},
        )

    def _command(self, body: dict[str, Any]) -> Reply:
        self.commands.append(dict(body))
        device = self.devices.get(str(body.get("mac", "")).lower())
        if device is None:
            return meta_error(400, "api.err.UnknownDevice")
        if body.get("cmd") == "restart":
            if device.state != 1:
                return meta_error(400, "api.err.DeviceNotConnected")
            self._reboot(device)
            return self._ok([])
        if body.get("cmd") == "power-cycle":
            port = device.ports.get(int(body.get("port_idx") or 0))
            if port is None or not port.get("port_poe") or port.get("poe_mode") == "off":
                return meta_error(400, "api.err.InvalidPortIdx")
            for other in self.devices.values():
                if other.uplink == (device.mac, int(body["port_idx"])):
                    self._reboot(other)
            return self._ok([])
        return meta_error(400, "api.err.InvalidCommand")
