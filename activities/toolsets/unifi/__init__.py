from activities.catalog import Toolset

TOOLSET = Toolset(service="unifi", description="(in progress)")
