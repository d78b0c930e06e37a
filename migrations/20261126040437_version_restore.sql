-- A version that becomes current again (storage-api clears its archived_at, e.g. when the
-- delete marker or the newer version above it is removed by versionId) is captioned when it
-- has no caption of its own yet: its job was dropped when it was archived
-- (20261126033020). One that has its caption only shows it again (the policy reads current
-- versions); it is never queued, which would make the caption anew.

create or replace function captioner.on_object_archived()
returns trigger language plpgsql security definer set search_path = '' as $$
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

create or replace trigger caption_on_object_archived
  after update of archived_at on storage.objects
  for each row when ((old.archived_at is null) <> (new.archived_at is null))
  execute function captioner.on_object_archived();

revoke all on all functions in schema captioner from public;

drop function if exists public.caption_schema_version();
create function public.caption_schema_version()
returns bigint language sql immutable set search_path = '' as $$ select 20261126040437 $$;
revoke all on function public.caption_schema_version() from public, anon, authenticated;
grant execute on function public.caption_schema_version() to service_role;
