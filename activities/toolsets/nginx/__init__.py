"""nginx toolset: config test, upstream health, stub_status, and a reload that only follows a
passing ``nginx -t``.

Commands are the target's argv (``command`` + ``-t`` / ``-T`` / ``-s reload``, or
``reload_command``), run locally or over SSH through the one command runner. Upstreams are read
from ``nginx -T`` (upstream blocks and proxy_pass), probed from the agents' host, and mapped to the
Docker container or PostgreSQL server behind them (``backends``).
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.nginx import reads, reload
from activities.toolsets.nginx.client import TOOLSET

__all__ = ["TOOLSET", "reads", "reload"]
