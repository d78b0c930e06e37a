-- Issue 9: the same bytes are captioned once, and skipped uploads say why.
-- Like the functions in 0003: security definer, empty search_path, service_role only.

-- An object's content fingerprint from what storage already recorded: the eTag (an MD5 of
-- the bytes for a single-part upload) and the size. Null when the metadata lacks them; the
-- worker then hashes the bytes it downloads the same way (app/jobs.py content_fingerprint).
create or replace function captioner.fingerprint(p_metadata jsonb)
returns text language sql immutable set search_path = '' as $$
  select case
    when p_metadata ->> 'size' !~ '^[0-9]+$' or p_metadata ->> 'eTag' is null then null
    when btrim(p_metadata ->> 'eTag', '"') ~ '^[0-9a-fA-F]{32}$'
      then 'md5:' || lower(btrim(p_metadata ->> 'eTag', '"')) || ':' || (p_metadata ->> 'size')
    else 'etag:' || btrim(p_metadata ->> 'eTag', '"') || ':' || (p_metadata ->> 'size')
  end
$$;

create index if not exists image_caption_fingerprint_idx
  on public.image_caption (fingerprint, model) where fingerprint is not null;

-- The dedupe rule. A leased job whose bytes (p_fingerprint) were already captioned with
-- p_model is finished with that caption instead: no download, no model call. Its own
-- earlier caption is preferred (a move keeps the id and gets a new version), then the
-- oldest. A job for a version that already has its caption is a re-caption someone asked
-- for (captioner recaption, the gallery): it is made anew. reused_from names the object
-- the caption was first made for. Returns it, or null (nothing to reuse, lease gone).
create or replace function captioner.reuse_caption(
  p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text)
returns uuid language plpgsql security definer set search_path = '' as $$
declare
  source public.image_caption;
  job captioner.jobs;
  origin uuid;
begin
  if p_fingerprint is null or p_model is null then
    return null;
  end if;
  select * into job from captioner.jobs j
   where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'
     for update;
  if not found or exists (
    select 1 from public.image_caption ic
     where ic.id = p_object_id and ic.object_version is not distinct from job.version) then
    return null;
  end if;
  select * into source from public.image_caption ic
   where ic.fingerprint = p_fingerprint and ic.model = p_model
   order by ic.id = p_object_id desc, ic.created_at
   limit 1;
  if not found then
    return null;
  end if;
  update captioner.jobs j
     set state = 'done', lease_token = null, lease_until = null, last_error = null,
         updated_at = now()
   where j.object_id = p_object_id;
  origin := coalesce(source.reused_from, source.id);
  insert into public.image_caption as ic
         (id, caption, model, object_version, fingerprint, attempts, caption_ms, reused_from)
  values (p_object_id, source.caption, source.model, job.version, p_fingerprint, job.attempts,
          null, origin)
  on conflict (id) do update
    set caption = excluded.caption, model = excluded.model,
        object_version = excluded.object_version, fingerprint = excluded.fingerprint,
        attempts = excluded.attempts, caption_ms = excluded.caption_ms,
        reused_from = excluded.reused_from, updated_at = now();
  return origin;
end $$;

-- For a job whose fingerprint only the worker knows (it hashed the downloaded bytes).
create or replace function public.caption_jobs_reuse(
  p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text)
returns uuid language sql security definer set search_path = '' as $$
  select captioner.reuse_caption(p_object_id, p_lease_token, p_fingerprint, p_model);
$$;

-- The newest jobs in one state, with their reason (skipped: why it is not captioned).
-- Dynamic SQL: planned knowing the state, so that state's partial index serves
-- (jobs_failed_idx in 0008, jobs_skipped_idx in 0009).
create or replace function public.caption_jobs_recent(p_state text, p_limit integer)
returns table (object_id uuid, bucket_id text, name text, state text, attempts integer,
               reason text, at timestamptz)
language plpgsql stable security definer set search_path = '' as $fn$
begin
  return query execute $q$
    select j.object_id, o.bucket_id, o.name, j.state::text, j.attempts, j.last_error,
           j.updated_at
      from captioner.jobs j join storage.objects o on o.id = j.object_id
     where j.state = $1::captioner.job_state
     order by j.updated_at desc
     limit $2
  $q$ using p_state, least(greatest(p_limit, 0), 500);
end $fn$;

-- Jobs per bucket and state, every state of captioner.job_state included, from the kept
-- counters (captioner.job_counts, 0008: plpgsql, so it may come after this file).
create or replace function public.caption_jobs_bucket_states()
returns table (bucket_id text, state text, jobs bigint)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
  select b.bucket_id, s.state::text, coalesce(sum(c.jobs), 0)::bigint
    from (select k.bucket_id from captioner.job_counts k
           group by k.bucket_id having sum(k.jobs) <> 0) b
   cross join unnest(enum_range(null::captioner.job_state)) as s(state)
    left join captioner.job_counts c on c.bucket_id = b.bucket_id and c.state = s.state
   group by b.bucket_id, s.state
   order by b.bucket_id, s.state;
end $$;

revoke all on all functions in schema captioner from public;
do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('caption_jobs_reuse', 'caption_jobs_recent', 'caption_jobs_bucket_states')
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;
