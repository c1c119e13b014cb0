"""A fake AdGuard Home, written from its OpenAPI description (openapi/openapi.yaml, ``/control``).

What it models, because the toolset depends on it:

* basic auth of a web user on every ``/control`` path; missing or wrong credentials answer
  ``401`` with an empty body (AdGuard's auth middleware);
* errors as Go's ``http.Error``: ``text/plain`` lines (``json decode: ...``, an invalid upstream
  in ``/dns_config`` is ``400 validating dns config: upstream servers: ...``);
* ``/status``, ``/dns_info`` and ``/dns_config`` (only the fields sent change), ``/protection``
  (``enabled``, ``duration`` ms → ``protection_disabled_duration``), ``/test_upstream_dns``
  (``OK`` or the error text per upstream, from the fake's upstream health),
  ``/filtering/status``, ``/filtering/refresh`` (``{"updated": N}``: lists whose source answers
  get today's rules), ``/stats``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from tests.fakes.httpfake import FakeServer, Reply, Request, text_error

VERSION = "v0.107.57"


def _stamp(age: timedelta) -> str:
    return (datetime.now(UTC) - age).isoformat(timespec="seconds")


class FakeAdGuard:
    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username, password)
        self.requests: list[Request] = []
        self.protection = True
        self.paused_ms = 0
        self.upstreams = ["https://dns.quad9.net/dns-query", "tls://1.1.1.1", "8.8.8.8"]
        self.bootstrap = ["9.9.9.10", "149.112.112.10"]
        self.fallback: list[str] = []
        # upstream → "OK" or the error AdGuard reports for it
        self.health: dict[str, str] = {u: "OK" for u in self.upstreams}
        self.filters = [
            {
                "id": 1,
                "name": "AdGuard DNS filter",
                "url": "https://adguardteam.github.io/HostlistsRegistry/assets/filter_1.txt",
                "enabled": True,
                "rules_count": 58210,
                "last_updated": _stamp(timedelta(hours=5)),
            },
            {
                "id": 2,
                "name": "OISD Big",
                "url": "https://big.oisd.nl",
                "enabled": True,
                "rules_count": 210334,
                "last_updated": _stamp(timedelta(days=9)),
            },
            {
                "id": 3,
                "name": "Old list",
                "url": "https://example.invalid/list.txt",
                "enabled": False,
                "rules_count": 0,
                "last_updated": None,
            },
        ]
        self.unreachable_lists: set[str] = set()
        self.stats = {
            "num_dns_queries": 12840,
            "num_blocked_filtering": 1630,
            "avg_processing_time": 0.021,
        }
        self.server = FakeServer(self)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def fail_upstream(self, upstream: str, error: str | None = None) -> None:
        host = upstream.split("://")[-1].split("/")[0]
        self.health[upstream] = error or (
            f'upstream "{upstream}" fails to exchange: couldn\'t communicate with upstream: '
            f"dial tcp {host}:853: i/o timeout"
        )

    def _authorized(self, request: Request) -> bool:
        header = request.header("authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == self.credentials

    def answer(self, request: Request) -> Reply:
        if not request.path.startswith("/control/"):
            return Reply(404, "404 page not found\n", content_type="text/plain; charset=utf-8")
        if not self._authorized(request):
            return Reply(401)
        route = (request.method, request.path.removeprefix("/control"))
        handler = {
            ("GET", "/status"): self._status,
            ("GET", "/dns_info"): self._dns_info,
            ("POST", "/dns_config"): self._dns_config,
            ("POST", "/protection"): self._protection,
            ("POST", "/test_upstream_dns"): self._test_upstreams,
            ("GET", "/filtering/status"): self._filtering,
            ("POST", "/filtering/refresh"): self._refresh,
            ("GET", "/stats"): self._stats,
        }.get(route)
        if handler is None:
            return text_error(404, "404 page not found")
        if request.method == "POST" and request.raw and request.body is None:
            return text_error(400, "json decode: invalid character")
        return handler(request)

    def _status(self, request: Request) -> Reply:
        return Reply(
            body={
                "dns_addresses": ["192.168.1.2"],
                "dns_port": 53,
                "http_port": 3000,
                "protection_enabled": self.protection,
                "protection_disabled_duration": self.paused_ms,
                "dhcp_available": False,
                "running": True,
                "version": VERSION,
                "language": "en",
            }
        )

    def _dns_info(self, request: Request) -> Reply:
        return Reply(
            body={
                "upstream_dns": list(self.upstreams),
                "bootstrap_dns": list(self.bootstrap),
                "fallback_dns": list(self.fallback),
                "upstream_mode": "load_balance",
                "protection_enabled": self.protection,
                "ratelimit": 20,
                "blocking_mode": "default",
                "cache_size": 4194304,
                "default_local_ptr_upstreams": [],
            }
        )

    def _dns_config(self, request: Request) -> Reply:
        body = request.body or {}
        if "upstream_dns" in body:
            for value in body["upstream_dns"]:
                if not isinstance(value, str) or " " in value.strip() or not value.strip():
                    return text_error(
                        400,
                        f"validating dns config: upstream servers: bad upstream for line: {value!r}",
                    )
            self.upstreams = list(body["upstream_dns"])
        if "protection_enabled" in body:
            self.protection = bool(body["protection_enabled"])
        return Reply(200)

    def _protection(self, request: Request) -> Reply:
        body = request.body or {}
        if "enabled" not in body:
            return text_error(400, "json decode: enabled is required")
        self.protection = bool(body["enabled"])
        self.paused_ms = 0 if self.protection else int(body.get("duration") or 0)
        return Reply(200)

    def _test_upstreams(self, request: Request) -> Reply:
        body = request.body or {}
        if not isinstance(body.get("upstream_dns"), list) or "bootstrap_dns" not in body:
            return text_error(400, "json decode: upstream_dns and bootstrap_dns are required")
        result = {}
        for upstream in body["upstream_dns"]:
            result[upstream] = self.health.get(upstream, "OK")
        return Reply(body=result)

    def _filtering(self, request: Request) -> Reply:
        return Reply(
            body={
                "enabled": True,
                "interval": 24,
                "filters": self.filters,
                "whitelist_filters": [],
                "user_rules": ["||ads.example^"],
            }
        )

    def _refresh(self, request: Request) -> Reply:
        updated = 0
        for f in self.filters:
            if f["enabled"] and f["url"] not in self.unreachable_lists:
                f["last_updated"] = _stamp(timedelta(0))
                f["rules_count"] = int(f["rules_count"] or 1000) + 17
                updated += 1
        return Reply(body={"updated": updated})

    def _stats(self, request: Request) -> Reply:
        slow = {u: (5.0 if self.health.get(u, "OK") != "OK" else 0.012) for u in self.upstreams}
        return Reply(
            body={
                "time_units": "hours",
                **self.stats,
                "top_upstreams_responses": [{u: 4000} for u in self.upstreams],
                "top_upstreams_avg_time": [{u: t} for u, t in slow.items()],
                "top_queried_domains": [],
                "top_blocked_domains": [],
                "top_clients": [],
            }
        )
