"""Integration maturity (L1–L5) of an adapter instance, computed from the hub's own evidence."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])
