"""Mosquitto toolset: the broker's ``$SYS`` topics over MQTT (aiomqtt), read-only.

It carries Home Assistant's traffic, so the tools only subscribe: clients connected and
disconnected, messages received, sent, stored and dropped, subscriptions, heap and load.
"""

# Importing the module registers its tools on TOOLSET.
from activities.toolsets.mosquitto import reads
from activities.toolsets.mosquitto.client import TOOLSET

__all__ = ["TOOLSET", "reads"]
