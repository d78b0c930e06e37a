-- The queue's operations. Each is `security definer` with an empty search_path, lives in
-- `public` so PostgREST can call it (rpc), and is executable by service_role only.

-- Why an object is not captioned, or null. The formats come from captioner.config.mimetypes
-- (app/images.py's list, set at start-up): what is queued is what the worker decodes.
create or replace function captioner.skip_reason(p_bucket text, p_name text, p_metadata jsonb, p_buckets text[])
returns text language sql stable set search_path = '' as $$
  select case
    when not (p_bucket = any (p_buckets)) then format('bucket %s is not watched', p_bucket)
    when p_name like '%.emptyFolderPlaceholder' then 'folder placeholder'
    when p_metadata is null or p_metadata ->> 'mimetype' is null then 'unknown content type (no metadata)'
    when lower(p_metadata ->> 'mimetype') not like 'image/%'
      then format('not an image (%s)', p_metadata ->> 'mimetype')
    when lower(p_metadata ->> 'mimetype') like 'image/svg%' then 'SVG is a vector image, not captioned'
    when not (lower(btrim(split_part(p_metadata ->> 'mimetype', ';', 1)))
              = any ((select c.mimetypes from captioner.config c)::text[]))
      then format('%s is not a format the captioner decodes', p_metadata ->> 'mimetype')
  end
$$;

-- Creates or resets the object's job for its current version. Returns 'queued',
-- 'duplicate' (this version already has a job) or 'ignored: <reason>'. An upload to a
-- watched bucket that is not captioned (not an image, a format not decoded) is recorded
-- as a 'skipped' job with its reason, and a caption of an older version goes.
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

create or replace function captioner.record_skip(obj storage.objects, reason text)
returns void language plpgsql security definer set search_path = '' as $$
begin
  if obj.name like '%.emptyFolderPlaceholder'
     or not obj.bucket_id = any ((select c.buckets from captioner.config c)::text[]) then
    return;  -- not an upload anyone expects a caption for
  end if;
  insert into captioner.jobs as j (object_id, version, bucket_id, state, last_error)
  values (obj.id, obj.version, obj.bucket_id, 'skipped', reason)
  on conflict (object_id) do update
    set version = excluded.version, bucket_id = excluded.bucket_id, state = 'skipped',
        attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null,
        last_error = excluded.last_error, updated_at = now()
    where j.version is distinct from excluded.version;
  delete from public.image_caption
   where id = obj.id and object_version is distinct from obj.version;
end $$;

revoke all on all functions in schema captioner from public;

-- The service's settings, exactly: a null URL or secret removes it (no more wake-ups, a
-- rotated-out secret is no longer sent). p_mimetypes: the formats the worker decodes
-- (null keeps them).
drop function if exists public.caption_configure(text[], text, text, text);
create or replace function public.caption_configure(
  p_buckets text[], p_webhook_url text default null, p_webhook_secret text default null,
  p_signing_secret text default null, p_mimetypes text[] default null)
returns void language sql security definer set search_path = '' as $$
  update captioner.config
     set buckets = p_buckets,
         webhook_url = p_webhook_url,
         webhook_secret = p_webhook_secret,
         signing_secret = p_signing_secret,
         mimetypes = coalesce(p_mimetypes, mimetypes),
         updated_at = now();
$$;

-- Many webhooks' objects in one round trip; outcomes in the order of p_object_ids.
create or replace function public.caption_jobs_enqueue(p_object_ids uuid[])
returns table (object_id uuid, outcome text)
language sql security definer set search_path = '' as $$
  select u.id, captioner.enqueue(u.id)
    from unnest(p_object_ids) with ordinality as u(id, n)
   order by u.n;
$$;

-- Leases up to p_limit due jobs: running ones whose lease expired first, then pending ones
-- that are due, oldest first. Each is an index range scan of at most p_limit rows
-- (jobs_running_idx, jobs_pending_idx), so a claim costs the same with 10 or 10 M jobs.
-- A job whose lease expired after its last allowed attempt ends as failed instead.
-- With p_model, a job whose bytes were already captioned with that model is finished at
-- once with that caption (captioner.reuse_caption in 0006): reused_from is then set and
-- the worker has nothing to do. fingerprint: the content's, from storage's metadata.
drop function if exists public.caption_jobs_claim(text, integer, integer, integer);
create or replace function public.caption_jobs_claim(
  p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer,
  p_model text default null)
returns table (object_id uuid, version text, bucket_id text, name text, mimetype text,
               size bigint, attempts integer, lease_token uuid, fingerprint text,
               reused_from uuid)
language plpgsql security definer set search_path = '' as $$
declare
  expired uuid[];
  due uuid[];
  leased record;
begin
  update captioner.jobs j
     set state = 'failed', lease_token = null, lease_until = null, updated_at = now(),
         last_error = format('lease expired after %s attempts (worker crashed or stuck)', j.attempts)
   where j.state = 'running' and j.lease_until < now() and j.attempts >= p_max_attempts;

  select coalesce(array_agg(d.object_id), '{}') into expired from (
    select r.object_id from captioner.jobs r
     where r.state = 'running' and r.lease_until < now()
     order by r.lease_until limit p_limit
       for update skip locked) d;
  select coalesce(array_agg(d.object_id), '{}') into due from (
    select p.object_id from captioner.jobs p
     where p.state = 'pending' and p.run_after <= now()
     order by p.run_after limit p_limit - cardinality(expired)
       for update skip locked) d;

  for leased in
    update captioner.jobs j
       set state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
           lease_until = now() + make_interval(secs => p_lease_seconds), worker = p_worker,
           updated_at = now()
      from storage.objects o
     where j.object_id = any (expired || due) and o.id = j.object_id
    returning j.object_id, j.version, o.bucket_id, o.name, o.metadata ->> 'mimetype' as mimetype,
              (o.metadata ->> 'size')::bigint as size, j.attempts, j.lease_token,
              captioner.fingerprint(o.metadata) as fingerprint
  loop
    object_id := leased.object_id;
    version := leased.version;
    bucket_id := leased.bucket_id;
    name := leased.name;
    mimetype := leased.mimetype;
    size := leased.size;
    attempts := leased.attempts;
    lease_token := leased.lease_token;
    fingerprint := leased.fingerprint;
    reused_from := captioner.reuse_caption(
      leased.object_id, leased.lease_token, leased.fingerprint, p_model);
    return next;
  end loop;
end $$;

-- Writes the caption and marks the job done in one transaction, only while the caller
-- still holds the lease (a newer version or another worker makes it a no-op). Records its
-- provenance: model, object version, content fingerprint, attempts, captioner time.
drop function if exists public.caption_jobs_complete(uuid, uuid, text, text);
create or replace function public.caption_jobs_complete(
  p_object_id uuid, p_lease_token uuid, p_caption text, p_model text,
  p_fingerprint text default null, p_caption_ms integer default null)
returns boolean language plpgsql security definer set search_path = '' as $$
declare
  job captioner.jobs;
begin
  update captioner.jobs j
     set state = 'done', lease_token = null, lease_until = null, last_error = null, updated_at = now()
   where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'
  returning * into job;
  if not found then
    return false;
  end if;
  insert into public.image_caption as ic
         (id, caption, model, object_version, fingerprint, attempts, caption_ms, reused_from)
  values (p_object_id, p_caption, p_model, job.version, p_fingerprint, job.attempts,
          p_caption_ms, null)
  on conflict (id) do update
    set caption = excluded.caption, model = excluded.model,
        object_version = excluded.object_version, fingerprint = excluded.fingerprint,
        attempts = excluded.attempts, caption_ms = excluded.caption_ms, reused_from = null,
        updated_at = now();
  return true;
end $$;

-- Gives the job back to run again after p_delay_seconds. p_refund: the attempt does not
-- count (released at shutdown, not failed).
create or replace function public.caption_jobs_retry(
  p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision,
  p_refund boolean default false)
returns boolean language plpgsql security definer set search_path = '' as $$
begin
  update captioner.jobs
     set state = 'pending', run_after = now() + make_interval(secs => p_delay_seconds),
         attempts = attempts - case when p_refund then 1 else 0 end,
         last_error = coalesce(p_error, last_error),
         lease_token = null, lease_until = null, updated_at = now()
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';
  return found;
end $$;

-- Ends the job as failed; a caption of an older version is stale and goes too.
create or replace function public.caption_jobs_fail(
  p_object_id uuid, p_lease_token uuid, p_error text)
returns boolean language plpgsql security definer set search_path = '' as $$
declare
  failed_version text;
begin
  update captioner.jobs
     set state = 'failed', last_error = p_error, lease_token = null, lease_until = null,
         updated_at = now()
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running'
  returning version into failed_version;
  if not found then
    return false;
  end if;
  delete from public.image_caption
   where id = p_object_id and object_version is distinct from failed_version;
  return true;
end $$;

-- The reconciliation sweep. The trigger (0004) queues every upload in its own transaction,
-- so captioner.jobs is the record of what is known and a sweep has little to look for:
-- uploads whose job the trigger could not queue (it notes them in captioner.sweep_missed;
-- retried first, by id), and objects the trigger never saw, which need a pass over the
-- bucket: a bucket seen for the first time (objects uploaded before install, or a newly
-- watched bucket), a pass asked for (caption_jobs_sweep_start, `captioner backfill`), or
-- every p_full_every_seconds (writes with triggers off, jobs deleted by hand). A pass walks
-- the bucket in name order through storage-api's own index idx_objects_bucket_id_name,
-- p_limit objects per call (captioner.sweep_slice, 0008), and keeps its cursor in
-- captioner.sweep_passes. With nothing noted and no pass running, a call reads three tiny
-- tables and returns: its cost does not grow with the bucket.
-- While about p_limit jobs are already pending a pass waits, so new uploads never queue
-- behind a whole backfill. Only one replica sweeps at a time: the others return no rows.
-- Returns a row per bucket with a running pass (and one with a null bucket for the noted
-- misses): what this call examined, queued and found not captionable, and whether the pass
-- goes on.
drop function if exists public.caption_jobs_sweep(integer);
drop function if exists public.caption_jobs_sweep(integer, text[]);
create or replace function public.caption_jobs_sweep(
  p_limit integer, p_buckets text[] default null,
  p_full_every_seconds double precision default null)
returns table (bucket_id text, examined integer, queued integer, skipped integer,
               passing boolean)
language plpgsql security definer set search_path = '' as $$
declare
  buckets text[];
  pass record;
  slice record;
  budget integer := p_limit;
  backlog bigint;
begin
  if not pg_try_advisory_xact_lock(hashtext('captioner.caption_jobs_sweep')) then
    return;
  end if;
  select coalesce(p_buckets, c.buckets) into buckets from captioner.config c;
  if exists (select 1 from captioner.sweep_missed) then
    return query
    with retried as (
      delete from captioner.sweep_missed m
       where m.object_id in (select n.object_id from captioner.sweep_missed n limit p_limit)
      returning m.object_id
    ), outcomes as (select captioner.enqueue(r.object_id) as outcome from retried r)
    select null::text, count(*)::integer, count(*) filter (where o.outcome = 'queued')::integer,
           count(*) filter (where o.outcome like 'ignored%')::integer, false
      from outcomes o;
  end if;
  insert into captioner.sweep_passes (bucket_id) select unnest(buckets) on conflict do nothing;
  if p_full_every_seconds > 0 then
    update captioner.sweep_passes s
       set after_name = '', started_at = now(), examined = 0, queued = 0
     where s.bucket_id = any (buckets) and s.after_name is null
       and s.finished_at < now() - make_interval(secs => p_full_every_seconds);
  end if;
  select coalesce(sum(c.jobs), 0) into backlog from captioner.job_counts c where c.state = 'pending';
  for pass in
    select * from captioner.sweep_passes s
     where s.bucket_id = any (buckets) and s.after_name is not null
     order by s.bucket_id for update
  loop
    if budget <= 0 or backlog >= p_limit then
      return query select pass.bucket_id, 0, 0, 0, true;
      continue;
    end if;
    select * into slice from captioner.sweep_slice(pass.bucket_id, pass.after_name, budget);
    update captioner.sweep_passes s
       set after_name = case when slice.examined < budget then null else slice.last_name end,
           finished_at = case when slice.examined < budget then now() else s.finished_at end,
           examined = s.examined + slice.examined, queued = s.queued + slice.queued
     where s.bucket_id = pass.bucket_id;
    return query select pass.bucket_id, slice.examined, slice.queued, slice.skipped,
                        slice.examined >= budget;
    budget := budget - slice.examined;
    backlog := backlog + slice.queued;
  end loop;
end $$;

-- Puts failed jobs back in the queue (after fixing whatever made them fail).
create or replace function public.caption_jobs_requeue_failed(p_limit integer)
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  update captioner.jobs j
     set state = 'pending', attempts = 0, run_after = now(), updated_at = now()
   where j.object_id in (
     select f.object_id from captioner.jobs f where f.state = 'failed'
      order by f.updated_at limit p_limit);
  get diagnostics queued = row_count;
  return queued;
end $$;

-- Jobs per state (every state of captioner.job_state, in its order), of all buckets or one,
-- from the kept counters in captioner.job_counts (0008): a few dozen rows, however many jobs.
-- oldest_seconds (pending only): how long the oldest due job has waited since it became due,
-- read from the head of jobs_pending_idx.
drop function if exists public.caption_jobs_stats();
create or replace function public.caption_jobs_stats(p_bucket text default null)
returns table (state text, jobs bigint, oldest_seconds double precision)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
  select s.state::text,
         coalesce((select sum(c.jobs) from captioner.job_counts c
                    where c.state = s.state and (p_bucket is null or c.bucket_id = p_bucket)),
                  0)::bigint,
         case when s.state = 'pending' then coalesce((
           select greatest(extract(epoch from now() - j.run_after), 0)
             from captioner.jobs j
            where j.state = 'pending' and (p_bucket is null or j.bucket_id = p_bucket)
            order by j.run_after limit 1), 0)::double precision
         else 0::double precision end
    from unnest(enum_range(null::captioner.job_state)) as s(state)
   order by s.state;
end $$;

create or replace function public.caption_jobs_failures(p_limit integer)
returns table (object_id uuid, bucket_id text, name text, attempts integer,
               last_error text, failed_at timestamptz)
language sql security definer set search_path = '' as $$
  select j.object_id, o.bucket_id, o.name, j.attempts, j.last_error, j.updated_at
    from captioner.jobs j join storage.objects o on o.id = j.object_id
   where j.state = 'failed'
   order by j.updated_at desc
   limit p_limit;
$$;

do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace and p.proname like 'caption\_%'
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;
