-- Full-text search over captions, for applications (supabase-js / supabase-py, as the
-- signed-in user) and for the operators' gallery; below it, the functions of the gallery
-- and of re-captioning.
--
-- Language: one text-search configuration per project, kept in captioner.config
-- (default 'english'; any name from `select cfgname from pg_ts_config`, e.g. 'simple' for
-- no stemming). Each caption row records the configuration its tsvector was made with;
-- public.caption_search_configure('french') switches and re-indexes every caption.

alter table captioner.config add column if not exists search_language regconfig not null
  default 'english';

-- The configured language, for anyone (queries must be parsed like the captions were).
create or replace function public.image_caption_search_language()
returns regconfig language sql stable security definer set search_path = '' as $$
  select coalesce((select c.search_language from captioner.config c), 'english'::regconfig);
$$;
revoke all on function public.image_caption_search_language() from public;
grant execute on function public.image_caption_search_language()
  to anon, authenticated, service_role;

alter table public.image_caption add column if not exists search_language regconfig not null
  default public.image_caption_search_language();
alter table public.image_caption add column if not exists search_vector tsvector
  generated always as (to_tsvector(search_language, caption)) stored;
create index if not exists image_caption_search_idx on public.image_caption
  using gin (search_vector);
-- the gallery's "latest captions" (and search's tie-break) walk this index
create index if not exists image_caption_updated_idx on public.image_caption (updated_at desc);

comment on column public.image_caption.search_vector is
  'to_tsvector(search_language, caption): searched by public.search_image_captions().';

-- Captions the caller can read (RLS on image_caption and storage.objects holds: security
-- invoker) that match `query`, best first. `query` is web-search syntax (words, "a phrase",
-- or, -not): websearch_to_tsquery never raises a syntax error, whatever the text; a query
-- with no searchable word (empty, only stop words or punctuation) matches nothing.
-- The query runs as dynamic SQL so that it is planned knowing the words: a word in half
-- the captions is best hash-joined, a rare one looked up row by row.
create or replace function public.search_image_captions(
  query text,
  bucket text default null,
  max_results integer default 20,
  skip integer default 0)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql stable security invoker set search_path = '' as $fn$
declare
  tsq tsquery := websearch_to_tsquery(
    public.image_caption_search_language(), left(coalesce(search_image_captions.query, ''), 1000));
begin
  if numnode(tsq) = 0 then
    return;
  end if;
  return query execute $q$
    with hits as (  -- rank and sort narrow rows; fetch the text of the winners only
      select ic.id, ts_rank(ic.search_vector, $1) as rank, ic.updated_at
        from public.image_caption ic
        join storage.objects o on o.id = ic.id
       where ic.search_vector @@ $1 and ($2::text is null or o.bucket_id = $2)
       order by 2 desc, 3 desc, 1
       limit $3 offset $4
    )
    select h.id, o.bucket_id, o.name, ic.caption, ic.model, ic.updated_at, h.rank
      from hits h
      join public.image_caption ic on ic.id = h.id
      join storage.objects o on o.id = h.id
     order by h.rank desc, h.updated_at desc, h.id
  $q$ using tsq, search_image_captions.bucket,
            least(greatest(coalesce(search_image_captions.max_results, 20), 0), 100),
            greatest(coalesce(search_image_captions.skip, 0), 0);
end $fn$;

comment on function public.search_image_captions(text, text, integer, integer) is
  'Full-text search over the captions the caller may read; at most 100 rows per call.';
revoke all on function public.search_image_captions(text, text, integer, integer) from public;
grant execute on function public.search_image_captions(text, text, integer, integer)
  to anon, authenticated, service_role;

-- Switches the search language and re-indexes every caption (a rewrite of the table's
-- tsvectors: minutes at millions of captions). Returns how many captions were re-indexed.
create or replace function public.caption_search_configure(p_language regconfig)
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  changed bigint;
begin
  update captioner.config set search_language = p_language, updated_at = now();
  update public.image_caption set search_language = p_language
   where search_language is distinct from p_language;
  get diagnostics changed = row_count;
  return changed;
end $$;
revoke all on function public.caption_search_configure(regconfig) from public, anon, authenticated;
grant execute on function public.caption_search_configure(regconfig) to service_role;

-- The operators' gallery (app/gallery.py) and re-captioning (app/recaption.py). Like the
-- queue functions in 0003: security definer, empty search_path, service_role only.

-- (an index of an earlier version of this file: partial indexes serve instead)
drop index if exists captioner.jobs_state_updated_idx;
-- failed jobs have 0008's jobs_failed_idx; skipped ones (0002) this
create index if not exists jobs_skipped_idx on captioner.jobs (updated_at) where state = 'skipped';

-- The gallery's cards: one bucket's captions with their provenance (0001, 0006), newest
-- first, or those of p_ids (search results) in that order.
drop function if exists public.caption_gallery_recent(text, integer);
create or replace function public.caption_gallery_captions(
  p_bucket text, p_limit integer, p_ids uuid[] default null)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, reused boolean, caption_ms integer, attempts integer)
language sql stable security definer set search_path = '' as $$
  select ic.id, o.bucket_id, o.name, ic.caption, ic.model, ic.updated_at,
         ic.reused_from is not null, ic.caption_ms, ic.attempts
    from public.image_caption ic
    join storage.objects o on o.id = ic.id
   where o.bucket_id = p_bucket and (p_ids is null or ic.id = any (p_ids))
   order by array_position(p_ids, ic.id), ic.updated_at desc, ic.id
   limit least(greatest(p_limit, 0), 500);
$$;

-- One bucket's newest jobs in one state (e.g. 'failed'), with their reasons. Dynamic SQL:
-- planned knowing the state, so that the partial index of that state serves.
create or replace function public.caption_gallery_jobs(
  p_bucket text, p_state text, p_limit integer)
returns table (object_id uuid, name text, attempts integer, reason text, at timestamptz)
language plpgsql stable security definer set search_path = '' as $fn$
begin
  return query execute $q$
    select j.object_id, o.name, j.attempts, j.last_error, j.updated_at
      from captioner.jobs j
      join storage.objects o on o.id = j.object_id
     where j.state = $1::captioner.job_state and j.bucket_id = $2
     order by j.updated_at desc
     limit $3
  $q$ using p_state, p_bucket, least(greatest(p_limit, 0), 500);
end $fn$;

-- Queues these objects again for their current version, whatever their job's state
-- (failed, done, or none) unless one is already pending or running; an object that is
-- not captionable is left alone. Its caption stays until the new one is written.
-- Returns how many were queued.
create or replace function public.caption_jobs_requeue(p_object_ids uuid[])
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  insert into captioner.jobs as j (object_id, version)
  select o.id, o.version
    from storage.objects o
   where o.id = any (p_object_ids)
     and captioner.skip_reason(o.bucket_id, o.name, o.metadata, array[o.bucket_id]) is null
  on conflict (object_id) do update
    set version = excluded.version, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null, updated_at = now()
    where j.state not in ('pending', 'running');
  get diagnostics queued = row_count;
  return queued;
end $$;

-- Re-captioning after a model change: queues up to p_limit captioned objects of the bucket
-- (under p_prefix) whose caption was not made by p_model, in name order. Skipped: objects
-- already queued, and those whose job ended (done or failed) since p_since, the start of
-- this re-caption run, so that a run queues each object once; a new run (a later p_since)
-- continues where the last stopped and tries its failures again.
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

-- Where a re-caption stands: the captions in scope, how many are by p_model, and how many
-- of the others are queued or failed.
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
     and starts_with(o.name, coalesce(p_prefix, ''));
$$;

do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('caption_gallery_captions', 'caption_gallery_jobs',
                         'caption_jobs_requeue', 'caption_jobs_recaption',
                         'caption_recaption_progress')
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;
