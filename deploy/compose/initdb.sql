-- The homelab-agents store: its database and its two roles, each with its own password.
--
--   homelab_owner  owns the schema; only `homelab-agents migrate` connects as it (store.owner_url)
--   homelab_app    the worker, intake and bot (store.url): after each migration the owner grants
--                  it SELECT and INSERT on the append-only tables (changes, approvals,
--                  control_events, telegram_refusals) and row reads and writes on the others;
--                  no UPDATE, DELETE or TRUNCATE of the audit trail, no DDL
--
-- The postgres image runs this once, as its superuser, when the data volume is first created.
-- Anywhere else, as a superuser (re-running it is safe and resets both passwords):
--
--   HOMELAB_STORE_OWNER_PASSWORD=... HOMELAB_STORE_APP_PASSWORD=... \
--     psql -v ON_ERROR_STOP=1 -f deploy/compose/initdb.sql
--
-- Needs psql 15 or newer (\getenv); the passwords never appear in this file or in a command line.

\set ON_ERROR_STOP on
\getenv owner_password HOMELAB_STORE_OWNER_PASSWORD
\getenv app_password HOMELAB_STORE_APP_PASSWORD
\if :{?owner_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set HOMELAB_STORE_OWNER_PASSWORD (the store owner''s password)'; END $$;
\endif
\if :{?app_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set HOMELAB_STORE_APP_PASSWORD (the run-time role''s password)'; END $$;
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homelab_owner') AS make_owner,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homelab_app') AS make_app \gset
\if :make_owner
  CREATE ROLE homelab_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
\endif
\if :make_app
  CREATE ROLE homelab_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
\endif
ALTER ROLE homelab_owner PASSWORD :'owner_password';
ALTER ROLE homelab_app PASSWORD :'app_password';

SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'homelab') AS make_db \gset
\if :make_db
  CREATE DATABASE homelab OWNER homelab_owner;
\endif
ALTER DATABASE homelab OWNER TO homelab_owner;
REVOKE ALL ON DATABASE homelab FROM PUBLIC;
GRANT CONNECT ON DATABASE homelab TO homelab_app;

\connect homelab
-- Only the owner creates objects (PostgreSQL before 15 let every role create in public).
ALTER SCHEMA public OWNER TO homelab_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO homelab_app;
