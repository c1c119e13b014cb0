"""Redis / Valkey toolset (redis-py asyncio): memory, clients, persistence, and safe fixes.

Reads are INFO, SLOWLOG, CLIENT LIST, CONFIG GET and a bounded SCAN with MEMORY USAGE; writes are
BGSAVE, CONFIG SET for an allow-list (maxmemory, maxmemory-policy; the old value is the
compensation), CLIENT KILL of long-idle normal clients, and MEMORY PURGE. Connect as an ACL user
with only those commands (README, "Redis / Valkey"). The target is the server; there is no resource.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.redis import reads, writes
from activities.toolsets.redis.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "writes"]
