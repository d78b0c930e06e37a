-- The lease heartbeat: while a job's work runs, its worker extends the lease every
-- LEASE_SECONDS / 3 (app/pipeline/lease.py), so a job that legitimately takes longer than
-- LEASE_SECONDS (several languages, a slow model) is not claimed again meanwhile; only a
-- crashed or stuck worker's lease runs out. The extension holds only while the caller's
-- token still holds the running job: false tells the worker its lease was lost (taken by
-- another claim after it expired, or the job ended or was requeued), and it stops the work.
create or replace function public.caption_jobs_extend(
  p_object_id uuid, p_lease_token uuid, p_lease_seconds integer)
returns boolean language plpgsql security definer set search_path = '' as $$
begin
  update captioner.jobs
     set lease_until = now() + make_interval(secs => p_lease_seconds)
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';
  return found;
end $$;

revoke all on function public.caption_jobs_extend(uuid, uuid, integer)
  from public, anon, authenticated;
grant execute on function public.caption_jobs_extend(uuid, uuid, integer) to service_role;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126063639 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
