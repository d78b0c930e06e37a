-- Issue 18: search at a million with descriptions. captioner_search.described
-- (20261126041333) matched descriptions by joining the configured languages to
-- image_description, so each row's query came from the join: the planner could neither start
-- from the GIN index nor walk image_description_updated_idx, and a common word took 8-10 s
-- at 1 M (over anon's 3 s timeout). Each configured language is now a branch of its own, its
-- configuration and query written into the statement as constants, so every form of
-- 20261126024414 (walk newest first, any, hits) applies per branch as it does to captions.
-- The rows are the same.
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
  matching text;
begin
  -- one branch per language, its configuration and query constants the planner can read
  select '(' || coalesce(string_agg(format(
           'select x.id, x.updated_at, x.search_vector, %L::tsquery as tsq'
           ' from public.image_description x'
           ' where x.search_language = %L::regconfig and x.search_vector @@ %L::tsquery',
           q.tsq, q.cfg::oid, q.tsq), ' union all ' order by q.n),
         'select null::uuid as id, null::timestamptz as updated_at,'
         ' null::tsvector as search_vector, null::tsquery as tsq limit 0') || ')'
    into matching
    from unnest(p_configs, p_queries) with ordinality as q(cfg, tsq, n)
   where numnode(q.tsq) > 0;
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

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126054500 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
