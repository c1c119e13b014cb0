"""NATS toolset: the server's monitoring endpoints (/varz, /connz, /jsz), read-only.

NATS offers no safe write from outside for a slow consumer (the server already drops it to
protect itself; JetStream lag is the consumer's to catch up), so incidents are diagnosed —
the slow connection by name, pending bytes and subscriptions, the lagging stream consumer —
and handed to a human with that evidence. ``backends`` maps a client name to its container.
"""

# Importing the module registers its tools on TOOLSET.
from activities.toolsets.nats import reads
from activities.toolsets.nats.client import TOOLSET

__all__ = ["TOOLSET", "reads"]
