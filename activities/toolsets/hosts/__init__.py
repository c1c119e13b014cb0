"""Hosts toolset: a Linux host over SSH (host key checked) or this machine, a fixed command set.

Reads: ``disk_usage`` (df, top directories and largest files on a mount, what logrotate and the
journal could free there), ``systemd_units`` (failed units, a unit's state and journal),
``memory_top``/``cpu_top`` and ``network_interfaces``. Writes, each limited to what the target
lists: ``restart_unit`` (SOFT), ``rotate_logs`` (logrotate -f of a listed config, SOFT),
``journal_vacuum`` (down to a size bound, SOFT), ``restart_network_interface`` (HARD).
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.hosts import disks, network, processes, systemd
from activities.toolsets.hosts.client import TOOLSET, probe

__all__ = ["TOOLSET", "disks", "network", "probe", "processes", "systemd"]
