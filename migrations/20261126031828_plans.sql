-- Plans that hold on a connection that calls a function many times (PostgREST's pool):
-- after five calls a plpgsql statement may switch to a generic plan, planned without the
-- argument's value.
--
-- caption_jobs_stats(p_bucket) (20261126024243): its generic plan, made for any bucket,
-- read every pending job of the others (a scan and a sort); as dynamic SQL it is planned
-- for this bucket each time: the head of its range in jobs_pending_bucket_idx.
create or replace function public.caption_jobs_stats(p_bucket text default null)
returns table (state text, jobs bigint, oldest_seconds double precision)
language plpgsql stable security definer set search_path = '' as $$
declare
  oldest timestamptz;
begin
  if p_bucket is null then  -- the head of jobs_pending_idx
    select j.run_after into oldest from captioner.jobs j
     where j.state = 'pending' order by j.run_after limit 1;
  else  -- the head of this bucket's range in jobs_pending_bucket_idx
    execute 'select j.run_after from captioner.jobs j'
            ' where j.state = ''pending'' and j.bucket_id = $1 order by j.run_after limit 1'
       into oldest using p_bucket;
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
revoke all on function public.caption_jobs_stats(text) from public, anon, authenticated;
grant execute on function public.caption_jobs_stats(text) to service_role;

-- Caption search (20261126024414): a rare word is found through the GIN index for every
-- caller, whatever the statistics say. The planner estimates a word its statistics do not
-- know at up to 0.5 % of the captions, so for an owner with 1,000 images it chose to check
-- every one of them (1,000 look-ups) over the index (five rows). Now, when the estimate rules
-- out walking newest first, the index is asked how many captions match, up to 1,000: fewer,
-- and those matches are taken first and only then checked against storage.objects.

-- The search itself, run with the rights of whoever calls it. p_window: how many of the
-- newest matches are ranked. Dynamic SQL, planned knowing the words and the bucket. Two ways
-- to find the newest matches: walking the captions newest first (image_caption_updated_idx)
-- until the window is full reads about p_window / share rows, for a query in `share` of the
-- captions; the GIN index (or the caller's own objects, if its policy makes them few) reads
-- share * captions rows, then sorts them. The walk is offered to the planner only where the
-- statistics say it reads fewer (share > sqrt(p_window / captions)): a word they do not know
-- is estimated at up to 0.5 % of the captions, and walking for one that is really in five
-- captions would read the whole table. Otherwise, when the index holds fewer than 1,000
-- matches (counted, not estimated), they are read first (a materialized CTE), then joined.
create or replace function captioner_search.run(
  p_query tsquery, p_bucket text, p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql volatile security invoker set search_path = ''  -- volatile: may EXPLAIN
set max_parallel_workers_per_gather = 0 as $fn$
declare
  plan jsonb;
  captions real := (select c.reltuples from pg_catalog.pg_class c
                     where c.oid = 'public.image_caption'::regclass);
  few bigint;
  -- for tests and diagnosis: 'walk', 'any' or 'hits' forces a way (the rows are the same)
  form text := nullif(current_setting('captioner.search_plan', true), '');
begin
  if form is null then
    execute 'explain (format json) select 1 from public.image_caption ic'
            ' where ic.search_vector @@ $1' into plan using p_query;
    captions := greatest(captions, 1);
    form := case when (plan -> 0 -> 'Plan' ->> 'Plan Rows')::real / captions
                      >= sqrt(p_window / captions) then 'walk' else 'any' end;
    -- counting through the index is cheap unless RLS binds it (the caller's own path)
    if form = 'any' and (not row_security_active('public.image_caption')
       or current_user::text in ('captioner_search_anon', 'captioner_search_authenticated')) then
      execute 'select count(*) from (select from public.image_caption ic'
              ' where ic.search_vector @@ $1 limit 1000) m' into few using p_query;
      if few < 1000 then
        form := 'hits';
      end if;
    end if;
  end if;
  return query execute format($q$
    with hits as materialized (
      select ic.id, ic.updated_at, ic.search_vector
        from public.image_caption ic where ic.search_vector @@ $1
    ), newest as (
      select ic.id, ic.updated_at, ic.search_vector
        from %s
        join storage.objects o on o.id = ic.id
       where ic.search_vector @@ $1 and ($2::text is null or o.bucket_id = $2)
       order by %s desc, ic.id desc
       limit greatest($5, $4 + $3)
    ), placed as (
      select n.id, n.updated_at, ts_rank(n.search_vector, $1) as rank,
             row_number() over (order by n.updated_at desc, n.id desc) > $5 as later
        from newest n
    ), page as (
      select p.* from placed p
       order by p.later, case when p.later then 0 else p.rank end desc, p.updated_at desc, p.id
       limit $3 offset $4
    )
    select pg.id, o.bucket_id, o.name, ic.caption, ic.model, pg.updated_at, pg.rank
      from page pg
      join public.image_caption ic on ic.id = pg.id
      join storage.objects o on o.id = pg.id
     order by pg.later, case when pg.later then 0 else pg.rank end desc, pg.updated_at desc,
              pg.id
  $q$,
  case when form = 'hits' then 'hits ic' else 'public.image_caption ic' end,
  case when form = 'walk' then 'ic.updated_at'
       else '(ic.updated_at + interval ''0 s'')' end)  -- an order no index offers
  using p_query, p_bucket, p_limit, p_skip, p_window;
end $fn$;

grant execute on function captioner_search.run(tsquery, text, integer, integer, integer)
  to anon, authenticated, service_role, captioner_search_anon, captioner_search_authenticated;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126031828 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
