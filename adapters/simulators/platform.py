"""SIMULATOR of a provincial inspection/testing public-service platform, implementing qihub contract v1.

Nothing here is, or talks to, a real platform (浙里检, 泰检易 and their peers publish no API): this is an
in-memory FastAPI app that serves `openapi/platform-contract.yaml` for the hub's tests and demos. Every
answer says so (`"simulator": true`, header `X-Simulator`, the app's title). It keeps what it was sent, so a
test can check that a push was recorded once: pushes carry an `Idempotency-Key`; a replay with the same key
and body returns the first receipt (`duplicate: true`) and records nothing new; the same key with another
body is refused (409). `/_simulator/*` (not part of the contract) seeds data, injects faults and lists
what was received.

Run it: `python -m adapters.simulators.platform --port 8765 [--token T] [--demo]`.
"""

import argparse
import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.builtin.platform_contract import (
    BASE_PATH,
    CONTRACT_VERSION,
    ActivityPush,
    LabEntry,
    Page,
    PlatformComplaint,
    Receipt,
    ReportModification,
    ReportPush,
    ScopeEntry,
    StandardEntry,
    dump,
)

TITLE = "Provincial platform SIMULATOR (qihub platform contract v1)"
SIMULATOR_HEADER = {"X-Simulator": "qihub provincial platform simulator; not a real platform"}
Entry = TypeVar("Entry", LabEntry, StandardEntry, PlatformComplaint)


class SimulatorError(Exception):
    """An answer the simulator gives as an RFC 9457 problem."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass
class ReceivedPush:
    """One push the simulator recorded (replays are not recorded again)."""

    kind: str  # "activity", "report", "report-modification"
    idempotency_key: str
    receipt_id: str
    received_at: datetime
    body: dict[str, Any]
    path: str


@dataclass
class PlatformSimulator:
    """The simulator's state: directories, complaints, what it received, faults to inject."""

    token: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    labs: dict[str, LabEntry] = field(default_factory=dict)
    standards: dict[str, StandardEntry] = field(default_factory=dict)
    complaints: dict[str, PlatformComplaint] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    push_calls: int = 0  # every push request, replays included
    faults: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotency: dict[str, tuple[str, Receipt, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def upsert_lab(self, entry: LabEntry) -> None:
        """Add or replace an accredited lab."""
        self.labs[entry.lab_id] = entry

    def upsert_standard(self, entry: StandardEntry) -> None:
        """Add or replace a standard."""
        self.standards[entry.code] = entry

    def upsert_complaint(self, entry: PlatformComplaint) -> None:
        """Add or replace a complaint."""
        self.complaints[entry.complaint_id] = entry

    def record_push(self, *, kind: str, key: str | None, body: dict[str, Any], path: str) -> tuple[Receipt, int]:
        """Record a push once per idempotency key; a replay returns the first receipt marked duplicate."""
        if not key:
            raise SimulatorError(400, "idempotency-key-required", "Send an Idempotency-Key header with every push.")
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.push_calls += 1
            seen = self._idempotency.get(key)
            if seen is not None:
                first_digest, receipt, status = seen
                if first_digest != digest:
                    raise SimulatorError(409, "idempotency-key-reused", f"Key {key!r} was used for another request.")
                return receipt.model_copy(update={"duplicate": True}), status
            receipt = Receipt(receiptId=str(uuid.uuid4()), receivedAt=self.clock(), duplicate=False, simulator=True)
            status = 201 if kind != "activity" else 202
            self.received.append(
                ReceivedPush(
                    kind=kind,
                    idempotency_key=key,
                    receipt_id=receipt.receipt_id,
                    received_at=receipt.received_at,
                    body=body,
                    path=path,
                )
            )
            self._idempotency[key] = (digest, receipt, status)
            return receipt, status

    def pushes(self, kind: str | None = None) -> list[ReceivedPush]:
        """What was recorded, optionally of one kind."""
        return [push for push in self.received if kind is None or push.kind == kind]


def _encode_cursor(entry_time: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([entry_time.isoformat(), key]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(moment), str(key)
    except (ValueError, TypeError) as error:
        raise SimulatorError(400, "invalid-cursor", "The cursor was not issued by this platform.") from error


def _page(entries: list[Entry], *, key_of: Callable[[Entry], str], cursor: str | None, limit: int) -> dict[str, Any]:
    ordered = sorted(entries, key=lambda entry: (entry.updated_at, key_of(entry)))
    if cursor:
        after = _decode_cursor(cursor)
        ordered = [entry for entry in ordered if (entry.updated_at, key_of(entry)) > after]
    chosen = ordered[:limit]
    next_cursor = _encode_cursor(chosen[-1].updated_at, key_of(chosen[-1])) if chosen else cursor
    page: Page[Any] = Page(items=chosen, cursor=next_cursor, more=len(ordered) > limit, simulator=True)
    return {
        "items": [dump(item) for item in page.items],
        "cursor": page.cursor,
        "more": page.more,
        "simulator": True,
    }


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": code.replace("-", " "),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=SIMULATOR_HEADER)


Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=500)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def create_simulator_app(state: PlatformSimulator | None = None) -> FastAPI:
    """The simulator as an ASGI app (its state at `app.state.simulator`)."""
    simulator = state or PlatformSimulator()
    app = FastAPI(
        title=TITLE,
        version=CONTRACT_VERSION,
        description="A simulator of the hub's provincial-platform contract. Not a real platform.",
    )
    app.state.simulator = simulator

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Any:
        path = request.url.path
        if path.startswith(BASE_PATH) and not path.startswith(f"{BASE_PATH}/_simulator"):
            if simulator.faults:
                return _problem(simulator.faults.pop(0), "injected-fault", "A fault the test asked the simulator for.")
            if simulator.token and request.headers.get("authorization") != f"Bearer {simulator.token}":
                return _problem(401, "unauthenticated", "Send the platform token as 'Authorization: Bearer <token>'.")
        response = await call_next(request)
        response.headers.update(SIMULATOR_HEADER)
        return response

    @app.exception_handler(SimulatorError)
    async def _simulator_error(_request: Request, error: SimulatorError) -> JSONResponse:
        return _problem(error.status, error.code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'/'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()[:10])
        return _problem(422, "invalid-request", detail)

    @app.get(f"{BASE_PATH}/directory/labs")
    def list_labs(cursor: Cursor = None, limit: Limit = 100) -> dict[str, Any]:
        """Accredited labs, by (updatedAt, labId)."""
        return _page(list(simulator.labs.values()), key_of=lambda e: e.lab_id, cursor=cursor, limit=limit)

    @app.get(f"{BASE_PATH}/directory/standards")
    def list_standards(cursor: Cursor = None, limit: Limit = 100) -> dict[str, Any]:
        """Standards, by (updatedAt, code)."""
        return _page(list(simulator.standards.values()), key_of=lambda e: e.code, cursor=cursor, limit=limit)

    @app.get(f"{BASE_PATH}/complaints")
    def list_complaints(cursor: Cursor = None, limit: Limit = 100) -> dict[str, Any]:
        """Complaints filed with the platform, by (updatedAt, complaintId)."""
        return _page(list(simulator.complaints.values()), key_of=lambda e: e.complaint_id, cursor=cursor, limit=limit)

    def _answer(receipt: Receipt, status: int) -> JSONResponse:
        return JSONResponse(
            dump(receipt), status_code=status, headers={"Idempotent-Replayed": str(receipt.duplicate).lower()}
        )

    @app.post(f"{BASE_PATH}/activity", status_code=202)
    def push_activity(body: ActivityPush, key: IdempotencyKey = None) -> JSONResponse:
        """Record a batch of lab activity."""
        receipt, status = simulator.record_push(kind="activity", key=key, body=dump(body), path="/activity")
        return _answer(receipt, status)

    @app.post(f"{BASE_PATH}/reports", status_code=201)
    def push_report(body: ReportPush, key: IdempotencyKey = None) -> JSONResponse:
        """Record an issued report or certificate."""
        receipt, status = simulator.record_push(kind="report", key=key, body=dump(body), path="/reports")
        if not receipt.duplicate:
            simulator.reports[body.report_number] = {"report": dump(body), "modifications": []}
        return _answer(receipt, status)

    @app.post(f"{BASE_PATH}/reports/{{report_number}}/modifications", status_code=201)
    def push_modification(report_number: str, body: ReportModification, key: IdempotencyKey = None) -> JSONResponse:
        """Record a change to a report the platform holds."""
        if report_number not in simulator.reports:
            raise SimulatorError(404, "unknown-report", f"The platform holds no report {report_number!r}.")
        path = f"/reports/{report_number}/modifications"
        receipt, status = simulator.record_push(kind="report-modification", key=key, body=dump(body), path=path)
        if not receipt.duplicate:
            simulator.reports[report_number]["modifications"].append(dump(body))
        return _answer(receipt, status)

    # --- simulator controls (not part of the contract) -----------------------------------------------------

    @app.get(f"{BASE_PATH}/_simulator/received")
    def received(kind: str | None = None) -> dict[str, Any]:
        """Every push recorded (replays excluded) and how many push requests arrived in all."""
        return {
            "simulator": True,
            "pushCalls": simulator.push_calls,
            "received": [
                {
                    "kind": push.kind,
                    "idempotencyKey": push.idempotency_key,
                    "receiptId": push.receipt_id,
                    "receivedAt": push.received_at.isoformat(),
                    "path": push.path,
                    "body": push.body,
                }
                for push in simulator.pushes(kind)
            ],
        }

    class Seed(BaseModel):
        labs: list[LabEntry] = []
        standards: list[StandardEntry] = []
        complaints: list[PlatformComplaint] = []

    @app.post(f"{BASE_PATH}/_simulator/seed", status_code=204)
    def seed(body: Seed) -> None:
        """Add or replace directory entries and complaints."""
        for lab in body.labs:
            simulator.upsert_lab(lab)
        for standard in body.standards:
            simulator.upsert_standard(standard)
        for complaint in body.complaints:
            simulator.upsert_complaint(complaint)

    class Faults(BaseModel):
        statuses: list[int]

    @app.post(f"{BASE_PATH}/_simulator/faults", status_code=204)
    def inject_faults(body: Faults) -> None:
        """Answer the next contract requests with these statuses (one each)."""
        simulator.faults.extend(body.statuses)

    return app


def demo_state(now: datetime | None = None) -> PlatformSimulator:
    """A simulator seeded with a small, obviously fictitious directory and one complaint."""
    moment = now or datetime.now(UTC)
    state = PlatformSimulator()
    state.upsert_lab(
        LabEntry(
            labId="CNAS L0001",
            body="CNAS",
            number="L0001",
            name="Demo Testing Lab (simulated)",
            status="active",
            scope=[ScopeEntry(standard="GB/T 5750.6-2023", testItem="Pb")],
            updatedAt=moment,
        )
    )
    state.upsert_standard(
        StandardEntry(
            code="GB/T 5750.6-2023",
            title="Standard examination methods for drinking water—Metal indices",
            status="current",
            updatedAt=moment,
        )
    )
    state.upsert_complaint(
        PlatformComplaint(
            complaintId="SIM-C-0001",
            againstLabId="CNAS L0001",
            subject="Report later than promised (simulated complaint)",
            channel="platform-web",
            receivedAt=moment,
            dueAt=moment + timedelta(days=7),
            status="accepted",
            updatedAt=moment,
        )
    )
    return state


def main(argv: list[str] | None = None) -> None:
    """Serve the simulator on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=None, help="Require this bearer token")
    parser.add_argument("--demo", action="store_true", help="Seed a small fictitious directory and a complaint")
    args = parser.parse_args(argv)
    state = demo_state() if args.demo else PlatformSimulator()
    state.token = args.token
    print(f"{TITLE} on http://{args.host}:{args.port}{BASE_PATH} — a simulator, not a real platform")
    uvicorn.run(create_simulator_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
