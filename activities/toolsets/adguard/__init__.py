from activities.catalog import Toolset

TOOLSET = Toolset(service="adguard", description="(in progress)")
