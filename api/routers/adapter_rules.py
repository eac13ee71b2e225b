"""Cross-domain rules on fused data: environment limits per room and the flags they raise."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])
