"""PostgreSQL toolset (async psycopg 3): diagnostics and safe maintenance on PostgreSQL 13–17.

Diagnostics run through a small connection pool per target and database, as the read-only role of
the target's ``dsn`` (pg_monitor is enough), in read-only transactions with ``statement_timeout``
and ``connect_timeout``. Writes use the ``maintenance_dsn`` role on a dedicated autocommit
connection with ``lock_timeout``, so VACUUM and REINDEX CONCURRENTLY (which cannot run in a
transaction) work and nothing queues behind a long transaction holding everybody else up.

The TargetRef resource is the database (``postgres:main/appdb``); tables, indexes, pids and slots
are parameters. Names are looked up in the catalog with bound values before anything runs (an
unknown name is a NOT_FOUND error, never a statement) and reach SQL only as
``psycopg.sql.Identifier``. Session-killing tools never touch superusers, replication or other
non-client backends, nor homelab-agents' own sessions (by the roles the target logs in as, never by
application_name), and record every session they end.
"""

# Importing the modules registers their tools on TOOLSET, in this order.
from activities.toolsets.postgres import backends, maintenance, replication, server, tables
from activities.toolsets.postgres.client import TOOLSET, probe

__all__ = ["TOOLSET", "backends", "maintenance", "probe", "replication", "server", "tables"]
