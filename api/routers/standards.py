"""The standards registry: search, read by code, "is this standard current?", and CSV/JSON import (admin).

Reading needs an API key but no particular scope: standards metadata are public facts, yet every call to the
hub is made with a key (audit, rate limits). Codes contain '/' and spaces ('GB/T 27025-2019'): read one as
`/api/v1/standards/GB%2FT%2027025-2019` (URL-encoded; a raw '/' works too) or with `?code=` on `/current`.
"""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.body import media_type_of, read_body_limited
from api.deps import AdminDep, SessionDep, require_scopes
from api.errors import ProblemError, problem_responses
from certificates.service import Actor
from graph import service
from graph.models import CurrentStandardAnswer, ImportReport, StandardPage, StandardRead, StandardStatus

router = APIRouter(prefix="/api/v1/standards", tags=["standards"])

AnyKeyDep = Annotated[Actor, Depends(require_scopes())]
Code = Annotated[str, Query(min_length=1, max_length=100, description="Standard code, e.g. 'GB/T 27025-2019'")]
IMPORT_MEDIA_TYPES = {"text/csv", "application/json"}
IMPORT_DESCRIPTION = """Admin only. Upserts by code; 'B replaces A' also records 'A replaced by B' (in either order).

CSV (UTF-8, header row): `code`, `title`, `title_zh`, `edition`, `status` (draft, current, replaced, withdrawn),
`published_on`, `implemented_on`, `withdrawn_on` (YYYY-MM-DD), `issuing_body`, `ics_codes`, `replaces`,
`replaced_by` (lists split on ';'), `clauses` ('7.2 Selection of methods; 7.7 Validity of results').
JSON: an array of objects with the same fields in camelCase (or `{"standards": [...]}`).

A batch with any bad row, or one that would make a replacement cycle, stores nothing: 422 `import-rejected`
lists every problem under `errors` (row numbers count data rows from 1)."""
IMPORT_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string", "description": "Standards CSV (columns: see the description)"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    },
}


@router.get(
    "",
    summary="Search standards by code, title words (English or Chinese) and status",
    response_model=StandardPage,
    responses=problem_responses(401, 422),
)
def search_standards(
    session: SessionDep,
    _reader: AnyKeyDep,
    q: Annotated[str | None, Query(max_length=200, description="Words that code or titles contain")] = None,
    status: StandardStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> StandardPage:
    """Every word must appear in the code, the title or the Chinese title; an exact code match comes first."""
    return service.search_standards(session, q=q, status=status, limit=limit, offset=offset)


@router.get(
    "/current",
    summary="Is this standard current? Follows the replaced-by chain to the standard(s) in force",
    response_model=CurrentStandardAnswer,
    responses=problem_responses(401, 404, 409, 422),
)
def current_standard(
    session: SessionDep,
    _reader: AnyKeyDep,
    code: Code,
    on: Annotated[date | None, Query(description="The day asked about (default today)")] = None,
) -> CurrentStandardAnswer:
    """404 for an unregistered code; 409 `replacement-cycle` when the registry's links loop."""
    return service.current_standard_for(session, code=code, on=on)


def _import(session: Session, actor: Actor, body: bytes, media_type: str) -> ImportReport:
    return service.import_standards_document(session, content=body, media_type=media_type, actor=actor)


@router.post(
    "/import",
    summary="Import standards from CSV or JSON (upsert by code; a batch with a bad row stores nothing)",
    response_model=ImportReport,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422),
    openapi_extra={"requestBody": IMPORT_BODY},
    description=IMPORT_DESCRIPTION,
)
async def import_standards(request: Request, session: SessionDep, actor: AdminDep) -> ImportReport:
    """Validate every row first; store all of them or none."""
    media_type = media_type_of(request)
    if media_type not in IMPORT_MEDIA_TYPES:
        raise ProblemError(415, "unsupported-media-type", "Send text/csv or application/json.")
    body = await read_body_limited(request, max_bytes=request.app.state.settings.max_document_bytes)
    return await run_in_threadpool(_import, session, actor, body, media_type)


@router.get(
    "/{code:path}",
    summary="Read one standard by its code (URL-encode the code: 'GB%2FT%2027025-2019')",
    response_model=StandardRead,
    responses=problem_responses(401, 404, 422),
)
def read_standard(
    session: SessionDep,
    _reader: AnyKeyDep,
    code: Annotated[str, Path(min_length=1, max_length=100, description="The standard code")],
) -> StandardRead:
    """Codes are matched after normalising dashes and spaces."""
    return StandardRead.model_validate(service.get_standard_or_raise(session, code=code))
