-- Per-bucket stats that read only that bucket's jobs, and what `captioner doctor` asks the
-- database: the functions by the arguments the code sends (PostgREST finds a function by
-- its name and argument names), the trigger's state, and a test wake-up sent through
-- pg_net whose answer it reads back. Re-runnable.

-- caption_jobs_stats(p_bucket)'s oldest due job: the head of this bucket's pending jobs
-- (jobs_pending_idx holds every bucket's: its head for one bucket sat behind the others'
-- backlog).
create index if not exists jobs_pending_bucket_idx on captioner.jobs (bucket_id, run_after)
  where state = 'pending';

-- Jobs per state (every state of captioner.job_state, in its order), of all buckets or one,
-- from the kept counters in captioner.job_counts (0008); oldest_seconds (pending only): how
-- long the oldest due job has waited since it became due. Each is an index look-up: the
-- cost depends on neither the number of jobs nor other buckets' backlog.
create or replace function public.caption_jobs_stats(p_bucket text default null)
returns table (state text, jobs bigint, oldest_seconds double precision)
language plpgsql stable security definer set search_path = '' as $$
declare
  oldest timestamptz;
begin
  if p_bucket is null then  -- the head of jobs_pending_idx
    select j.run_after into oldest from captioner.jobs j
     where j.state = 'pending' order by j.run_after limit 1;
  else  -- the head of this bucket's range in jobs_pending_bucket_idx
    select j.run_after into oldest from captioner.jobs j
     where j.state = 'pending' and j.bucket_id = p_bucket order by j.run_after limit 1;
  end if;
  return query
  select s.state::text,
         coalesce((select sum(c.jobs) from captioner.job_counts c
                    where c.state = s.state and (p_bucket is null or c.bucket_id = p_bucket)),
                  0)::bigint,
         case when s.state = 'pending'
              then greatest(coalesce(extract(epoch from now() - oldest), 0), 0)
              else 0 end::double precision
    from unnest(enum_range(null::captioner.job_state)) as s(state)
   order by s.state;
end $$;

-- The input argument names of a function (what PostgREST matches a call's keys against),
-- and how many of the last ones have defaults.
create or replace function captioner.input_arguments(p regprocedure)
returns text[] language sql stable set search_path = '' as $$
  select coalesce(array_agg(a.name order by a.n), '{}')
    from pg_catalog.pg_proc f,
         unnest(f.proargnames, f.proargmodes) with ordinality as a(name, mode, n)
   where f.oid = p and coalesce(a.mode, 'i') in ('i', 'b', 'v') and a.name is not null;
$$;

-- For `captioner doctor`. p_signatures: {"function": ["argument", ...]}, the arguments the
-- code sends. A function passes when some function of that name in schema public takes
-- every one of them and needs no other; each that does not is listed with the argument
-- lists it has ("found", empty when there is none). trigger: 'enabled', 'disabled',
-- 'replica' (fires only for replication) or 'missing'.
create or replace function public.caption_doctor(p_signatures jsonb, p_buckets text[])
returns jsonb language sql stable security definer set search_path = '' as $$
  with wanted as (
    select w.key as fn, array(select jsonb_array_elements_text(w.value) order by 1) as args
      from jsonb_each(p_signatures) w
  ), found as (
    select w.fn, w.args, captioner.input_arguments(p.oid) as have, p.pronargdefaults as optional
      from wanted w
      join pg_catalog.pg_proc p on p.proname = w.fn and p.pronamespace = 'public'::regnamespace
  ), mismatched as (
    select w.fn,
           coalesce((select jsonb_agg(array_to_string(f.have, ', ') order by f.have)
                       from found f where f.fn = w.fn), '[]'::jsonb) as found
      from wanted w
     where not exists (
       select 1 from found f
        where f.fn = w.fn and f.have @> w.args
          and f.have[1:cardinality(f.have) - f.optional] <@ w.args)
  )
  select jsonb_build_object(
    'schema_version', public.caption_schema_version(),
    'mismatched_functions', coalesce((
      select jsonb_agg(jsonb_build_object('name', m.fn, 'found', m.found,
                                          'expected', to_jsonb(w.args)) order by m.fn)
        from mismatched m join wanted w on w.fn = m.fn), '[]'::jsonb),
    'missing_buckets', coalesce((
      select jsonb_agg(b order by b) from unnest(p_buckets) b
      where not exists (select 1 from storage.buckets where id = b)), '[]'::jsonb),
    'trigger', coalesce((
      select case t.tgenabled when 'D' then 'disabled' when 'R' then 'replica' else 'enabled' end
        from pg_catalog.pg_trigger t
       where t.tgname = 'caption_on_object_change'
         and t.tgrelid = 'storage.objects'::regclass), 'missing'),
    'pg_net', exists (
      select 1 from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'net' and p.proname = 'http_post'),
    'webhook_url', (select c.webhook_url from captioner.config c),
    'webhook_timeout_ms', (select c.webhook_timeout_ms from captioner.config c));
$$;

-- A test wake-up, sent as the trigger sends one (pg_net, the configured URL, secret and
-- signature): a DELETE event, which the service answers 200 "ignored" and acts on never.
-- Returns pg_net's request id, or null when there is no URL or no pg_net.
create or replace function public.caption_doctor_wake_up()
returns bigint language plpgsql volatile security definer set search_path = '' as $$
declare
  cfg captioner.config;
  body jsonb;
begin
  select * into cfg from captioner.config;
  if cfg.webhook_url is null or to_regproc('net.http_post') is null then
    return null;
  end if;
  body := jsonb_build_object(
    'type', 'DELETE', 'table', 'objects', 'schema', 'storage', 'record', null,
    'old_record', jsonb_build_object(
      'id', '00000000-0000-0000-0000-000000000000', 'bucket_id', 'captioner-doctor',
      'name', 'captioner doctor: test wake-up'));
  return net.http_post(
    url := cfg.webhook_url,
    body := body,
    headers := captioner.webhook_headers(cfg, body::text),
    timeout_milliseconds := cfg.webhook_timeout_ms);
end $$;

-- pg_net's record of that request once its worker has sent it (no row before then).
create or replace function public.caption_doctor_wake_up_answer(p_request_id bigint)
returns table (status_code integer, timed_out boolean, error_msg text, content text)
language plpgsql stable security definer set search_path = '' as $$
begin
  return query execute
    'select r.status_code, r.timed_out, r.error_msg, left(r.content, 300)
       from net._http_response r where r.id = $1'
    using p_request_id;
end $$;

revoke all on function captioner.input_arguments(regprocedure) from public;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126024243 $$;

do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('caption_jobs_stats', 'caption_doctor', 'caption_doctor_wake_up',
                         'caption_doctor_wake_up_answer', 'caption_schema_version')
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;
