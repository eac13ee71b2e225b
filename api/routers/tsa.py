"""Placeholder router for tsa; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["tsa"])
