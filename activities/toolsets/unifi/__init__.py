"""UniFi toolset (the UniFi Network application's API through HttpApi, a local admin's session).

Reads: sites, devices (state, uptime, firmware, clients, uplink switch port), clients and open
alarms. Writes, HARD by default: restart a device through its controller, and power-cycle a PoE
switch port (which reboots the device it powers, even one the controller cannot reach); both
previews name the device, model, MAC and port.
"""

# Importing the module registers its tools on TOOLSET.
from activities.toolsets.unifi import network
from activities.toolsets.unifi.client import TOOLSET, probe

__all__ = ["TOOLSET", "network", "probe"]
