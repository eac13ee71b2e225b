"""Domain events (CloudEvents) and webhook subscriptions."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["events"])
