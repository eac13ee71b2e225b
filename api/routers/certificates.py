"""The certificate registry: submit (XML or JSON), list, read with content negotiation, status changes."""

import asyncio
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.body import media_type_of, negotiate, read_body_limited
from api.deps import ReaderDep, SessionDep, WriterDep, cached_actor, request_session
from api.document_pool import DocumentPool
from api.errors import ProblemError, problem_responses
from certificates import service
from certificates.dcc_json import SubmissionInvalid, build_dcc_xml, dcc_to_json
from certificates.models import (
    BatchSubmissionResult,
    CertificateCreated,
    CertificateEventRead,
    CertificateFilter,
    CertificatePage,
    CertificateRead,
    CertificateStatus,
    CertificateWithContent,
    IssueRequest,
    RevokeRequest,
    SupersedeRequest,
)
from certificates.render import render_certificate_html
from certificates.service import Actor
from certificates.xml import parse_xml
from organizations.models import Scope
from signing.trust import LabIdentity
from signing.verification_service import lab_identity, verify_signed_submission
from storage.database import commit_session, session_scope, writer_turn
from storage.errors import InvalidInputError
from storage.events import dispatch_after_commit
from storage.service import find_idempotent_response, save_idempotent_response
from storage.settings import Settings

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])

# Parameters shared by the single and the batch submission.
IssueQuery = Annotated[bool, Query(description="Issue at once instead of storing drafts")]
PublicQuery = Annotated[bool, Query(description="Let every organization read the content")]
IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]
CertificateId = Annotated[str, Path(min_length=1, max_length=36, description="Certificate id")]
SUBMISSION_SCHEMA_REF = "https://qihub.example/schemas/json/dcc-submission.schema.json"
SUBMISSION_BODY = {
    "required": True,
    "content": {
        "application/xml": {"schema": {"type": "string", "description": "A DCC XML document (2.1.0–3.3.0)"}},
        "application/json": {
            "schema": {"type": "object", "description": f"A DCC submission as JSON ({SUBMISSION_SCHEMA_REF})"}
        },
    },
}
BATCH_BODY = {
    "required": True,
    "content": {
        "application/zip": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "A ZIP archive of DCC XML files (`*.xml`), e.g. a lab's or LIMS's export folder",
            }
        },
    },
}
ZIP_MEDIA_TYPES = {"application/zip", "application/x-zip-compressed"}
MAX_BATCH_ENTRIES = 10_000
# The archive (and all its entries together, uncompressed) may hold this many documents' worth of bytes:
# 200 MB at the default 25 MB document cap.
BATCH_BYTES_FACTOR = 8
# DCC XML compresses ~10-30:1; past 200:1 a large entry is a decompression bomb, not a certificate.
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_FROM_BYTES = 1024 * 1024
READ_OFFERS = ["application/json", "application/xml", "text/html"]
AUTH_PROBLEMS = (401, 403, 404)


class JsonSubmissionInvalidError(InvalidInputError):
    """A JSON submission that breaks the published JSON Schema."""

    code = "invalid-submission"
    title = "The JSON submission does not match its schema"


def _parse_json_submission(body: bytes) -> dict[str, Any]:
    try:
        submission = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProblemError(400, "malformed-json", f"The body is not JSON: {error}") from error
    if not isinstance(submission, dict):
        raise ProblemError(422, "invalid-submission", "A submission is a JSON object.")
    return submission


def _build_from_json(body: bytes) -> bytes:
    try:
        return build_dcc_xml(_parse_json_submission(body))
    except SubmissionInvalid as invalid:
        raise JsonSubmissionInvalidError(
            f"{len(invalid.findings)} problem(s) in the submission; nothing was stored.",
            extra={"findings": [finding.model_dump(mode="json") for finding in invalid.findings]},
        ) from invalid


def _submit(
    request: Request,
    session: Session,
    *,
    actor: Actor,
    body: bytes,
    media_type: str,
    issue: bool,
    public: bool,
    idempotency_key: str | None,
) -> Response:
    settings = request.app.state.settings
    request_hash = ""
    if idempotency_key:
        request_hash = hashlib.sha256(
            b"\0".join([media_type.encode(), str(issue).encode(), str(public).encode(), body])
        ).hexdigest()
        replay = find_idempotent_response(
            session,
            organization_id=actor.organization.id,
            key=idempotency_key,
            request_sha256=request_hash,
        )
        if replay is not None:
            return JSONResponse(
                replay.response_body, status_code=replay.status_code, headers=_location(replay.response_body["id"])
            )
    source = "json" if media_type == "application/json" else "xml"
    content = _build_from_json(body) if source == "json" else body
    root = parse_xml(content, max_bytes=settings.max_document_bytes)
    verify_signed_submission(
        session, settings=settings, content=content, root=root, lab=lab_identity(actor.organization)
    )
    # Submissions take turns from validation to commit. Under one GIL, side by side they only interleave their
    # Python, and the one holding SQLite's write lock waits for the interpreter while the others poll for the
    # lock: with four at once the lock was held 6-7 ms on average (3 ms taking turns), which capped ingest.
    with writer_turn(request.app.state.engine):
        try:
            certificate, report = service.submit_certificate(
                session, actor=actor, content=content, root=root, issue=issue, public=public, source=source
            )
        except service.DocumentRejectedError:
            request.app.state.metrics.documents_rejected.inc()
            raise
        created = CertificateCreated.model_validate({**certificate.model_dump(), "findings": report.findings})
        if idempotency_key:
            save_idempotent_response(
                session,
                organization_id=actor.organization.id,
                key=idempotency_key,
                request_sha256=request_hash,
                status_code=201,
                response_body=created.model_dump(mode="json", by_alias=True),
            )
        session.commit()
    # The after-commit listeners (the graph's queue, caches) run here too, once the next submission may start:
    # the request's session then closes on the event loop with nothing left to do.
    dispatch_after_commit(session)
    request.app.state.metrics.certificates_submitted.labels(source).inc()
    # Serialised by pydantic straight to JSON: the same bytes as a JSONResponse of the model's dump, at a
    # quarter of the cost (a certificate's answer carries its findings, dozens for most real documents).
    content_json = created.model_dump_json(by_alias=True).encode()
    return Response(content_json, status_code=201, media_type="application/json", headers=_location(certificate.id))


def _location(certificate_id: str) -> dict[str, str]:
    return {"Location": f"/api/v1/certificates/{certificate_id}"}


def _batch_entries(body: bytes, *, max_entry_bytes: int, max_total_bytes: int) -> list[tuple[str, bytes | str]]:
    """The archive's file entries in order: (name, bytes) to validate, or (name, refusal code) for the rest.

    Refuses the whole archive (413) when its directory announces too many entries, too many bytes, an entry
    over the document cap or a bomb-like compression ratio; reads never go past the announced sizes.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as error:
        raise ProblemError(400, "invalid-zip", f"The body is not a readable ZIP archive: {error}") from error
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if not infos:
            raise ProblemError(400, "empty-batch", "The archive holds no files.")
        if len(infos) > MAX_BATCH_ENTRIES:
            raise ProblemError(413, "too-many-entries", f"{len(infos)} entries; the limit is {MAX_BATCH_ENTRIES}.")
        total = sum(info.file_size for info in infos)
        if total > max_total_bytes:
            raise ProblemError(
                413, "batch-too-large", f"The entries hold {total} bytes uncompressed; the limit is {max_total_bytes}."
            )
        for info in infos:
            if info.file_size > max_entry_bytes:
                raise ProblemError(
                    413,
                    "entry-too-large",
                    f"Entry {info.filename!r} holds {info.file_size} bytes; the limit is {max_entry_bytes}.",
                )
            if info.file_size >= RATIO_CHECK_FROM_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
                info.compress_size, 1
            ):
                raise ProblemError(
                    413,
                    "compression-ratio",
                    f"Entry {info.filename!r} expands {info.file_size} / {info.compress_size} times; "
                    f"the limit is {MAX_COMPRESSION_RATIO}.",
                )
        entries: list[tuple[str, bytes | str]] = []
        for info in infos:
            if not info.filename.lower().endswith(".xml"):
                entries.append((info.filename, "not-xml"))
            elif info.flag_bits & 0x1:
                entries.append((info.filename, "encrypted-entry"))
            else:
                try:
                    with archive.open(info) as entry:
                        # Bounded read: the decompressor never yields more than the size checked above.
                        content = entry.read(info.file_size + 1)
                except NotImplementedError:
                    entries.append((info.filename, "unsupported-compression"))
                    continue
                except (zipfile.BadZipFile, OSError, EOFError, ValueError):
                    entries.append((info.filename, "corrupt-entry"))
                    continue
                if len(content) > info.file_size:
                    entries.append((info.filename, "corrupt-entry"))
                else:
                    entries.append((info.filename, content))
    return entries


ENTRY_REFUSALS = {
    "not-xml": "Only *.xml entries are read as certificates.",
    "encrypted-entry": "Encrypted entries are not read.",
    "unsupported-compression": "The entry's compression method is not supported (use deflate or store).",
    "corrupt-entry": "The entry's data does not match the archive's directory (size or CRC).",
}


def _refused(name: str, code: str, detail: str, findings: object = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"code": code, "detail": detail}
    if findings is not None:
        problem["findings"] = findings
    return {"name": name, "status": "refused", "problem": problem}


@dataclass(frozen=True)
class BatchExaminationJob:
    """Some documents of a batch, examined in a document process: parsed, validated, their signatures verified."""

    activity: ClassVar[str] = "batch-examination"
    contents: list[bytes]
    max_bytes: int
    lab: LabIdentity  # the submitting lab: a signature must be one of its signers'

    def run(self, engine: Engine, settings: Settings) -> list[service.Examination]:
        """One examination per document, in order (signed ones are verified against the hub's trust)."""
        with session_scope(engine) as session:  # used only to verify a signed document

            def verify(content: bytes, root: Any) -> None:
                verify_signed_submission(session, settings=settings, content=content, root=root, lab=self.lab)

            return [
                service.examine_document(content, max_bytes=self.max_bytes, check=verify) for content in self.contents
            ]


# Documents per examination job: small enough that concurrent batches share the processes, large enough that
# the hop to a process (a few hundred µs) is a small part of a job; a job is cut short at 4 MB of documents.
EXAMINATION_JOB_DOCUMENTS = 16
EXAMINATION_JOB_BYTES = 4 * 1024 * 1024


def _examination_jobs(contents: list[bytes], *, max_bytes: int, lab: LabIdentity) -> list[BatchExaminationJob]:
    jobs: list[BatchExaminationJob] = []
    current: list[bytes] = []
    size = 0
    for content in contents:
        if current and (len(current) == EXAMINATION_JOB_DOCUMENTS or size + len(content) > EXAMINATION_JOB_BYTES):
            jobs.append(BatchExaminationJob(current, max_bytes, lab))
            current, size = [], 0
        current.append(content)
        size += len(content)
    if current:
        jobs.append(BatchExaminationJob(current, max_bytes, lab))
    return jobs


@dataclass(frozen=True)
class _OpenedBatch:
    """A batch request read and not yet registered: its entries and the hash its idempotency key guards."""

    entries: list[tuple[str, bytes | str]]
    request_hash: str

    @property
    def documents(self) -> list[tuple[str, bytes]]:
        return [(name, content) for name, content in self.entries if isinstance(content, bytes)]


def _open_batch(
    request: Request,
    session: Session,
    *,
    actor: Actor,
    body: bytes,
    issue: bool,
    public: bool,
    idempotency_key: str | None,
) -> _OpenedBatch | dict[str, Any]:
    """The archive's entries, or the stored answer when this is a replay of an earlier request."""
    settings = request.app.state.settings
    request_hash = hashlib.sha256(b"\0".join([b"zip", str(issue).encode(), str(public).encode(), body])).hexdigest()
    if idempotency_key:
        replay = find_idempotent_response(
            session, organization_id=actor.organization.id, key=idempotency_key, request_sha256=request_hash
        )
        if replay is not None:
            return replay.response_body
    max_document_bytes = settings.max_document_bytes
    entries = _batch_entries(
        body, max_entry_bytes=max_document_bytes, max_total_bytes=max_document_bytes * BATCH_BYTES_FACTOR
    )
    return _OpenedBatch(entries, request_hash)


async def _examine_in_pool(
    request: Request, *, actor: Actor, documents: list[tuple[str, bytes]]
) -> list[service.Examination] | None:
    """The documents examined by the document processes, or None when this process is to examine them."""
    pool: DocumentPool = request.app.state.document_pool
    if pool.processes == 0 or len(documents) < 2:
        return None  # a single document is not worth the hop to another process
    jobs = _examination_jobs(
        [content for _, content in documents],
        max_bytes=request.app.state.settings.max_document_bytes,
        lab=lab_identity(actor.organization),
    )
    results = await asyncio.gather(*(pool.run(job) for job in jobs))
    return [examination for result in results for examination in result]


def _register_batch(
    request: Request,
    session: Session,
    *,
    actor: Actor,
    batch: _OpenedBatch,
    examinations: list[service.Examination] | None,
    issue: bool,
    public: bool,
    idempotency_key: str | None,
) -> dict[str, Any]:
    settings = request.app.state.settings
    entries = batch.entries
    lab = lab_identity(actor.organization)

    def verify(content: bytes, root: Any) -> None:
        verify_signed_submission(session, settings=settings, content=content, root=root, lab=lab)

    outcomes = iter(
        service.submit_certificates(
            session,
            actor=actor,
            documents=batch.documents,
            max_bytes=settings.max_document_bytes,
            issue=issue,
            public=public,
            source="zip",
            check=verify,
            examinations=examinations,
        )
    )
    items: list[dict[str, Any]] = []
    rejected = 0
    for name, content in entries:
        if isinstance(content, str):
            items.append(_refused(name, content, ENTRY_REFUSALS[content]))
            continue
        outcome = next(outcomes)
        if outcome.certificate_id is not None:
            items.append({"name": name, "status": "registered", "id": outcome.certificate_id, "sha256": outcome.sha256})
            continue
        error = outcome.error
        assert error is not None
        findings = None
        if isinstance(error, service.DocumentRejectedError):
            rejected += 1
            findings = error.extra["findings"]
        item = _refused(name, error.code, error.detail, findings)
        item["sha256"] = outcome.sha256
        items.append(item)
    registered = sum(1 for item in items if item["status"] == "registered")
    response_body = {"registered": registered, "refused": len(items) - registered, "items": items}
    if idempotency_key:
        save_idempotent_response(
            session,
            organization_id=actor.organization.id,
            key=idempotency_key,
            request_sha256=batch.request_hash,
            status_code=200,
            response_body=response_body,
        )
    commit_session(session)  # in this thread, as in `_submit`
    if rejected:
        request.app.state.metrics.documents_rejected.inc(rejected)
    if registered:
        request.app.state.metrics.certificates_submitted.labels("zip").inc(registered)
    return response_body


@router.post(
    "/batch",
    status_code=200,
    summary="Submit a ZIP archive of DCC XML files; each entry is registered or refused on its own",
    response_model=BatchSubmissionResult,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra={"requestBody": BATCH_BODY},
)
async def submit_certificate_batch(
    request: Request,
    session: SessionDep,
    actor: WriterDep,
    issue: IssueQuery = False,
    public: PublicQuery = False,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Validate every `*.xml` entry like a single submission and register the valid ones in one transaction.

    An invalid, malformed, duplicate (within the archive or already registered) or non-XML entry is refused
    in its item, with the problem code and findings a single submission would get; the others still register.
    A ZIP that cannot be read is a 400; one whose directory announces more than 10,000 entries, more than
    8 documents' cap in total, an entry over the document cap or a bomb-like compression ratio is a 413.
    The documents are examined in the hub's document processes; if one of them dies or overruns its time on
    this batch, the answer is a 503 (`batch-examination-unavailable` or `-timeout`) and nothing is stored.
    """
    if media_type_of(request) not in ZIP_MEDIA_TYPES:
        raise ProblemError(415, "unsupported-media-type", "Send application/zip.")
    max_bytes = request.app.state.settings.max_document_bytes * BATCH_BYTES_FACTOR
    body = await read_body_limited(request, max_bytes=max_bytes)
    with request.app.state.graph_mapper.writing():  # the background graph mapping gives way meanwhile
        batch = await run_in_threadpool(
            _open_batch,
            request,
            session,
            actor=actor,
            body=body,
            issue=issue,
            public=public,
            idempotency_key=idempotency_key,
        )
        if isinstance(batch, dict):
            return JSONResponse(batch)  # the answer to the earlier request with this key
        # Parsing, validating and verifying are CPU-bound and hold the GIL: the document processes do them on
        # every core, then this process registers the batch in one transaction.
        examinations = await _examine_in_pool(request, actor=actor, documents=batch.documents)
        response_body = await run_in_threadpool(
            _register_batch,
            request,
            session,
            actor=actor,
            batch=batch,
            examinations=examinations,
            issue=issue,
            public=public,
            idempotency_key=idempotency_key,
        )
    return JSONResponse(response_body)


async def submit_certificate(
    request: Request,
    session: SessionDep,
    actor: WriterDep,
    issue: IssueQuery = False,
    public: PublicQuery = False,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Validate and register a document; an invalid one is refused with its findings."""
    media_type = media_type_of(request)
    if media_type not in {"application/xml", "text/xml", "application/json"}:
        raise ProblemError(415, "unsupported-media-type", "Send application/xml or application/json.")
    body = await read_body_limited(request, max_bytes=request.app.state.settings.max_document_bytes)
    with request.app.state.graph_mapper.writing():
        return await run_in_threadpool(
            _submit,
            request,
            session,
            actor=actor,
            body=body,
            media_type=media_type,
            issue=issue,
            public=public,
            idempotency_key=idempotency_key,
        )


class _SubmissionRoute(APIRoute):
    """The submission route, with a shortcut for its usual request: no query parameters, no Idempotency-Key,
    and a key looked up in the last 30 s that may write.

    Such a request is handed to the endpoint with the session and actor its dependencies would give, without
    FastAPI's parameter parsing and dependency solving: 0.7 of the ~7 ms a submission costs the hub. Every
    other request (and the OpenAPI document) goes through FastAPI's handler as usual.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind the shortcut."""
        generic = super().get_route_handler()

        async def handler(request: Request) -> Response:
            plain = not request.scope["query_string"] and "idempotency-key" not in request.headers
            actor = cached_actor(request, Scope.certificates_write) if plain else None
            if actor is None:
                return await generic(request)
            async with request_session(request) as session:
                return await submit_certificate(request, session, actor)

        return handler


router.add_api_route(
    "",
    submit_certificate,
    methods=["POST"],
    status_code=201,
    summary="Submit a certificate (DCC XML as submitted, or JSON built into DCC 3.3.0)",
    response_model=CertificateCreated,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422),
    openapi_extra={"requestBody": SUBMISSION_BODY},
    route_class_override=_SubmissionRoute,
)


@router.get(
    "",
    summary="List certificates the caller may see, newest first",
    response_model=CertificatePage,
    responses=problem_responses(401, 403, 422),
)
def list_certificates(
    session: SessionDep,
    actor: ReaderDep,
    lab: Annotated[str | None, Query(max_length=36, description="Issuing organization id")] = None,
    manufacturer: Annotated[str | None, Query(max_length=500)] = None,
    model: Annotated[str | None, Query(max_length=500)] = None,
    serial: Annotated[str | None, Query(max_length=500)] = None,
    status: CertificateStatus | None = None,
    identifier: Annotated[str | None, Query(max_length=500, description="The document's unique identifier")] = None,
    calibrated_from: Annotated[date | None, Query(alias="calibratedFrom")] = None,
    calibrated_to: Annotated[date | None, Query(alias="calibratedTo")] = None,
    issued_from: Annotated[date | None, Query(alias="issuedFrom")] = None,
    issued_to: Annotated[date | None, Query(alias="issuedTo")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CertificatePage:
    """Filter by lab, item, status and dates; follow `nextCursor` for more."""
    filters = CertificateFilter(
        organization_id=lab,
        manufacturer=manufacturer,
        model=model,
        serial=serial,
        status=status,
        unique_identifier=identifier,
        calibrated_from=calibrated_from,
        calibrated_to=calibrated_to,
        issued_from=issued_from,
        issued_to=issued_to,
    )
    return service.list_certificates(session, actor=actor, filters=filters, limit=limit, cursor=cursor)


@router.get(
    "/{certificate_id}",
    summary="Read a certificate: JSON (entry + content), the exact XML, or HTML",
    response_model=None,
    responses={
        200: {
            "description": "The certificate in the negotiated form",
            "content": {
                "application/json": {"schema": CertificateWithContent.model_json_schema(by_alias=True)},
                "application/xml": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        },
        **problem_responses(401, 403, 404, 406, 422),
    },
)
def read_certificate(
    certificate_id: CertificateId,
    session: SessionDep,
    actor: ReaderDep,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """`application/xml` returns the stored bytes exactly; `text/html` a readable page."""
    chosen = negotiate(accept, READ_OFFERS)
    if chosen is None:
        raise ProblemError(406, "not-acceptable", f"Available: {', '.join(READ_OFFERS)}.")
    certificate = service.get_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    content = service.get_certificate_content(session, certificate=certificate)
    if chosen == "application/xml":
        return Response(content, media_type="application/xml", headers={"ETag": f'"{certificate.sha256}"'})
    root = parse_xml(content)
    if chosen == "text/html":
        details = {"Registry status": certificate.status, "SHA-256": certificate.sha256}
        if certificate.superseded_by_id:
            details["Superseded by"] = certificate.superseded_by_id
        html = render_certificate_html(root, status=certificate.status, details=details)
        return HTMLResponse(html)
    body = CertificateWithContent.model_validate(
        {**CertificateRead.model_validate(certificate).model_dump(), "content": dcc_to_json(root)}
    )
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


@router.get(
    "/{certificate_id}/history",
    summary="The audit trail of a certificate",
    response_model=list[CertificateEventRead],
    responses=problem_responses(*AUTH_PROBLEMS, 422),
)
def certificate_history(
    certificate_id: CertificateId, session: SessionDep, actor: ReaderDep
) -> list[CertificateEventRead]:
    """Every event, oldest first: who, when, what and why."""
    events = service.certificate_history(session, actor=actor, certificate_id=certificate_id)
    return [CertificateEventRead.model_validate(event) for event in events]


@router.post(
    "/{certificate_id}/issue",
    summary="Issue a draft",
    response_model=CertificateRead,
    responses=problem_responses(400, *AUTH_PROBLEMS, 409, 422),
)
def issue_certificate(
    certificate_id: CertificateId, session: SessionDep, actor: WriterDep, body: IssueRequest | None = None
) -> CertificateRead:
    """draft → issued."""
    certificate = service.issue_certificate(
        session, actor=actor, certificate_id=certificate_id, reason=body.reason if body else None
    )
    return CertificateRead.model_validate(certificate)


@router.post(
    "/{certificate_id}/revoke",
    summary="Revoke an issued certificate",
    response_model=CertificateRead,
    responses=problem_responses(400, *AUTH_PROBLEMS, 409, 422),
)
def revoke_certificate(
    certificate_id: CertificateId, body: RevokeRequest, session: SessionDep, actor: WriterDep
) -> CertificateRead:
    """issued → revoked, with a reason."""
    certificate = service.revoke_certificate(session, actor=actor, certificate_id=certificate_id, reason=body.reason)
    return CertificateRead.model_validate(certificate)


@router.post(
    "/{certificate_id}/supersede",
    summary="Replace an issued certificate by an amendment",
    response_model=CertificateRead,
    responses=problem_responses(400, *AUTH_PROBLEMS, 409, 422),
)
def supersede_certificate(
    certificate_id: CertificateId, body: SupersedeRequest, session: SessionDep, actor: WriterDep
) -> CertificateRead:
    """issued → superseded; the replacement (a registered certificate of the same lab) names it."""
    certificate = service.supersede_certificate(
        session,
        actor=actor,
        certificate_id=certificate_id,
        replacement_id=body.replacement_id,
        reason=body.reason,
    )
    return CertificateRead.model_validate(certificate)
