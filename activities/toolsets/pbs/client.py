"""The PBS client, its error translation and the scope a target names (datastore, group)."""

from __future__ import annotations

from typing import Any

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.proxmox_api import translator
from core.models import ToolErrorKind
from core.targets import PbsTarget


def _message(exc: ResourceException) -> str:
    """PBS sends its message as the response body (proxmoxer keeps it in ``errors``)."""
    errors = exc.errors
    if isinstance(errors, dict) and "errors" in errors:
        body = errors["errors"]
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        if text.strip():
            return text.strip()
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    if isinstance(errors, str) and errors.strip():
        return errors.strip()
    return str(exc.content or exc.status_message or f"HTTP {exc.status_code}")


translate = translator(
    product="Proxmox Backup Server",
    section="pbs",
    message=_message,
    unreachable=frozenset({502, 503, 504}),
    ca_hint="a copy of /etc/proxmox-backup/proxy.pem",
)


TOOLSET = Toolset(
    service="pbs",
    description="Proxmox Backup Server: datastores, GC, backup groups and snapshots, verify, sync, prune.",
    translate=translate,
)


def make_client(target: PbsTarget) -> ProxmoxAPI:
    assert target.token_secret is not None
    return ProxmoxAPI(
        target.host,
        port=target.port,
        service="PBS",
        user=target.token_user,
        token_name=target.token_name,
        token_value=target.token_secret.get_secret_value(),
        verify_ssl=target.verify_ssl,
        timeout=target.timeout,
    )


def datastore_names(client: ProxmoxAPI, target: PbsTarget) -> list[str]:
    """The configured datastores (all of the server's when none are listed)."""
    available = [str(d.get("store")) for d in client.get("admin/datastore") or []]
    if not target.datastores:
        return sorted(available)
    missing = [d for d in target.datastores if d not in available]
    if missing:
        raise ToolFailure(
            ToolErrorKind.NOT_FOUND,
            f"pbs {target.name}: no datastore {', '.join(missing)} "
            f"(server has: {', '.join(available) or 'none'})",
        )
    return list(target.datastores)


def probe(target: PbsTarget) -> str:
    client = make_client(target)
    version = client.get("version") or {}
    stores = datastore_names(client, target)
    text = f"PBS {version.get('version', '?')}.{version.get('release', '')}".rstrip(".")
    text += f", datastores: {', '.join(stores) or 'none'}"
    if target.verify_ssl is False:
        text += "; WARNING: TLS verification is off (verify_ssl: false)"
    return text


TOOLSET.probe = probe


def client_for(ctx: ToolContext[Any]) -> ProxmoxAPI:
    return ctx.clients.client("pbs", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> PbsTarget:
    target = ctx.clients.target("pbs", ctx.ref.target)
    assert isinstance(target, PbsTarget)
    return target


def scope(ctx: ToolContext[Any]) -> tuple[list[str], str, str]:
    """Datastores in scope, and the backup group (type, id) the resource names, if any."""
    parts = [p for p in ctx.ref.resource.split("/") if p]
    if len(parts) not in (0, 1, 3) or (len(parts) == 3 and parts[1] not in ("ct", "vm", "host")):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{ctx.ref.resource!r} is not <datastore> or <datastore>/<ct|vm|host>/<id>",
        )
    client = client_for(ctx)
    stores = datastore_names(client, target_of(ctx))
    if parts:
        known = [str(d.get("store")) for d in client.get("admin/datastore") or []]
        if parts[0] not in known:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"no datastore {parts[0]!r} on pbs {ctx.ref.target} (has: {', '.join(known)})",
            )
        stores = [parts[0]]
    kind, ident = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    return stores, kind, ident


def task_status(client: ProxmoxAPI, upid: str | None) -> dict[str, Any] | None:
    if not upid:
        return None
    node = upid.split(":")[1] if upid.count(":") > 2 else "localhost"
    try:
        status = client.get(f"nodes/{node}/tasks/{upid}/status") or {}
    except ResourceException:
        return None
    return {
        "status": status.get("status"),
        "exitstatus": status.get("exitstatus"),
        "ok": status.get("status") == "stopped" and status.get("exitstatus") == "OK",
        "starttime": status.get("starttime"),
    }
