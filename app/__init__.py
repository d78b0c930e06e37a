"""Auto-captioning for images uploaded to Supabase Storage."""

__version__ = "0.1.0"
