-- Generated from migrations/0005_cli.sql: edit that file, then run
-- `make supabase-migrations` (scripts/supabase_migrations.py).
-- Read-only counts for the CLI (`captioner backfill`): one bucket's objects and their jobs.
-- Like the functions in 0003: security definer, empty search_path, service_role only.

create or replace function public.caption_jobs_bucket_stats(p_bucket text)
returns table (objects bigint, skipped bigint, captioned bigint, pending bigint,
               running bigint, failed bigint)
language sql stable security definer set search_path = '' as $$
  select count(o.id),
         count(o.id) filter (
           where captioner.skip_reason(o.bucket_id, o.name, o.metadata, array[p_bucket]) is not null),
         count(o.id) filter (
           where exists (
             select 1 from public.image_caption ic
              where ic.id = o.id
                and (ic.object_version is null or ic.object_version is not distinct from o.version))),
         count(o.id) filter (where j.state = 'pending'),
         count(o.id) filter (where j.state = 'running'),
         count(o.id) filter (where j.state = 'failed')
    from storage.objects o
    left join captioner.jobs j on j.object_id = o.id
   where o.bucket_id = p_bucket;
$$;

revoke all on function public.caption_jobs_bucket_stats(text) from public, anon, authenticated;
grant execute on function public.caption_jobs_bucket_stats(text) to service_role;
