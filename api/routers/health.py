"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from storage.database import database_is_reachable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable",
    responses={503: {"description": "A dependency is not reachable"}},
)
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers a trivial query."""
    ready = database_is_reachable(request.app.state.engine)
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "database": ready}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Metrics in the Prometheus exposition format."""
    return request.app.state.metrics.render()
