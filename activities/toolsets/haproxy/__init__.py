"""HAProxy toolset: the runtime API over the stats socket (servers with state and check status,
per-server 5xx; disable/enable a server and set its weight, each compensated), and a reload that
only follows a passing ``haproxy -c``."""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.haproxy import reads, writes
from activities.toolsets.haproxy.client import TOOLSET

__all__ = ["TOOLSET", "reads", "writes"]
