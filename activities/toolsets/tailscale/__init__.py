from activities.catalog import Toolset

TOOLSET = Toolset(service="tailscale", description="(in progress)")
