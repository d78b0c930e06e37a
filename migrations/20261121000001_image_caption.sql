-- Captions, one row per storage object. Readable by whoever can read the object itself.
-- Re-runnable; also upgrades the table of Supabase's Edge Function example (id, caption).

create table if not exists public.image_caption (
  id uuid primary key references storage.objects (id) on delete cascade,
  caption text not null
);

alter table public.image_caption add column if not exists model text;
alter table public.image_caption add column if not exists object_version text;
-- provenance: "where did this caption come from"
alter table public.image_caption add column if not exists fingerprint text;
alter table public.image_caption add column if not exists attempts integer;
alter table public.image_caption add column if not exists caption_ms integer;
alter table public.image_caption add column if not exists reused_from uuid;
alter table public.image_caption add column if not exists created_at timestamptz not null default now();
alter table public.image_caption add column if not exists updated_at timestamptz not null default now();

comment on table public.image_caption is
  'Machine-generated captions of images in Supabase Storage (written by the captioning service).';
comment on column public.image_caption.model is 'The captioning model that wrote the text.';
comment on column public.image_caption.object_version is
  'storage.objects.version the caption was made from; a newer version gets captioned again.';
comment on column public.image_caption.fingerprint is
  'The content the caption describes: md5:<hex>:<size> (or etag:<eTag>:<size>).';
comment on column public.image_caption.attempts is 'Attempts the job took.';
comment on column public.image_caption.caption_ms is
  'The captioner''s time in ms; null when the caption was reused.';
comment on column public.image_caption.reused_from is
  'Set when the same bytes were already captioned with the same model: the object the '
  'caption was first made for (it may be gone since). Null: made for this object.';

alter table public.image_caption enable row level security;

drop policy if exists "Captions are readable where the image is" on public.image_caption;
create policy "Captions are readable where the image is" on public.image_caption
  for select to anon, authenticated
  using (exists (select 1 from storage.objects o where o.id = image_caption.id));

-- Writes go through the service's security-definer functions only.
revoke all on table public.image_caption from anon, authenticated;
grant select on table public.image_caption to anon, authenticated;
grant all on table public.image_caption to service_role;
