"""The public transparency log (RFC 9162 style): signed tree head, inclusion and consistency proofs, log key.

No API key is needed: anyone holding a certificate can check it was logged and that history was not rewritten.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import SessionDep, SettingsDep
from api.errors import ProblemError, problem_responses
from signing.transparency import (
    ConsistencyProof,
    InclusionProof,
    SignedTreeHead,
    consistency_proof,
    decode_hash,
    inclusion_proof_by_hash,
    inclusion_proof_for,
    log_signing_key,
    public_key_pem,
    signed_tree_head,
)

router = APIRouter(prefix="/api/v1/log", tags=["transparency"])

PEM_MEDIA_TYPE = "application/x-pem-file"
TreeSize = Annotated[int, Query(ge=1, le=2**62, description="A tree size (number of leaves).")]


@router.get("/sth", response_model=SignedTreeHead, summary="Current signed tree head", responses=problem_responses(503))
def get_signed_tree_head(session: SessionDep, settings: SettingsDep) -> SignedTreeHead:
    """The log's size and root hash, signed by the log key (verify with `/api/v1/log/public-key`)."""
    return signed_tree_head(session, settings=settings)


@router.get(
    "/proof",
    response_model=InclusionProof,
    summary="Inclusion proof of a certificate or leaf",
    responses=problem_responses(404, 422, 503),
)
def get_inclusion_proof(
    session: SessionDep,
    settings: SettingsDep,
    value: Annotated[
        str,
        Query(
            alias="hash",
            min_length=43,
            max_length=64,
            description="Hex SHA-256 of a certificate's bytes (its latest leaf), or a leaf hash (hex or base64).",
        ),
    ],
) -> InclusionProof:
    """Proof that the leaf is in the tree of the current signed tree head (RFC 9162 §2.1.3)."""
    digest = decode_hash(value)
    if digest is None:
        raise ProblemError(422, "invalid-hash", "Give a SHA-256 as 64 hex digits or as base64.")
    proof = None
    if len(value.strip()) == 64:
        proof = inclusion_proof_for(session, certificate_sha256=digest.hex(), settings=settings)
    if proof is None:
        proof = inclusion_proof_by_hash(session, leaf_hash=digest, settings=settings)
    if proof is None:
        raise ProblemError(404, "not-in-log", "No certificate or leaf with this hash is in the transparency log.")
    return proof


@router.get(
    "/consistency",
    response_model=ConsistencyProof,
    summary="Consistency proof between two tree sizes",
    responses=problem_responses(422),
)
def get_consistency_proof(session: SessionDep, first: TreeSize, second: TreeSize) -> ConsistencyProof:
    """Proof that the tree of size `first` is a prefix of the tree of size `second` (RFC 9162 §2.1.4)."""
    return consistency_proof(session, first=first, second=second)


@router.get(
    "/public-key",
    response_class=Response,
    summary="The log's public key (PEM)",
    responses={
        200: {"description": "SubjectPublicKeyInfo PEM", "content": {PEM_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **problem_responses(503),
    },
)
def get_public_key(settings: SettingsDep) -> Response:
    """The ECDSA P-256 key that signs tree heads."""
    return Response(content=public_key_pem(log_signing_key(settings).public_key()), media_type=PEM_MEDIA_TYPE)
