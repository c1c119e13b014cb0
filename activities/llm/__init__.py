"""The LLM planner: provider chain activities, prompt hygiene, plan validation, cost and cache.

Importing this package never imports litellm (see ``client.litellm_module``).
"""

from activities.llm.activities import LLMActivities

__all__ = ["LLMActivities"]
