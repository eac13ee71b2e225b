"""Placeholder router for signing; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/certificates", tags=["signing"])
