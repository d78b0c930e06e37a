-- `captioner recaption` after a language is added describes only the missing languages.
-- A job queued by caption_jobs_recaption (20261126053804) is marked only_missing; before
-- describing, the worker asks caption_jobs_described which of its plan's languages already
-- have a machine description by the model of these bytes (same version, fields and prompt,
-- the caption by the same model) and describes only the others; caption_jobs_complete then
-- writes those, leaving the kept descriptions and, where its language was kept,
-- image_caption as they are. Any other queueing (new bytes, the gallery's per-image
-- Re-caption) describes every language, as before. An older worker never asks and sends no
-- p_kept: every language, as before.

alter table captioner.jobs add column if not exists only_missing boolean not null default false;
comment on column captioner.jobs.only_missing is
  'Queued by caption_jobs_recaption: the worker may keep the descriptions the model already '
  'wrote of this version (caption_jobs_described) and describe only the missing languages.';

-- 20261126053804's re-caption, marking what it queues only_missing.
create or replace function public.caption_jobs_recaption(
  p_bucket text, p_prefix text, p_model text, p_limit integer,
  p_since timestamptz default null, p_languages text[] default null)
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  insert into captioner.jobs as j (object_id, version, only_missing)
  select o.id, o.version, true
    from storage.objects o
    join public.image_caption ic on ic.id = o.id
   where o.bucket_id = p_bucket
     and starts_with(o.name, coalesce(p_prefix, ''))
     and o.archived_at is null and not o.is_delete_marker
     and (ic.model is distinct from p_model
          or (select count(*) from public.image_description d
               where d.id = o.id and d.language = any (p_languages)
                 and d.model = p_model and d.machine is not null)
             < (select count(distinct l) from unnest(p_languages) l))
     and not exists (
       select 1 from captioner.jobs q
        where q.object_id = o.id
          and (q.state in ('pending', 'running') or q.updated_at >= p_since))
   order by o.name
   limit p_limit
  on conflict (object_id) do update
    set version = excluded.version, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null,
        only_missing = true, updated_at = now()
    where j.state not in ('pending', 'running');
  get diagnostics queued = row_count;
  return queued;
end $$;

-- 20261126033020's requeue (the gallery's per-image Re-caption): every language again.
create or replace function public.caption_jobs_requeue(p_object_ids uuid[])
returns integer language plpgsql security definer set search_path = '' as $$
declare
  queued integer;
begin
  insert into captioner.jobs as j (object_id, version)
  select o.id, o.version
    from storage.objects o
   where o.id = any (p_object_ids) and captioner.not_current(o) is null
     and captioner.skip_reason(o.bucket_id, o.name, o.metadata, array[o.bucket_id]) is null
  on conflict (object_id) do update
    set version = excluded.version, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null,
        only_missing = false, updated_at = now()
    where j.state not in ('pending', 'running');
  get diagnostics queued = row_count;
  return queued;
end $$;

-- The languages of p_languages (the plan's, the first first) a leased only_missing job may
-- keep: each has a machine description by p_model of the job's version, asking p_fields
-- (at least) with p_prompt, while image_caption is by p_model of that version and carries
-- the first language (languages put in another order: all again). Empty for any other job:
-- a model change or new bytes describe every language.
create or replace function public.caption_jobs_described(
  p_object_id uuid, p_lease_token uuid, p_model text, p_languages text[],
  p_fields text[] default null, p_prompt text default null)
returns text[] language sql stable security definer set search_path = '' as $$
  select coalesce(array_agg(d.language order by array_position(p_languages, d.language)), '{}')
    from captioner.jobs j
    join public.image_caption ic on ic.id = j.object_id
    join public.image_description d on d.id = j.object_id
   where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'
     and j.only_missing
     and ic.model = p_model and ic.object_version is not distinct from j.version
     and d.language = any (p_languages) and d.model = p_model and d.machine is not null
     and d.object_version is not distinct from j.version
     and coalesce(d.machine -> 'fields', '[]') @> to_jsonb(coalesce(p_fields, '{}'))
     and (d.machine ->> 'prompt') is not distinct from p_prompt
     and ic.language = p_languages[1];
$$;

-- 20261126041333's complete, with p_kept: the languages the worker kept
-- (caption_jobs_described). They must still be the model's of this version (else nothing is
-- written: the worker retries and describes them all); image_caption stays where its
-- language was kept, else it takes the first stored description's caption, as before.
drop function if exists public.caption_jobs_complete(uuid, uuid, text, text, text, integer, jsonb);
create or replace function public.caption_jobs_complete(
  p_object_id uuid, p_lease_token uuid, p_caption text, p_model text,
  p_fingerprint text default null, p_caption_ms integer default null,
  p_descriptions jsonb default null, p_kept text[] default null)
returns boolean language plpgsql security definer set search_path = '' as $$
declare
  job captioner.jobs;
  stored text;
  descriptions jsonb := case when jsonb_typeof(p_descriptions) = 'array'
                               and jsonb_array_length(p_descriptions) > 0
                             then p_descriptions end;
begin
  update captioner.jobs j
     set state = 'done', lease_token = null, lease_until = null, last_error = null, updated_at = now()
   where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'
  returning * into job;
  if not found then
    return false;
  end if;
  if exists (select 1 from unnest(p_kept) l
              where not exists (
                select 1 from public.image_description d
                 where d.id = p_object_id and d.language = l and d.model = p_model
                   and d.machine is not null
                   and d.object_version is not distinct from job.version)) then
    raise exception 'the kept descriptions of % are no longer this model''s of its version',
      p_object_id using hint = 'the job is retried and describes every language';
  end if;
  -- an older worker sends no descriptions: its caption is the English one
  stored := captioner.store_descriptions(
    p_object_id, job.version, p_fingerprint, p_model, coalesce(descriptions, jsonb_build_array(
      jsonb_build_object('language', 'en', 'caption', p_caption, 'alt_text', p_caption,
                         'missing', '["description", "tags", "text_in_image"]'::jsonb,
                         'fields', '["caption", "alt_text"]'::jsonb))));
  if exists (select 1 from public.image_caption ic
              where ic.id = p_object_id and ic.language = any (p_kept)) then
    return true;
  end if;
  insert into public.image_caption as ic
         (id, caption, model, object_version, fingerprint, attempts, caption_ms, reused_from,
          language)
  values (p_object_id, coalesce(stored, p_caption), p_model, job.version, p_fingerprint,
          job.attempts, p_caption_ms, null, coalesce(descriptions -> 0 ->> 'language', 'en'))
  on conflict (id) do update
    set caption = excluded.caption, model = excluded.model,
        object_version = excluded.object_version, fingerprint = excluded.fingerprint,
        attempts = excluded.attempts, caption_ms = excluded.caption_ms, reused_from = null,
        language = excluded.language, updated_at = now();
  return true;
end $$;

revoke all on function public.caption_jobs_complete(
  uuid, uuid, text, text, text, integer, jsonb, text[]) from public, anon, authenticated;
grant execute on function public.caption_jobs_complete(
  uuid, uuid, text, text, text, integer, jsonb, text[]) to service_role;
revoke all on function public.caption_jobs_described(uuid, uuid, text, text[], text[], text)
  from public, anon, authenticated;
grant execute on function public.caption_jobs_described(uuid, uuid, text, text[], text[], text)
  to service_role;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126070500 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
