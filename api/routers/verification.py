"""Public signature verification: a document (POST), a registered document by SHA-256 (GET), and a web page.

No API key is needed: the answer says nothing the document or its digest does not already show (the
signature, and the registry status of those exact bytes). Drafts are not published, so they stay unknown.
"""

import functools
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.body import media_type_of, negotiate, read_body_limited
from api.document_pool import DocumentPool, Renderer, VerificationJob
from api.errors import ProblemError, problem_responses
from certificates.xml import XmlRejected
from signing.report import VerificationReport
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


def _report_json(report: VerificationReport) -> bytes:
    # pydantic's own serializer: the same JSON as Starlette's rendering of model_dump (no floats in a report),
    # in a third of the time.
    return report.model_dump_json(by_alias=True).encode()


def _report_html(report: VerificationReport) -> str:
    return _render(report=report)


def _page_html(report: VerificationReport, *, sha256: str, at: str | None) -> str:
    return _render(report=report, show_form=True, sha256=sha256, at=at)


# Rendering happens where the report is made (a document process): only the body comes back.
RENDERERS: dict[str, Renderer] = {"application/json": _report_json, "text/html": _report_html}


def _respond(body: str | bytes, chosen: str) -> Response:
    return Response(body, media_type=chosen)


def _chosen(accept: str | None) -> str:
    chosen = negotiate(accept, OFFERS)
    if chosen is None:
        raise ProblemError(406, "not-acceptable", f"Available: {', '.join(OFFERS)}.")
    return chosen


def _pool(request: Request) -> DocumentPool:
    pool: DocumentPool = request.app.state.document_pool
    return pool


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
    rendered = await _pool(request).run(VerificationJob(render=RENDERERS[chosen], data=body, at=at))
    return _respond(rendered, chosen)


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
    rendered = await _pool(request).run(VerificationJob(render=RENDERERS[chosen], sha256=sha256, at=at))
    return _respond(rendered, chosen)


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
    job = VerificationJob(render=functools.partial(_page_html, sha256=sha256, at=at), sha256=sha256, at=moment)
    try:
        page = await _pool(request).run(job)
    except (DomainError, XmlRejected) as error:
        status = 404 if getattr(error, "code", "") == "not-found" else 422
        return HTMLResponse(_render(show_form=True, error=str(getattr(error, "detail", error)), **values), status)
    except ProblemError as error:  # no document process (stopping, or one died): a page, not JSON
        return HTMLResponse(_render(show_form=True, error=error.detail, **values), error.status)
    return HTMLResponse(page)
