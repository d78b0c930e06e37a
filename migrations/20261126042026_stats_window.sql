-- Plans that cannot go wrong for a bucket's stats, and a smaller ranked window for search.
--
-- caption_jobs_stats(p_bucket): where one bucket had nothing pending and another a due
-- backlog, the planner could still take jobs_pending_idx (every bucket's pending jobs in
-- run_after order) and walk the whole backlog looking for the first of this bucket, when its
-- estimate said this bucket's were many. The index of one bucket's pending jobs is now
-- partial on `state <= 'pending'` and the query says just that: it implies this index's
-- predicate and not jobs_pending_idx's (`state = 'pending'`), so no other index can serve it.
-- ('pending' is the first value of captioner.job_state: the two conditions are the same.)
create index if not exists jobs_pending_of_bucket_idx on captioner.jobs (bucket_id, run_after)
  where state <= 'pending';
drop index if exists captioner.jobs_pending_bucket_idx;

create or replace function public.caption_jobs_stats(p_bucket text default null)
returns table (state text, jobs bigint, oldest_seconds double precision)
language plpgsql stable security definer set search_path = '' as $$
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
revoke all on function public.caption_jobs_stats(text) from public, anon, authenticated;
grant execute on function public.caption_jobs_stats(text) to service_role;

-- Search (20261126024414, 20261126041333): the newest 250 matches the caller can read are
-- ranked (was 1,000), then the rest follow newest first. Finding them is most of a common
-- word's cost and the only part that grows with the table (its rows are spread over more
-- pages). The function is 20261126041333's (captions and descriptions) with that window.
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
end $fn$;

comment on function public.search_image_captions(text, text, integer, integer) is
  'Full-text search over the descriptions and captions the caller may read (alt text, tags, '
  'description, text in the image, caption; each in its own language); at most 100 rows.';
revoke all on function public.search_image_captions(text, text, integer, integer) from public;
grant execute on function public.search_image_captions(text, text, integer, integer)
  to anon, authenticated, service_role;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126042026 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
