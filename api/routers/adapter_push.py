"""Generic LIMS push: labs without a LIMS API send results as JSON or CSV with a mapping."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])
