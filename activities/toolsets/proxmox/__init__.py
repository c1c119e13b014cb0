"""Proxmox VE toolset (proxmoxer, API token auth), on any configured node or cluster.

Targets are ``proxmox:<target>/<id>`` with the pve-exporter's ``id`` forms: ``lxc/200``,
``qemu/100``, ``node/pve1``, ``storage/pve1/local``, ``cluster/<name>``; guests are found by vmid
across the cluster's nodes. Reads cover nodes, quorum, storage, guests, snapshots, tasks, HA and
backup coverage (with PBS evidence). Every write waits for its UPID task and reports its exit
status, has an exact preview, a before-state and a compensation. Risky container changes (resize,
reboot, a resource change on a critical guest) first take an ``ha-<incident>`` snapshot, register
the rollback to it as the compensation, and prune older ``ha-`` snapshots by the target's policy.
``restart_service`` runs ``pct exec`` over SSH on the guest's node and reports the unit's state
before and after.
"""

# Importing the modules registers their tools on TOOLSET.
from activities.toolsets.proxmox import (
    backups,
    cluster,
    guest_info,
    power,
    services,
    sizing,
    snapshot_ops,
)
from activities.toolsets.proxmox.client import (
    SAFETY_MARK,
    TOOLSET,
    Resource,
    parse_resource,
    probe,
    translate,
)
from activities.toolsets.proxmox.safety import safety_snapshot_name

__all__ = [
    "SAFETY_MARK",
    "TOOLSET",
    "Resource",
    "backups",
    "cluster",
    "guest_info",
    "parse_resource",
    "power",
    "probe",
    "safety_snapshot_name",
    "services",
    "sizing",
    "snapshot_ops",
    "translate",
]
