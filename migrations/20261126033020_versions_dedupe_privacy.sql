-- Issue 17: storage as Supabase projects have it in December 2026.
--
-- 1. Content dedupe whatever the upload path. An S3 backend (hosted Supabase) stores the eTag
--    "<h>-<parts>" for TUS and multipart uploads: not the bytes' MD5. Such an object gets no
--    fingerprint from its metadata; the worker hashes the bytes it downloads anyway
--    (app/pipeline/jobs.py content_fingerprint) and stores md5:<hex>:<size>, so a later plain
--    upload, move or copy of the same bytes (plain MD5 eTags) reuses its caption, and the
--    other way round.
-- 2. Versioned buckets, as storage-api v1.77.0 implements them (its migrations 62
--    object-versioning-core to 72 drop-bucketid-objname-index; src/test/object-versioning):
--    every version is its own storage.objects row (its own id); an overwrite UPDATEs the
--    current row's archived_at and INSERTs the new current row; a delete INSERTs a current
--    delete marker (is_delete_marker, no metadata). Only the current version (archived_at
--    null) of an object is queued and captioned; archiving a version queues nothing and leaves
--    the current version's caption alone (a job still pending for the archived row is
--    dropped); a delete marker is never queued, and captions of archived versions and of
--    delete markers are hidden from readers (the policy below). The trigger reaches rows by
--    objects_pkey (id), the sweep walks idx_objects_bucket_id_name (bucket_id, name "C"),
--    both on v1.77's schema.
-- 3. Reuse reveals nothing about objects the reader cannot see: a caption copied from another
--    object looks like one made for this object (reused_from null, the source's caption_ms);
--    the provenance is kept in captioner.caption_reuses, which only the service reads.

-- 1 ------------------------------------------------------------------------------------
create or replace function captioner.fingerprint(p_metadata jsonb)
returns text language sql immutable set search_path = '' as $$
  select case
    when p_metadata ->> 'size' ~ '^[0-9]+$'
     and btrim(p_metadata ->> 'eTag', '"') ~ '^[0-9a-fA-F]{32}$'
      then 'md5:' || lower(btrim(p_metadata ->> 'eTag', '"')) || ':' || (p_metadata ->> 'size')
  end
$$;

comment on column public.image_caption.fingerprint is
  'The content the caption describes: md5:<hex>:<size> (from a plain MD5 eTag, or hashed by '
  'the worker); rows written before 20261126033020 may hold etag:<eTag>:<size>.';

-- 2 ------------------------------------------------------------------------------------
-- Why a row is not an object to caption, or null: a version that is not current, a marker.
create or replace function captioner.not_current(obj storage.objects)
returns text language sql immutable set search_path = '' as $$
  select case
    when obj.archived_at is not null then 'not the current version'
    when obj.is_delete_marker then 'delete marker'
  end
$$;

-- 0003's enqueue, for current versions only. A row that became a delete marker in place (a
-- bucket with versioning suspended) loses its job and caption: its content is deleted.
create or replace function captioner.enqueue(p_object_id uuid)
returns text language plpgsql security definer set search_path = '' as $$
declare
  obj storage.objects;
  reason text;
begin
  select * into obj from storage.objects where id = p_object_id;
  if not found then
    return 'ignored: object not found';
  end if;
  reason := captioner.not_current(obj);
  if reason is not null then
    if obj.is_delete_marker then
      delete from captioner.jobs where object_id = obj.id;
      delete from public.image_caption where id = obj.id;
    end if;
    return 'ignored: ' || reason;
  end if;
  select captioner.skip_reason(obj.bucket_id, obj.name, obj.metadata, c.buckets)
    into reason from captioner.config c;
  if reason is not null then
    perform captioner.record_skip(obj, reason);
    return 'ignored: ' || reason;
  end if;
  insert into captioner.jobs as j (object_id, version, bucket_id)
  values (obj.id, obj.version, obj.bucket_id)
  on conflict (object_id) do update
    set version = excluded.version, bucket_id = excluded.bucket_id, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null, updated_at = now()
    where j.version is distinct from excluded.version;
  return case when found then 'queued' else 'duplicate' end;
end $$;

-- A version that stops being current keeps its caption (hidden, see the policy) and loses a
-- job not yet done: that job would read the key's new current bytes.
create or replace function captioner.on_object_archived()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  delete from captioner.jobs j
   where j.object_id = new.id and j.state in ('pending', 'running');
  return null;
end $$;

create or replace trigger caption_on_object_change
  after insert or update of version, metadata on storage.objects
  for each row when (new.archived_at is null)
  execute function captioner.on_object_change();

create or replace trigger caption_on_object_archived
  after update of archived_at on storage.objects
  for each row when (old.archived_at is null and new.archived_at is not null)
  execute function captioner.on_object_archived();

-- 0008's slice of a reconciliation pass, over current versions only. Current rows are
-- unique per name (idx_objects_current_version), so the name cursor stays exact; archived
-- rows met on idx_objects_bucket_id_name are filtered out.
create or replace function captioner.sweep_slice(p_bucket text, p_after text, p_limit integer)
returns table (examined integer, queued integer, skipped integer, last_name text)
language sql security definer set search_path = '' as $$
  with slice as (
    select o.id, o.name, o.version,
           captioner.skip_reason(p_bucket, o.name, o.metadata, array[p_bucket]) as reason
      from storage.objects o
     where o.bucket_id = p_bucket and o.name collate "C" > p_after collate "C"
       and o.archived_at is null and not o.is_delete_marker
     order by o.name collate "C"
     limit p_limit
  ), added as (
    insert into captioner.jobs as j (object_id, version, bucket_id)
    select s.id, s.version, p_bucket from slice s
     where s.reason is null
       and not exists (  -- a skipped job may be captionable now (a format added since)
         select 1 from captioner.jobs q
          where q.object_id = s.id and q.version is not distinct from s.version
            and q.state <> 'skipped')
       and not exists (
         select 1 from public.image_caption ic
          where ic.id = s.id
            and (ic.object_version is null or ic.object_version is not distinct from s.version))
    on conflict (object_id) do update
      set version = excluded.version, bucket_id = excluded.bucket_id, state = 'pending',
          attempts = 0, run_after = now(), lease_token = null, lease_until = null,
          worker = null, last_error = null, updated_at = now()
    returning 1
  )
  select (select count(*) from slice)::integer,
         (select count(*) from added)::integer,
         (select count(*) from slice where reason is not null)::integer,
         (select max(name collate "C") from slice);
$$;

create or replace function public.caption_jobs_bucket_size(p_bucket text)
returns bigint language sql stable security definer set search_path = '' as $$
  select count(*) from storage.objects o
   where o.bucket_id = p_bucket and o.archived_at is null and not o.is_delete_marker;
$$;

-- 0009's requeue and re-caption, over current versions only.
create or replace function public.caption_jobs_requeue(p_object_ids uuid[])
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  insert into captioner.jobs as j (object_id, version)
  select o.id, o.version
    from storage.objects o
   where o.id = any (p_object_ids) and captioner.not_current(o) is null
     and captioner.skip_reason(o.bucket_id, o.name, o.metadata, array[o.bucket_id]) is null
  on conflict (object_id) do update
    set version = excluded.version, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null, updated_at = now()
    where j.state not in ('pending', 'running');
  get diagnostics queued = row_count;
  return queued;
end $$;

create or replace function public.caption_jobs_recaption(
  p_bucket text, p_prefix text, p_model text, p_limit integer,
  p_since timestamptz default null)
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  insert into captioner.jobs as j (object_id, version)
  select o.id, o.version
    from storage.objects o
    join public.image_caption ic on ic.id = o.id
   where o.bucket_id = p_bucket
     and starts_with(o.name, coalesce(p_prefix, ''))
     and o.archived_at is null and not o.is_delete_marker
     and ic.model is distinct from p_model
     and not exists (
       select 1 from captioner.jobs q
        where q.object_id = o.id
          and (q.state in ('pending', 'running') or q.updated_at >= p_since))
   order by o.name
   limit p_limit
  on conflict (object_id) do update
    set version = excluded.version, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null, updated_at = now()
    where j.state not in ('pending', 'running');
  get diagnostics queued = row_count;
  return queued;
end $$;

create or replace function public.caption_recaption_progress(
  p_bucket text, p_prefix text, p_model text)
returns table (captions bigint, done bigint, queued bigint, failed bigint)
language sql stable security definer set search_path = '' as $$
  select count(*),
         count(*) filter (where ic.model is not distinct from p_model),
         count(*) filter (where ic.model is distinct from p_model
                            and j.state in ('pending', 'running')),
         count(*) filter (where ic.model is distinct from p_model and j.state = 'failed')
    from storage.objects o
    join public.image_caption ic on ic.id = o.id
    left join captioner.jobs j on j.object_id = o.id
   where o.bucket_id = p_bucket
     and starts_with(o.name, coalesce(p_prefix, ''))
     and o.archived_at is null and not o.is_delete_marker;
$$;

-- A caption is readable where its object is, while that object is the key's current version.
drop policy if exists "Captions are readable where the image is" on public.image_caption;
create policy "Captions are readable where the image is" on public.image_caption
  for select to anon, authenticated
  using (exists (select 1 from storage.objects o
                  where o.id = image_caption.id
                    and o.archived_at is null and not o.is_delete_marker));

-- Search (20261126024414, 20261126031828) under the policy above: the search roles read
-- captions beside the objects the caller may read, current versions only (run() as in
-- 20261126031828 plus that condition), and roles_exact() recognises the policy as the one it
-- was written for (else search would fall back to the caller's rights).
create or replace function captioner_search.run(
  p_query tsquery, p_bucket text, p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql volatile security invoker set search_path = ''  -- volatile: may EXPLAIN
set max_parallel_workers_per_gather = 0 as $fn$
declare
  plan jsonb;
  captions real := (select c.reltuples from pg_catalog.pg_class c
                     where c.oid = 'public.image_caption'::regclass);
  few bigint;
  -- for tests and diagnosis: 'walk', 'any' or 'hits' forces a way (the rows are the same)
  form text := nullif(current_setting('captioner.search_plan', true), '');
begin
  if form is null then
    execute 'explain (format json) select 1 from public.image_caption ic'
            ' where ic.search_vector @@ $1' into plan using p_query;
    captions := greatest(captions, 1);
    form := case when (plan -> 0 -> 'Plan' ->> 'Plan Rows')::real / captions
                      >= sqrt(p_window / captions) then 'walk' else 'any' end;
    -- counting through the index is cheap unless RLS binds it (the caller's own path)
    if form = 'any' and (not row_security_active('public.image_caption')
       or current_user::text in ('captioner_search_anon', 'captioner_search_authenticated')) then
      execute 'select count(*) from (select from public.image_caption ic'
              ' where ic.search_vector @@ $1 limit 1000) m' into few using p_query;
      if few < 1000 then
        form := 'hits';
      end if;
    end if;
  end if;
  return query execute format($q$
    with hits as materialized (
      select ic.id, ic.updated_at, ic.search_vector
        from public.image_caption ic where ic.search_vector @@ $1
    ), newest as (
      select ic.id, ic.updated_at, ic.search_vector
        from %s
        join storage.objects o on o.id = ic.id
       where ic.search_vector @@ $1 and ($2::text is null or o.bucket_id = $2)
         and o.archived_at is null and not o.is_delete_marker
       order by %s desc, ic.id desc
       limit greatest($5, $4 + $3)
    ), placed as (
      select n.id, n.updated_at, ts_rank(n.search_vector, $1) as rank,
             row_number() over (order by n.updated_at desc, n.id desc) > $5 as later
        from newest n
    ), page as (
      select p.* from placed p
       order by p.later, case when p.later then 0 else p.rank end desc, p.updated_at desc, p.id
       limit $3 offset $4
    )
    select pg.id, o.bucket_id, o.name, ic.caption, ic.model, pg.updated_at, pg.rank
      from page pg
      join public.image_caption ic on ic.id = pg.id
      join storage.objects o on o.id = pg.id
     order by pg.later, case when pg.later then 0 else pg.rank end desc, pg.updated_at desc,
              pg.id
  $q$,
  case when form = 'hits' then 'hits ic' else 'public.image_caption ic' end,
  case when form = 'walk' then 'ic.updated_at'
       else '(ic.updated_at + interval ''0 s'')' end)  -- an order no index offers
  using p_query, p_bucket, p_limit, p_skip, p_window;
end $fn$;

create or replace function captioner_search.roles_exact()
returns boolean language sql stable security definer set search_path = '' as $$
  select exists (
           select 1 from pg_catalog.pg_policy p
            where p.polrelid = 'public.image_caption'::regclass
              and p.polname = 'Captions are readable where the image is'
              and p.polpermissive and p.polcmd in ('r', '*')
              and p.polroles @> array['anon'::regrole, 'authenticated'::regrole]::oid[]
              and regexp_replace(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '\s+', ' ', 'g')
                  = '(EXISTS ( SELECT 1 FROM storage.objects o WHERE ((o.id = image_caption.id) AND'
                     ' (o.archived_at IS NULL) AND (NOT o.is_delete_marker))))')
     and not exists (
           select 1 from pg_catalog.pg_policy p
            where pg_catalog.pg_get_expr(p.polqual, p.polrelid)
                  ~ '\m(CURRENT_USER|CURRENT_ROLE|SESSION_USER|USER|pg_has_role|has_[a-z_]+_privilege)\M');
$$;

-- 3 ------------------------------------------------------------------------------------
-- Where a reused caption came from: for the service (the gallery, `captioner status`), never
-- for the caption's readers. One row per object, for the caption of object_version by model.
create table if not exists captioner.caption_reuses (
  object_id uuid primary key references storage.objects (id) on delete cascade,
  source_id uuid not null,
  object_version text,
  model text,
  reused_at timestamptz not null default now()
);

-- Before a caption row is written: a reuse from another object is recorded here and leaves
-- no trace in the row (reused_from null, the source's caption_ms). A reuse from the object
-- itself (a move, a re-upload of the same bytes) keeps reused_from: the reader sees only its
-- own object's id.
create or replace function captioner.hide_reuse()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  if new.reused_from is null or new.reused_from = new.id then
    delete from captioner.caption_reuses r where r.object_id = new.id;
    return new;
  end if;
  insert into captioner.caption_reuses as r (object_id, source_id, object_version, model)
  values (new.id, new.reused_from, new.object_version, new.model)
  on conflict (object_id) do update
    set source_id = excluded.source_id, object_version = excluded.object_version,
        model = excluded.model, reused_at = now();
  if tg_table_name = 'image_caption' and new.caption_ms is null then
    new.caption_ms := (select ic.caption_ms from public.image_caption ic
                        where ic.id = new.reused_from);
  end if;
  new.reused_from := null;
  return new;
end $$;

create or replace trigger caption_hide_reuse
  before insert or update of reused_from on public.image_caption
  for each row execute function captioner.hide_reuse();

-- Rows written before this file: the same rule.
update public.image_caption set reused_from = reused_from
 where reused_from is not null and reused_from <> id;

-- 0009's gallery cards (the service's view): `reused` from the row or from caption_reuses.
create or replace function public.caption_gallery_captions(
  p_bucket text, p_limit integer, p_ids uuid[] default null)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, reused boolean, caption_ms integer, attempts integer)
language sql stable security definer set search_path = '' as $$
  select ic.id, o.bucket_id, o.name, ic.caption, ic.model, ic.updated_at,
         ic.reused_from is not null or exists (
           select 1 from captioner.caption_reuses r
            where r.object_id = ic.id and r.model is not distinct from ic.model
              and r.object_version is not distinct from ic.object_version),
         ic.caption_ms, ic.attempts
    from public.image_caption ic
    join storage.objects o on o.id = ic.id
   where o.bucket_id = p_bucket and (p_ids is null or ic.id = any (p_ids))
     and o.archived_at is null and not o.is_delete_marker
   order by array_position(p_ids, ic.id), ic.updated_at desc, ic.id
   limit least(greatest(p_limit, 0), 500);
$$;

revoke all on all functions in schema captioner from public;
revoke all on table captioner.caption_reuses from public, anon, authenticated;
do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('caption_jobs_bucket_size', 'caption_jobs_requeue',
                         'caption_jobs_recaption', 'caption_recaption_progress',
                         'caption_gallery_captions')
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126033020 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
