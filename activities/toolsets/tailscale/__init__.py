"""Tailscale toolset (API v2 through HttpApi; an OAuth client or an API access token).

Reads: devices, node-key expiry per device, offline devices (subnet routers and exit nodes first,
routes nobody serves), routes and exit nodes. Writes are only the re-authorization-style actions
the API allows, HARD by default: disable a device's key expiry (so a server whose key expired can
rejoin) and authorize a device; the previous value is the compensation.
"""

# Importing the module registers its tools on TOOLSET.
from activities.toolsets.tailscale import devices
from activities.toolsets.tailscale.client import TOOLSET, probe

__all__ = ["TOOLSET", "devices", "probe"]
