-- Run once, as superuser, when the database is first initialised (mounted into
-- /docker-entrypoint-initdb.d/init-scripts/). Same as Supabase's docker/volumes/db/roles.sql:
-- the service roles of supabase/postgres get the password PostgREST and storage-api log in with.
\set pgpass `echo "$PGPASSWORD"`

ALTER USER supabase_admin WITH PASSWORD :'pgpass';
ALTER USER authenticator WITH PASSWORD :'pgpass';
ALTER USER pgbouncer WITH PASSWORD :'pgpass';
ALTER USER supabase_auth_admin WITH PASSWORD :'pgpass';
ALTER USER supabase_storage_admin WITH PASSWORD :'pgpass';
