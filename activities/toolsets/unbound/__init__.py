"""Unbound toolset: ``unbound-control`` through the one command runner (locally or over SSH) and
real DNS queries to the resolver.

Reads: status, statistics, names resolved as a client would, lookup (which servers a name goes
to), and the forwarders as running, as configured on disk and asked directly. Writes: flush a zone
(and the server timeout state) and reload (only when ``unbound-checkconf`` passes); both SOFT.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.unbound import reads, writes
from activities.toolsets.unbound.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "writes"]
