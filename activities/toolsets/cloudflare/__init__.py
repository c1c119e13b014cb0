"""Cloudflare DNS toolset (API v4 through HttpApi, scoped API token).

Reads list zones and records (every page), compare the configured desired records with what
Cloudflare holds (``public_ip`` records with the WAN address: dynamic DNS), and ask the zone's
authoritative servers what the world sees. Writes update, create and delete one record; each is
HARD by default and the others are its compensation, so a failed verification puts the old record
back. The resource is the record name (``cloudflare:cf/home.example.com``).
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.cloudflare import reads, records
from activities.toolsets.cloudflare.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "records"]
