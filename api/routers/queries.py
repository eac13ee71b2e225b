"""Placeholder router for queries; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/queries", tags=["queries"])
