-- caption_jobs_bucket_stats counted a bucket's objects with a full scan on every call; the
-- CLI now reads kept counters instead: caption_jobs_stats(p_bucket) (0003, counters in 0008)
-- and the reconciliation passes (caption_jobs_sweep_start, caption_jobs_sweep_passes, 0008).
drop function if exists public.caption_jobs_bucket_stats(text);
