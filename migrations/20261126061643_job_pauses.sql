-- The pauses a job came back from without progress, counted on its row (captioner.jobs.pauses)
-- rather than in each worker process, so that every replica sees them: a job given back while
-- the captioner is away or misconfigured (caption_jobs_retry with p_pause) counts one; the
-- claim (with p_max_pauses) hands a job given back that many times to the worker with its
-- reason to fail (no_progress), which ends it without another model call once a probe
-- captions. So a job costs at most 2 x MAX_ATTEMPTS model calls however many replicas run.
-- Rolling deploys: an older service calls caption_jobs_claim without p_max_pauses (kept, its
-- old columns) and caption_jobs_retry without p_pause (defaulted), and counts by itself.

alter table captioner.jobs add column if not exists pauses integer not null default 0;
comment on column captioner.jobs.pauses is
  'Times the job was given back in a pause of the captioner since it was queued for its version.';

-- A job queued again (a new version, or requeued after it ended) starts without pauses.
create or replace function captioner.job_pauses_reset()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  new.pauses := 0;
  return new;
end $$;

create or replace trigger jobs_pauses_reset before update on captioner.jobs
  for each row when (
    new.pauses <> 0
    and (new.version is distinct from old.version
         or (old.state in ('done', 'failed', 'skipped') and new.state in ('pending', 'running'))))
  execute function captioner.job_pauses_reset();

-- 0003's claim, and with it each leased job's no_progress: when it was given back
-- p_max_pauses times (and not finished with a reused caption), why it fails without
-- another model call; null otherwise, or when p_max_pauses is null.
create or replace function public.caption_jobs_claim(
  p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer,
  p_model text, p_max_pauses integer)
returns table (object_id uuid, version text, bucket_id text, name text, mimetype text,
               size bigint, attempts integer, lease_token uuid, fingerprint text,
               reused_from uuid, no_progress text)
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
              captioner.fingerprint(o.metadata) as fingerprint, j.pauses, j.last_error
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
    no_progress := case when reused_from is null and leased.pauses >= p_max_pauses then
      format('gave up after %s pauses without progress: %s', leased.pauses,
             coalesce(leased.last_error, 'no reason recorded')) end;
    return next;
  end loop;
end $$;

-- The claim an older service calls (its columns, no pauses counted): kept for rolling
-- deploys; drop it once no service older than this migration runs.
create or replace function public.caption_jobs_claim(
  p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer,
  p_model text default null)
returns table (object_id uuid, version text, bucket_id text, name text, mimetype text,
               size bigint, attempts integer, lease_token uuid, fingerprint text,
               reused_from uuid)
language sql security definer set search_path = '' as $$
  select c.object_id, c.version, c.bucket_id, c.name, c.mimetype, c.size, c.attempts,
         c.lease_token, c.fingerprint, c.reused_from
    from public.caption_jobs_claim(p_worker, p_limit, p_lease_seconds, p_max_attempts,
                                   p_model, null) c;
$$;

-- Gives the job back to run again after p_delay_seconds. p_refund: the attempt does not
-- count (released at shutdown, or the captioner's fault). p_pause: given back in a pause
-- after the captioner's call failed, counted in pauses.
drop function if exists public.caption_jobs_retry(uuid, uuid, text, double precision, boolean);
create or replace function public.caption_jobs_retry(
  p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision,
  p_refund boolean default false, p_pause boolean default false)
returns boolean language plpgsql security definer set search_path = '' as $$
begin
  update captioner.jobs
     set state = 'pending', run_after = now() + make_interval(secs => p_delay_seconds),
         attempts = attempts - case when p_refund then 1 else 0 end,
         pauses = pauses + case when p_pause then 1 else 0 end,
         last_error = coalesce(p_error, last_error),
         lease_token = null, lease_until = null, updated_at = now()
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';
  return found;
end $$;

revoke all on function captioner.job_pauses_reset() from public;
revoke all on function public.caption_jobs_claim(text, integer, integer, integer, text, integer)
  from public, anon, authenticated;
grant execute on function public.caption_jobs_claim(text, integer, integer, integer, text, integer)
  to service_role;
revoke all on function public.caption_jobs_claim(text, integer, integer, integer, text)
  from public, anon, authenticated;
grant execute on function public.caption_jobs_claim(text, integer, integer, integer, text)
  to service_role;
revoke all on function public.caption_jobs_retry(
  uuid, uuid, text, double precision, boolean, boolean) from public, anon, authenticated;
grant execute on function public.caption_jobs_retry(
  uuid, uuid, text, double precision, boolean, boolean) to service_role;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126061643 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
