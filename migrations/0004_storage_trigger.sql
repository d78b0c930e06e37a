-- Every new image (or new version of one) is queued in the same transaction as its
-- upload, so nothing is lost even when the webhook is. Then, if the service has told us
-- its URL (caption_configure), a pg_net request wakes it at once. The URL and secret are
-- read from captioner.config, never written into the trigger's text.

do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_net') then
    create extension if not exists pg_net;
  end if;
end $$;

create or replace function captioner.on_object_change()
returns trigger language plpgsql security definer set search_path = '' as $$
declare
  cfg captioner.config;
begin
  if tg_op = 'UPDATE' and new.version is not distinct from old.version
     and old.metadata is not null then
    return null;  -- renamed or touched: same bytes, the caption still holds
  end if;
  if captioner.enqueue(new.id) <> 'queued' then
    return null;
  end if;
  select * into cfg from captioner.config;
  if cfg.webhook_url is not null then
    perform net.http_post(
      url := cfg.webhook_url,
      body := jsonb_build_object(
        'type', tg_op, 'table', tg_table_name, 'schema', tg_table_schema,
        'record', to_jsonb(new),
        'old_record', case when tg_op = 'UPDATE' then to_jsonb(old) end),
      headers := jsonb_build_object(
        'Content-Type', 'application/json',
        'Authorization', 'Bearer ' || cfg.webhook_secret),
      timeout_milliseconds := cfg.webhook_timeout_ms);
  end if;
  return null;
end $$;

revoke all on function captioner.on_object_change() from public;

create or replace trigger caption_on_object_change
  after insert or update of version, metadata on storage.objects
  for each row execute function captioner.on_object_change();
