"""Placeholder router for sparql; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="", tags=["sparql"])
