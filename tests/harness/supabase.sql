-- Stand-in for what a Supabase project provides before your migrations run:
-- API roles, default privileges, auth/storage/extensions schemas, a pg_net
-- stand-in (net.*, drained by tests/harness/pgnet.py) and supabase_functions.
-- Runs once, as a superuser, on an empty database.

-- Roles (cluster-wide: create only when missing) ---------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_storage_admin') then
    create role supabase_storage_admin nologin noinherit;
  end if;
end
$$;
grant anon, authenticated, service_role to authenticator;

-- Realtime: Supabase creates its publication, empty (supabase/postgres,
-- migrations/db/init-scripts/00000000000000-initial-schema.sql: "defaults to empty
-- publication"); tables join it with `alter publication supabase_realtime add table`.
create publication supabase_realtime;

-- public: Supabase's default privileges --------------------------------------
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

-- extensions ------------------------------------------------------------------
create schema extensions;
create extension pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- auth --------------------------------------------------------------------------
create schema auth;
grant usage on schema auth to anon, authenticated, service_role;

create table auth.users (
  id uuid primary key default gen_random_uuid(),
  email text
);

create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

-- storage ---------------------------------------------------------------------
create schema storage;
grant usage on schema storage to anon, authenticated, service_role;

create table storage.buckets (
  id text primary key,
  name text not null,
  owner uuid,
  owner_id text,
  public boolean default false,
  avif_autodetection boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  type text not null default 'STANDARD',
  -- storage-api 0062 object-versioning-core (v1.70) and the checks it adds
  versioning_status text not null default 'DISABLED'
    constraint buckets_versioning_status_check
      check (versioning_status in ('DISABLED', 'ENABLED', 'SUSPENDED')),
  constraint buckets_versioning_standard_only_check
    check (type = 'STANDARD' or versioning_status = 'DISABLED')
);
create unique index bname on storage.buckets using btree (name);

create table storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text references storage.buckets (id),
  name text,
  owner uuid,
  owner_id text,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now(),
  metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  version text,
  user_metadata jsonb,
  archived_at timestamptz,
  is_delete_marker boolean not null default false,
  is_versioned boolean not null default false
);
-- The indexes of storage-api v1.77.0 (its migrations 0 to 72; the file numbers below are the
-- DBMigration ids in src/internal/database/migrations/types.ts). v1.77 drops the old unique
-- bucketid_objname (72 drop-bucketid-objname-index): a versioned key has many rows.
create index name_prefix_search on storage.objects using btree (name text_pattern_ops);
-- 0026-objects-prefixes, kept by every later release
create index idx_objects_bucket_id_name on storage.objects using btree (bucket_id, name collate "C");
-- 65 objects-key-version-index
create unique index objects_bucket_id_name_version_key
  on storage.objects (bucket_id, name collate "C", version) nulls not distinct;
-- 66 objects-current-version-index: one current row per key
create unique index idx_objects_current_version
  on storage.objects (bucket_id, name) where archived_at is null;
-- 67 objects-null-version-index: one null-version (unversioned) row per key
create unique index idx_objects_null_version
  on storage.objects (bucket_id, name) where not is_versioned;
-- lifecycle/expiration queries
create index idx_objects_bucket_id_archived_at on storage.objects (bucket_id, archived_at);

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;

create function storage.update_updated_at_column() returns trigger language plpgsql as $$
begin
  new.updated_at = now();
  return new;
end
$$;
create trigger update_objects_updated_at before update on storage.objects
  for each row execute function storage.update_updated_at_column();

-- storage-api's prevent-direct-deletes (55): only the API's own deletes (which set
-- storage.allow_delete_query, the name measured on v1.70.6) may remove rows; a direct DELETE
-- fails with 42501.
create function storage.protect_delete() returns trigger language plpgsql as $$
begin
  if coalesce(current_setting('storage.allow_delete_query', true), 'false') != 'true' then
    raise exception 'Direct deletion from storage tables is not allowed. Use the Storage API instead.'
      using hint = 'This prevents accidental data loss from orphaned objects.',
            errcode = '42501';
  end if;
  return null;
end
$$;
create trigger protect_buckets_delete before delete on storage.buckets
  for each statement execute function storage.protect_delete();
create trigger protect_objects_delete before delete on storage.objects
  for each statement execute function storage.protect_delete();

create function storage.foldername(name text) returns text[] language plpgsql as $$
declare
  _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[1 : array_length(_parts, 1) - 1];
end
$$;

create function storage.filename(name text) returns text language plpgsql as $$
declare
  _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[array_length(_parts, 1)];
end
$$;

create function storage.extension(name text) returns text language plpgsql as $$
declare
  _parts text[];
  _filename text;
begin
  select string_to_array(name, '/') into _parts;
  select _parts[array_length(_parts, 1)] into _filename;
  return reverse(split_part(reverse(_filename), '.', 1));
end
$$;

-- Like Supabase, the storage service role owns the storage tables.
grant usage, create on schema storage to supabase_storage_admin;
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
grant all on all tables in schema storage to anon, authenticated, service_role;
grant all on all functions in schema storage to anon, authenticated, service_role;

-- net: pg_net stand-in (requests drained by tests/harness/pgnet.py) -------------
create schema net;
grant usage on schema net to anon, authenticated, service_role;

create unlogged table net.http_request_queue (
  id bigserial not null,
  method text not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds int not null
);

create unlogged table net._http_response (
  id bigint,
  status_code int,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);

create function net._url_with_params(url text, params jsonb) returns text
language sql immutable as $$
  select case
    when q is null then url
    when position('?' in url) > 0 then url || '&' || q
    else url || '?' || q
  end
  from (select string_agg(key || '=' || value, '&') as q from jsonb_each_text(params)) p
$$;

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint
strict volatile parallel safe language plpgsql
security definer set search_path = net
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, timeout_milliseconds)
  values ('GET', net._url_with_params(url, params), headers, timeout_milliseconds)
  returning id into request_id;
  return request_id;
end
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint
volatile parallel safe language plpgsql
security definer set search_path = net
as $$
declare
  request_id bigint;
begin
  if headers ->> 'Content-Type' is null then
    headers = headers || '{"Content-Type": "application/json"}'::jsonb;
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (
    'POST', net._url_with_params(url, params), headers,
    convert_to(body::text, 'UTF8'), timeout_milliseconds
  )
  returning id into request_id;
  return request_id;
end
$$;

revoke all on function net.http_get(text, jsonb, jsonb, int) from public;
revoke all on function net.http_post(text, jsonb, jsonb, jsonb, int) from public;
grant execute on function net.http_get(text, jsonb, jsonb, int)
  to anon, authenticated, service_role, supabase_storage_admin;
grant execute on function net.http_post(text, jsonb, jsonb, jsonb, int)
  to anon, authenticated, service_role, supabase_storage_admin;

-- supabase_functions: Database Webhooks (copied from supabase/postgres webhooks.sql)
create schema supabase_functions;
grant usage on schema supabase_functions to anon, authenticated, service_role;

create table supabase_functions.hooks (
  id bigserial primary key,
  hook_table_id integer not null,
  hook_name text not null,
  created_at timestamptz not null default now(),
  request_id bigint
);

create function supabase_functions.http_request() returns trigger
language plpgsql
security definer set search_path = supabase_functions
as $function$
  DECLARE
    request_id bigint;
    payload jsonb;
    url text := TG_ARGV[0]::text;
    method text := TG_ARGV[1]::text;
    headers jsonb DEFAULT '{}'::jsonb;
    params jsonb DEFAULT '{}'::jsonb;
    timeout_ms integer DEFAULT 1000;
  BEGIN
    IF url IS NULL OR url = 'null' THEN
      RAISE EXCEPTION 'url argument is missing';
    END IF;

    IF method IS NULL OR method = 'null' THEN
      RAISE EXCEPTION 'method argument is missing';
    END IF;

    IF TG_ARGV[2] IS NULL OR TG_ARGV[2] = 'null' THEN
      headers = '{"Content-Type": "application/json"}'::jsonb;
    ELSE
      headers = TG_ARGV[2]::jsonb;
    END IF;

    IF TG_ARGV[3] IS NULL OR TG_ARGV[3] = 'null' THEN
      params = '{}'::jsonb;
    ELSE
      params = TG_ARGV[3]::jsonb;
    END IF;

    IF TG_ARGV[4] IS NULL OR TG_ARGV[4] = 'null' THEN
      timeout_ms = 1000;
    ELSE
      timeout_ms = TG_ARGV[4]::integer;
    END IF;

    CASE
      WHEN method = 'GET' THEN
        SELECT http_get INTO request_id FROM net.http_get(
          url,
          params,
          headers,
          timeout_ms
        );
      WHEN method = 'POST' THEN
        payload = jsonb_build_object(
          'old_record', OLD,
          'record', NEW,
          'type', TG_OP,
          'table', TG_TABLE_NAME,
          'schema', TG_TABLE_SCHEMA
        );

        SELECT http_post INTO request_id FROM net.http_post(
          url,
          payload,
          params,
          headers,
          timeout_ms
        );
      ELSE
        RAISE EXCEPTION 'method argument % is invalid', method;
    END CASE;

    INSERT INTO supabase_functions.hooks
      (hook_table_id, hook_name, request_id)
    VALUES
      (TG_RELID, TG_NAME, request_id);

    RETURN NEW;
  END
$function$;

revoke all on function supabase_functions.http_request() from public;
grant execute on function supabase_functions.http_request()
  to anon, authenticated, service_role, supabase_storage_admin;
