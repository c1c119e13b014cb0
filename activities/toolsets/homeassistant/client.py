"""The Home Assistant toolset and its REST client (long-lived access token, Bearer).

Everything goes through the documented REST API: ``/api/config`` (state, version, components),
``/api/states``, ``/api/services``, ``/api/error_log``, ``/api/template`` (which entity belongs
to which integration: ``integration_entities``), ``/api/config/core/check_config`` and the config
entries API (``/api/config/config_entries/entry``, its ``reload``), the last three for an admin
user's token.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, cast

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import HomeAssistantTarget

TOOLSET = Toolset(
    service="homeassistant",
    description="Home Assistant (REST API, long-lived token): state, config check, unavailable "
    "entities, error log, integrations; reload an integration, restart.",
)

UNAVAILABLE = "unavailable"
FAILED_ENTRY_STATES = ("setup_error", "setup_retry", "migration_error", "failed_unload")

# integration_entities() per loaded integration, as one JSON object (one round trip).
OWNERS_TEMPLATE = (
    "{% set ns = namespace(d={}) %}{% for c in domains %}"
    "{% set e = integration_entities(c) | list %}"
    "{% if e %}{% set ns.d = dict(ns.d, **{c: e}) %}{% endif %}{% endfor %}{{ ns.d | tojson }}"
)


class HomeAssistantClient:
    def __init__(self, target: HomeAssistantTarget) -> None:
        assert target.token is not None
        self.target = target
        self.api = HttpApi(
            target.url,
            product="Home Assistant",
            headers={"Authorization": f"Bearer {target.token.get_secret_value()}"},
            verify=target.verify_tls,
            timeout=target.timeout,
        )

    async def config(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.api.get("/api/config"))

    async def states(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.api.get("/api/states"))

    async def check_config(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.api.post("/api/config/core/check_config"))

    async def entries(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.api.get("/api/config/config_entries/entry"))

    async def services(self) -> dict[str, list[str]]:
        listed = await self.api.get("/api/services")
        return {d["domain"]: sorted(d.get("services") or {}) for d in listed or []}

    async def reloadable(self) -> set[str]:
        """Integrations a reload can reach: config entries, or a ``<domain>.reload`` service."""
        entries = {e.get("domain") for e in await self.entries()}
        services = {d for d, names in (await self.services()).items() if "reload" in names}
        return {str(d) for d in entries | services if d}

    async def owners(self, domains: list[str]) -> dict[str, list[str]]:
        """Integration → its entities (the entity registry's platform, via a template)."""
        text = await self.api.post(
            "/api/template",
            json_body={"template": OWNERS_TEMPLATE, "variables": {"domains": sorted(domains)}},
        )
        try:
            return cast(dict[str, list[str]], json.loads(text))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ToolFailure(
                ToolErrorKind.FAILED, f"Home Assistant answered no entity map: {str(text)[:200]}"
            ) from exc

    async def now(self) -> str:
        """Home Assistant's own clock (compared with its own timestamps: no clock skew)."""
        return str(
            await self.api.post(
                "/api/template", json_body={"template": "{{ utcnow().isoformat() }}"}
            )
        ).strip()

    async def started_at(self) -> str | None:
        """About when this run of Home Assistant began: its state machine is rebuilt at every
        start, so no state is older than the start (states that changed since only get younger)."""
        states = await self.states()
        stamps = [s.get("last_changed") for s in states if s.get("last_changed")]
        return min(stamps, key=lambda t: datetime.fromisoformat(str(t))) if stamps else None

    async def aclose(self) -> None:
        await self.api.aclose()


def after(stamp: str | None, moment: str | None) -> bool:
    """``stamp`` is later than ``moment`` (both Home Assistant ISO timestamps)."""
    if not stamp or not moment:
        return False
    return datetime.fromisoformat(stamp) > datetime.fromisoformat(moment)


def make_client(target: HomeAssistantTarget) -> HomeAssistantClient:
    return HomeAssistantClient(target)


def client_for(ctx: ToolContext[Any]) -> HomeAssistantClient:
    return cast(
        HomeAssistantClient, ctx.clients.client("homeassistant", ctx.ref.target, make_client)
    )


def target_of(ctx: ToolContext[Any]) -> HomeAssistantTarget:
    target = ctx.clients.target("homeassistant", ctx.ref.target)
    assert isinstance(target, HomeAssistantTarget)
    return target


def top_level(components: list[str]) -> list[str]:
    """``sensor.rest`` and ``rest`` are both listed: the integrations are the undotted names."""
    return sorted({c for c in components if "." not in c})


async def probe_async(target: HomeAssistantTarget) -> str:
    client = HomeAssistantClient(target)
    try:
        config = await client.config()
        check = await client.check_config()
    finally:
        await client.aclose()
    return (
        f"Home Assistant {config.get('version')} ({config.get('state')}), "
        f"{len(top_level(config.get('components') or []))} integrations, "
        f"config check {check.get('result')}"
    )


def probe(target: HomeAssistantTarget) -> str:
    return asyncio.run(probe_async(target))


TOOLSET.probe = probe
