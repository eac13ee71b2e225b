"""Placeholder router for verification; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="", tags=["verification"])
