"""The toolset, its error translation, and the one way to reach a Proxmox VE target.

Targets are ``proxmox:<target>/<id>`` with the pve-exporter's ``id`` forms; guests are found by
vmid across the cluster's nodes; every write waits for its UPID task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.proxmox_api import translator, wait_upid
from core.models import ToolErrorKind
from core.targets import ProxmoxTarget

MIB = 1024 * 1024
SAFETY_PREFIX = "ha-"
SAFETY_MARK = "homelab-agents safety snapshot"
SNAPNAME = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
UNREACHABLE_CODES = {595, 596, 597, 598, 599}


# --- errors ------------------------------------------------------------------------------------


def _resource_message(exc: ResourceException) -> str:
    """PVE puts its message in the HTTP reason phrase; parameter errors come in ``errors``."""
    message = str(exc.content or exc.status_message or "").strip()
    errors = exc.errors
    if isinstance(errors, dict) and errors:
        detail = "; ".join(f"{k}: {str(v).strip()}" for k, v in errors.items())
        message = f"{message} ({detail})" if message else detail
    return message or f"HTTP {exc.status_code}"


translate = translator(
    product="Proxmox VE API",
    section="proxmox",
    message=_resource_message,
    unreachable=frozenset(UNREACHABLE_CODES),
    ca_hint="a copy of /etc/pve/pve-root-ca.pem",
)


TOOLSET = Toolset(
    service="proxmox",
    description="Proxmox VE nodes and clusters: LXC containers, VMs, storage, snapshots, HA, backups.",
    translate=translate,
)


# --- client and resources ----------------------------------------------------------------------


def make_client(target: ProxmoxTarget) -> ProxmoxAPI:
    assert target.token_secret is not None
    return ProxmoxAPI(
        target.host,
        port=target.port,
        user=target.token_user,
        token_name=target.token_name,
        token_value=target.token_secret.get_secret_value(),
        verify_ssl=target.verify_ssl,
        timeout=target.timeout,
    )


def probe(target: ProxmoxTarget) -> str:
    api = make_client(target)
    version = api.get("version") or {}
    cluster = cluster_summary(api.get("cluster/status") or [])
    text = (
        f"PVE {version.get('version', '?')}, "
        + (f"cluster {cluster['cluster']} " if cluster["cluster"] else "standalone, ")
        + ("quorate" if cluster["quorate"] else "NOT QUORATE")
        + f", {cluster['nodes_online']}/{cluster['nodes_total']} nodes online"
    )
    if target.verify_ssl is False:
        text += "; WARNING: TLS verification is off (verify_ssl: false)"
    return text


TOOLSET.probe = probe


def api_for(ctx: ToolContext[Any]) -> ProxmoxAPI:
    return ctx.clients.client("proxmox", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> ProxmoxTarget:
    target = ctx.clients.target("proxmox", ctx.ref.target)
    assert isinstance(target, ProxmoxTarget)
    return target


@dataclass(frozen=True)
class Resource:
    kind: Literal["guest", "lxc", "qemu", "node", "storage", "cluster", ""]
    vmid: int = 0
    node: str = ""
    storage: str = ""
    name: str = ""


def parse_resource(text: str) -> Resource:
    """The pve-exporter ``id`` forms, plus a bare vmid."""
    text = text.strip().strip("/")
    if not text:
        return Resource(kind="")
    parts = text.split("/")
    if len(parts) == 1 and parts[0].isdigit():
        return Resource(kind="guest", vmid=int(parts[0]))
    head = parts[0]
    if head in ("lxc", "qemu") and len(parts) == 2 and parts[1].isdigit():
        return Resource(kind=head, vmid=int(parts[1]))  # type: ignore[arg-type]
    if head == "node" and len(parts) == 2 and parts[1]:
        return Resource(kind="node", node=parts[1])
    if head == "storage" and len(parts) == 3 and all(parts[1:]):
        return Resource(kind="storage", node=parts[1], storage=parts[2])
    if head == "cluster" and len(parts) == 2:
        return Resource(kind="cluster", name=parts[1])
    raise ToolFailure(
        ToolErrorKind.INVALID,
        f"{text!r} is not a Proxmox resource (lxc/200, qemu/100, node/pve1, "
        "storage/pve1/local, cluster/name or a vmid)",
    )


@dataclass(frozen=True)
class Guest:
    vmid: int
    type: str  # lxc | qemu
    node: str
    name: str
    status: str
    template: bool

    @property
    def path(self) -> str:
        return f"nodes/{self.node}/{self.type}/{self.vmid}"

    @property
    def label(self) -> str:
        kind = "CT" if self.type == "lxc" else "VM"
        return f"{kind} {self.vmid}" + (f" ({self.name})" if self.name else "")


def find_guest(ctx: ToolContext[Any]) -> Guest:
    res = parse_resource(ctx.ref.resource)
    if res.kind not in ("guest", "lxc", "qemu"):
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"{ctx.ref.resource!r} is not a guest (use lxc/<vmid> or qemu/<vmid>)",
        )
    for row in api_for(ctx).get("cluster/resources", type="vm") or []:
        if int(row.get("vmid", -1)) != res.vmid:
            continue
        guest = Guest(
            vmid=res.vmid,
            type=str(row.get("type")),
            node=str(row.get("node")),
            name=str(row.get("name") or ""),
            status=str(row.get("status")),
            template=bool(row.get("template")),
        )
        if res.kind in ("lxc", "qemu") and guest.type != res.kind:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"guest {res.vmid} on {ctx.ref.target} is a {guest.type}, not {res.kind}",
            )
        return guest
    raise ToolFailure(
        ToolErrorKind.NOT_FOUND, f"no guest with vmid {res.vmid} on proxmox target {ctx.ref.target}"
    )


def canonical(ctx: ToolContext[Any]) -> str:
    """The exporter's id form: ``lxc/100``/``qemu/100`` for a guest however it was named (``100``,
    ``0100``), ``node/pve1``, ``storage/pve1/local``."""
    res = parse_resource(ctx.ref.resource)
    if res.kind in ("guest", "lxc", "qemu"):
        guest = find_guest(ctx)
        return f"{guest.type}/{guest.vmid}"
    if res.kind == "node":
        return f"node/{res.node}"
    if res.kind == "storage":
        return f"storage/{res.node}/{res.storage}"
    if res.kind == "cluster":
        return f"cluster/{res.name}"
    return ctx.ref.resource


def node_of(ctx: ToolContext[Any]) -> str:
    """The node a resource lives on (a guest's node, a storage's node, or the node itself)."""
    res = parse_resource(ctx.ref.resource)
    if res.kind in ("node", "storage"):
        return res.node
    if res.kind in ("guest", "lxc", "qemu"):
        return find_guest(ctx).node
    raise ToolFailure(
        ToolErrorKind.INVALID, f"{ctx.ref.resource or 'the target'} names no node or guest"
    )


def percent_of(value: float, total: float) -> float | None:
    return round(value / total * 100, 2) if total else None


# --- tasks -------------------------------------------------------------------------------------


def upid_node(upid: str) -> str:
    parts = upid.split(":")
    if len(parts) < 8 or parts[0] != "UPID":
        raise ToolFailure(ToolErrorKind.INVALID, f"{upid!r} is not a Proxmox task id (UPID:...)")
    return parts[1]


def wait_task(ctx: ToolContext[Any], node: str, upid: str | None, what: str) -> dict[str, Any]:
    """Wait for a PVE task; its exit status decides success (``WARNINGS: n`` counts as done)."""
    timeout = target_of(ctx).task_timeout.total_seconds()
    return wait_upid(api_for(ctx), node, upid, what, timeout, "proxmox.task")


# --- cluster ---------------------------------------------------------------------------------


def cluster_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cluster = next((r for r in rows if r.get("type") == "cluster"), None)
    nodes = [
        {
            "name": r.get("name"),
            "online": bool(r.get("online")),
            "ip": r.get("ip"),
            "nodeid": r.get("nodeid"),
            "local": bool(r.get("local")),
        }
        for r in rows
        if r.get("type") == "node"
    ]
    online = [n for n in nodes if n["online"]]
    return {
        "cluster": cluster.get("name", "") if cluster else "",
        "clustered": cluster is not None,
        # A standalone node has no corosync: it is its own quorum.
        "quorate": bool(cluster.get("quorate")) if cluster else bool(online),
        "nodes_total": len(nodes),
        "nodes_online": len(online),
        "nodes": nodes,
        "offline": [n["name"] for n in nodes if not n["online"]],
    }


TOOLSET.canonical = canonical
