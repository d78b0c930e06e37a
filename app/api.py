"""POST /v1/captions: caption an uploaded image directly (same limits as the worker)."""

from fastapi import APIRouter

router = APIRouter(tags=["captions"])
