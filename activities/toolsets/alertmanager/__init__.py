"""Alertmanager toolset (API v2): what is firing and silenced, and silences the agents manage.

``silence`` mutes exactly one alert (every one of its labels, as equality matchers) for a bounded
time with a comment naming the incident; NONE, so an incident can silence its own alert while it
waits for approval or runs a long fix. ``silence_matching`` takes any matchers and is HARD.
Both register ``expire_silence`` (by the incident's comment marker and the matchers, since the
silence id only exists after the write) as their compensation, so a rollback or a closed incident
never leaves a silence behind; ``expire_silence`` only ever expires the agents' own silences.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.alertmanager import reads, silences
from activities.toolsets.alertmanager.client import TOOLSET, make_client, probe

__all__ = ["TOOLSET", "make_client", "probe", "reads", "silences"]
