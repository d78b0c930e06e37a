-- Run once, as superuser, when the database is first initialised (like Supabase's
-- docker/volumes/db/webhooks.sql, which enables pg_net for Database Webhooks).
-- migrations/0004 then finds pg_net enabled, and its trigger (owned by `postgres`, the
-- role the migrate service applies migrations/ as) may call net.http_post.
CREATE EXTENSION IF NOT EXISTS pg_net SCHEMA extensions;
GRANT USAGE ON SCHEMA net TO postgres, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA net TO postgres, service_role;
