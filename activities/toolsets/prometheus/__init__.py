"""Prometheus toolset (HTTP API): PromQL as evidence for any incident, and the server's health.

``query``/``query_range`` need no resource, so any runbook or the incident workflow can cite
metrics of any service; a range query never returns more than the target's ``max_points`` per
series. ``check_config`` runs promtool where the config lives and names the failing file and line;
``reload`` is ``POST /-/reload`` verified by ``prometheus_config_last_reload_successful``.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.prometheus import config, queries, server
from activities.toolsets.prometheus.client import TOOLSET, make_client, probe

__all__ = ["TOOLSET", "config", "make_client", "probe", "queries", "server"]
