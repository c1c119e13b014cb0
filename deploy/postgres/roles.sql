-- Least-privilege roles for homelab-agents on PostgreSQL 13–17. Run as a superuser, once per
-- cluster (roles are cluster-wide; on a streaming replica they arrive through replication):
--
--   psql -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--   psql -c "ALTER ROLE homelab_monitor PASSWORD '...'"   -- or use cert / peer auth
--   psql -c "ALTER ROLE homelab_maint PASSWORD '...'"
--
-- Re-running it is safe. Then configure the target:
--
--   postgres:
--     - name: main
--       dsn: "host=db.lan dbname=postgres user=homelab_monitor"           # diagnostics
--       maintenance_dsn: "host=db.lan dbname=postgres user=homelab_maint" # writes
--
-- (passwords from the environment, e.g. HOMELAB_POSTGRES='[{"name": "main", "dsn": "...", ...}]',
-- or a ~/.pgpass file next to the worker: they never belong in the YAML file.)

-- 1. homelab_monitor: every diagnostic tool. pg_monitor = pg_read_all_settings +
--    pg_read_all_stats (all sessions' queries, pg_stat_statements) + pg_stat_scan_tables
--    (pgstattuple's pgstatindex for index bloat). It cannot change anything: the agents also run
--    its queries in read-only transactions with a statement_timeout.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homelab_monitor') THEN
    CREATE ROLE homelab_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;
GRANT pg_monitor TO homelab_monitor;

-- 2. homelab_maint: the write tools, and nothing that could read or change your data.
--    * cancel_query / terminate_*: pg_signal_backend signals non-superuser backends only
--      (PostgreSQL itself refuses to signal superusers; the agents refuse first).
--    * drop_replication_slot: REPLICATION.
--    * resume_replay / pause_replay: EXECUTE on the two replay functions (granted on the primary,
--      the grants replicate to the standbys where they are used).
--    * pg_monitor: to see the sessions it is asked to signal (pid, start time, transaction).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homelab_maint') THEN
    CREATE ROLE homelab_maint LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION;
  ELSE
    ALTER ROLE homelab_maint REPLICATION;
  END IF;
END
$$;
GRANT pg_signal_backend TO homelab_maint;
GRANT pg_monitor TO homelab_maint;
GRANT EXECUTE ON FUNCTION pg_wal_replay_pause() TO homelab_maint;
GRANT EXECUTE ON FUNCTION pg_wal_replay_resume() TO homelab_maint;

-- 3. VACUUM, ANALYZE and REINDEX need more than a grant before PostgreSQL 17:
--    * PostgreSQL 17+: the pg_maintain role (MAINTAIN on every table) — granted below.
--    * PostgreSQL 13–16: membership in the role that owns the tables, per application:
--          GRANT app_owner TO homelab_maint;
--      (VACUUM and ANALYZE also work as the database owner; REINDEX needs the table owner.)
--    Without it the tools refuse with that exact GRANT in the message, before anything runs
--    (PostgreSQL itself would only print "skipping" and report success).
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 170000 THEN
    EXECUTE 'GRANT pg_maintain TO homelab_maint';
  END IF;
END
$$;

-- 4. PostgreSQL 16+: let both roles connect when max_connections is exhausted (the moment
--    PostgresqlMaxConnectionsReached needs them most), from reserved_connections slots.
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE 'GRANT pg_use_reserved_connections TO homelab_monitor, homelab_maint';
  END IF;
END
$$;
