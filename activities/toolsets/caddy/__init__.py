"""Caddy toolset: the admin API (running config, reverse-proxy upstreams) and a reload that
loads the config file only after ``caddy validate`` passes."""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.caddy import reads, reload
from activities.toolsets.caddy.client import TOOLSET

__all__ = ["TOOLSET", "reads", "reload"]
