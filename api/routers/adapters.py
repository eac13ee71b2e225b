"""Adapter plug-ins and their configured instances: catalog, configuration, health, landing zone, records."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])
