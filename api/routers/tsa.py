"""The hub's RFC 3161 Time-Stamping Authority over HTTP (RFC 3161 §3.4): public, one request per POST."""

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.body import media_type_of, read_body_limited
from api.deps import SettingsDep
from api.errors import ProblemError, problem_responses
from signing.timestamps import (
    MAX_REQUEST_BYTES,
    TIMESTAMP_QUERY_MEDIA_TYPE,
    TIMESTAMP_REPLY_MEDIA_TYPE,
    load_or_create_hub_tsa,
)

router = APIRouter(prefix="/api/v1", tags=["tsa"])

QUERY_BODY = {
    "required": True,
    "content": {TIMESTAMP_QUERY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}


@router.post(
    "/tsa",
    summary="Timestamp a hash (RFC 3161 TimeStampReq in, TimeStampResp out)",
    response_class=Response,
    responses={
        200: {
            "description": "A DER TimeStampResp: a granted token, or status `rejection` for a refused request",
            "content": {TIMESTAMP_REPLY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **problem_responses(400, 413, 415),
    },
    openapi_extra={"requestBody": QUERY_BODY},
)
async def timestamp(request: Request, settings: SettingsDep) -> Response:
    """Send `application/timestamp-query` (e.g. from `openssl ts -query`); malformed requests get a rejection."""
    if media_type_of(request) != TIMESTAMP_QUERY_MEDIA_TYPE:
        raise ProblemError(415, "unsupported-media-type", f"Send an RFC 3161 request as {TIMESTAMP_QUERY_MEDIA_TYPE}.")
    body = await read_body_limited(request, max_bytes=MAX_REQUEST_BYTES)
    tsa = await run_in_threadpool(load_or_create_hub_tsa, settings)
    reply = await run_in_threadpool(tsa.issue_timestamp_response, body)
    return Response(content=reply, media_type=TIMESTAMP_REPLY_MEDIA_TYPE)
