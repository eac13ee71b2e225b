"""A local fake SENAITE LIMS serving the real saved senaite.jsonapi v1 responses (for adapter tests).

The real server is Plone on Python 2.7, so the tests run against this stand-in instead. It answers the routes
and query parameters the SENAITE JSON API documents (`<site>/@@API/senaite/v1/<resource>[/<uid>]` with
`recent_modified`, `sort_on`, `sort_order`, `limit`, `b_start`, `complete`; `POST …/update` with `uid` and
`transition`) from objects loaded out of `../shared/external/lims/senaite-jsonapi/`, records every write-back,
and fails on demand (HTTP errors, a broken body for one object, slow answers, lost acknowledgements, downtime).
"""

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.paths import SHARED

SAVED_RESPONSES = SHARED / "external" / "lims" / "senaite-jsonapi"
API_ROOT = "/senaite/@@API/senaite/v1"
# Catalog metadata a search returns in the first step of the two-step read (without `complete=yes`).
BRAIN_KEYS = ("uid", "id", "title", "portal_type", "path", "url", "api_url", "parent_id", "review_state", "modified")
RESOURCES = {"analysisrequest": "AnalysisRequest", "analysis": "Analysis"}
# Workflow of the fake: transition → (states it may start from, state it ends in).
TRANSITIONS: dict[str, tuple[set[str | None], str]] = {
    "receive": ({"sample_due", "to_be_sampled", "sample_registered"}, "sample_received"),
    "submit": ({"sample_received", "unassigned", "assigned", None}, "to_be_verified"),
    "verify": ({"to_be_verified"}, "verified"),
    "publish": ({"verified"}, "published"),
    "cancel": ({"sample_due", "sample_received", "to_be_sampled", "sample_registered"}, "cancelled"),
    "reinstate": ({"cancelled"}, "sample_due"),
    "invalidate": ({"verified", "published"}, "invalid"),
    "retract": ({"to_be_verified"}, "retracted"),
    "reject": ({"sample_due", "sample_received", "unassigned", "assigned", "to_be_verified"}, "rejected"),
}


def load_saved(name: str) -> dict[str, Any]:
    """One saved senaite.jsonapi response, parsed."""
    loaded: dict[str, Any] = json.loads((SAVED_RESPONSES / name).read_text(encoding="utf-8"))
    return loaded


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Fault:
    """A failure the fake answers with for the next `remaining` matching requests."""

    remaining: int
    status: int = 500
    method: str | None = None
    path_contains: str | None = None
    after_apply: bool = False  # for updates: apply the transition, then fail (the acknowledgement is lost)


@dataclass
class RecordedRequest:
    """A request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None
    status: int = 0


@dataclass
class FakeSenaite:
    """The fake's state; `start()` serves it on 127.0.0.1 on a free (or the previous) port."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    username: str | None = None
    password: str | None = None
    delay_s: float = 0.0
    broken: dict[str, bytes] = field(default_factory=dict)  # uid → body served instead of the object
    requests: list[RecordedRequest] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)  # transitions actually applied, in order
    faults: list[Fault] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- data -------------------------------------------------------------------------------------------

    @classmethod
    def with_saved_responses(cls) -> "FakeSenaite":
        """A fake holding the saved sample (AnalysisRequest URI-0001) and analysis (LAB-047)."""
        fake = cls()
        fake.add(load_saved("get-analysis-request.json")["items"][0])
        fake.add(load_saved("get-analyses.json")["items"][0])
        return fake

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object (a deep copy) under its uid."""
        stored = copy.deepcopy(obj)
        with self._lock:
            self.objects[stored["uid"]] = stored
        return stored

    def derive(self, uid: str, *, new_uid: str, modified: datetime, **fields: Any) -> dict[str, Any]:
        """Add a copy of an object under a new uid with other fields (a second sample, a censored result…)."""
        obj = copy.deepcopy(self.objects[uid])
        obj.update(fields)
        obj["uid"] = new_uid
        obj["modified"] = obj["modification_date"] = _iso(modified)
        return self.add(obj)

    def modify(self, uid: str, *, modified: datetime, **fields: Any) -> None:
        """Change an object as a LIMS user would (its modification date moves)."""
        with self._lock:
            obj = self.objects[uid]
            obj.update(fields)
            obj["modified"] = obj["modification_date"] = _iso(modified)

    def fail_next(
        self,
        count: int,
        *,
        status: int = 500,
        method: str | None = None,
        path_contains: str | None = None,
        after_apply: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status` (after applying, for lost acknowledgements)."""
        with self._lock:
            self.faults.append(Fault(count, status, method, path_contains, after_apply))

    def writes_for(self, uid: str) -> list[dict[str, Any]]:
        """The transitions applied to one object."""
        return [write for write in self.writes if write["uid"] == uid]

    # --- serving ----------------------------------------------------------------------------------------

    @property
    def site_url(self) -> str:
        """The SENAITE site URL an adapter is configured with."""
        return f"http://127.0.0.1:{self.port}/senaite"

    def start(self) -> "FakeSenaite":
        """Serve on the previous port when restarting (so a configured adapter finds it again)."""
        handler = _handler_for(self)
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-senaite", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: connections are refused until `start()` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.remaining <= 0:
                    continue
                if fault.method and fault.method != method:
                    continue
                if fault.path_contains and fault.path_contains not in path:
                    continue
                fault.remaining -= 1
                return fault
        return None

    def _recent_since(self, name: str) -> datetime | None:
        # senaite.jsonapi turns these names into a `modified >= start` catalog range (server time, UTC here).
        now = self.now().astimezone(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        starts = {
            "today": today,
            "yesterday": today - timedelta(days=1),
            "this-week": today - timedelta(days=today.weekday()),
            "this-month": today.replace(day=1),
            "this-year": today.replace(month=1, day=1),
        }
        return starts.get(name)

    def search(self, resource: str | None, query: dict[str, list[str]], base: str) -> dict[str, Any]:
        """A batched catalog search as senaite.jsonapi answers it."""
        portal_type = RESOURCES.get(resource.lower()) if resource else None
        with self._lock:
            found = [copy.deepcopy(obj) for obj in self.objects.values()]
        if portal_type:
            found = [obj for obj in found if obj.get("portal_type") == portal_type]
        if "recent_modified" in query:
            since = self._recent_since(query["recent_modified"][0])
            if since is not None:
                found = [obj for obj in found if _parse_time(obj["modified"]) >= since]
        if "uid" in query:
            found = [obj for obj in found if obj["uid"] in query["uid"]]
        if query.get("sort_on", [""])[0] == "modified":
            found.sort(key=lambda obj: _parse_time(obj["modified"]))
            if query.get("sort_order", ["ascending"])[0] in ("desc", "descending", "reverse"):
                found.reverse()
        limit = int(query.get("limit", ["25"])[0])
        start = int(query.get("b_start", ["0"])[0])
        complete = query.get("complete", [""])[0].lower() in ("yes", "y", "1", "true")
        batch = found[start : start + limit]
        items = batch if complete else [{key: obj.get(key) for key in BRAIN_KEYS} for obj in batch]

        def page_url(b_start: int) -> str:
            rest = {key: values for key, values in query.items() if key != "b_start"}
            return f"{base}?{urlencode({**rest, 'b_start': [str(b_start)]}, doseq=True)}"

        pages = max(1, -(-len(found) // limit))
        return {
            "count": len(found),
            "pagesize": limit,
            "items": items,
            "page": start // limit + 1,
            "_runtime": 0.001,
            "next": page_url(start + limit) if start + limit < len(found) else None,
            "pages": pages,
            "previous": page_url(max(0, start - limit)) if start > 0 else None,
        }

    def update(self, body: dict[str, Any], uid_in_path: str | None) -> tuple[int, dict[str, Any]]:
        """Apply a `transition` (and plain field values) to the object named by uid, as `…/update` does."""
        uid = uid_in_path or body.get("uid")
        with self._lock:
            obj = self.objects.get(str(uid))
            if obj is None:
                return 404, {"success": False, "message": f"Object {uid} not found", "_runtime": 0.001}
            transition = body.get("transition")
            if transition:
                sources, target = TRANSITIONS.get(transition, (set(), ""))
                if obj.get("review_state") not in sources:
                    message = f"Transition '{transition}' not allowed from {obj.get('review_state')}"
                    return 400, {"success": False, "message": message, "_runtime": 0.001}
                obj["review_state"] = target
            for key, value in body.items():
                if key not in ("uid", "transition", "path"):
                    obj[key] = value
            obj["modified"] = obj["modification_date"] = _iso(self.now())
            self.writes.append({"uid": obj["uid"], "transition": transition, "body": body, "at": obj["modified"]})
            updated = copy.deepcopy(obj)
        return 200, {"count": 1, "items": [updated], "url": f"{API_ROOT}/update", "_runtime": 0.001}


def _handler_for(fake: FakeSenaite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, status: int, payload: dict[str, Any] | bytes, record: RecordedRequest) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            record.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if fake.username is None:
                return True
            import base64

            expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
            return self.headers.get("Authorization", "") == f"Basic {expected}"

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            body: dict[str, Any] | None = None
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
            record = RecordedRequest(method, split.path, query, body)
            with fake._lock:
                fake.requests.append(record)
            if fake.delay_s:
                time.sleep(fake.delay_s)
            if not self._authorised():
                self._answer(401, {"success": False, "message": "Unauthorized", "_runtime": 0.0}, record)
                return
            fault = fake._take_fault(method, split.path)
            if fault is not None and not fault.after_apply:
                self._answer(fault.status, b"<html><body>Internal Server Error</body></html>", record)
                return
            if not split.path.startswith(API_ROOT):
                self._answer(404, {"success": False, "message": "Not found", "_runtime": 0.0}, record)
                return
            parts = [part for part in split.path[len(API_ROOT) :].split("/") if part]
            base = f"http://{self.headers.get('Host')}{split.path}"
            if method == "POST" and parts and parts[0] == "update":
                if body is None or not isinstance(body, dict):
                    self._answer(400, {"success": False, "message": "Invalid JSON", "_runtime": 0.0}, record)
                    return
                status, answer = fake.update(body, parts[1] if len(parts) > 1 else None)
                if fault is not None:  # applied, but the acknowledgement never reaches the caller
                    self._answer(fault.status, b"Proxy Error", record)
                    return
                self._answer(status, answer, record)
                return
            if method != "GET":
                self._answer(405, {"success": False, "message": "Method not allowed", "_runtime": 0.0}, record)
                return
            if parts == ["version"]:
                self._answer(200, {"version": "2.6.0", "date": "2025-04-04", "_runtime": 0.0}, record)
                return
            uid = parts[-1] if parts and parts[-1] in fake.objects else None
            if uid is not None:
                if uid in fake.broken:
                    self._answer(200, fake.broken[uid], record)
                    return
                self._answer(200, fake.search(None, {"uid": [uid], "complete": ["yes"]}, base), record)
                return
            if len(parts) > 1 or (parts and parts[0].lower() not in RESOURCES and parts[0] != "search"):
                self._answer(404, {"success": False, "message": "Not found", "_runtime": 0.0}, record)
                return
            resource = parts[0] if parts and parts[0] != "search" else None
            self._answer(200, fake.search(resource, query, base), record)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def saved_response_path(name: str) -> Path:
    """Where a saved response lives."""
    return SAVED_RESPONSES / name
