"""Placeholder router for standards; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/standards", tags=["standards"])
