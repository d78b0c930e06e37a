-- The durable job queue. Lives in schema `captioner`, which PostgREST does not expose;
-- the service reaches it only through the security-definer functions in 0003.

create schema if not exists captioner;
revoke all on schema captioner from public;

-- One row, set by the service at start-up (caption_configure): the single place for
-- the watched buckets and the webhook's URL and secret.
create table if not exists captioner.config (
  singleton boolean primary key default true check (singleton),
  buckets text[] not null default '{images}',
  webhook_url text,
  webhook_secret text,
  webhook_timeout_ms integer not null default 5000,
  updated_at timestamptz not null default now()
);
insert into captioner.config default values on conflict do nothing;
-- Standard Webhooks signing secret (whsec_<base64>); null: webhooks are not signed.
alter table captioner.config add column if not exists signing_secret text;
-- The mimetypes the captioner decodes (the service sets them from app/images.py at start-up);
-- other uploads are skipped with a reason.
alter table captioner.config add column if not exists mimetypes text[] not null default
  '{image/jpeg,image/jpg,image/pjpeg,image/png,image/apng,image/gif,image/webp,image/tiff,'
  'image/bmp,image/x-ms-bmp,image/x-icon,image/vnd.microsoft.icon,image/heic,image/heif,'
  'image/heic-sequence,image/heif-sequence,image/avif,image/avif-sequence}';

do $$
begin
  create type captioner.job_state as enum ('pending', 'running', 'done', 'failed', 'skipped');
exception when duplicate_object then null;
end $$;
-- skipped: never captioned, last_error says why (not an image, a format not decoded, ...)
alter type captioner.job_state add value if not exists 'skipped';

-- One job per object; a new version of the object resets it to pending.
create table if not exists captioner.jobs (
  object_id uuid primary key references storage.objects (id) on delete cascade,
  version text,
  state captioner.job_state not null default 'pending',
  attempts integer not null default 0,
  run_after timestamptz not null default now(),
  lease_token uuid,
  lease_until timestamptz,
  worker text,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- The object's bucket, copied at enqueue: per-bucket counts without a join (0008).
alter table captioner.jobs add column if not exists bucket_id text;

create index if not exists jobs_pending_idx on captioner.jobs (run_after) where state = 'pending';
create index if not exists jobs_running_idx on captioner.jobs (lease_until) where state = 'running';
