"""Grafana toolset (HTTP API, service-account token from the config, a file or the environment).

Reads: ``health``, ``datasources`` (each one's own health check), ``dashboards`` (search).
Write: ``annotate``, so every incident step shows on the user's own dashboards, tagged with the
target's tags plus the caller's; a retried call finds its annotation instead of adding another.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.grafana import annotations, reads
from activities.toolsets.grafana.client import TOOLSET, make_client, probe

__all__ = ["TOOLSET", "annotations", "make_client", "probe", "reads"]
