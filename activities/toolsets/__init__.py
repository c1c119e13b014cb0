"""The toolset registry: every built-in toolset, assembled into the one catalog.

Each toolset is a package under ``activities/toolsets/<service>`` that depends only on the
catalog's base types (``activities.catalog``); this module is the one place that knows them all.
Adding a service = a new package here plus one line in ``BUILTIN`` (see docs/architecture.md).
"""

from __future__ import annotations

from activities.catalog import Catalog, Toolset


def builtin_toolsets() -> list[Toolset]:
    """Imported on call, so importing the catalog's types never drags in every client library."""
    from activities.toolsets import (
        adguard,
        alertmanager,
        backups,
        caddy,
        certs,
        cloudflare,
        docker,
        grafana,
        haproxy,
        homeassistant,
        hosts,
        mosquitto,
        nats,
        nginx,
        pbs,
        postgres,
        prometheus,
        proxmox,
        rabbitmq,
        redis,
        tailscale,
        unbound,
        unifi,
    )

    return [
        docker.TOOLSET,
        proxmox.TOOLSET,
        pbs.TOOLSET,
        postgres.TOOLSET,
        prometheus.TOOLSET,
        alertmanager.TOOLSET,
        grafana.TOOLSET,
        hosts.TOOLSET,
        homeassistant.TOOLSET,
        adguard.TOOLSET,
        unbound.TOOLSET,
        cloudflare.TOOLSET,
        tailscale.TOOLSET,
        unifi.TOOLSET,
        redis.TOOLSET,
        nginx.TOOLSET,
        caddy.TOOLSET,
        haproxy.TOOLSET,
        rabbitmq.TOOLSET,
        nats.TOOLSET,
        mosquitto.TOOLSET,
        certs.TOOLSET,
        backups.TOOLSET,
    ]


def default_catalog() -> Catalog:
    """The catalog of every built-in toolset."""
    return Catalog(builtin_toolsets())
