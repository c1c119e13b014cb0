"""Home Assistant toolset (REST API through HttpApi, a long-lived access token).

Reads: the core state, Home Assistant's own config check, unavailable entities by domain and by
integration, the error log's tail (redacted), and the integrations that failed to set up. Writes:
reload one integration (SOFT) and restart (HARD by default, and refused unless the config check
passes); the runbooks verify that the API is back and the unavailable entities recovered.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.homeassistant import lifecycle, reads
from activities.toolsets.homeassistant.client import TOOLSET, probe

__all__ = ["TOOLSET", "lifecycle", "probe", "reads"]
