"""Placeholder router for rdf_graphs; filled by its issue."""

from fastapi import APIRouter

router = APIRouter(prefix="", tags=["rdf_graphs"])
