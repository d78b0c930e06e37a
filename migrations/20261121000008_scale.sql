-- What keeps every cost proportional to the work to do, not to the size of the bucket:
-- kept counters of jobs per bucket and state (stats without a scan), and the state of the
-- reconciliation passes the sweep makes (0003, caption_jobs_sweep). Re-runnable.

-- Counters ------------------------------------------------------------------------------
-- Jobs per (bucket, state), kept by statement-level triggers on captioner.jobs. Each
-- backend adds to its own shard row, so concurrent workers seldom wait on one counter row;
-- readers sum the shards.
create table if not exists captioner.job_counts (
  bucket_id text not null,
  state captioner.job_state not null,
  shard smallint not null,
  jobs bigint not null default 0,
  primary key (bucket_id, state, shard)
);

create or replace function captioner.count_jobs()
returns trigger language plpgsql security definer set search_path = '' as $$
declare
  my_shard smallint := pg_backend_pid() % 16;
begin
  -- rows in one order (bucket, state) in every transaction: no deadlock between them
  if tg_op = 'INSERT' then
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select coalesce(n.bucket_id, ''), n.state, my_shard, count(*)
      from new_jobs n group by 1, 2 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  elsif tg_op = 'DELETE' then
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select coalesce(o.bucket_id, ''), o.state, my_shard, -count(*)
      from old_jobs o group by 1, 2 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  else
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select d.bucket_id, d.state, my_shard, sum(d.n)
      from (select coalesce(n.bucket_id, '') as bucket_id, n.state, 1 as n from new_jobs n
            union all
            select coalesce(o.bucket_id, ''), o.state, -1 from old_jobs o) d
     group by 1, 2 having sum(d.n) <> 0 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  end if;
  return null;
end $$;

create or replace function captioner.count_jobs_truncated()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  delete from captioner.job_counts;
  return null;
end $$;

create or replace trigger jobs_counted_insert after insert on captioner.jobs
  referencing new table as new_jobs
  for each statement execute function captioner.count_jobs();
create or replace trigger jobs_counted_update after update on captioner.jobs
  referencing old table as old_jobs new table as new_jobs
  for each statement execute function captioner.count_jobs();
create or replace trigger jobs_counted_delete after delete on captioner.jobs
  referencing old table as old_jobs
  for each statement execute function captioner.count_jobs();
create or replace trigger jobs_counted_truncate after truncate on captioner.jobs
  for each statement execute function captioner.count_jobs_truncated();

-- A job inserted without its bucket (by a function that does not name it) takes the
-- object's, so every job is counted under its bucket.
create or replace function captioner.job_bucket()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  new.bucket_id := coalesce(
    new.bucket_id, (select o.bucket_id from storage.objects o where o.id = new.object_id));
  return new;
end $$;

create or replace trigger jobs_bucket before insert on captioner.jobs
  for each row when (new.bucket_id is null) execute function captioner.job_bucket();

-- Jobs queued before jobs.bucket_id existed; then count everything afresh (also repairs
-- any drift), with writers held off until this transaction commits.
update captioner.jobs j set bucket_id = o.bucket_id
  from storage.objects o where j.bucket_id is null and o.id = j.object_id;
lock table captioner.jobs in share row exclusive mode;
delete from captioner.job_counts;
insert into captioner.job_counts (bucket_id, state, shard, jobs)
select coalesce(j.bucket_id, ''), j.state, 0, count(*) from captioner.jobs j group by 1, 2;

-- `captioner status` lists the latest failures; requeue takes the oldest: both by index.
create index if not exists jobs_failed_idx on captioner.jobs (updated_at) where state = 'failed';

-- Reconciliation passes ----------------------------------------------------------------
-- One row per bucket the sweep has looked at. after_name: a pass is running and resumes
-- after this object name (in "C" order); null: no pass running.
create table if not exists captioner.sweep_passes (
  bucket_id text primary key,
  after_name text default '',
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  examined bigint not null default 0,
  queued bigint not null default 0
);

-- Objects whose job the trigger could not queue (0004): the sweep retries them first.
create table if not exists captioner.sweep_missed (
  object_id uuid primary key,
  noted_at timestamptz not null default now()
);

-- Examines the next p_limit objects of p_bucket after p_after, in name order through
-- storage-api's index idx_objects_bucket_id_name (bucket_id, name COLLATE "C"), and queues
-- those that are captionable and have neither a caption nor a job for their current version.
create or replace function captioner.sweep_slice(p_bucket text, p_after text, p_limit integer)
returns table (examined integer, queued integer, skipped integer, last_name text)
language sql security definer set search_path = '' as $$
  with slice as (
    select o.id, o.name, o.version,
           captioner.skip_reason(p_bucket, o.name, o.metadata, array[p_bucket]) as reason
      from storage.objects o
     where o.bucket_id = p_bucket and o.name collate "C" > p_after collate "C"
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

revoke all on all functions in schema captioner from public;

-- Starts a pass over p_bucket (`captioner backfill`), or resumes the one running.
create or replace function public.caption_jobs_sweep_start(p_bucket text)
returns table (bucket_id text, started_at timestamptz, examined bigint, queued bigint)
language sql security definer set search_path = '' as $$
  insert into captioner.sweep_passes as s (bucket_id) values (p_bucket)
  on conflict (bucket_id) do update
    set after_name = '', started_at = now(), finished_at = null, examined = 0, queued = 0
    where s.after_name is null;
  select s.bucket_id, s.started_at, s.examined, s.queued
    from captioner.sweep_passes s where s.bucket_id = p_bucket;
$$;

-- The passes, for `captioner status`: running (with where it is) or when the last ended.
create or replace function public.caption_jobs_sweep_passes()
returns table (bucket_id text, running boolean, after_name text, started_at timestamptz,
               finished_at timestamptz, examined bigint, queued bigint)
language sql stable security definer set search_path = '' as $$
  select s.bucket_id, s.after_name is not null, s.after_name, s.started_at, s.finished_at,
         s.examined, s.queued
    from captioner.sweep_passes s order by s.bucket_id;
$$;

revoke all on function public.caption_jobs_sweep_start(text) from public, anon, authenticated;
grant execute on function public.caption_jobs_sweep_start(text) to service_role;
revoke all on function public.caption_jobs_sweep_passes() from public, anon, authenticated;
grant execute on function public.caption_jobs_sweep_passes() to service_role;

-- How many objects a bucket holds: a count over idx_objects_bucket_id_name, so it grows with
-- the bucket. Only `captioner backfill` calls it, once, for its progress bar.
create or replace function public.caption_jobs_bucket_size(p_bucket text)
returns bigint language sql stable security definer set search_path = '' as $$
  select count(*) from storage.objects o where o.bucket_id = p_bucket;
$$;

revoke all on function public.caption_jobs_bucket_size(text) from public, anon, authenticated;
grant execute on function public.caption_jobs_bucket_size(text) to service_role;
