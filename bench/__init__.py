"""Benchmarks of the captioning service against the local stand-ins (`python -m bench`).

One module per benchmark; each exposes `run(env, quick) -> list[Result]`. The stand-ins
(Postgres, Supabase storage + PostgREST, Hugging Face) come from tests/harness.
"""
