"""The Alertmanager toolset (API v2), its client per target, and matchers as the API takes them."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, Toolset
from activities.toolsets.http import HttpApi
from activities.toolsets.prometheus.client import http_api
from core.targets import AlertmanagerTarget

TOOLSET = Toolset(
    service="alertmanager",
    description="Alertmanager: alerts, silences (the incident's own alert while it is handled), status.",
)

CREATED_BY = "homelab-agents"
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class Matcher(BaseModel):
    """One label matcher of a silence or filter (API v2 ``matcher``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=LABEL_NAME)
    value: str = Field(max_length=1000)
    is_regex: bool = False
    is_equal: bool = True

    def api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    def text(self) -> str:
        op = ("=" if self.is_equal else "!") + ("~" if self.is_regex else "")
        op = "=" if op == "=" else ("!=" if op == "!" else op)
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{op}"{escaped}"'


def matchers_text(matchers: list[dict[str, Any]] | list[Matcher]) -> str:
    items = [m if isinstance(m, Matcher) else Matcher.model_validate(m) for m in matchers]
    return "{" + ", ".join(m.text() for m in items) + "}"


def from_api(matcher: dict[str, Any]) -> dict[str, Any]:
    return Matcher(
        name=matcher["name"],
        value=matcher["value"],
        is_regex=bool(matcher.get("isRegex")),
        is_equal=matcher.get("isEqual", True) is not False,
    ).model_dump()


def same_matchers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(ms: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((m["name"], m["value"], m["is_regex"], m["is_equal"]) for m in ms)

    return key(a) == key(b)


def marker(incident_id: str) -> str:
    """The tag every agents' silence carries in its comment: which incident made it."""
    return f"[{CREATED_BY} incident={incident_id or 'manual'}]"


MARKER = re.compile(r"\[homelab-agents incident=([^\]]+)\]")


def make_client(target: AlertmanagerTarget) -> HttpApi:
    return http_api(target, "Alertmanager")


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return ctx.clients.client("alertmanager", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> AlertmanagerTarget:
    target = ctx.clients.target("alertmanager", ctx.ref.target)
    assert isinstance(target, AlertmanagerTarget)
    return target


async def _probe(target: AlertmanagerTarget) -> str:
    api = make_client(target)
    try:
        status = await api.get("/api/v2/status")
    finally:
        await api.aclose()
    version = (status.get("versionInfo") or {}).get("version", "?")
    cluster = (status.get("cluster") or {}).get("status", "?")
    return f"Alertmanager {version}, cluster {cluster}"


def probe(target: AlertmanagerTarget) -> str:
    return asyncio.run(_probe(target))


TOOLSET.probe = probe
