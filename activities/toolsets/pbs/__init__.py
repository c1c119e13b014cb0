"""Proxmox Backup Server toolset (proxmoxer with ``service="PBS"``, API token auth).

Reads: datastore usage with the server's own fill-date estimate and garbage-collection state,
snapshots per backup group with their age and verification, the last backup per guest, verify
job results, and sync and prune job state. Writes: start a verification or a garbage collection
and wait for its task. Targets are ``pbs:<target>`` optionally followed by a
datastore and a backup group: ``pbs:backup/store1``, ``pbs:backup/store1/ct/200``.
"""

# Importing the module registers its tools on TOOLSET.
from activities.toolsets.pbs import reads, tasks
from activities.toolsets.pbs.client import TOOLSET, datastore_names, make_client, probe, translate

__all__ = [
    "TOOLSET",
    "datastore_names",
    "make_client",
    "probe",
    "reads",
    "tasks",
    "translate",
]
