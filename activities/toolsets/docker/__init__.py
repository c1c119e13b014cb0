"""Docker engine toolset (docker SDK), on any configured engine (unix socket or tcp).

Reads cover what an operator checks first (state, logs, stats, images, networks, volumes, engine
health); writes are restart/start/stop, resource updates, image pruning, log truncation and
recreation on another image, each with an exact preview, a before-state and a compensation.
Writes are idempotent against their captured before-state, so a retried activity never acts twice.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.docker import cleanup, lifecycle, reads
from activities.toolsets.docker.client import TOOLSET, describe_container, make_client, probe

__all__ = ["TOOLSET", "cleanup", "describe_container", "lifecycle", "make_client", "probe", "reads"]
