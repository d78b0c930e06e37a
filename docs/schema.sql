--
-- PostgreSQL database dump
--

--
-- Name: captioner; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA captioner;

--
-- Name: public; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA public;

--
-- Name: SCHEMA public; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA public IS 'standard public schema';

--
-- Name: job_state; Type: TYPE; Schema: captioner; Owner: -
--

CREATE TYPE captioner.job_state AS ENUM (
    'pending',
    'running',
    'done',
    'failed',
    'skipped'
);

--
-- Name: count_jobs(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.count_jobs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  my_shard smallint := pg_backend_pid() % 16;
begin
  -- rows in one order (bucket, state) in every transaction: no deadlock between them
  if tg_op = 'INSERT' then
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select coalesce(n.bucket_id, ''), n.state, my_shard, count(*)
      from new_jobs n group by 1, 2 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  elsif tg_op = 'DELETE' then
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select coalesce(o.bucket_id, ''), o.state, my_shard, -count(*)
      from old_jobs o group by 1, 2 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  else
    insert into captioner.job_counts as c (bucket_id, state, shard, jobs)
    select d.bucket_id, d.state, my_shard, sum(d.n)
      from (select coalesce(n.bucket_id, '') as bucket_id, n.state, 1 as n from new_jobs n
            union all
            select coalesce(o.bucket_id, ''), o.state, -1 from old_jobs o) d
     group by 1, 2 having sum(d.n) <> 0 order by 1, 2
    on conflict (bucket_id, state, shard) do update set jobs = c.jobs + excluded.jobs;
  end if;
  return null;
end $$;

--
-- Name: count_jobs_truncated(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.count_jobs_truncated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  delete from captioner.job_counts;
  return null;
end $$;

--
-- Name: describes_plan(uuid, text, jsonb); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.describes_plan(p_source uuid, p_model text, p_plan jsonb) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select p_plan is null or not exists (
    select 1 from jsonb_array_elements_text(coalesce(p_plan -> 'languages', '[]')) l
     where not exists (
       select 1 from public.image_description d
        where d.id = p_source and d.language = l and d.model = p_model
          and d.machine is not null
          and coalesce(d.machine -> 'fields', '[]') @> coalesce(p_plan -> 'fields', '[]')
          and (d.machine ->> 'prompt') is not distinct from (p_plan ->> 'prompt')));
$$;

--
-- Name: description_caption_synced(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.description_caption_synced() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update public.image_caption ic
     set caption = new.caption, updated_at = now()
   where ic.id = new.id and ic.language = new.language and new.caption <> ''
     and ic.caption is distinct from new.caption;
  return null;
end $$;

--
-- Name: description_document(regconfig, text, text, text, text[], text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.description_document(p_config regconfig, p_caption text, p_alt_text text, p_description text, p_tags text[], p_text_in_image text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select setweight(to_tsvector(p_config, coalesce(p_alt_text, '')), 'A')
      || setweight(to_tsvector(p_config, coalesce(
           (select string_agg(t, ' ') from unnest(p_tags) t), '')), 'A')
      || setweight(to_tsvector(p_config, coalesce(p_description, '')), 'B')
      || setweight(to_tsvector(p_config, coalesce(p_text_in_image, '')), 'B')
      || setweight(to_tsvector(p_config, coalesce(p_caption, '')), 'C');
$$;

--
-- Name: description_hides_reuse(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.description_hides_reuse() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if new.reused_from is distinct from new.id then
    new.reused_from := null;
  end if;
  return new;
end $$;

--
-- Name: description_written(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.description_written() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: descriptions_retired(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.descriptions_retired() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: edit_describes(jsonb, text, text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.edit_describes(p_source jsonb, p_version text, p_fingerprint text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case
    when p_source ->> 'fingerprint' is not null and p_fingerprint is not null
      then p_source ->> 'fingerprint' = p_fingerprint
    else p_source ->> 'object_version' is not distinct from p_version
  end;
$$;

--
-- Name: enqueue(uuid); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.enqueue(p_object_id uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  obj storage.objects;
  reason text;
begin
  select * into obj from storage.objects where id = p_object_id;
  if not found then
    return 'ignored: object not found';
  end if;
  reason := captioner.not_current(obj);
  if reason is not null then
    if obj.is_delete_marker then
      delete from captioner.jobs where object_id = obj.id;
      delete from public.image_caption where id = obj.id;
    end if;
    return 'ignored: ' || reason;
  end if;
  select captioner.skip_reason(obj.bucket_id, obj.name, obj.metadata, c.buckets)
    into reason from captioner.config c;
  if reason is not null then
    perform captioner.record_skip(obj, reason);
    return 'ignored: ' || reason;
  end if;
  insert into captioner.jobs as j (object_id, version, bucket_id)
  values (obj.id, obj.version, obj.bucket_id)
  on conflict (object_id) do update
    set version = excluded.version, bucket_id = excluded.bucket_id, state = 'pending', attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null, last_error = null, updated_at = now()
    where j.version is distinct from excluded.version;
  return case when found then 'queued' else 'duplicate' end;
end $$;

--
-- Name: fingerprint(jsonb); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.fingerprint(p_metadata jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $_$
  select case
    when p_metadata ->> 'size' ~ '^[0-9]+$'
     and btrim(p_metadata ->> 'eTag', '"') ~ '^[0-9a-fA-F]{32}$'
      then 'md5:' || lower(btrim(p_metadata ->> 'eTag', '"')) || ':' || (p_metadata ->> 'size')
  end
$_$;

--
-- Name: hide_reuse(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.hide_reuse() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if new.reused_from is null or new.reused_from = new.id then
    delete from captioner.caption_reuses r where r.object_id = new.id;
    return new;
  end if;
  insert into captioner.caption_reuses as r (object_id, source_id, object_version, model)
  values (new.id, new.reused_from, new.object_version, new.model)
  on conflict (object_id) do update
    set source_id = excluded.source_id, object_version = excluded.object_version,
        model = excluded.model, reused_at = now();
  if tg_table_name = 'image_caption' and new.caption_ms is null then
    new.caption_ms := (select ic.caption_ms from public.image_caption ic
                        where ic.id = new.reused_from);
  end if;
  new.reused_from := null;
  return new;
end $$;

--
-- Name: input_arguments(regprocedure); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.input_arguments(p regprocedure) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(array_agg(a.name order by a.n), '{}')
    from pg_catalog.pg_proc f,
         unnest(f.proargnames, f.proargmodes) with ordinality as a(name, mode, n)
   where f.oid = p and coalesce(a.mode, 'i') in ('i', 'b', 'v') and a.name is not null;
$$;

--
-- Name: job_bucket(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.job_bucket() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  new.bucket_id := coalesce(
    new.bucket_id, (select o.bucket_id from storage.objects o where o.id = new.object_id));
  return new;
end $$;

--
-- Name: job_pauses_reset(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.job_pauses_reset() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  new.pauses := 0;
  return new;
end $$;

--
-- Name: language_regconfig(text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.language_regconfig(p_language text) RETURNS regconfig
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
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

--
-- Name: not_current(storage.objects); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.not_current(obj storage.objects) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case
    when obj.archived_at is not null then 'not the current version'
    when obj.is_delete_marker then 'delete marker'
  end
$$;

--
-- Name: on_object_archived(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.on_object_archived() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if new.archived_at is not null then
    delete from captioner.jobs j
     where j.object_id = new.id and j.state in ('pending', 'running');
  elsif not exists (
    select 1 from public.image_caption ic
     where ic.id = new.id and ic.object_version is not distinct from new.version) then
    begin
      perform captioner.enqueue(new.id);
    exception when others then
      raise warning 'captioner: restored % not queued (%: %); the sweep will queue it',
        new.id, sqlstate, sqlerrm;
    end;
  end if;
  return null;
end $$;

--
-- Name: on_object_change(); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.on_object_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: record_skip(storage.objects, text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.record_skip(obj storage.objects, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if obj.name like '%.emptyFolderPlaceholder'
     or not obj.bucket_id = any ((select c.buckets from captioner.config c)::text[]) then
    return;  -- not an upload anyone expects a caption for
  end if;
  insert into captioner.jobs as j (object_id, version, bucket_id, state, last_error)
  values (obj.id, obj.version, obj.bucket_id, 'skipped', reason)
  on conflict (object_id) do update
    set version = excluded.version, bucket_id = excluded.bucket_id, state = 'skipped',
        attempts = 0, run_after = now(),
        lease_token = null, lease_until = null, worker = null,
        last_error = excluded.last_error, updated_at = now()
    where j.version is distinct from excluded.version;
  delete from public.image_caption
   where id = obj.id and object_version is distinct from obj.version;
end $$;

--
-- Name: reuse_caption(uuid, uuid, text, text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.reuse_caption(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: skip_reason(text, text, jsonb, text[]); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.skip_reason(p_bucket text, p_name text, p_metadata jsonb, p_buckets text[]) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select case
    when not (p_bucket = any (p_buckets)) then format('bucket %s is not watched', p_bucket)
    when p_name like '%.emptyFolderPlaceholder' then 'folder placeholder'
    when p_metadata is null or p_metadata ->> 'mimetype' is null then 'unknown content type (no metadata)'
    when lower(p_metadata ->> 'mimetype') not like 'image/%'
      then format('not an image (%s)', p_metadata ->> 'mimetype')
    when lower(p_metadata ->> 'mimetype') like 'image/svg%' then 'SVG is a vector image, not captioned'
    when not (lower(btrim(split_part(p_metadata ->> 'mimetype', ';', 1)))
              = any ((select c.mimetypes from captioner.config c)::text[]))
      then format('%s is not a format the captioner decodes', p_metadata ->> 'mimetype')
  end
$$;

--
-- Name: store_descriptions(uuid, text, text, text, jsonb, uuid); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.store_descriptions(p_object_id uuid, p_version text, p_fingerprint text, p_model text, p_descriptions jsonb, p_reused_from uuid DEFAULT NULL::uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: sweep_slice(text, text, integer); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.sweep_slice(p_bucket text, p_after text, p_limit integer) RETURNS TABLE(examined integer, queued integer, skipped integer, last_name text)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with slice as (
    select o.id, o.name, o.version,
           captioner.skip_reason(p_bucket, o.name, o.metadata, array[p_bucket]) as reason
      from storage.objects o
     where o.bucket_id = p_bucket and o.name collate "C" > p_after collate "C"
       and o.archived_at is null and not o.is_delete_marker
     order by o.name collate "C"
     limit p_limit
  ), added as (
    insert into captioner.jobs as j (object_id, version, bucket_id)
    select s.id, s.version, p_bucket from slice s
     where s.reason is null
       and not exists (  -- a skipped job may be captionable now (a format added since)
         select 1 from captioner.jobs q
          where q.object_id = s.id and q.version is not distinct from s.version
            and q.state <> 'skipped')
       and not exists (
         select 1 from public.image_caption ic
          where ic.id = s.id
            and (ic.object_version is null or ic.object_version is not distinct from s.version))
    on conflict (object_id) do update
      set version = excluded.version, bucket_id = excluded.bucket_id, state = 'pending',
          attempts = 0, run_after = now(), lease_token = null, lease_until = null,
          worker = null, last_error = null, updated_at = now()
    returning 1
  )
  select (select count(*) from slice)::integer,
         (select count(*) from added)::integer,
         (select count(*) from slice where reason is not null)::integer,
         (select max(name collate "C") from slice);
$$;

--
-- Name: config; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.config (
    singleton boolean DEFAULT true NOT NULL,
    buckets text[] DEFAULT '{images}'::text[] NOT NULL,
    webhook_url text,
    webhook_secret text,
    webhook_timeout_ms integer DEFAULT 5000 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    signing_secret text,
    mimetypes text[] DEFAULT '{image/jpeg,image/jpg,image/pjpeg,image/png,image/apng,image/gif,image/webp,image/tiff,image/bmp,image/x-ms-bmp,image/x-icon,image/vnd.microsoft.icon,image/heic,image/heif,image/heic-sequence,image/heif-sequence,image/avif,image/avif-sequence}'::text[] NOT NULL,
    search_language regconfig DEFAULT 'english'::regconfig NOT NULL,
    describe jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT config_singleton_check CHECK (singleton)
);

--
-- Name: webhook_headers(captioner.config, text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.webhook_headers(cfg captioner.config, p_body text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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

--
-- Name: webhook_signature(text, bigint, text, text); Type: FUNCTION; Schema: captioner; Owner: -
--

CREATE FUNCTION captioner.webhook_signature(p_id text, p_timestamp bigint, p_body text, p_secret text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select 'v1,' || encode(
    extensions.hmac(
      convert_to(p_id || '.' || p_timestamp || '.' || p_body, 'UTF8'),
      decode(regexp_replace(p_secret, '^whsec_', ''), 'base64'),
      'sha256'),
    'base64');
$$;

--
-- Name: caption_configure(text[], text, text, text, text[], jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_configure(p_buckets text[], p_webhook_url text DEFAULT NULL::text, p_webhook_secret text DEFAULT NULL::text, p_signing_secret text DEFAULT NULL::text, p_mimetypes text[] DEFAULT NULL::text[], p_describe jsonb DEFAULT NULL::jsonb) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  update captioner.config
     set buckets = p_buckets,
         webhook_url = p_webhook_url,
         webhook_secret = p_webhook_secret,
         signing_secret = p_signing_secret,
         mimetypes = coalesce(p_mimetypes, mimetypes),
         describe = coalesce(p_describe, describe),
         updated_at = now();
$$;

--
-- Name: image_description; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.image_description (
    id uuid NOT NULL,
    language text NOT NULL,
    caption text DEFAULT ''::text NOT NULL,
    alt_text text DEFAULT ''::text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    text_in_image text DEFAULT ''::text NOT NULL,
    missing text[] DEFAULT '{}'::text[] NOT NULL,
    sources jsonb DEFAULT '{}'::jsonb NOT NULL,
    machine jsonb,
    model text,
    object_version text,
    fingerprint text,
    reused_from uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    search_language regconfig DEFAULT 'simple'::regconfig NOT NULL,
    search_vector tsvector DEFAULT ''::tsvector NOT NULL
);

--
-- Name: TABLE image_description; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.image_description IS 'One description per image and language: written by the captioning service, corrected by people (public.edit_image_description). A person''s field wins over the model''s.';

--
-- Name: COLUMN image_description.language; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_description.language IS 'BCP 47 language tag (en, de, pt-BR).';

--
-- Name: COLUMN image_description.missing; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_description.missing IS 'Fields asked for that the model could not fill (e.g. BLIP: description, tags, text_in_image).';

--
-- Name: COLUMN image_description.sources; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_description.sources IS 'Per field: {"source": "model"|"person", "by": model or editor, "at": time}; a person''s entry also names the object version and content fingerprint the edit described.';

--
-- Name: COLUMN image_description.machine; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_description.machine IS 'The model''s own answer (its fields, the fields and prompt asked for), kept when a person overrides a field: content dedupe copies it, never a person''s text.';

--
-- Name: COLUMN image_description.search_vector; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_description.search_vector IS 'Weighted tsvector over alt_text, tags, description, text_in_image and caption, in the row''s own language (search_language, from captioner.language_regconfig(language)).';

--
-- Name: caption_description_edit(uuid, text, jsonb, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_description_edit(p_id uuid, p_language text, p_fields jsonb, p_editor text) RETURNS SETOF public.image_description
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if not exists (select 1 from storage.objects o where o.id = p_id) then
    raise exception 'no object %', p_id using errcode = 'PT404';
  end if;
  perform set_config('captioner.editor', coalesce(nullif(p_editor, ''), 'api'), true);
  return query select * from public.edit_image_description(p_id, p_language, p_fields);
  perform set_config('captioner.editor', '', true);
end $$;

--
-- Name: image_description_history; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.image_description_history (
    entry_id bigint NOT NULL,
    id uuid NOT NULL,
    language text NOT NULL,
    field text NOT NULL,
    value jsonb NOT NULL,
    edited_by text,
    edited_at timestamp with time zone,
    object_version text,
    fingerprint text,
    replaced_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: TABLE image_description_history; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.image_description_history IS 'A person''s field of a description, kept when a new upload (other bytes) got a new machine description: object_version/fingerprint are what the edit described.';

--
-- Name: caption_description_history(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_description_history(p_id uuid) RETURNS SETOF public.image_description_history
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select h.* from public.image_description_history h
   where h.id = p_id order by h.replaced_at desc, h.entry_id desc limit 100;
$$;

--
-- Name: caption_descriptions(uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_descriptions(p_ids uuid[]) RETURNS SETOF public.image_description
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select d.* from public.image_description d
   where d.id = any (p_ids)
   order by d.id, d.language;
$$;

--
-- Name: caption_doctor(text[], text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_doctor(p_functions text[], p_buckets text[]) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: caption_doctor(jsonb, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_doctor(p_signatures jsonb, p_buckets text[]) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with wanted as (
    select w.key as fn, array(select jsonb_array_elements_text(w.value) order by 1) as args
      from jsonb_each(p_signatures) w
  ), found as (
    select w.fn, w.args, captioner.input_arguments(p.oid) as have, p.pronargdefaults as optional
      from wanted w
      join pg_catalog.pg_proc p on p.proname = w.fn and p.pronamespace = 'public'::regnamespace
  ), mismatched as (
    select w.fn,
           coalesce((select jsonb_agg(array_to_string(f.have, ', ') order by f.have)
                       from found f where f.fn = w.fn), '[]'::jsonb) as found
      from wanted w
     where not exists (
       select 1 from found f
        where f.fn = w.fn and f.have @> w.args
          and f.have[1:cardinality(f.have) - f.optional] <@ w.args)
  )
  select jsonb_build_object(
    'schema_version', public.caption_schema_version(),
    'mismatched_functions', coalesce((
      select jsonb_agg(jsonb_build_object('name', m.fn, 'found', m.found,
                                          'expected', to_jsonb(w.args)) order by m.fn)
        from mismatched m join wanted w on w.fn = m.fn), '[]'::jsonb),
    'missing_buckets', coalesce((
      select jsonb_agg(b order by b) from unnest(p_buckets) b
      where not exists (select 1 from storage.buckets where id = b)), '[]'::jsonb),
    'trigger', coalesce((
      select case t.tgenabled when 'D' then 'disabled' when 'R' then 'replica' else 'enabled' end
        from pg_catalog.pg_trigger t
       where t.tgname = 'caption_on_object_change'
         and t.tgrelid = 'storage.objects'::regclass), 'missing'),
    'pg_net', exists (
      select 1 from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'net' and p.proname = 'http_post'),
    'webhook_url', (select c.webhook_url from captioner.config c),
    'webhook_timeout_ms', (select c.webhook_timeout_ms from captioner.config c));
$$;

--
-- Name: caption_doctor_wake_up(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_doctor_wake_up() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  cfg captioner.config;
  body jsonb;
begin
  select * into cfg from captioner.config;
  if cfg.webhook_url is null or to_regproc('net.http_post') is null then
    return null;
  end if;
  body := jsonb_build_object(
    'type', 'DELETE', 'table', 'objects', 'schema', 'storage', 'record', null,
    'old_record', jsonb_build_object(
      'id', '00000000-0000-0000-0000-000000000000', 'bucket_id', 'captioner-doctor',
      'name', 'captioner doctor: test wake-up'));
  return net.http_post(
    url := cfg.webhook_url,
    body := body,
    headers := captioner.webhook_headers(cfg, body::text),
    timeout_milliseconds := cfg.webhook_timeout_ms);
end $$;

--
-- Name: caption_doctor_wake_up_answer(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_doctor_wake_up_answer(p_request_id bigint) RETURNS TABLE(status_code integer, timed_out boolean, error_msg text, content text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
begin
  return query execute
    'select r.status_code, r.timed_out, r.error_msg, left(r.content, 300)
       from net._http_response r where r.id = $1'
    using p_request_id;
end $_$;

--
-- Name: caption_gallery_captions(text, integer, uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_gallery_captions(p_bucket text, p_limit integer, p_ids uuid[] DEFAULT NULL::uuid[]) RETURNS TABLE(id uuid, bucket_id text, name text, caption text, model text, captioned_at timestamp with time zone, reused boolean, caption_ms integer, attempts integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select ic.id, o.bucket_id, o.name, ic.caption, ic.model, ic.updated_at,
         ic.reused_from is not null or exists (
           select 1 from captioner.caption_reuses r
            where r.object_id = ic.id and r.model is not distinct from ic.model
              and r.object_version is not distinct from ic.object_version),
         ic.caption_ms, ic.attempts
    from public.image_caption ic
    join storage.objects o on o.id = ic.id
   where o.bucket_id = p_bucket and (p_ids is null or ic.id = any (p_ids))
     and o.archived_at is null and not o.is_delete_marker
   order by array_position(p_ids, ic.id), ic.updated_at desc, ic.id
   limit least(greatest(p_limit, 0), 500);
$$;

--
-- Name: caption_gallery_jobs(text, text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_gallery_jobs(p_bucket text, p_state text, p_limit integer) RETURNS TABLE(object_id uuid, name text, attempts integer, reason text, at timestamp with time zone)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
begin
  return query execute $q$
    select j.object_id, o.name, j.attempts, j.last_error, j.updated_at
      from captioner.jobs j
      join storage.objects o on o.id = j.object_id
     where j.state = $1::captioner.job_state and j.bucket_id = $2
     order by j.updated_at desc
     limit $3
  $q$ using p_state, p_bucket, least(greatest(p_limit, 0), 500);
end $_$;

--
-- Name: caption_jobs_bucket_size(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_bucket_size(p_bucket text) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select count(*) from storage.objects o
   where o.bucket_id = p_bucket and o.archived_at is null and not o.is_delete_marker;
$$;

--
-- Name: caption_jobs_bucket_states(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_bucket_states() RETURNS TABLE(bucket_id text, state text, jobs bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return query
  select b.bucket_id, s.state::text, coalesce(sum(c.jobs), 0)::bigint
    from (select k.bucket_id from captioner.job_counts k
           group by k.bucket_id having sum(k.jobs) <> 0) b
   cross join unnest(enum_range(null::captioner.job_state)) as s(state)
    left join captioner.job_counts c on c.bucket_id = b.bucket_id and c.state = s.state
   group by b.bucket_id, s.state
   order by b.bucket_id, s.state;
end $$;

--
-- Name: caption_jobs_claim(text, integer, integer, integer, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text DEFAULT NULL::text) RETURNS TABLE(object_id uuid, version text, bucket_id text, name text, mimetype text, size bigint, attempts integer, lease_token uuid, fingerprint text, reused_from uuid)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select c.object_id, c.version, c.bucket_id, c.name, c.mimetype, c.size, c.attempts,
         c.lease_token, c.fingerprint, c.reused_from
    from public.caption_jobs_claim(p_worker, p_limit, p_lease_seconds, p_max_attempts,
                                   p_model, null) c;
$$;

--
-- Name: caption_jobs_claim(text, integer, integer, integer, text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text, p_max_pauses integer) RETURNS TABLE(object_id uuid, version text, bucket_id text, name text, mimetype text, size bigint, attempts integer, lease_token uuid, fingerprint text, reused_from uuid, no_progress text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  expired uuid[];
  due uuid[];
  leased record;
begin
  update captioner.jobs j
     set state = 'failed', lease_token = null, lease_until = null, updated_at = now(),
         last_error = format('lease expired after %s attempts (worker crashed or stuck)', j.attempts)
   where j.state = 'running' and j.lease_until < now() and j.attempts >= p_max_attempts;

  select coalesce(array_agg(d.object_id), '{}') into expired from (
    select r.object_id from captioner.jobs r
     where r.state = 'running' and r.lease_until < now()
     order by r.lease_until limit p_limit
       for update skip locked) d;
  select coalesce(array_agg(d.object_id), '{}') into due from (
    select p.object_id from captioner.jobs p
     where p.state = 'pending' and p.run_after <= now()
     order by p.run_after limit p_limit - cardinality(expired)
       for update skip locked) d;

  for leased in
    update captioner.jobs j
       set state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
           lease_until = now() + make_interval(secs => p_lease_seconds), worker = p_worker,
           updated_at = now()
      from storage.objects o
     where j.object_id = any (expired || due) and o.id = j.object_id
    returning j.object_id, j.version, o.bucket_id, o.name, o.metadata ->> 'mimetype' as mimetype,
              (o.metadata ->> 'size')::bigint as size, j.attempts, j.lease_token,
              captioner.fingerprint(o.metadata) as fingerprint, j.pauses, j.last_error
  loop
    object_id := leased.object_id;
    version := leased.version;
    bucket_id := leased.bucket_id;
    name := leased.name;
    mimetype := leased.mimetype;
    size := leased.size;
    attempts := leased.attempts;
    lease_token := leased.lease_token;
    fingerprint := leased.fingerprint;
    reused_from := captioner.reuse_caption(
      leased.object_id, leased.lease_token, leased.fingerprint, p_model);
    no_progress := case when reused_from is null and leased.pauses >= p_max_pauses then
      format('gave up after %s pauses without progress: %s', leased.pauses,
             coalesce(leased.last_error, 'no reason recorded')) end;
    return next;
  end loop;
end $$;

--
-- Name: caption_jobs_complete(uuid, uuid, text, text, text, integer, jsonb, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_complete(p_object_id uuid, p_lease_token uuid, p_caption text, p_model text, p_fingerprint text DEFAULT NULL::text, p_caption_ms integer DEFAULT NULL::integer, p_descriptions jsonb DEFAULT NULL::jsonb, p_kept text[] DEFAULT NULL::text[]) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: caption_jobs_described(uuid, uuid, text, text[], text[], text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_described(p_object_id uuid, p_lease_token uuid, p_model text, p_languages text[], p_fields text[] DEFAULT NULL::text[], p_prompt text DEFAULT NULL::text) RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: caption_jobs_enqueue(uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_enqueue(p_object_ids uuid[]) RETURNS TABLE(object_id uuid, outcome text)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select u.id, captioner.enqueue(u.id)
    from unnest(p_object_ids) with ordinality as u(id, n)
   order by u.n;
$$;

--
-- Name: caption_jobs_extend(uuid, uuid, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_extend(p_object_id uuid, p_lease_token uuid, p_lease_seconds integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update captioner.jobs
     set lease_until = now() + make_interval(secs => p_lease_seconds)
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';
  return found;
end $$;

--
-- Name: caption_jobs_fail(uuid, uuid, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_fail(p_object_id uuid, p_lease_token uuid, p_error text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  failed_version text;
begin
  update captioner.jobs
     set state = 'failed', last_error = p_error, lease_token = null, lease_until = null,
         updated_at = now()
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running'
  returning version into failed_version;
  if not found then
    return false;
  end if;
  delete from public.image_caption
   where id = p_object_id and object_version is distinct from failed_version;
  return true;
end $$;

--
-- Name: caption_jobs_failures(integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_failures(p_limit integer) RETURNS TABLE(object_id uuid, bucket_id text, name text, attempts integer, last_error text, failed_at timestamp with time zone)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.object_id, o.bucket_id, o.name, j.attempts, j.last_error, j.updated_at
    from captioner.jobs j join storage.objects o on o.id = j.object_id
   where j.state = 'failed'
   order by j.updated_at desc
   limit p_limit;
$$;

--
-- Name: caption_jobs_recaption(text, text, text, integer, timestamp with time zone, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_recaption(p_bucket text, p_prefix text, p_model text, p_limit integer, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone, p_languages text[] DEFAULT NULL::text[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: caption_jobs_recent(text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_recent(p_state text, p_limit integer) RETURNS TABLE(object_id uuid, bucket_id text, name text, state text, attempts integer, reason text, at timestamp with time zone)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
begin
  return query execute $q$
    select j.object_id, o.bucket_id, o.name, j.state::text, j.attempts, j.last_error,
           j.updated_at
      from captioner.jobs j join storage.objects o on o.id = j.object_id
     where j.state = $1::captioner.job_state
     order by j.updated_at desc
     limit $2
  $q$ using p_state, least(greatest(p_limit, 0), 500);
end $_$;

--
-- Name: caption_jobs_requeue(uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_requeue(p_object_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

--
-- Name: caption_jobs_requeue_failed(integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_requeue_failed(p_limit integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  queued integer;
begin
  update captioner.jobs j
     set state = 'pending', attempts = 0, run_after = now(), updated_at = now()
   where j.object_id in (
     select f.object_id from captioner.jobs f where f.state = 'failed'
      order by f.updated_at limit p_limit);
  get diagnostics queued = row_count;
  return queued;
end $$;

--
-- Name: caption_jobs_retry(uuid, uuid, text, double precision, boolean, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_retry(p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision, p_refund boolean DEFAULT false, p_pause boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update captioner.jobs
     set state = 'pending', run_after = now() + make_interval(secs => p_delay_seconds),
         attempts = attempts - case when p_refund then 1 else 0 end,
         pauses = pauses + case when p_pause then 1 else 0 end,
         last_error = coalesce(p_error, last_error),
         lease_token = null, lease_until = null, updated_at = now()
   where object_id = p_object_id and lease_token = p_lease_token and state = 'running';
  return found;
end $$;

--
-- Name: caption_jobs_reuse(uuid, uuid, text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_reuse(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text) RETURNS uuid
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select captioner.reuse_caption(p_object_id, p_lease_token, p_fingerprint, p_model);
$$;

--
-- Name: caption_jobs_stats(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_stats(p_bucket text DEFAULT NULL::text) RETURNS TABLE(state text, jobs bigint, oldest_seconds double precision)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  oldest timestamptz;
begin
  if p_bucket is null then  -- the head of jobs_pending_idx
    select j.run_after into oldest from captioner.jobs j
     where j.state = 'pending' order by j.run_after limit 1;
  else  -- the head of this bucket's range in jobs_pending_of_bucket_idx
    select j.run_after into oldest from captioner.jobs j
     where j.state <= 'pending' and j.bucket_id = p_bucket order by j.run_after limit 1;
  end if;
  return query
  select s.state::text,
         coalesce((select sum(c.jobs) from captioner.job_counts c
                    where c.state = s.state and (p_bucket is null or c.bucket_id = p_bucket)),
                  0)::bigint,
         case when s.state = 'pending'
              then greatest(coalesce(extract(epoch from now() - oldest), 0), 0)
              else 0 end::double precision
    from unnest(enum_range(null::captioner.job_state)) as s(state)
   order by s.state;
end $$;

--
-- Name: caption_jobs_sweep(integer, text[], double precision); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_sweep(p_limit integer, p_buckets text[] DEFAULT NULL::text[], p_full_every_seconds double precision DEFAULT NULL::double precision) RETURNS TABLE(bucket_id text, examined integer, queued integer, skipped integer, passing boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  buckets text[];
  pass record;
  slice record;
  budget integer := p_limit;
  backlog bigint;
begin
  if not pg_try_advisory_xact_lock(hashtext('captioner.caption_jobs_sweep')) then
    return;
  end if;
  select coalesce(p_buckets, c.buckets) into buckets from captioner.config c;
  if exists (select 1 from captioner.sweep_missed) then
    return query
    with retried as (
      delete from captioner.sweep_missed m
       where m.object_id in (select n.object_id from captioner.sweep_missed n limit p_limit)
      returning m.object_id
    ), outcomes as (select captioner.enqueue(r.object_id) as outcome from retried r)
    select null::text, count(*)::integer, count(*) filter (where o.outcome = 'queued')::integer,
           count(*) filter (where o.outcome like 'ignored%')::integer, false
      from outcomes o;
  end if;
  insert into captioner.sweep_passes (bucket_id) select unnest(buckets) on conflict do nothing;
  if p_full_every_seconds > 0 then
    update captioner.sweep_passes s
       set after_name = '', started_at = now(), examined = 0, queued = 0
     where s.bucket_id = any (buckets) and s.after_name is null
       and s.finished_at < now() - make_interval(secs => p_full_every_seconds);
  end if;
  select coalesce(sum(c.jobs), 0) into backlog from captioner.job_counts c where c.state = 'pending';
  for pass in
    select * from captioner.sweep_passes s
     where s.bucket_id = any (buckets) and s.after_name is not null
     order by s.bucket_id for update
  loop
    if budget <= 0 or backlog >= p_limit then
      return query select pass.bucket_id, 0, 0, 0, true;
      continue;
    end if;
    select * into slice from captioner.sweep_slice(pass.bucket_id, pass.after_name, budget);
    update captioner.sweep_passes s
       set after_name = case when slice.examined < budget then null else slice.last_name end,
           finished_at = case when slice.examined < budget then now() else s.finished_at end,
           examined = s.examined + slice.examined, queued = s.queued + slice.queued
     where s.bucket_id = pass.bucket_id;
    return query select pass.bucket_id, slice.examined, slice.queued, slice.skipped,
                        slice.examined >= budget;
    budget := budget - slice.examined;
    backlog := backlog + slice.queued;
  end loop;
end $$;

--
-- Name: caption_jobs_sweep_passes(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_sweep_passes() RETURNS TABLE(bucket_id text, running boolean, after_name text, started_at timestamp with time zone, finished_at timestamp with time zone, examined bigint, queued bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select s.bucket_id, s.after_name is not null, s.after_name, s.started_at, s.finished_at,
         s.examined, s.queued
    from captioner.sweep_passes s order by s.bucket_id;
$$;

--
-- Name: caption_jobs_sweep_start(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_jobs_sweep_start(p_bucket text) RETURNS TABLE(bucket_id text, started_at timestamp with time zone, examined bigint, queued bigint)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  insert into captioner.sweep_passes as s (bucket_id) values (p_bucket)
  on conflict (bucket_id) do update
    set after_name = '', started_at = now(), finished_at = null, examined = 0, queued = 0
    where s.after_name is null;
  select s.bucket_id, s.started_at, s.examined, s.queued
    from captioner.sweep_passes s where s.bucket_id = p_bucket;
$$;

--
-- Name: caption_recaption_progress(text, text, text, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_recaption_progress(p_bucket text, p_prefix text, p_model text, p_languages text[] DEFAULT NULL::text[]) RETURNS TABLE(captions bigint, done bigint, queued bigint, failed bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select count(*),
         count(*) filter (where s.done),
         count(*) filter (where not s.done and s.state in ('pending', 'running')),
         count(*) filter (where not s.done and s.state = 'failed')
    from (select j.state,
                 ic.model is not distinct from p_model
                 and described.languages >= (select count(distinct l) from unnest(p_languages) l)
                 as done
            from storage.objects o
            join public.image_caption ic on ic.id = o.id
            left join captioner.jobs j on j.object_id = o.id
            cross join lateral (
              select count(*) as languages from public.image_description d
               where p_languages is not null and d.id = o.id and d.language = any (p_languages)
                 and d.model = p_model and d.machine is not null) described
           where o.bucket_id = p_bucket
             and starts_with(o.name, coalesce(p_prefix, ''))
             and o.archived_at is null and not o.is_delete_marker) s;
$$;

--
-- Name: caption_schema_version(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_schema_version() RETURNS bigint
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$ select 20261126070500 $$;

--
-- Name: caption_search_configure(regconfig); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.caption_search_configure(p_language regconfig) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  changed bigint;
begin
  update captioner.config set search_language = p_language, updated_at = now();
  update public.image_caption set search_language = p_language
   where search_language is distinct from p_language;
  get diagnostics changed = row_count;
  return changed;
end $$;

--
-- Name: edit_image_description(uuid, text, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.edit_image_description(p_id uuid, p_language text, p_fields jsonb) RETURNS SETOF public.image_description
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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

--
-- Name: FUNCTION edit_image_description(p_id uuid, p_language text, p_fields jsonb); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.edit_image_description(p_id uuid, p_language text, p_fields jsonb) IS 'Correct fields of an image''s description (as the signed-in user; storage''s UPDATE policies decide). The fields become the person''s: re-captions never overwrite them.';

--
-- Name: image_caption_search_language(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.image_caption_search_language() RETURNS regconfig
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce((select c.search_language from captioner.config c), 'english'::regconfig);
$$;

--
-- Name: image_description_search_languages(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.image_description_search_languages() RETURNS regconfig[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(array_agg(l.search_language order by l.search_language::text), '{}')
    from captioner.search_languages l;
$$;

--
-- Name: search_image_captions(text, text, integer, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.search_image_captions(query text, bucket text DEFAULT NULL::text, max_results integer DEFAULT 20, skip integer DEFAULT 0) RETURNS TABLE(id uuid, bucket_id text, name text, caption text, model text, captioned_at timestamp with time zone, rank real)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  words text := left(coalesce(search_image_captions.query, ''), 1000);
  tsq tsquery := websearch_to_tsquery(public.image_caption_search_language(), words);
  configs regconfig[] := public.image_description_search_languages();
  queries tsquery[];
  n integer := least(greatest(coalesce(search_image_captions.max_results, 20), 0), 100);
  k integer := greatest(coalesce(search_image_captions.skip, 0), 0);
  b text := search_image_captions.bucket;
  ranked constant integer := 250;
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
end $$;

--
-- Name: FUNCTION search_image_captions(query text, bucket text, max_results integer, skip integer); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.search_image_captions(query text, bucket text, max_results integer, skip integer) IS 'Full-text search over the descriptions and captions the caller may read (alt text, tags, description, text in the image, caption; each in its own language); at most 100 rows.';

--
-- Name: caption_reuses; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.caption_reuses (
    object_id uuid NOT NULL,
    source_id uuid NOT NULL,
    object_version text,
    model text,
    reused_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: job_counts; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.job_counts (
    bucket_id text NOT NULL,
    state captioner.job_state NOT NULL,
    shard smallint NOT NULL,
    jobs bigint DEFAULT 0 NOT NULL
);

--
-- Name: jobs; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.jobs (
    object_id uuid NOT NULL,
    version text,
    state captioner.job_state DEFAULT 'pending'::captioner.job_state NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    run_after timestamp with time zone DEFAULT now() NOT NULL,
    lease_token uuid,
    lease_until timestamp with time zone,
    worker text,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    bucket_id text,
    pauses integer DEFAULT 0 NOT NULL,
    only_missing boolean DEFAULT false NOT NULL
);

--
-- Name: COLUMN jobs.pauses; Type: COMMENT; Schema: captioner; Owner: -
--

COMMENT ON COLUMN captioner.jobs.pauses IS 'Times the job was given back in a pause of the captioner since it was queued for its version.';

--
-- Name: COLUMN jobs.only_missing; Type: COMMENT; Schema: captioner; Owner: -
--

COMMENT ON COLUMN captioner.jobs.only_missing IS 'Queued by caption_jobs_recaption: the worker may keep the descriptions the model already wrote of this version (caption_jobs_described) and describe only the missing languages.';

--
-- Name: search_languages; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.search_languages (
    search_language regconfig NOT NULL
);

--
-- Name: sweep_missed; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.sweep_missed (
    object_id uuid NOT NULL,
    noted_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: sweep_passes; Type: TABLE; Schema: captioner; Owner: -
--

CREATE TABLE captioner.sweep_passes (
    bucket_id text NOT NULL,
    after_name text DEFAULT ''::text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    examined bigint DEFAULT 0 NOT NULL,
    queued bigint DEFAULT 0 NOT NULL
);

--
-- Name: image_caption; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.image_caption (
    id uuid NOT NULL,
    caption text NOT NULL,
    model text,
    object_version text,
    fingerprint text,
    attempts integer,
    caption_ms integer,
    reused_from uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    search_language regconfig DEFAULT public.image_caption_search_language() NOT NULL,
    search_vector tsvector GENERATED ALWAYS AS (to_tsvector(search_language, caption)) STORED,
    language text
);

--
-- Name: TABLE image_caption; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.image_caption IS 'Machine-generated captions of images in Supabase Storage (written by the captioning service).';

--
-- Name: COLUMN image_caption.model; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.model IS 'The captioning model that wrote the text.';

--
-- Name: COLUMN image_caption.object_version; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.object_version IS 'storage.objects.version the caption was made from; a newer version gets captioned again.';

--
-- Name: COLUMN image_caption.fingerprint; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.fingerprint IS 'The content the caption describes: md5:<hex>:<size> (from a plain MD5 eTag, or hashed by the worker); rows written before 20261126033020 may hold etag:<eTag>:<size>.';

--
-- Name: COLUMN image_caption.attempts; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.attempts IS 'Attempts the job took.';

--
-- Name: COLUMN image_caption.caption_ms; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.caption_ms IS 'The captioner''s time in ms; null when the caption was reused.';

--
-- Name: COLUMN image_caption.reused_from; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.reused_from IS 'Set when the same bytes were already captioned with the same model: the object the caption was first made for (it may be gone since). Null: made for this object.';

--
-- Name: COLUMN image_caption.search_vector; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.search_vector IS 'to_tsvector(search_language, caption): searched by public.search_image_captions().';

--
-- Name: COLUMN image_caption.language; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.image_caption.language IS 'The language of caption: the first of CAPTION_LANGUAGES (its image_description row).';

--
-- Name: image_description_history_entry_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.image_description_history ALTER COLUMN entry_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.image_description_history_entry_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: caption_reuses caption_reuses_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.caption_reuses
    ADD CONSTRAINT caption_reuses_pkey PRIMARY KEY (object_id);

--
-- Name: config config_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.config
    ADD CONSTRAINT config_pkey PRIMARY KEY (singleton);

--
-- Name: job_counts job_counts_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.job_counts
    ADD CONSTRAINT job_counts_pkey PRIMARY KEY (bucket_id, state, shard);

--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (object_id);

--
-- Name: search_languages search_languages_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.search_languages
    ADD CONSTRAINT search_languages_pkey PRIMARY KEY (search_language);

--
-- Name: sweep_missed sweep_missed_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.sweep_missed
    ADD CONSTRAINT sweep_missed_pkey PRIMARY KEY (object_id);

--
-- Name: sweep_passes sweep_passes_pkey; Type: CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.sweep_passes
    ADD CONSTRAINT sweep_passes_pkey PRIMARY KEY (bucket_id);

--
-- Name: image_caption image_caption_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_caption
    ADD CONSTRAINT image_caption_pkey PRIMARY KEY (id);

--
-- Name: image_description_history image_description_history_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_description_history
    ADD CONSTRAINT image_description_history_pkey PRIMARY KEY (entry_id);

--
-- Name: image_description image_description_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_description
    ADD CONSTRAINT image_description_pkey PRIMARY KEY (id, language);

--
-- Name: jobs_failed_idx; Type: INDEX; Schema: captioner; Owner: -
--

CREATE INDEX jobs_failed_idx ON captioner.jobs USING btree (updated_at) WHERE (state = 'failed'::captioner.job_state);

--
-- Name: jobs_pending_idx; Type: INDEX; Schema: captioner; Owner: -
--

CREATE INDEX jobs_pending_idx ON captioner.jobs USING btree (run_after) WHERE (state = 'pending'::captioner.job_state);

--
-- Name: jobs_pending_of_bucket_idx; Type: INDEX; Schema: captioner; Owner: -
--

CREATE INDEX jobs_pending_of_bucket_idx ON captioner.jobs USING btree (bucket_id, run_after) WHERE (state <= 'pending'::captioner.job_state);

--
-- Name: jobs_running_idx; Type: INDEX; Schema: captioner; Owner: -
--

CREATE INDEX jobs_running_idx ON captioner.jobs USING btree (lease_until) WHERE (state = 'running'::captioner.job_state);

--
-- Name: jobs_skipped_idx; Type: INDEX; Schema: captioner; Owner: -
--

CREATE INDEX jobs_skipped_idx ON captioner.jobs USING btree (updated_at) WHERE (state = 'skipped'::captioner.job_state);

--
-- Name: image_caption_fingerprint_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_caption_fingerprint_idx ON public.image_caption USING btree (fingerprint, model) WHERE (fingerprint IS NOT NULL);

--
-- Name: image_caption_search_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_caption_search_idx ON public.image_caption USING gin (search_vector);

--
-- Name: image_caption_updated_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_caption_updated_idx ON public.image_caption USING btree (updated_at DESC);

--
-- Name: image_description_fingerprint_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_description_fingerprint_idx ON public.image_description USING btree (fingerprint, model) WHERE (fingerprint IS NOT NULL);

--
-- Name: image_description_history_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_description_history_id_idx ON public.image_description_history USING btree (id, replaced_at DESC);

--
-- Name: image_description_search_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_description_search_idx ON public.image_description USING gin (search_vector);

--
-- Name: image_description_updated_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX image_description_updated_idx ON public.image_description USING btree (updated_at DESC);

--
-- Name: jobs jobs_bucket; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_bucket BEFORE INSERT ON captioner.jobs FOR EACH ROW WHEN ((new.bucket_id IS NULL)) EXECUTE FUNCTION captioner.job_bucket();

--
-- Name: jobs jobs_counted_delete; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_counted_delete AFTER DELETE ON captioner.jobs REFERENCING OLD TABLE AS old_jobs FOR EACH STATEMENT EXECUTE FUNCTION captioner.count_jobs();

--
-- Name: jobs jobs_counted_insert; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_counted_insert AFTER INSERT ON captioner.jobs REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION captioner.count_jobs();

--
-- Name: jobs jobs_counted_truncate; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_counted_truncate AFTER TRUNCATE ON captioner.jobs FOR EACH STATEMENT EXECUTE FUNCTION captioner.count_jobs_truncated();

--
-- Name: jobs jobs_counted_update; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_counted_update AFTER UPDATE ON captioner.jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION captioner.count_jobs();

--
-- Name: jobs jobs_pauses_reset; Type: TRIGGER; Schema: captioner; Owner: -
--

CREATE TRIGGER jobs_pauses_reset BEFORE UPDATE ON captioner.jobs FOR EACH ROW WHEN (((new.pauses <> 0) AND ((new.version IS DISTINCT FROM old.version) OR ((old.state = ANY (ARRAY['done'::captioner.job_state, 'failed'::captioner.job_state, 'skipped'::captioner.job_state])) AND (new.state = ANY (ARRAY['pending'::captioner.job_state, 'running'::captioner.job_state])))))) EXECUTE FUNCTION captioner.job_pauses_reset();

--
-- Name: image_caption caption_hide_reuse; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER caption_hide_reuse BEFORE INSERT OR UPDATE OF reused_from ON public.image_caption FOR EACH ROW EXECUTE FUNCTION captioner.hide_reuse();

--
-- Name: image_description description_hide_reuse; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER description_hide_reuse BEFORE INSERT OR UPDATE OF reused_from ON public.image_description FOR EACH ROW EXECUTE FUNCTION captioner.description_hides_reuse();

--
-- Name: image_caption image_caption_retired; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER image_caption_retired AFTER DELETE ON public.image_caption FOR EACH ROW EXECUTE FUNCTION captioner.descriptions_retired();

--
-- Name: image_description image_description_caption_synced; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER image_description_caption_synced AFTER INSERT OR UPDATE OF caption ON public.image_description FOR EACH ROW EXECUTE FUNCTION captioner.description_caption_synced();

--
-- Name: image_description image_description_written; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER image_description_written BEFORE INSERT OR UPDATE ON public.image_description FOR EACH ROW EXECUTE FUNCTION captioner.description_written();

--
-- Name: caption_reuses caption_reuses_object_id_fkey; Type: FK CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.caption_reuses
    ADD CONSTRAINT caption_reuses_object_id_fkey FOREIGN KEY (object_id) REFERENCES storage.objects(id) ON DELETE CASCADE;

--
-- Name: jobs jobs_object_id_fkey; Type: FK CONSTRAINT; Schema: captioner; Owner: -
--

ALTER TABLE ONLY captioner.jobs
    ADD CONSTRAINT jobs_object_id_fkey FOREIGN KEY (object_id) REFERENCES storage.objects(id) ON DELETE CASCADE;

--
-- Name: image_caption image_caption_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_caption
    ADD CONSTRAINT image_caption_id_fkey FOREIGN KEY (id) REFERENCES storage.objects(id) ON DELETE CASCADE;

--
-- Name: image_description_history image_description_history_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_description_history
    ADD CONSTRAINT image_description_history_id_fkey FOREIGN KEY (id) REFERENCES storage.objects(id) ON DELETE CASCADE;

--
-- Name: image_description image_description_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.image_description
    ADD CONSTRAINT image_description_id_fkey FOREIGN KEY (id) REFERENCES storage.objects(id) ON DELETE CASCADE;

--
-- Name: image_caption Captions are readable where the image is; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Captions are readable where the image is" ON public.image_caption FOR SELECT TO anon, authenticated USING ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE ((o.id = image_caption.id) AND (o.archived_at IS NULL) AND (NOT o.is_delete_marker)))));

--
-- Name: image_description Descriptions are readable where the image is; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Descriptions are readable where the image is" ON public.image_description FOR SELECT TO anon, authenticated USING ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE ((o.id = image_description.id) AND (o.archived_at IS NULL) AND (NOT o.is_delete_marker)))));

--
-- Name: image_description_history Owners read the history of their images; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Owners read the history of their images" ON public.image_description_history FOR SELECT TO authenticated USING ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE ((o.id = image_description_history.id) AND (o.owner_id = (( SELECT auth.uid() AS uid))::text)))));

--
-- Name: image_description People correct descriptions of images they may update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "People correct descriptions of images they may update" ON public.image_description FOR UPDATE TO authenticated USING ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE (o.id = image_description.id)
 FOR UPDATE OF o))) WITH CHECK ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE (o.id = image_description.id)
 FOR UPDATE OF o)));

--
-- Name: image_description People describe images they may update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "People describe images they may update" ON public.image_description FOR INSERT TO authenticated WITH CHECK ((EXISTS ( SELECT 1
   FROM storage.objects o
  WHERE (o.id = image_description.id)
 FOR UPDATE OF o)));

--
-- Name: image_caption Search reads captions beside the objects it may read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Search reads captions beside the objects it may read" ON public.image_caption FOR SELECT TO captioner_search_anon, captioner_search_authenticated USING (true);

--
-- Name: image_description Search reads descriptions beside the objects it may read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Search reads descriptions beside the objects it may read" ON public.image_description FOR SELECT TO captioner_search_anon, captioner_search_authenticated USING (true);

--
-- Name: image_caption; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.image_caption ENABLE ROW LEVEL SECURITY;

--
-- Name: image_description; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.image_description ENABLE ROW LEVEL SECURITY;

--
-- Name: image_description_history; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.image_description_history ENABLE ROW LEVEL SECURITY;

--
-- Name: SCHEMA public; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA public TO anon;
GRANT USAGE ON SCHEMA public TO authenticated;
GRANT USAGE ON SCHEMA public TO service_role;

--
-- Name: FUNCTION count_jobs(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.count_jobs() FROM PUBLIC;

--
-- Name: FUNCTION count_jobs_truncated(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.count_jobs_truncated() FROM PUBLIC;

--
-- Name: FUNCTION describes_plan(p_source uuid, p_model text, p_plan jsonb); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.describes_plan(p_source uuid, p_model text, p_plan jsonb) FROM PUBLIC;

--
-- Name: FUNCTION description_caption_synced(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.description_caption_synced() FROM PUBLIC;

--
-- Name: FUNCTION description_document(p_config regconfig, p_caption text, p_alt_text text, p_description text, p_tags text[], p_text_in_image text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.description_document(p_config regconfig, p_caption text, p_alt_text text, p_description text, p_tags text[], p_text_in_image text) FROM PUBLIC;

--
-- Name: FUNCTION description_hides_reuse(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.description_hides_reuse() FROM PUBLIC;

--
-- Name: FUNCTION description_written(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.description_written() FROM PUBLIC;

--
-- Name: FUNCTION descriptions_retired(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.descriptions_retired() FROM PUBLIC;

--
-- Name: FUNCTION edit_describes(p_source jsonb, p_version text, p_fingerprint text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.edit_describes(p_source jsonb, p_version text, p_fingerprint text) FROM PUBLIC;

--
-- Name: FUNCTION enqueue(p_object_id uuid); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.enqueue(p_object_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION fingerprint(p_metadata jsonb); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.fingerprint(p_metadata jsonb) FROM PUBLIC;

--
-- Name: FUNCTION hide_reuse(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.hide_reuse() FROM PUBLIC;

--
-- Name: FUNCTION input_arguments(p regprocedure); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.input_arguments(p regprocedure) FROM PUBLIC;

--
-- Name: FUNCTION job_bucket(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.job_bucket() FROM PUBLIC;

--
-- Name: FUNCTION job_pauses_reset(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.job_pauses_reset() FROM PUBLIC;

--
-- Name: FUNCTION language_regconfig(p_language text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.language_regconfig(p_language text) FROM PUBLIC;

--
-- Name: FUNCTION not_current(obj storage.objects); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.not_current(obj storage.objects) FROM PUBLIC;

--
-- Name: FUNCTION on_object_archived(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.on_object_archived() FROM PUBLIC;

--
-- Name: FUNCTION on_object_change(); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.on_object_change() FROM PUBLIC;

--
-- Name: FUNCTION record_skip(obj storage.objects, reason text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.record_skip(obj storage.objects, reason text) FROM PUBLIC;

--
-- Name: FUNCTION reuse_caption(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.reuse_caption(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text) FROM PUBLIC;

--
-- Name: FUNCTION skip_reason(p_bucket text, p_name text, p_metadata jsonb, p_buckets text[]); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.skip_reason(p_bucket text, p_name text, p_metadata jsonb, p_buckets text[]) FROM PUBLIC;

--
-- Name: FUNCTION store_descriptions(p_object_id uuid, p_version text, p_fingerprint text, p_model text, p_descriptions jsonb, p_reused_from uuid); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.store_descriptions(p_object_id uuid, p_version text, p_fingerprint text, p_model text, p_descriptions jsonb, p_reused_from uuid) FROM PUBLIC;

--
-- Name: FUNCTION sweep_slice(p_bucket text, p_after text, p_limit integer); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.sweep_slice(p_bucket text, p_after text, p_limit integer) FROM PUBLIC;

--
-- Name: FUNCTION webhook_headers(cfg captioner.config, p_body text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.webhook_headers(cfg captioner.config, p_body text) FROM PUBLIC;

--
-- Name: FUNCTION webhook_signature(p_id text, p_timestamp bigint, p_body text, p_secret text); Type: ACL; Schema: captioner; Owner: -
--

REVOKE ALL ON FUNCTION captioner.webhook_signature(p_id text, p_timestamp bigint, p_body text, p_secret text) FROM PUBLIC;

--
-- Name: FUNCTION caption_configure(p_buckets text[], p_webhook_url text, p_webhook_secret text, p_signing_secret text, p_mimetypes text[], p_describe jsonb); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_configure(p_buckets text[], p_webhook_url text, p_webhook_secret text, p_signing_secret text, p_mimetypes text[], p_describe jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_configure(p_buckets text[], p_webhook_url text, p_webhook_secret text, p_signing_secret text, p_mimetypes text[], p_describe jsonb) TO service_role;

--
-- Name: TABLE image_description; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.image_description TO service_role;
GRANT SELECT ON TABLE public.image_description TO anon;
GRANT SELECT ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.id; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(id) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.language; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(language) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.caption; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(caption),UPDATE(caption) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.alt_text; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(alt_text),UPDATE(alt_text) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.description; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(description),UPDATE(description) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.tags; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(tags),UPDATE(tags) ON TABLE public.image_description TO authenticated;

--
-- Name: COLUMN image_description.text_in_image; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(text_in_image),UPDATE(text_in_image) ON TABLE public.image_description TO authenticated;

--
-- Name: FUNCTION caption_description_edit(p_id uuid, p_language text, p_fields jsonb, p_editor text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_description_edit(p_id uuid, p_language text, p_fields jsonb, p_editor text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_description_edit(p_id uuid, p_language text, p_fields jsonb, p_editor text) TO service_role;

--
-- Name: TABLE image_description_history; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.image_description_history TO service_role;
GRANT SELECT ON TABLE public.image_description_history TO authenticated;

--
-- Name: FUNCTION caption_description_history(p_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_description_history(p_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_description_history(p_id uuid) TO service_role;

--
-- Name: FUNCTION caption_descriptions(p_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_descriptions(p_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_descriptions(p_ids uuid[]) TO service_role;

--
-- Name: FUNCTION caption_doctor(p_functions text[], p_buckets text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_doctor(p_functions text[], p_buckets text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_doctor(p_functions text[], p_buckets text[]) TO service_role;

--
-- Name: FUNCTION caption_doctor(p_signatures jsonb, p_buckets text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_doctor(p_signatures jsonb, p_buckets text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_doctor(p_signatures jsonb, p_buckets text[]) TO service_role;

--
-- Name: FUNCTION caption_doctor_wake_up(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_doctor_wake_up() FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_doctor_wake_up() TO service_role;

--
-- Name: FUNCTION caption_doctor_wake_up_answer(p_request_id bigint); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_doctor_wake_up_answer(p_request_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_doctor_wake_up_answer(p_request_id bigint) TO service_role;

--
-- Name: FUNCTION caption_gallery_captions(p_bucket text, p_limit integer, p_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_gallery_captions(p_bucket text, p_limit integer, p_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_gallery_captions(p_bucket text, p_limit integer, p_ids uuid[]) TO service_role;

--
-- Name: FUNCTION caption_gallery_jobs(p_bucket text, p_state text, p_limit integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_gallery_jobs(p_bucket text, p_state text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_gallery_jobs(p_bucket text, p_state text, p_limit integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_bucket_size(p_bucket text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_bucket_size(p_bucket text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_bucket_size(p_bucket text) TO service_role;

--
-- Name: FUNCTION caption_jobs_bucket_states(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_bucket_states() FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_bucket_states() TO service_role;

--
-- Name: FUNCTION caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text) TO service_role;

--
-- Name: FUNCTION caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text, p_max_pauses integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text, p_max_pauses integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_claim(p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_model text, p_max_pauses integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_complete(p_object_id uuid, p_lease_token uuid, p_caption text, p_model text, p_fingerprint text, p_caption_ms integer, p_descriptions jsonb, p_kept text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_complete(p_object_id uuid, p_lease_token uuid, p_caption text, p_model text, p_fingerprint text, p_caption_ms integer, p_descriptions jsonb, p_kept text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_complete(p_object_id uuid, p_lease_token uuid, p_caption text, p_model text, p_fingerprint text, p_caption_ms integer, p_descriptions jsonb, p_kept text[]) TO service_role;

--
-- Name: FUNCTION caption_jobs_described(p_object_id uuid, p_lease_token uuid, p_model text, p_languages text[], p_fields text[], p_prompt text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_described(p_object_id uuid, p_lease_token uuid, p_model text, p_languages text[], p_fields text[], p_prompt text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_described(p_object_id uuid, p_lease_token uuid, p_model text, p_languages text[], p_fields text[], p_prompt text) TO service_role;

--
-- Name: FUNCTION caption_jobs_enqueue(p_object_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_enqueue(p_object_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_enqueue(p_object_ids uuid[]) TO service_role;

--
-- Name: FUNCTION caption_jobs_extend(p_object_id uuid, p_lease_token uuid, p_lease_seconds integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_extend(p_object_id uuid, p_lease_token uuid, p_lease_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_extend(p_object_id uuid, p_lease_token uuid, p_lease_seconds integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_fail(p_object_id uuid, p_lease_token uuid, p_error text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_fail(p_object_id uuid, p_lease_token uuid, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_fail(p_object_id uuid, p_lease_token uuid, p_error text) TO service_role;

--
-- Name: FUNCTION caption_jobs_failures(p_limit integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_failures(p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_failures(p_limit integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_recaption(p_bucket text, p_prefix text, p_model text, p_limit integer, p_since timestamp with time zone, p_languages text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_recaption(p_bucket text, p_prefix text, p_model text, p_limit integer, p_since timestamp with time zone, p_languages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_recaption(p_bucket text, p_prefix text, p_model text, p_limit integer, p_since timestamp with time zone, p_languages text[]) TO service_role;

--
-- Name: FUNCTION caption_jobs_recent(p_state text, p_limit integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_recent(p_state text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_recent(p_state text, p_limit integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_requeue(p_object_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_requeue(p_object_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_requeue(p_object_ids uuid[]) TO service_role;

--
-- Name: FUNCTION caption_jobs_requeue_failed(p_limit integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_requeue_failed(p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_requeue_failed(p_limit integer) TO service_role;

--
-- Name: FUNCTION caption_jobs_retry(p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision, p_refund boolean, p_pause boolean); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_retry(p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision, p_refund boolean, p_pause boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_retry(p_object_id uuid, p_lease_token uuid, p_error text, p_delay_seconds double precision, p_refund boolean, p_pause boolean) TO service_role;

--
-- Name: FUNCTION caption_jobs_reuse(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_reuse(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_reuse(p_object_id uuid, p_lease_token uuid, p_fingerprint text, p_model text) TO service_role;

--
-- Name: FUNCTION caption_jobs_stats(p_bucket text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_stats(p_bucket text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_stats(p_bucket text) TO service_role;

--
-- Name: FUNCTION caption_jobs_sweep(p_limit integer, p_buckets text[], p_full_every_seconds double precision); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_sweep(p_limit integer, p_buckets text[], p_full_every_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_sweep(p_limit integer, p_buckets text[], p_full_every_seconds double precision) TO service_role;

--
-- Name: FUNCTION caption_jobs_sweep_passes(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_sweep_passes() FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_sweep_passes() TO service_role;

--
-- Name: FUNCTION caption_jobs_sweep_start(p_bucket text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_jobs_sweep_start(p_bucket text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_jobs_sweep_start(p_bucket text) TO service_role;

--
-- Name: FUNCTION caption_recaption_progress(p_bucket text, p_prefix text, p_model text, p_languages text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_recaption_progress(p_bucket text, p_prefix text, p_model text, p_languages text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_recaption_progress(p_bucket text, p_prefix text, p_model text, p_languages text[]) TO service_role;

--
-- Name: FUNCTION caption_schema_version(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_schema_version() FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_schema_version() TO service_role;

--
-- Name: FUNCTION caption_search_configure(p_language regconfig); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.caption_search_configure(p_language regconfig) FROM PUBLIC;
GRANT ALL ON FUNCTION public.caption_search_configure(p_language regconfig) TO service_role;

--
-- Name: FUNCTION edit_image_description(p_id uuid, p_language text, p_fields jsonb); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.edit_image_description(p_id uuid, p_language text, p_fields jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.edit_image_description(p_id uuid, p_language text, p_fields jsonb) TO authenticated;
GRANT ALL ON FUNCTION public.edit_image_description(p_id uuid, p_language text, p_fields jsonb) TO service_role;

--
-- Name: FUNCTION image_caption_search_language(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.image_caption_search_language() FROM PUBLIC;
GRANT ALL ON FUNCTION public.image_caption_search_language() TO anon;
GRANT ALL ON FUNCTION public.image_caption_search_language() TO authenticated;
GRANT ALL ON FUNCTION public.image_caption_search_language() TO service_role;

--
-- Name: FUNCTION image_description_search_languages(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.image_description_search_languages() FROM PUBLIC;
GRANT ALL ON FUNCTION public.image_description_search_languages() TO anon;
GRANT ALL ON FUNCTION public.image_description_search_languages() TO authenticated;
GRANT ALL ON FUNCTION public.image_description_search_languages() TO service_role;

--
-- Name: FUNCTION search_image_captions(query text, bucket text, max_results integer, skip integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.search_image_captions(query text, bucket text, max_results integer, skip integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.search_image_captions(query text, bucket text, max_results integer, skip integer) TO anon;
GRANT ALL ON FUNCTION public.search_image_captions(query text, bucket text, max_results integer, skip integer) TO authenticated;
GRANT ALL ON FUNCTION public.search_image_captions(query text, bucket text, max_results integer, skip integer) TO service_role;

--
-- Name: TABLE image_caption; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.image_caption TO service_role;
GRANT SELECT ON TABLE public.image_caption TO anon;
GRANT SELECT ON TABLE public.image_caption TO authenticated;

--
-- Name: SEQUENCE image_description_history_entry_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON SEQUENCE public.image_description_history_entry_id_seq TO anon;
GRANT ALL ON SEQUENCE public.image_description_history_entry_id_seq TO authenticated;
GRANT ALL ON SEQUENCE public.image_description_history_entry_id_seq TO service_role;

--
-- Name: DEFAULT PRIVILEGES FOR SEQUENCES; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES  TO anon;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES  TO authenticated;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES  TO service_role;

--
-- Name: DEFAULT PRIVILEGES FOR FUNCTIONS; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS  TO anon;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS  TO authenticated;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS  TO service_role;

--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES  TO anon;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES  TO authenticated;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES  TO service_role;

--
-- PostgreSQL database dump complete
--

-- Triggers on storage.objects
CREATE TRIGGER caption_on_object_archived AFTER UPDATE OF archived_at ON storage.objects FOR EACH ROW WHEN (((old.archived_at IS NULL) <> (new.archived_at IS NULL))) EXECUTE FUNCTION captioner.on_object_archived();
CREATE TRIGGER caption_on_object_change AFTER INSERT OR UPDATE OF version, metadata ON storage.objects FOR EACH ROW WHEN ((new.archived_at IS NULL)) EXECUTE FUNCTION captioner.on_object_change();
