-- Applied by the migrate service after migrations/: the bucket the service watches by
-- default (CAPTION_BUCKETS=images), private, so that `docker compose up` is ready to use.
insert into storage.buckets (id, name, public)
values ('images', 'images', false)
on conflict (id) do nothing;

-- PostgREST: pick up the new rpc functions now.
notify pgrst, 'reload schema';
