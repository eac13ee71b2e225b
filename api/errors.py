"""RFC 9457 problem details for every error the API returns."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from certificates.xml import XmlRejected
from storage.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("qihub.api")

_STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidTransitionError: 409,
    InvalidInputError: 422,
    PermissionDeniedError: 403,
}

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """An RFC 9457 problem: `type` names the problem, `code` is its short machine name."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str


class ProblemError(Exception):
    """Raised by the API layer itself to answer with a problem (auth, media types, sizes)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str | None,
    title: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build a problem+json response; extensions never override the standard members."""
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": f"/problems/{code}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="qihub"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem bodies for these status codes."""
    return {
        status: {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for status in statuses
    }


def _xml_status(rejected: XmlRejected) -> int:
    return 413 if rejected.code == "too-large" else 400


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, leave the API as problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(
            request, status=error.status, code=error.code, detail=error.detail, extensions=error.extra
        )

    @app.exception_handler(DomainError)
    async def _domain(request: Request, error: DomainError) -> JSONResponse:
        # A domain error may name its own status (e.g. the graph store's 503 on a query timeout).
        default = next((code for kind, code in _STATUS_BY_ERROR.items() if isinstance(error, kind)), 400)
        status = getattr(error, "http_status", None) or default
        return problem_response(
            request,
            status=status,
            code=error.code,
            title=error.title,
            detail=error.detail,
            extensions=error.extra,
        )

    @app.exception_handler(XmlRejected)
    async def _xml(request: Request, error: XmlRejected) -> JSONResponse:
        return problem_response(
            request,
            status=_xml_status(error),
            code=f"xml-{error.code}",
            title="Unreadable XML",
            detail=error.detail,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": list(item.get("loc", ())),
                "message": item.get("msg", ""),
                "type": item.get("type", ""),
            }
            for item in error.errors()
        ]
        return problem_response(
            request,
            status=422,
            code="invalid-request",
            detail="The request does not match the API.",
            extensions={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        return problem_response(request, status=error.status_code, code=code, detail=str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            request,
            status=500,
            code="internal-error",
            detail="An unexpected error occurred; it has been logged.",
        )
