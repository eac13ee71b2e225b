"""Public signature verification: a document (POST), a registered document by SHA-256 (GET), and a web page.

No API key is needed: the answer says nothing the document or its digest does not already show (the
signature, and the registry status of those exact bytes). Drafts are not published, so they stay unknown.
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.body import media_type_of, negotiate, read_body_limited
from api.errors import ProblemError, problem_responses
from certificates.xml import XmlRejected
from signing import verification_service
from signing.report import VerificationReport
from storage.database import session_scope
from storage.errors import DomainError

router = APIRouter(prefix="", tags=["verification"])

OFFERS = ["application/json", "text/html"]
XML_MEDIA_TYPES = {"application/xml", "text/xml"}
XML_BODY = {
    "required": True,
    "content": {"application/xml": {"schema": {"type": "string", "description": "A signed XML document (DCC)"}}},
}
REPORT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The verification report (ETSI EN 319 102-1 indications), as JSON or a readable page",
        "content": {
            "application/json": {"schema": VerificationReport.model_json_schema(by_alias=True)},
            "text/html": {"schema": {"type": "string"}},
        },
    }
}
AtQuery = Annotated[
    datetime | None,
    Query(description="Validate as of this time (ISO 8601, e.g. for expired test certificates); default now"),
]
Sha256Path = Annotated[
    str, PathParam(pattern="^[0-9a-fA-F]{64}$", description="Hex SHA-256 of the registered document's exact bytes")
]
templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[2] / "signing" / "templates"),
    autoescape=select_autoescape(),
)


def _render(
    *, report: VerificationReport | None = None, show_form: bool = False, error: str | None = None, **values: Any
) -> str:
    return templates.get_template("verify-report.html").render(
        report=report, show_form=show_form, error=error, **values
    )


def _respond(report: VerificationReport, chosen: str) -> Response:
    if chosen == "text/html":
        return HTMLResponse(_render(report=report))
    return JSONResponse(report.model_dump(mode="json", by_alias=True))


def _chosen(accept: str | None) -> str:
    chosen = negotiate(accept, OFFERS)
    if chosen is None:
        raise ProblemError(406, "not-acceptable", f"Available: {', '.join(OFFERS)}.")
    return chosen


def _verify_bytes(request: Request, data: bytes, at: datetime | None) -> VerificationReport:
    with session_scope(request.app.state.engine) as session:
        return verification_service.verify_for_registry(session, settings=request.app.state.settings, data=data, at=at)


def _verify_registered(request: Request, sha256: str, at: datetime | None) -> VerificationReport:
    with session_scope(request.app.state.engine) as session:
        content = verification_service.registered_content(session, sha256=sha256)
        return verification_service.verify_for_registry(
            session, settings=request.app.state.settings, data=content, at=at
        )


@router.post(
    "/api/v1/verify",
    summary="Verify a signed document (XML body); stores nothing, needs no key",
    response_model=None,
    responses={**REPORT_RESPONSE, **problem_responses(400, 406, 413, 415, 422)},
    openapi_extra={"requestBody": XML_BODY},
)
async def verify_document(
    request: Request, at: AtQuery = None, accept: Annotated[str | None, Header()] = None
) -> Response:
    """Signature, chain, revocation, timestamp and policy checks, plus the registry status of these bytes."""
    chosen = _chosen(accept)
    if media_type_of(request) not in XML_MEDIA_TYPES:
        raise ProblemError(415, "unsupported-media-type", "Send the document as application/xml.")
    body = await read_body_limited(request, max_bytes=request.app.state.settings.max_document_bytes)
    report = await run_in_threadpool(_verify_bytes, request, body, at)
    return _respond(report, chosen)


@router.get(
    "/api/v1/verify/{sha256}",
    summary="Verify a registered document by the SHA-256 of its bytes; needs no key",
    response_model=None,
    responses={**REPORT_RESPONSE, **problem_responses(404, 406, 422)},
)
async def verify_registered_document(
    request: Request, sha256: Sha256Path, at: AtQuery = None, accept: Annotated[str | None, Header()] = None
) -> Response:
    """The same report for a registered (issued, revoked or superseded) document; unknown digests are 404."""
    chosen = _chosen(accept)
    report = await run_in_threadpool(_verify_registered, request, sha256, at)
    return _respond(report, chosen)


@router.get("/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_page(
    request: Request,
    sha256: Annotated[str | None, Query(max_length=64)] = None,
    at: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """A page for third parties: paste a SHA-256 or upload a file, read the report."""
    values: dict[str, Any] = {"sha256": sha256, "at": at}
    if not sha256:
        return HTMLResponse(_render(show_form=True, **values))
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    except ValueError:
        return HTMLResponse(_render(show_form=True, error=f"'{at}' is not an ISO 8601 time.", **values), 422)
    if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        return HTMLResponse(_render(show_form=True, error="A SHA-256 is 64 hexadecimal digits.", **values), 422)
    try:
        report = await run_in_threadpool(_verify_registered, request, sha256, moment)
    except (DomainError, XmlRejected) as error:
        status = 404 if getattr(error, "code", "") == "not-found" else 422
        return HTMLResponse(_render(show_form=True, error=str(getattr(error, "detail", error)), **values), status)
    return HTMLResponse(_render(report=report, show_form=True, **values))
