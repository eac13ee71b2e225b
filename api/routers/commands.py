"""Write-back commands to adapter sources, with idempotency keys and acknowledgements."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/commands", tags=["commands"])
