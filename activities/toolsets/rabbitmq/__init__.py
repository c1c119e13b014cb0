"""RabbitMQ toolset: the management plugin's HTTP API (queues with depth, consumers and rates;
nodes with memory, disk and alarms) and purging a queue (HARD, irreversible).

Queue depths come from the management statistics, which lag a few seconds behind the broker
(``collect_statistics_interval``); verification polls for that. ``backends`` maps a queue to the
Docker container that consumes it, so a "no consumer" incident names what to restart.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.rabbitmq import reads, writes
from activities.toolsets.rabbitmq.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "writes"]
