"""PKI: trust anchors, labs' signing certificates (enrol, register, revoke), hub-held keys, the CA and its CRL."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.deps import AdminDep, ReaderDep, SessionDep, SettingsDep, WriterDep
from api.errors import problem_responses
from signing import service
from signing.models import (
    HubKeyCreate,
    HubKeyRead,
    HubSigningKey,
    RevocationRequest,
    SigningCertificate,
    SigningCertificateCreate,
    SigningCertificateRead,
    TrustAnchorCreate,
    TrustAnchorCrlUpdate,
    TrustAnchorRead,
)
from signing.pki import certificate_pem, load_or_create_hub_ca
from storage.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["pki"])

LabId = Annotated[str, Path(min_length=1, max_length=36, description="Organization (lab) id")]
CertificateId = Annotated[str, Path(min_length=1, max_length=36, description="Signing certificate id")]
AnchorId = Annotated[str, Path(min_length=1, max_length=36, description="Trust anchor id")]
PKIX_CRL = "application/pkix-crl"
PEM_FILE = "application/x-pem-file"
# The CRL changes only on revocation; a short public cache keeps relying parties fresh without hammering the hub.
CRL_CACHE_CONTROL = "public, max-age=300"


@router.post(
    "/trust-anchors",
    status_code=201,
    summary="Trust an external CA (e.g. an accreditation body's seal CA)",
    response_model=TrustAnchorRead,
    responses=problem_responses(400, 401, 403, 409, 422),
)
def add_trust_anchor(body: TrustAnchorCreate, session: SessionDep, admin: AdminDep) -> TrustAnchorRead:
    """Add an external trust anchor, optionally with its current CRL."""
    anchor = service.add_trust_anchor(
        session,
        actor=admin,
        name=body.name,
        certificate_pem_text=body.certificate,
        crl_url=body.crl_url,
        crl_pem=body.crl,
    )
    return TrustAnchorRead.model_validate(anchor)


@router.get(
    "/trust-anchors",
    summary="List trust anchors (the hub root and external CAs)",
    response_model=list[TrustAnchorRead],
    responses=problem_responses(401, 403, 503),
)
def list_trust_anchors(session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> list[TrustAnchorRead]:
    """Every trust anchor, the hub root first."""
    service.ensure_hub_root_anchor(session, settings=settings)
    return [TrustAnchorRead.model_validate(anchor) for anchor in service.list_trust_anchors(session)]


@router.put(
    "/trust-anchors/{anchor_id}/crl",
    summary="Replace an external trust anchor's CRL",
    response_model=TrustAnchorRead,
    responses=problem_responses(400, 401, 403, 404, 422),
)
def update_trust_anchor_crl(
    anchor_id: AnchorId, body: TrustAnchorCrlUpdate, session: SessionDep, admin: AdminDep
) -> TrustAnchorRead:
    """Store a newer CRL signed by the anchor."""
    anchor = service.update_trust_anchor_crl(session, actor=admin, anchor_id=anchor_id, crl_pem=body.crl)
    return TrustAnchorRead.model_validate(anchor)


@router.post(
    "/labs/{organization_id}/signing-certificates",
    status_code=201,
    summary="Enrol a signing certificate from a CSR, or register an external one",
    response_model=SigningCertificateRead,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def add_signing_certificate(
    organization_id: LabId,
    body: SigningCertificateCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: WriterDep,
) -> SigningCertificateRead:
    """`csr`: the hub CA issues a certificate bound to the lab; `certificate`: a CA-issued one is registered."""
    if body.csr is not None:
        row = service.enrol_signing_certificate(
            session, actor=actor, organization_id=organization_id, csr_pem=body.csr, settings=settings
        )
    else:
        assert body.certificate is not None
        row = service.register_external_certificate(
            session,
            actor=actor,
            organization_id=organization_id,
            certificate_pem=body.certificate,
            pinned_fingerprint=body.pinned_fingerprint,
        )
    return SigningCertificateRead.model_validate(row)


@router.get(
    "/labs/{organization_id}/signing-certificates",
    summary="List a lab's signing certificates",
    response_model=list[SigningCertificateRead],
    responses=problem_responses(401, 403, 404, 422),
)
def list_signing_certificates(
    organization_id: LabId, session: SessionDep, actor: ReaderDep
) -> list[SigningCertificateRead]:
    """The lab's signing certificates, newest first."""
    rows = service.list_signing_certificates(session, actor=actor, organization_id=organization_id)
    return [SigningCertificateRead.model_validate(row) for row in rows]


@router.post(
    "/labs/{organization_id}/signing-certificates/{certificate_id}/revoke",
    summary="Revoke a lab's signing certificate (listed on the hub CRL from now on)",
    response_model=SigningCertificateRead,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def revoke_signing_certificate(
    organization_id: LabId,
    certificate_id: CertificateId,
    body: RevocationRequest,
    session: SessionDep,
    actor: WriterDep,
) -> SigningCertificateRead:
    """Revoke with an RFC 5280 reason."""
    row = service.revoke_signing_certificate(
        session,
        actor=actor,
        organization_id=organization_id,
        certificate_id=certificate_id,
        reason=body.reason,
        comment=body.comment,
    )
    return SigningCertificateRead.model_validate(row)


@router.post(
    "/labs/{organization_id}/hub-keys",
    status_code=201,
    summary="Have the hub generate and hold a signing key for the lab (returns its certificate, never the key)",
    response_model=HubKeyRead,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def create_hub_key(
    organization_id: LabId,
    session: SessionDep,
    settings: SettingsDep,
    actor: WriterDep,
    body: HubKeyCreate | None = None,
) -> HubKeyRead:
    """Generate a key sealed with the master key, and its hub-CA certificate bound to the lab."""
    algorithm = (body or HubKeyCreate()).algorithm
    key, row = service.create_hub_signing_key(
        session, actor=actor, organization_id=organization_id, settings=settings, algorithm=algorithm.value
    )
    return _hub_key_read(key, row, settings)


@router.get(
    "/labs/{organization_id}/hub-keys",
    summary="List the keys the hub holds for a lab (metadata and certificates only)",
    response_model=list[HubKeyRead],
    responses=problem_responses(401, 403, 404, 422, 503),
)
def list_hub_keys(
    organization_id: LabId, session: SessionDep, settings: SettingsDep, actor: ReaderDep
) -> list[HubKeyRead]:
    """The lab's hub-held keys, newest first."""
    keys = service.list_hub_signing_keys(session, actor=actor, organization_id=organization_id)
    rows = {
        row.id: row for row in service.list_signing_certificates(session, actor=actor, organization_id=organization_id)
    }
    return [_hub_key_read(key, rows[key.signing_certificate_id], settings) for key in keys]


def _hub_key_read(key: HubSigningKey, row: SigningCertificate, settings: Settings) -> HubKeyRead:
    return HubKeyRead(
        id=key.id,
        organization_id=key.organization_id,
        algorithm=key.algorithm,  # type: ignore[arg-type]
        signing_certificate=SigningCertificateRead.model_validate(row),
        ca_certificate_pem=certificate_pem(load_or_create_hub_ca(settings).certificate),
        created_at=key.created_at,
    )


@router.get(
    "/pki/crl",
    summary="The hub CA's current certificate revocation list (DER)",
    response_class=Response,
    responses={200: {"content": {PKIX_CRL: {}}, "description": "RFC 5280 CRL, DER"}, **problem_responses(503)},
)
def read_crl(session: SessionDep, settings: SettingsDep) -> Response:
    """Public: relying parties check hub-issued certificates against it."""
    return Response(
        service.current_crl(session, settings=settings),
        media_type=PKIX_CRL,
        headers={"Cache-Control": CRL_CACHE_CONTROL},
    )


@router.get(
    "/pki/ca",
    summary="The hub's root CA certificate (PEM)",
    response_class=Response,
    responses={200: {"content": {PEM_FILE: {}}, "description": "X.509 certificate, PEM"}, **problem_responses(503)},
)
def read_ca(settings: SettingsDep) -> Response:
    """Public: the trust anchor of every certificate the hub issues."""
    return Response(certificate_pem(load_or_create_hub_ca(settings).certificate), media_type=PEM_FILE)
