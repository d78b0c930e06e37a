-- Caption search that uses its GIN index for every caller, with exactly the visibility of
-- a direct read of public.image_caption, and whose cost does not grow with the table.
--
-- Why a new design: under row-level security Postgres must evaluate image_caption's policy
-- (0001: the caller can read the object) on every row before `search_vector @@ query`,
-- because `@@` is not leakproof; so for anon and signed-in users a search read every
-- caption (seconds at a million). And every match was ranked: a word in half the captions
-- cost as much as half the table.
--
-- How visibility is kept: anon and authenticated run the query in a security-definer
-- function owned by a role of its own, captioner_search_anon (resp. _authenticated), that
-- is a member of anon (resp. authenticated) and nothing else: it holds exactly the caller's
-- privileges, and every storage.objects policy written for the caller's role (or public)
-- applies to it as it applies to the caller, auth.uid() and auth.jwt() reading the same
-- request. The query joins each caption to storage.objects read under those policies, so
-- it returns a caption only when the caller can read its object: image_caption's policy,
-- whose whole condition is that same check, is lifted for these two roles (a permissive
-- policy "true"), and the planner may start from the GIN index, or from the caller's own
-- objects (an owner-only policy with its column indexed), whichever is cheaper.
-- Where that equivalence could fail, search runs as the caller instead (exact, without
-- the index): 0001's policy on image_caption was changed or dropped, or some policy decides
-- by the database role's name (CURRENT_USER, SESSION_USER, pg_has_role, has_*_privilege),
-- which inside the function is the search role's. Restrictive policies on image_caption
-- for anon or authenticated apply to the search roles too (they are members). service_role bypasses RLS and any other
-- role runs the same query as itself.
--
-- How the cost stays flat: the newest 1,000 matches the caller can read are ranked, best
-- first; a word found in more of them continues newest first (pages stay consistent).

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'captioner_search_anon') then
    create role captioner_search_anon nologin inherit nobypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'captioner_search_authenticated') then
    create role captioner_search_authenticated nologin inherit nobypassrls;
  end if;
end $$;
grant anon to captioner_search_anon;
grant authenticated to captioner_search_authenticated;
-- to own the functions below (Supabase's postgres has admin option on both, PG 16+)
grant captioner_search_anon, captioner_search_authenticated to current_user;

create schema if not exists captioner_search;
revoke all on schema captioner_search from public;
grant usage on schema captioner_search
  to anon, authenticated, service_role, captioner_search_anon, captioner_search_authenticated;
grant create on schema captioner_search to captioner_search_anon, captioner_search_authenticated;

drop policy if exists "Search reads captions beside the objects it may read"
  on public.image_caption;
create policy "Search reads captions beside the objects it may read" on public.image_caption
  for select to captioner_search_anon, captioner_search_authenticated using (true);

-- The search itself, run with the rights of whoever calls it. p_window: how many of the
-- newest matches are ranked. Dynamic SQL, planned knowing the words and the bucket. Two ways
-- to find the newest matches: walking the captions newest first (image_caption_updated_idx)
-- until the window is full reads about p_window / share rows, for a query in `share` of the
-- captions; the GIN index (or the caller's own objects, if its policy makes them few) reads
-- share * captions rows, then sorts them. The walk is offered to the planner only where the
-- statistics say it reads fewer (share > sqrt(p_window / captions)): a word they do not know
-- is estimated at up to 0.5 % of the captions, and walking for one that is really in five
-- captions would read the whole table.
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
  newest_first text := 'ic.updated_at';
begin
  execute 'explain (format json) select 1 from public.image_caption ic'
          ' where ic.search_vector @@ $1' into plan using p_query;
  captions := greatest(captions, 1);
  if (plan -> 0 -> 'Plan' ->> 'Plan Rows')::real / captions < sqrt(p_window / captions) then
    newest_first := '(ic.updated_at + interval ''0 s'')';  -- an order no index offers
  end if;
  return query execute format($q$
    with newest as (
      select ic.id, ic.updated_at, ic.search_vector
        from public.image_caption ic
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
  $q$, newest_first) using p_query, p_bucket, p_limit, p_skip, p_window;
end $fn$;

-- Whether running as the search roles reads exactly what the caller reads (see the top):
-- 0001's policy on image_caption stands unchanged (so every caption of a readable object is
-- readable: lifting it for the search roles changes nothing; restrictive policies apply to
-- them as members of anon and authenticated), and no policy decides by the role's name.
create or replace function captioner_search.roles_exact()
returns boolean language sql stable security definer set search_path = '' as $$
  select exists (
           select 1 from pg_catalog.pg_policy p
            where p.polrelid = 'public.image_caption'::regclass
              and p.polname = 'Captions are readable where the image is'
              and p.polpermissive and p.polcmd in ('r', '*')
              and p.polroles @> array['anon'::regrole, 'authenticated'::regrole]::oid[]
              and regexp_replace(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '\s+', ' ', 'g')
                  = '(EXISTS ( SELECT 1 FROM storage.objects o WHERE (o.id = image_caption.id)))')
     and not exists (
           select 1 from pg_catalog.pg_policy p
            where pg_catalog.pg_get_expr(p.polqual, p.polrelid)
                  ~ '\m(CURRENT_USER|CURRENT_ROLE|SESSION_USER|USER|pg_has_role|has_[a-z_]+_privilege)\M');
$$;

create or replace function captioner_search.as_anon(
  p_query tsquery, p_bucket text, p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language sql stable security definer set search_path = '' as $$
  select * from captioner_search.run(p_query, p_bucket, p_limit, p_skip, p_window);
$$;
alter function captioner_search.as_anon(tsquery, text, integer, integer, integer)
  owner to captioner_search_anon;

create or replace function captioner_search.as_authenticated(
  p_query tsquery, p_bucket text, p_limit integer, p_skip integer, p_window integer)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language sql stable security definer set search_path = '' as $$
  select * from captioner_search.run(p_query, p_bucket, p_limit, p_skip, p_window);
$$;
alter function captioner_search.as_authenticated(tsquery, text, integer, integer, integer)
  owner to captioner_search_authenticated;

revoke all on all functions in schema captioner_search from public;
grant execute on function captioner_search.run(tsquery, text, integer, integer, integer)
  to anon, authenticated, service_role, captioner_search_anon, captioner_search_authenticated;
grant execute on function captioner_search.roles_exact() to anon, authenticated, service_role;
grant execute on function captioner_search.as_anon(tsquery, text, integer, integer, integer)
  to anon;
grant execute on function
  captioner_search.as_authenticated(tsquery, text, integer, integer, integer) to authenticated;

-- Captions the caller can read (exactly those a select on image_caption returns to it) that
-- match `query`, best first: web-search syntax (words, "a phrase", or, -not);
-- websearch_to_tsquery never raises a syntax error, whatever the text; a query with no
-- searchable word (empty, only stop words or punctuation) matches nothing. The newest
-- 1,000 matches are ranked; beyond them results continue newest first.
create or replace function public.search_image_captions(
  query text,
  bucket text default null,
  max_results integer default 20,
  skip integer default 0)
returns table (id uuid, bucket_id text, name text, caption text, model text,
               captioned_at timestamptz, rank real)
language plpgsql stable security invoker set search_path = '' as $fn$
declare
  tsq tsquery := websearch_to_tsquery(
    public.image_caption_search_language(), left(coalesce(search_image_captions.query, ''), 1000));
  n integer := least(greatest(coalesce(search_image_captions.max_results, 20), 0), 100);
  k integer := greatest(coalesce(search_image_captions.skip, 0), 0);
  b text := search_image_captions.bucket;
  ranked constant integer := 1000;
begin
  if numnode(tsq) = 0 or n = 0 then
    return;
  end if;
  if current_user = 'anon' and captioner_search.roles_exact() then
    return query select * from captioner_search.as_anon(tsq, b, n, k, ranked);
  elsif current_user = 'authenticated' and captioner_search.roles_exact() then
    return query select * from captioner_search.as_authenticated(tsq, b, n, k, ranked);
  else
    return query select * from captioner_search.run(tsq, b, n, k, ranked);
  end if;
end $fn$;

comment on function public.search_image_captions(text, text, integer, integer) is
  'Full-text search over the captions the caller may read; at most 100 rows per call.';
revoke all on function public.search_image_captions(text, text, integer, integer) from public;
grant execute on function public.search_image_captions(text, text, integer, integer)
  to anon, authenticated, service_role;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126024414 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
