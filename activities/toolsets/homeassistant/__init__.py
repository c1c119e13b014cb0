from activities.catalog import Toolset

TOOLSET = Toolset(service="homeassistant", description="(in progress)")
