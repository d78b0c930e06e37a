-- Every new image (or new version of one) is queued in the same transaction as its
-- upload, so nothing is lost even when the webhook is. Then, if the service has told us
-- its URL (caption_configure), a pg_net request wakes it at once. The URL and secret are
-- read from captioner.config, never written into the trigger's text.
--
-- Nothing here may fail an upload: the wake-up is best-effort (a broken signing secret, or
-- pg_net missing, is a warning and the worker finds the job by polling), and a job that
-- cannot be queued is a warning too (the sweep queues it later).

create schema if not exists extensions;
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_net') then
    create extension if not exists pg_net with schema extensions;
  end if;
end $$;
create extension if not exists pgcrypto with schema extensions;

-- Standard Webhooks: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> keyed with the
-- base64-decoded part of the whsec_ secret.
create or replace function captioner.webhook_signature(
  p_id text, p_timestamp bigint, p_body text, p_secret text)
returns text language sql immutable set search_path = '' as $$
  select 'v1,' || encode(
    extensions.hmac(
      convert_to(p_id || '.' || p_timestamp || '.' || p_body, 'UTF8'),
      decode(regexp_replace(p_secret, '^whsec_', ''), 'base64'),
      'sha256'),
    'base64');
$$;

create or replace function captioner.webhook_headers(cfg captioner.config, p_body text)
returns jsonb language plpgsql volatile set search_path = '' as $$
declare
  headers jsonb := jsonb_build_object(
    'Content-Type', 'application/json', 'Authorization', 'Bearer ' || cfg.webhook_secret);
  msg_id text := 'msg_' || replace(gen_random_uuid()::text, '-', '');
  sent_at bigint := extract(epoch from clock_timestamp())::bigint;
begin
  if cfg.signing_secret is null then
    return headers;
  end if;
  return headers || jsonb_build_object(
    'webhook-id', msg_id,
    'webhook-timestamp', sent_at::text,
    'webhook-signature', captioner.webhook_signature(msg_id, sent_at, p_body, cfg.signing_secret));
end $$;

create or replace function captioner.on_object_change()
returns trigger language plpgsql security definer set search_path = '' as $$
declare
  outcome text;
  cfg captioner.config;
  body jsonb;
begin
  if tg_op = 'UPDATE' and new.version is not distinct from old.version
     and old.metadata is not null then
    return null;  -- same version (metadata touched): same bytes, the caption holds
  end if;
  begin
    outcome := captioner.enqueue(new.id);
  exception when others then
    raise warning 'captioner: % not queued (%: %); the sweep will queue it',
      new.id, sqlstate, sqlerrm;
    begin  -- noted for the sweep (0008), which retries it without walking the bucket
      insert into captioner.sweep_missed (object_id) values (new.id) on conflict do nothing;
    exception when others then
      null;  -- the next reconciliation pass finds it
    end;
    return null;
  end;
  if outcome <> 'queued' then
    return null;
  end if;
  select * into cfg from captioner.config;
  if cfg.webhook_url is null then
    return null;
  end if;
  body := jsonb_build_object(
    'type', tg_op, 'table', tg_table_name, 'schema', tg_table_schema,
    'record', to_jsonb(new),
    'old_record', case when tg_op = 'UPDATE' then to_jsonb(old) end);
  begin
    -- pg_net sends convert_to(body::text, 'UTF8'): sign exactly that text
    perform net.http_post(
      url := cfg.webhook_url,
      body := body,
      headers := captioner.webhook_headers(cfg, body::text),
      timeout_milliseconds := cfg.webhook_timeout_ms);
  exception when others then
    raise warning 'captioner: no wake-up for % (%: %); the worker will find its job by polling',
      new.id, sqlstate, sqlerrm;
  end;
  return null;
end $$;

revoke all on all functions in schema captioner from public;

create or replace trigger caption_on_object_change
  after insert or update of version, metadata on storage.objects
  for each row execute function captioner.on_object_change();
