"""Placeholder router for transparency; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/log", tags=["transparency"])
