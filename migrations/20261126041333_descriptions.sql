-- Issue 16: descriptions people can use. One row per image and language in
-- public.image_description: alt text, caption, description, tags, the text in the picture;
-- which fields the model could not fill; per field, who wrote it (the model or a person),
-- and when. public.image_caption stays one row per object (the seed's (id, caption) keeps
-- working): its caption is the first language's. A person's field is never overwritten by
-- the model while it describes the same bytes; new bytes move it to
-- public.image_description_history, which the object's owner can read.
-- Re-runnable, like every file (captioner migrate applies them all again).

-- Text search configuration for a BCP 47 language tag ('de', 'pt-BR', 'zh-Hant'): the
-- configuration named after its primary language where the server has one, else 'simple'.
create or replace function captioner.language_regconfig(p_language text)
returns regconfig language sql stable set search_path = '' as $$
  select coalesce((
    select c.oid::regconfig from pg_catalog.pg_ts_config c
     where c.cfgnamespace = 'pg_catalog'::regnamespace
       and c.cfgname = case lower(split_part(replace(coalesce(p_language, ''), '_', '-'), '-', 1))
         when 'ar' then 'arabic' when 'hy' then 'armenian' when 'eu' then 'basque'
         when 'ca' then 'catalan' when 'da' then 'danish' when 'nl' then 'dutch'
         when 'en' then 'english' when 'fi' then 'finnish' when 'fr' then 'french'
         when 'de' then 'german' when 'el' then 'greek' when 'hi' then 'hindi'
         when 'hu' then 'hungarian' when 'id' then 'indonesian' when 'ga' then 'irish'
         when 'it' then 'italian' when 'lt' then 'lithuanian' when 'ne' then 'nepali'
         when 'no' then 'norwegian' when 'nb' then 'norwegian' when 'nn' then 'norwegian'
         when 'pt' then 'portuguese' when 'ro' then 'romanian' when 'ru' then 'russian'
         when 'sr' then 'serbian' when 'es' then 'spanish' when 'sv' then 'swedish'
         when 'ta' then 'tamil' when 'tr' then 'turkish' when 'yi' then 'yiddish'
       end), 'simple'::regconfig);
$$;

-- The searchable text of a description, weighted: alt text and tags (A), description and
-- the text in the image (B), caption (C).
create or replace function captioner.description_document(
  p_config regconfig, p_caption text, p_alt_text text, p_description text, p_tags text[],
  p_text_in_image text)
returns tsvector language sql immutable parallel safe set search_path = '' as $$
  select setweight(to_tsvector(p_config, coalesce(p_alt_text, '')), 'A')
      || setweight(to_tsvector(p_config, coalesce(
           (select string_agg(t, ' ') from unnest(p_tags) t), '')), 'A')
      || setweight(to_tsvector(p_config, coalesce(p_description, '')), 'B')
      || setweight(to_tsvector(p_config, coalesce(p_text_in_image, '')), 'B')
      || setweight(to_tsvector(p_config, coalesce(p_caption, '')), 'C');
$$;

create table if not exists public.image_description (
  id uuid not null references storage.objects (id) on delete cascade,
  language text not null,
  caption text not null default '',
  alt_text text not null default '',
  description text not null default '',
  tags text[] not null default '{}',
  text_in_image text not null default '',
  missing text[] not null default '{}',
  sources jsonb not null default '{}',
  machine jsonb,
  model text,
  object_version text,
  fingerprint text,
  reused_from uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  search_language regconfig not null default 'simple',
  primary key (id, language)
);
-- kept by the trigger image_description_written (a generated column would run the
-- function as the writer, who may be a signed-in user)
alter table public.image_description add column if not exists search_vector tsvector
  not null default ''::tsvector;
create index if not exists image_description_search_idx on public.image_description
  using gin (search_vector);
create index if not exists image_description_fingerprint_idx on public.image_description
  (fingerprint, model) where fingerprint is not null;

comment on table public.image_description is
  'One description per image and language: written by the captioning service, corrected by '
  'people (public.edit_image_description). A person''s field wins over the model''s.';
comment on column public.image_description.language is 'BCP 47 language tag (en, de, pt-BR).';
comment on column public.image_description.missing is
  'Fields asked for that the model could not fill (e.g. BLIP: description, tags, text_in_image).';
comment on column public.image_description.sources is
  'Per field: {"source": "model"|"person", "by": model or editor, "at": time}; a person''s '
  'entry also names the object version and content fingerprint the edit described.';
comment on column public.image_description.machine is
  'The model''s own answer (its fields, the fields and prompt asked for), kept when a person '
  'overrides a field: content dedupe copies it, never a person''s text.';
comment on column public.image_description.search_vector is
  'Weighted tsvector over alt_text, tags, description, text_in_image and caption, in the '
  'row''s own language (search_language, from captioner.language_regconfig(language)).';

alter table public.image_caption add column if not exists language text;
comment on column public.image_caption.language is
  'The language of caption: the first of CAPTION_LANGUAGES (its image_description row).';

-- Person-written text that new bytes replaced: readable by the object's owner.
create table if not exists public.image_description_history (
  entry_id bigint generated always as identity primary key,
  id uuid not null references storage.objects (id) on delete cascade,
  language text not null,
  field text not null,
  value jsonb not null,
  edited_by text,
  edited_at timestamptz,
  object_version text,
  fingerprint text,
  replaced_at timestamptz not null default now()
);
create index if not exists image_description_history_id_idx
  on public.image_description_history (id, replaced_at desc);
comment on table public.image_description_history is
  'A person''s field of a description, kept when a new upload (other bytes) got a new '
  'machine description: object_version/fingerprint are what the edit described.';

-- Who may do what ---------------------------------------------------------------------
alter table public.image_description enable row level security;
alter table public.image_description_history enable row level security;

-- A description is readable where the image is (storage's RLS decides), while that object is
-- the key's current version: image_caption's rule (20261126033020).
drop policy if exists "Descriptions are readable where the image is" on public.image_description;
create policy "Descriptions are readable where the image is" on public.image_description
  for select to anon, authenticated
  using (exists (select 1 from storage.objects o
                  where o.id = image_description.id
                    and o.archived_at is null and not o.is_delete_marker));

-- A signed-in user corrects the description of an object that storage's RLS lets them
-- UPDATE: SELECT ... FOR UPDATE applies storage.objects' UPDATE policies (USING) besides
-- its SELECT ones (PostgreSQL, CREATE POLICY: "Policies Applied by Command Type").
drop policy if exists "People correct descriptions of images they may update"
  on public.image_description;
create policy "People correct descriptions of images they may update"
  on public.image_description for update to authenticated
  using (exists (select 1 from storage.objects o where o.id = image_description.id for update))
  with check (exists (select 1 from storage.objects o where o.id = image_description.id for update));
drop policy if exists "People describe images they may update" on public.image_description;
create policy "People describe images they may update"
  on public.image_description for insert to authenticated
  with check (exists (select 1 from storage.objects o where o.id = image_description.id for update));

drop policy if exists "Owners read the history of their images"
  on public.image_description_history;
create policy "Owners read the history of their images" on public.image_description_history
  for select to authenticated
  using (exists (select 1 from storage.objects o
                  where o.id = image_description_history.id
                    and o.owner_id = (select auth.uid())::text));

revoke all on table public.image_description from anon, authenticated;
grant select on table public.image_description to anon, authenticated;
grant insert (id, language, caption, alt_text, description, tags, text_in_image),
      update (caption, alt_text, description, tags, text_in_image)
  on table public.image_description to authenticated;
grant all on table public.image_description to service_role;
revoke all on table public.image_description_history from anon, authenticated;
grant select on table public.image_description_history to authenticated;
grant all on table public.image_description_history to service_role;

-- The text search configurations descriptions are in (a few rows): search parses a query
-- once in each, and each row matches in its own. Kept by image_description_written.
create table if not exists captioner.search_languages (search_language regconfig primary key);

-- Provenance ----------------------------------------------------------------------------
-- Every write: the row's text search configuration follows its language, and its search
-- vector its text (after a person's tags are normalised). A person's write
-- (an API role writing the table under RLS, or the service's edit with captioner.editor set)
-- marks each field it changed as theirs, with the object version and bytes it described.
-- Security definer: current_setting('role') still names the caller's role.
create or replace function captioner.description_written()
returns trigger language plpgsql security definer set search_path = '' as $$
declare
  editor text;
  obj record;
  field text;
  changed boolean;
begin
  new.search_language := captioner.language_regconfig(new.language);
  new.search_vector := captioner.description_document(
    new.search_language, new.caption, new.alt_text, new.description, new.tags,
    new.text_in_image);
  if not exists (select 1 from captioner.search_languages l
                  where l.search_language = new.search_language) then
    insert into captioner.search_languages values (new.search_language) on conflict do nothing;
  end if;
  if current_setting('role', true) in ('anon', 'authenticated') then
    editor := coalesce((select auth.uid())::text, current_setting('role', true));
  else
    editor := nullif(current_setting('captioner.editor', true), '');
  end if;
  if editor is null then
    return new;  -- the service's machine write: captioner.store_descriptions sets sources
  end if;
  new.tags := coalesce((select array_agg(distinct lower(btrim(t)) order by lower(btrim(t)))
                          from unnest(new.tags) t where btrim(t) <> ''), '{}');
  if char_length(new.alt_text) > 1000 or char_length(new.caption) > 1000
     or char_length(new.description) > 10000 or char_length(new.text_in_image) > 10000
     or cardinality(new.tags) > 50 or exists (select 1 from unnest(new.tags) t
                                               where char_length(t) > 100) then
    raise exception 'description too long'
      using errcode = '22001',
            hint = 'alt_text and caption: at most 1000 characters; description and '
                   'text_in_image: 10000; tags: at most 50, of 100 characters each';
  end if;
  select o.version, captioner.fingerprint(o.metadata) as fingerprint into obj
    from storage.objects o where o.id = new.id;
  foreach field in array array['caption', 'alt_text', 'description', 'tags', 'text_in_image'] loop
    if tg_op = 'INSERT' then
      changed := (to_jsonb(new) -> field) not in ('""'::jsonb, '[]'::jsonb);
    else
      changed := (to_jsonb(new) -> field) is distinct from (to_jsonb(old) -> field);
    end if;
    if changed then
      new.sources := new.sources || jsonb_build_object(field, jsonb_build_object(
        'source', 'person', 'by', editor, 'at', now(),
        'object_version', obj.version, 'fingerprint', obj.fingerprint));
    end if;
  end loop;
  new.updated_at := now();
  new.search_vector := captioner.description_document(
    new.search_language, new.caption, new.alt_text, new.description, new.tags,
    new.text_in_image);
  return new;
end $$;

create or replace trigger image_description_written
  before insert or update on public.image_description
  for each row execute function captioner.description_written();

-- The first language's caption is image_caption.caption, a person's correction included.
create or replace function captioner.description_caption_synced()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  update public.image_caption ic
     set caption = new.caption, updated_at = now()
   where ic.id = new.id and ic.language = new.language and new.caption <> ''
     and ic.caption is distinct from new.caption;
  return null;
end $$;

create or replace trigger image_description_caption_synced
  after insert or update of caption on public.image_description
  for each row execute function captioner.description_caption_synced();

-- Machine writes ------------------------------------------------------------------------
-- Whether a person's field (its sources entry) described these bytes: the same content
-- fingerprint where both are known, else the same object version.
create or replace function captioner.edit_describes(
  p_source jsonb, p_version text, p_fingerprint text)
returns boolean language sql immutable set search_path = '' as $$
  select case
    when p_source ->> 'fingerprint' is not null and p_fingerprint is not null
      then p_source ->> 'fingerprint' = p_fingerprint
    else p_source ->> 'object_version' is not distinct from p_version
  end;
$$;

-- Writes the model's descriptions of one object (p_descriptions: a JSON array of
-- Description objects, each with the "fields" and "prompt" asked for; the first is the
-- first language). A field a person wrote stays while it describes these bytes; otherwise
-- it moves to image_description_history and the model's text takes its place. Returns the
-- first language's caption as stored (a person's, where they corrected it).
create or replace function captioner.store_descriptions(
  p_object_id uuid, p_version text, p_fingerprint text, p_model text, p_descriptions jsonb,
  p_reused_from uuid default null)
returns text language plpgsql security definer set search_path = '' as $$
declare
  d jsonb;
  prior public.image_description;
  merged jsonb;
  sources jsonb;
  field text;
  source jsonb;
  first_caption text;
begin
  for d in select value from jsonb_array_elements(case jsonb_typeof(p_descriptions)
                                                   when 'array' then p_descriptions
                                                   else '[]' end) loop
    select * into prior from public.image_description x
     where x.id = p_object_id and x.language = d ->> 'language' for update;
    merged := d;
    sources := '{}';
    foreach field in array array['caption', 'alt_text', 'description', 'tags', 'text_in_image'] loop
      source := case when prior.id is not null then prior.sources -> field end;
      if source ->> 'source' = 'person'
         and captioner.edit_describes(source, p_version, p_fingerprint) then
        merged := merged || jsonb_build_object(field, to_jsonb(prior) -> field);
        sources := sources || jsonb_build_object(field, source);
        continue;
      elsif source ->> 'source' = 'person' then
        insert into public.image_description_history
               (id, language, field, value, edited_by, edited_at, object_version, fingerprint)
        values (p_object_id, prior.language, field, to_jsonb(prior) -> field, source ->> 'by',
                (source ->> 'at')::timestamptz, source ->> 'object_version',
                source ->> 'fingerprint');
      end if;
      sources := sources || jsonb_build_object(field, jsonb_build_object(
        'source', 'model', 'by', p_model, 'at', now()));
    end loop;
    insert into public.image_description as x
           (id, language, caption, alt_text, description, tags, text_in_image, missing,
            sources, machine, model, object_version, fingerprint, reused_from)
    values (p_object_id, d ->> 'language', coalesce(merged ->> 'caption', ''),
            coalesce(merged ->> 'alt_text', ''), coalesce(merged ->> 'description', ''),
            coalesce((select array_agg(t) from jsonb_array_elements_text(
                        coalesce(merged -> 'tags', '[]')) t), '{}'),
            coalesce(merged ->> 'text_in_image', ''),
            coalesce((select array_agg(m) from jsonb_array_elements_text(
                        coalesce(d -> 'missing', '[]')) m), '{}'),
            sources, d, p_model, p_version, p_fingerprint, p_reused_from)
    on conflict (id, language) do update
      set caption = excluded.caption, alt_text = excluded.alt_text,
          description = excluded.description, tags = excluded.tags,
          text_in_image = excluded.text_in_image, missing = excluded.missing,
          sources = excluded.sources, machine = excluded.machine, model = excluded.model,
          object_version = excluded.object_version, fingerprint = excluded.fingerprint,
          reused_from = excluded.reused_from, updated_at = now();
    first_caption := coalesce(first_caption, nullif(merged ->> 'caption', ''),
                              nullif(merged ->> 'alt_text', ''));
  end loop;
  return first_caption;
end $$;

-- A description goes with its caption (a failed or skipped new version, 0003): a person's
-- fields are kept in the history first.
create or replace function captioner.descriptions_retired()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  begin  -- never fails the delete (the object itself may be going)
    insert into public.image_description_history
           (id, language, field, value, edited_by, edited_at, object_version, fingerprint)
    select d.id, d.language, s.key, to_jsonb(d) -> s.key, s.value ->> 'by',
           (s.value ->> 'at')::timestamptz, s.value ->> 'object_version',
           s.value ->> 'fingerprint'
      from public.image_description d, jsonb_each(d.sources) s
     where d.id = old.id and s.value ->> 'source' = 'person'
       and exists (select 1 from storage.objects o where o.id = old.id);
  exception when foreign_key_violation then
    null;
  end;
  delete from public.image_description d where d.id = old.id;
  return null;
end $$;

create or replace trigger image_caption_retired
  after delete on public.image_caption
  for each row execute function captioner.descriptions_retired();

-- What to describe, per watched bucket: {bucket: {model, languages, fields, prompt}}, set by
-- the service at start-up (caption_configure) from CAPTION_LANGUAGES and
-- CAPTION_BUCKET_SETTINGS. Content dedupe copies a description only where it answers the
-- same request.
alter table captioner.config add column if not exists describe jsonb not null default '{}';

drop function if exists public.caption_configure(text[], text, text, text, text[]);
create or replace function public.caption_configure(
  p_buckets text[], p_webhook_url text default null, p_webhook_secret text default null,
  p_signing_secret text default null, p_mimetypes text[] default null,
  p_describe jsonb default null)
returns void language sql security definer set search_path = '' as $$
  update captioner.config
     set buckets = p_buckets,
         webhook_url = p_webhook_url,
         webhook_secret = p_webhook_secret,
         signing_secret = p_signing_secret,
         mimetypes = coalesce(p_mimetypes, mimetypes),
         describe = coalesce(p_describe, describe),
         updated_at = now();
$$;

-- Whether object p_source has a machine description by p_model that answers p_plan (the
-- bucket's {model, languages, fields, prompt}) in every language. Without a plan (a service
-- that does not send one), any caption by the model does, as before.
create or replace function captioner.describes_plan(p_source uuid, p_model text, p_plan jsonb)
returns boolean language sql stable set search_path = '' as $$
  select p_plan is null or not exists (
    select 1 from jsonb_array_elements_text(coalesce(p_plan -> 'languages', '[]')) l
     where not exists (
       select 1 from public.image_description d
        where d.id = p_source and d.language = l and d.model = p_model
          and d.machine is not null
          and coalesce(d.machine -> 'fields', '[]') @> coalesce(p_plan -> 'fields', '[]')
          and (d.machine ->> 'prompt') is not distinct from (p_plan ->> 'prompt')));
$$;

-- The dedupe rule of 0006, per language: a leased job whose bytes were already described
-- by the bucket's model (the same languages, fields and prompt) is finished with copies of
-- the model's answers: never a person's text. Its own earlier descriptions are preferred
-- (a move keeps the id), then the oldest.
create or replace function captioner.reuse_caption(
  p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text)
returns uuid language plpgsql security definer set search_path = '' as $$
declare
  source public.image_caption;
  job captioner.jobs;
  plan jsonb;
  plan_model text;
  origin uuid;
  stored text;
begin
  if p_fingerprint is null or p_model is null then
    return null;
  end if;
  select * into job from captioner.jobs j
   where j.object_id = p_object_id and j.lease_token = p_lease_token and j.state = 'running'
     for update;
  if not found or exists (
    select 1 from public.image_caption ic
     where ic.id = p_object_id and ic.object_version is not distinct from job.version) then
    return null;
  end if;
  select c.describe -> job.bucket_id into plan from captioner.config c;
  plan_model := coalesce(plan ->> 'model', p_model);
  select * into source from public.image_caption ic
   where ic.fingerprint = p_fingerprint and ic.model = plan_model
     and captioner.describes_plan(ic.id, plan_model, plan)
   order by ic.id = p_object_id desc, ic.created_at
   limit 1;
  if not found then
    return null;
  end if;
  update captioner.jobs j
     set state = 'done', lease_token = null, lease_until = null, last_error = null,
         updated_at = now()
   where j.object_id = p_object_id;
  origin := coalesce(source.reused_from, source.id);
  stored := captioner.store_descriptions(
    p_object_id, job.version, p_fingerprint, plan_model,
    (select jsonb_agg(d.machine order by array_position(
              array(select jsonb_array_elements_text(plan -> 'languages')), d.language), d.language)
       from public.image_description d
      where d.id = source.id and d.model = plan_model and d.machine is not null
        and (plan is null or d.language in (select jsonb_array_elements_text(plan -> 'languages')))),
    origin);
  insert into public.image_caption as ic
         (id, caption, model, object_version, fingerprint, attempts, caption_ms, reused_from,
          language)
  values (p_object_id, coalesce(stored, source.caption), source.model, job.version,
          p_fingerprint, job.attempts, null, origin,
          coalesce(plan -> 'languages' ->> 0, source.language))
  on conflict (id) do update
    set caption = excluded.caption, model = excluded.model,
        object_version = excluded.object_version, fingerprint = excluded.fingerprint,
        attempts = excluded.attempts, caption_ms = excluded.caption_ms,
        reused_from = excluded.reused_from, language = excluded.language, updated_at = now();
  return origin;
end $$;

-- caption_jobs_complete (0003) with the descriptions: written with the caption, in the same
-- transaction, only while the caller holds the lease. p_caption: the first language's
-- caption as the model wrote it; a person's correction of it stays (image_caption.caption
-- is the stored first description's).
drop function if exists public.caption_jobs_complete(uuid, uuid, text, text, text, integer);
create or replace function public.caption_jobs_complete(
  p_object_id uuid, p_lease_token uuid, p_caption text, p_model text,
  p_fingerprint text default null, p_caption_ms integer default null,
  p_descriptions jsonb default null)
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
  -- an older worker sends no descriptions: its caption is the English one
  stored := captioner.store_descriptions(
    p_object_id, job.version, p_fingerprint, p_model, coalesce(descriptions, jsonb_build_array(
      jsonb_build_object('language', 'en', 'caption', p_caption, 'alt_text', p_caption,
                         'missing', '["description", "tags", "text_in_image"]'::jsonb,
                         'fields', '["caption", "alt_text"]'::jsonb))));
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

-- Reuse reveals nothing about objects the reader cannot see (20261126033020): a description
-- copied from another object keeps no reused_from; captioner.caption_reuses has it.
-- (image_caption's trigger, written in the same transaction, records the source.)
create or replace function captioner.description_hides_reuse()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  if new.reused_from is distinct from new.id then
    new.reused_from := null;
  end if;
  return new;
end $$;

create or replace trigger description_hide_reuse
  before insert or update of reused_from on public.image_description
  for each row execute function captioner.description_hides_reuse();

-- Edits ---------------------------------------------------------------------------------
-- The fields of p_fields (any of caption, alt_text, description, tags, text_in_image) into
-- the description of p_id in p_language, as the caller: RLS lets a signed-in user write
-- only the descriptions of objects storage lets them update; anon nothing.
create or replace function public.edit_image_description(
  p_id uuid, p_language text, p_fields jsonb)
returns setof public.image_description
language plpgsql security invoker set search_path = '' as $$
declare
  unknown text;
begin
  select string_agg(k, ', ') into unknown from jsonb_object_keys(coalesce(p_fields, '{}')) k
   where k not in ('caption', 'alt_text', 'description', 'tags', 'text_in_image');
  if unknown is not null or jsonb_typeof(p_fields) is distinct from 'object' then
    raise exception 'not an editable field: %', coalesce(unknown, 'p_fields must be an object')
      using errcode = '22023',
            hint = 'edit caption, alt_text, description, tags (an array) or text_in_image';
  end if;
  if p_fields ? 'tags' and jsonb_typeof(p_fields -> 'tags') <> 'array' then
    raise exception 'tags must be an array of strings' using errcode = '22023';
  end if;
  return query
  insert into public.image_description as d
         (id, language, caption, alt_text, description, tags, text_in_image)
  values (p_id, p_language, coalesce(p_fields ->> 'caption', ''),
          coalesce(p_fields ->> 'alt_text', ''), coalesce(p_fields ->> 'description', ''),
          coalesce((select array_agg(t) from jsonb_array_elements_text(p_fields -> 'tags') t),
                   '{}'),
          coalesce(p_fields ->> 'text_in_image', ''))
  on conflict (id, language) do update
    set caption = case when p_fields ? 'caption' then excluded.caption else d.caption end,
        alt_text = case when p_fields ? 'alt_text' then excluded.alt_text else d.alt_text end,
        description = case when p_fields ? 'description' then excluded.description
                           else d.description end,
        tags = case when p_fields ? 'tags' then excluded.tags else d.tags end,
        text_in_image = case when p_fields ? 'text_in_image' then excluded.text_in_image
                             else d.text_in_image end
  returning d.*;
end $$;

comment on function public.edit_image_description(uuid, text, jsonb) is
  'Correct fields of an image''s description (as the signed-in user; storage''s UPDATE '
  'policies decide). The fields become the person''s: re-captions never overwrite them.';
revoke all on function public.edit_image_description(uuid, text, jsonb) from public, anon;
grant execute on function public.edit_image_description(uuid, text, jsonb)
  to authenticated, service_role;

-- The API's edit (PATCH /v1/captions/{id} with the API key): the same, by p_editor.
create or replace function public.caption_description_edit(
  p_id uuid, p_language text, p_fields jsonb, p_editor text)
returns setof public.image_description
language plpgsql security definer set search_path = '' as $$
begin
  if not exists (select 1 from storage.objects o where o.id = p_id) then
    raise exception 'no object %', p_id using errcode = 'PT404';
  end if;
  perform set_config('captioner.editor', coalesce(nullif(p_editor, ''), 'api'), true);
  return query select * from public.edit_image_description(p_id, p_language, p_fields);
  perform set_config('captioner.editor', '', true);
end $$;

-- The descriptions of some objects, and the history of their person-written text (the API
-- and the gallery).
create or replace function public.caption_descriptions(p_ids uuid[])
returns setof public.image_description
language sql stable security definer set search_path = '' as $$
  select d.* from public.image_description d
   where d.id = any (p_ids)
   order by d.id, d.language;
$$;

create or replace function public.caption_description_history(p_id uuid)
returns setof public.image_description_history
language sql stable security definer set search_path = '' as $$
  select h.* from public.image_description_history h
   where h.id = p_id order by h.replaced_at desc, h.entry_id desc limit 100;
$$;

revoke all on all functions in schema captioner from public;
do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('caption_configure', 'caption_jobs_complete',
                         'caption_description_edit', 'caption_descriptions',
                         'caption_description_history')
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;

-- Search: 20261126024414's design (visibility through the search roles, the newest 1,000
-- matches ranked, a flat cost) over descriptions too. A query matches a description in the
-- description's own language (alt text and tags, then description and text in the image,
-- then caption: weights A, B, C) or a caption in the project's search language (0009); it
-- is parsed once per configuration in captioner.search_languages.
create index if not exists image_description_updated_idx
  on public.image_description (updated_at desc);

drop policy if exists "Search reads descriptions beside the objects it may read"
  on public.image_description;
create policy "Search reads descriptions beside the objects it may read"
  on public.image_description
  for select to captioner_search_anon, captioner_search_authenticated using (true);

create or replace function public.image_description_search_languages()
returns regconfig[] language sql stable security definer set search_path = '' as $$
  select coalesce(array_agg(l.search_language order by l.search_language::text), '{}')
    from captioner.search_languages l;
$$;
revoke all on function public.image_description_search_languages() from public;
grant execute on function public.image_description_search_languages()
  to anon, authenticated, service_role;

-- Captions and descriptions together: captioner_search.run (20261126024414, 20261126031828)
-- finds the newest p_window matching captions as it does; descriptions are found the same
-- way (walking newest first where the statistics say a word is common; where the index
-- holds fewer than 1,000 matches, those first); then one row per object (its best rank,
-- its newest match), ranked and paged as run does. Each description matches in its own
-- language: p_configs[i] with p_queries[i].
create or replace function captioner_search.described(
  p_query tsquery, p_configs regconfig[], p_queries tsquery[], p_bucket text,
  p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql volatile security invoker set search_path = ''  -- volatile: may EXPLAIN
set max_parallel_workers_per_gather = 0 as $fn$
declare
  plan jsonb;
  described real := greatest((select c.reltuples from pg_catalog.pg_class c
                               where c.oid = 'public.image_description'::regclass), 1);
  few bigint;
  form text := nullif(current_setting('captioner.search_plan', true), '');
  matching constant text := '(select x.id, x.updated_at, x.search_vector, q.tsq'
    ' from unnest($2::regconfig[], $3::tsquery[]) as q(cfg, tsq)'
    ' join public.image_description x on x.search_language = q.cfg'
    ' and x.search_vector @@ q.tsq where numnode(q.tsq) > 0)';
begin
  if form is null then
    execute 'explain (format json) select 1 from ' || matching || ' d'
      into plan using p_query, p_configs, p_queries;
    form := case when (plan -> 0 -> 'Plan' ->> 'Plan Rows')::real / described
                      >= sqrt(p_window / described) then 'walk' else 'any' end;
    if form = 'any' and (not row_security_active('public.image_description')
       or current_user::text in ('captioner_search_anon', 'captioner_search_authenticated')) then
      execute 'select count(*) from (select from ' || matching || ' d limit 1000) m'
        into few using p_query, p_configs, p_queries;
      if few < 1000 then
        form := 'hits';
      end if;
    end if;
  end if;
  return query execute format($q$
    with hits as materialized (
      select * from %s d
    ), caught as (
      select r.id, r.captioned_at as updated_at, r.rank
        from captioner_search.run($1, $4, greatest($7, $6 + $5), 0, $7) r
       where numnode($1) > 0
      union all
      select m.id, m.updated_at, ts_rank(m.search_vector, m.tsq)
        from (select d.id, d.updated_at, d.search_vector, d.tsq
                from %s d
                join storage.objects o on o.id = d.id
               where ($4::text is null or o.bucket_id = $4)
                 and o.archived_at is null and not o.is_delete_marker
               order by %s desc, d.id desc
               limit greatest($7, $6 + $5)) m
    ), newest as (
      select c.id, max(c.updated_at) as updated_at, max(c.rank) as rank
        from caught c
       group by c.id
       order by 2 desc, 1 desc
       limit greatest($7, $6 + $5)
    ), placed as (
      select n.id, n.updated_at, n.rank,
             row_number() over (order by n.updated_at desc, n.id desc) > $7 as later
        from newest n
    ), page as (
      select p.* from placed p
       order by p.later, case when p.later then 0 else p.rank end desc, p.updated_at desc, p.id
       limit $5 offset $6
    )
    select pg.id, o.bucket_id, o.name, coalesce(ic.caption, d.caption),
           coalesce(ic.model, d.model), pg.updated_at, pg.rank
      from page pg
      join storage.objects o on o.id = pg.id
      left join lateral (  -- limit 1: looked up per row, never joined by scanning the table
        select y.caption, y.model from public.image_caption y where y.id = pg.id limit 1) ic
        on true
      left join lateral (
        select x.caption, x.model from public.image_description x
         where x.id = pg.id order by x.updated_at desc limit 1) d on true
     order by pg.later, case when pg.later then 0 else pg.rank end desc, pg.updated_at desc,
              pg.id
  $q$,
  case when form = 'hits' then matching else '(select null::uuid as id limit 0)' end,
  case when form = 'hits' then 'hits' else matching end,
  case when form = 'walk' then 'd.updated_at'
       else '(d.updated_at + interval ''0 s'')' end)  -- an order no index offers
  using p_query, p_configs, p_queries, p_bucket, p_limit, p_skip, p_window;
end $fn$;

-- 20261126024414's check (with 20261126033020's policy), and the same for image_description's
-- read policy: running as the search roles reads exactly what the caller reads.
create or replace function captioner_search.roles_exact()
returns boolean language sql stable security definer set search_path = '' as $$
  select (select bool_and(exists (
           select 1 from pg_catalog.pg_policy p
            where p.polrelid = t.tbl and p.polname = t.policy
              and p.polpermissive and p.polcmd in ('r', '*')
              and p.polroles @> array['anon'::regrole, 'authenticated'::regrole]::oid[]
              and regexp_replace(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '\s+', ' ', 'g')
                  = format('(EXISTS ( SELECT 1 FROM storage.objects o WHERE ((o.id = %s.id) AND'
                           ' (o.archived_at IS NULL) AND (NOT o.is_delete_marker))))', t.alias)))
            from (values ('public.image_caption'::regclass,
                          'Captions are readable where the image is', 'image_caption'),
                         ('public.image_description'::regclass,
                          'Descriptions are readable where the image is', 'image_description'))
                 as t(tbl, policy, alias))
     and not exists (
           select 1 from pg_catalog.pg_policy p
            where pg_catalog.pg_get_expr(p.polqual, p.polrelid)
                  ~ '\m(CURRENT_USER|CURRENT_ROLE|SESSION_USER|USER|pg_has_role|has_[a-z_]+_privilege)\M');
$$;

create or replace function captioner_search.described_as_anon(
  p_query tsquery, p_configs regconfig[], p_queries tsquery[], p_bucket text,
  p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language sql stable security definer set search_path = '' as $$
  select * from captioner_search.described(
    p_query, p_configs, p_queries, p_bucket, p_limit, p_skip, p_window);
$$;
alter function captioner_search.described_as_anon(
  tsquery, regconfig[], tsquery[], text, integer, integer, integer)
  owner to captioner_search_anon;

create or replace function captioner_search.described_as_authenticated(
  p_query tsquery, p_configs regconfig[], p_queries tsquery[], p_bucket text,
  p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language sql stable security definer set search_path = '' as $$
  select * from captioner_search.described(
    p_query, p_configs, p_queries, p_bucket, p_limit, p_skip, p_window);
$$;
alter function captioner_search.described_as_authenticated(
  tsquery, regconfig[], tsquery[], text, integer, integer, integer)
  owner to captioner_search_authenticated;

revoke all on all functions in schema captioner_search from public;
grant execute on function captioner_search.run(tsquery, text, integer, integer, integer)
  to anon, authenticated, service_role, captioner_search_anon, captioner_search_authenticated;
grant execute on function captioner_search.described(
  tsquery, regconfig[], tsquery[], text, integer, integer, integer)
  to anon, authenticated, service_role, captioner_search_anon, captioner_search_authenticated;
grant execute on function captioner_search.roles_exact() to anon, authenticated, service_role;
grant execute on function captioner_search.as_anon(tsquery, text, integer, integer, integer)
  to anon;
grant execute on function
  captioner_search.as_authenticated(tsquery, text, integer, integer, integer) to authenticated;
grant execute on function captioner_search.described_as_anon(
  tsquery, regconfig[], tsquery[], text, integer, integer, integer) to anon;
grant execute on function captioner_search.described_as_authenticated(
  tsquery, regconfig[], tsquery[], text, integer, integer, integer) to authenticated;

-- Captions and descriptions the caller can read (exactly those its own select returns)
-- that match `query`, best first; see 20261126024414 for the syntax and the window.
create or replace function public.search_image_captions(
  query text,
  bucket text default null,
  max_results integer default 20,
  skip integer default 0)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql stable security invoker set search_path = '' as $fn$
declare
  words text := left(coalesce(search_image_captions.query, ''), 1000);
  tsq tsquery := websearch_to_tsquery(public.image_caption_search_language(), words);
  configs regconfig[] := public.image_description_search_languages();
  queries tsquery[];
  n integer := least(greatest(coalesce(search_image_captions.max_results, 20), 0), 100);
  k integer := greatest(coalesce(search_image_captions.skip, 0), 0);
  b text := search_image_captions.bucket;
  ranked constant integer := 1000;
begin
  select coalesce(array_agg(websearch_to_tsquery(c, words) order by o), '{}') into queries
    from unnest(configs) with ordinality as u(c, o);
  if n = 0 or (numnode(tsq) = 0
               and not exists (select 1 from unnest(queries) q where numnode(q) > 0)) then
    return;
  end if;
  if current_user = 'anon' and captioner_search.roles_exact() then
    return query select * from captioner_search.described_as_anon(
      tsq, configs, queries, b, n, k, ranked);
  elsif current_user = 'authenticated' and captioner_search.roles_exact() then
    return query select * from captioner_search.described_as_authenticated(
      tsq, configs, queries, b, n, k, ranked);
  else
    return query select * from captioner_search.described(tsq, configs, queries, b, n, k, ranked);
  end if;
end $fn$;

comment on function public.search_image_captions(text, text, integer, integer) is
  'Full-text search over the descriptions and captions the caller may read (alt text, tags, '
  'description, text in the image, caption; each in its own language); at most 100 rows.';
revoke all on function public.search_image_captions(text, text, integer, integer) from public;
grant execute on function public.search_image_captions(text, text, integer, integer)
  to anon, authenticated, service_role;

-- In place: every caption made before descriptions becomes the description in its language
-- (English where none was recorded): it is the caption and the alt text, the rest missing.
update public.image_caption set language = 'en' where language is null;
insert into public.image_description
       (id, language, caption, alt_text, missing, sources, machine, model, object_version,
        fingerprint, reused_from, created_at, updated_at)
select ic.id, ic.language, ic.caption, ic.caption, '{description,tags,text_in_image}',
       jsonb_build_object(
         'caption', jsonb_build_object('source', 'model', 'by', ic.model, 'at', ic.updated_at),
         'alt_text', jsonb_build_object('source', 'model', 'by', ic.model, 'at', ic.updated_at)),
       jsonb_build_object('language', ic.language, 'caption', ic.caption,
                          'alt_text', ic.caption,
                          'missing', '["description", "tags", "text_in_image"]'::jsonb,
                          'fields', '["caption", "alt_text"]'::jsonb),
       ic.model, ic.object_version, ic.fingerprint, ic.reused_from, ic.created_at, ic.updated_at
  from public.image_caption ic
 where not exists (select 1 from public.image_description d where d.id = ic.id);

-- Live: Supabase Realtime streams the tables of its publication (Realtime applies RLS to
-- postgres_changes). Supabase creates supabase_realtime, empty (supabase/postgres,
-- migrations/db/init-scripts/00000000000000-initial-schema.sql); elsewhere nothing to do.
do $$
declare
  tbl text;
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    return;
  end if;
  foreach tbl in array array['image_description', 'image_caption'] loop
    if not exists (select 1 from pg_publication_tables
                    where pubname = 'supabase_realtime' and schemaname = 'public'
                      and tablename = tbl) then
      execute format('alter publication supabase_realtime add table public.%I', tbl);
    end if;
  end loop;
end $$;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126041333 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
