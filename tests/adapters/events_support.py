"""Helpers of the events tests: an adapter that lands canonical JSON as is, and a replay of a lab's day."""

import json
import uuid
from typing import Any, ClassVar

from sqlmodel import Session

from adapters.canonical import CanonicalRecord, RecordKind, record_from_json
from adapters.framework import (
    MALFORMED_PAYLOAD,
    Adapter,
    AdapterContext,
    AdapterManifest,
    InboundMessage,
    QuarantineError,
    SourceKind,
    Transport,
)
from adapters.landing import land_messages
from adapters.models import AdapterInstance
from storage.database import session_scope


class CanonicalReplayAdapter(Adapter):
    """Parses `{"kind": "<record kind>", ...canonical fields}` payloads into that canonical record."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="canonical-replay-test",
        version="0.1.0",
        title="Canonical replay (tests)",
        source_kind=SourceKind.lims,
        transports=[Transport.http_push],
        emits=list(RecordKind),
        counterpart="the tests themselves",
    )

    async def run(self, context: AdapterContext) -> None:
        """Nothing to connect to: tests land directly."""
        await context.stopping.wait()

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """One canonical record per payload."""
        try:
            data: dict[str, Any] = json.loads(message.payload)
            kind = data.pop("kind")
            return [record_from_json(kind, data)]
        except (ValueError, KeyError) as error:
            raise QuarantineError(MALFORMED_PAYLOAD, str(error)) from error


def make_instance(engine, *, organization_id: str | None, adapter: str = "canonical-replay-test", config=None):
    """A stored adapter instance owned by an organization."""
    with session_scope(engine) as session:
        instance = AdapterInstance(
            name=f"{adapter}-{uuid.uuid4().hex[:8]}",
            adapter=adapter,
            adapter_version="0.1.0",
            organization_id=organization_id,
            config=config or {},
        )
        session.add(instance)
    return instance


def land(engine, instance: AdapterInstance, clock, *records: dict[str, Any], session: Session | None = None):
    """Land canonical JSON records (one message each) in one transaction."""
    messages = [
        InboundMessage(
            payload=json.dumps(record, sort_keys=True).encode(),
            content_type="application/json",
            source="test://replay",
            transport=Transport.http_push,
        )
        for record in records
    ]
    with session_scope(engine) as session:
        return land_messages(
            session,
            instance=instance,
            adapter=CanonicalReplayAdapter({}),
            messages=messages,
            clock=clock,
            max_message_bytes=1024 * 1024,
        )


INSTRUMENT = {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B812345678"}


def sample(status: str, **extra: Any) -> dict[str, Any]:
    """A sample record of the replay."""
    return {"kind": "sample", "sample_id": "S-2026-0001", "lab_id": "CNAS L0001", "status": status, **extra}


def result(status: str, value: str = "0.52", **extra: Any) -> dict[str, Any]:
    """A test result of the replay's sample."""
    return {
        "kind": "test-result",
        "result_id": "R-1",
        "sample_id": "S-2026-0001",
        "lab_id": "CNAS L0001",
        "test_item": "Pb",
        "value": value,
        "unit": "mg/kg",
        "instrument": INSTRUMENT,
        "room": "Lab-101",
        "status": status,
        **extra,
    }


def equipment(status: str, at: str) -> dict[str, Any]:
    """An equipment status of the replay's balance."""
    return {
        "kind": "equipment-status",
        "instrument": INSTRUMENT,
        "status": status,
        "observed_at": at,
        "room": "Lab-101",
    }


def calibration(number: str, valid_until: str) -> dict[str, Any]:
    """A calibration of the replay's balance."""
    return {
        "kind": "calibration-event",
        "instrument": INSTRUMENT,
        "certificate_number": number,
        "calibrated_on": "2025-03-02T00:00:00+00:00",
        "valid_until": valid_until,
        "result": "pass",
    }


def complaint(status: str, due_at: str, complaint_id: str = "C-1") -> dict[str, Any]:
    """A complaint against the lab."""
    return {
        "kind": "complaint",
        "complaint_id": complaint_id,
        "against_lab_id": "CNAS L0001",
        "subject": "late report",
        "received_at": "2026-03-01T08:00:00+00:00",
        "due_at": due_at,
        "status": status,
    }


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers the statuses it is told."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                receiver.requests.append({"path": self.path, "headers": headers, "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where to POST."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class ServedApp:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port, in a thread (a real HTTP counterpart)."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the served app did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        """Root URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        self.thread.join(10)
