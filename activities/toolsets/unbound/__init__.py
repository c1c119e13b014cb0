from activities.catalog import Toolset

TOOLSET = Toolset(service="unbound", description="(in progress)")
