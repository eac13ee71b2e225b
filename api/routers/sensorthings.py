"""A SensorThings-style read API over the environment and equipment records, per tenant."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/sta/v1.1", tags=["sensorthings"])
