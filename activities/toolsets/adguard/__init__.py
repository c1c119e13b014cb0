"""AdGuard Home toolset (its documented ``/control`` HTTP API through HttpApi, basic auth).

Reads: status and protection, blocklists with their age, AdGuard's own upstream test (which
upstream fails, with its error), query statistics. Writes: enable protection (SOFT; pausing it
again is the compensation), pause protection (HARD), refresh the blocklists (SOFT, irreversible)
and set the upstream servers (HARD; the old list is the compensation).
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.adguard import reads, writes
from activities.toolsets.adguard.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "writes"]
