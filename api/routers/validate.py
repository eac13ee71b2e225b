"""Validation without storing: the XSD of the declared version plus the semantic rules."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.body import media_type_of, read_body_limited
from api.deps import SettingsDep
from api.errors import ProblemError, problem_responses
from certificates.models import ValidationReport
from certificates.validation import validate_root
from certificates.xml import parse_xml

router = APIRouter(prefix="/api/v1", tags=["validation"])

XML_MEDIA_TYPES = {"application/xml", "text/xml"}
XML_BODY = {"content": {"application/xml": {"schema": {"type": "string"}}}, "required": True}


@router.post(
    "/validate",
    summary="Validate a DCC (XML body); stores nothing",
    response_model=ValidationReport,
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra={"requestBody": XML_BODY},
)
async def validate(request: Request, settings: SettingsDep) -> ValidationReport:
    """Schema of the declared version plus semantic rules; unreadable XML answers 400."""
    if media_type_of(request) not in XML_MEDIA_TYPES:
        raise ProblemError(415, "unsupported-media-type", "Send the document as application/xml.")
    body = await read_body_limited(request, max_bytes=settings.max_document_bytes)
    root = await run_in_threadpool(parse_xml, body, max_bytes=settings.max_document_bytes)
    return await run_in_threadpool(validate_root, root)
