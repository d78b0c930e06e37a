-- Whether the trigger's wake-up can go out: pg_net's net.http_post exists. The service asks
-- at start-up and warns when PUBLIC_WEBHOOK_URL is set but it cannot (each upload then only
-- raises a warning in the database, and the worker finds the jobs by polling).

create or replace function public.caption_wake_up_available()
returns boolean language sql stable security definer set search_path = '' as $$
  select to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null;
$$;

revoke all on function public.caption_wake_up_available() from public, anon, authenticated;
grant execute on function public.caption_wake_up_available() to service_role;
