-- The schema's version, and what `captioner doctor` asks the database in one round trip.
--
-- Convention (docs/ARCHITECTURE.md): every migration file from this one on ends by
-- redefining public.caption_schema_version() to return its own version (the file name's
-- 14 digits). Files run in order, so the function answers the highest file applied; the
-- app expects the highest file it ships (app/commands/doctor.py), and `captioner doctor`
-- says "run captioner migrate" when they differ. Dropped first: older releases made it
-- return integer, too small for a timestamp.

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261121000010 $$;

-- For each check: the functions (of p_functions) missing from schema public, the watched
-- buckets (of p_buckets) missing from storage.buckets, the trigger on storage.objects,
-- pg_net's net.http_post (what the trigger calls), and the webhook URL the service set.
create or replace function public.caption_doctor(p_functions text[], p_buckets text[])
returns jsonb language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'schema_version', public.caption_schema_version(),
    'missing_functions', coalesce((
      select jsonb_agg(fn order by fn) from unnest(p_functions) fn
      where not exists (
        select 1 from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.proname = fn)), '[]'::jsonb),
    'missing_buckets', coalesce((
      select jsonb_agg(b order by b) from unnest(p_buckets) b
      where not exists (select 1 from storage.buckets where id = b)), '[]'::jsonb),
    'trigger', exists (
      select 1 from pg_catalog.pg_trigger t
      where t.tgname = 'caption_on_object_change'
        and t.tgrelid = 'storage.objects'::regclass and t.tgenabled <> 'D'),
    'pg_net', exists (
      select 1 from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'net' and p.proname = 'http_post'),
    'webhook_url', (select webhook_url from captioner.config));
$$;

revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
revoke all on function public.caption_doctor(text[], text[]) from public, anon, authenticated;
grant execute on function public.caption_doctor(text[], text[]) to service_role;
