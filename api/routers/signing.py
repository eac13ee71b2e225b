"""Signing a registered draft with the lab's hub-held key (XAdES B-T by default), which issues it."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from api.deps import WriterDep
from api.errors import ProblemError, problem_responses
from certificates.models import CertificateRead
from certificates.service import Actor
from signing.drafts import SignatureLevel, SignedDraft, sign_draft
from signing.timestamps import TimestampUnavailableError
from storage.database import session_scope

router = APIRouter(prefix="/api/v1/certificates", tags=["signing"])

CertificateId = Annotated[str, Path(min_length=1, max_length=36, description="Certificate id")]


class SignedCertificateRead(CertificateRead):
    """The issued certificate and the facts of the signature just made."""

    signature_level: SignatureLevel
    signer_fingerprint: str = Field(description="SHA-256 of the signing certificate (hex)")
    signing_time: datetime
    timestamp_time: datetime | None = Field(description="genTime of the RFC 3161 signature timestamp (B-T)")
    migrated_from: str | None = Field(description="The DCC release the document was migrated from, if it was")


def _sign(request: Request, *, actor: Actor, certificate_id: str, level: SignatureLevel, migrate: bool) -> SignedDraft:
    with session_scope(request.app.state.engine, hooks=request.app.state.hooks) as session:
        return sign_draft(
            session,
            actor=actor,
            settings=request.app.state.settings,
            certificate_id=certificate_id,
            level=level,
            migrate=migrate,
        )


@router.post(
    "/{certificate_id}/sign",
    summary="Sign a draft with the lab's hub-held key (XAdES B-T or B-B) and issue it",
    response_model=SignedCertificateRead,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def sign_certificate(
    request: Request,
    certificate_id: CertificateId,
    actor: WriterDep,
    level: Annotated[SignatureLevel, Query(description="B-T adds an RFC 3161 signature timestamp")] = (
        SignatureLevel.b_t
    ),
    migrate: Annotated[
        bool, Query(description="Move a DCC older than 3.2.0 (no signature slot) to 3.3.0 before signing")
    ] = False,
) -> SignedCertificateRead:
    """The signed bytes become the certificate's document; events `migrated`, `signed` and `issued` are recorded."""
    try:
        signed = await run_in_threadpool(
            _sign, request, actor=actor, certificate_id=certificate_id, level=level, migrate=migrate
        )
    except TimestampUnavailableError as error:
        # The TSA, not the request, failed: nothing was stored and the same request may succeed later.
        raise ProblemError(503, error.code, error.detail) from error
    return SignedCertificateRead.model_validate(
        {
            **CertificateRead.model_validate(signed.certificate).model_dump(),
            "signature_level": signed.level,
            "signer_fingerprint": signed.signer_fingerprint,
            "signing_time": signed.signing_time,
            "timestamp_time": signed.timestamp_time,
            "migrated_from": signed.migrated_from,
        }
    )
