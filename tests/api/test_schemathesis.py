"""Property-based conformance of the whole HTTP API to its own OpenAPI document (schemathesis 4).

Every documented operation is exercised in-process (ASGI, no sockets) against an isolated SQLite hub.
Each response must not be a 5xx and must conform to the document: a declared status code, a declared
content type and a body matching the declared schema. Hypothesis runs derandomized, so a failure found
once is found again on every machine.

Generated data alone rarely reaches the success paths (a random string is not a DCC, a random id names
no certificate), so the test also draws, per case, whether to swap in real material: a seeded
certificate id, the lab's organization id, or a corpus DCC / JSON submission as the request body.
"""

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from storage.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.paths import DCC_CORPUS, REPO_ROOT

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
SUBMISSION = REPO_ROOT / "tests/certificates/data/submission-thermometer.json"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The conformance checks this suite is about; the others (e.g. negative_data_rejection) judge API design
# choices such as accepting unknown query parameters, which are deliberate here.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Modest budget: 14 operations x (examples + coverage + fuzzing) must stay well under ~90 s on 2 cores.
MAX_EXAMPLES = 50

_unique = itertools.count()


@dataclass(frozen=True)
class SeededHub:
    """An isolated hub with a lab, its key and two certificates (one draft, one issued)."""

    app: FastAPI
    lab_id: str
    lab_headers: dict[str, str]
    draft_id: str
    issued_id: str


def unique_dcc() -> bytes:
    """The valid corpus DCC with a comment that makes its bytes (hence its sha256) unique.

    The hub refuses a second copy of the same bytes with 409; a trailing comment changes the hash without
    touching the document's content.
    """
    return VALID.read_bytes() + f"\n<!-- schemathesis copy {next(_unique)} -->\n".encode()


def unique_submission() -> bytes:
    """The JSON submission example with a unique identifier (JSON is rebuilt into XML, so a comment won't do)."""
    submission = json.loads(SUBMISSION.read_text())
    core = submission["administrativeData"]["coreData"]
    core["uniqueIdentifier"] = f"{core['uniqueIdentifier']}-st-{next(_unique)}"
    return json.dumps(submission).encode()


def _submit(client: TestClient, headers: dict[str, str], *, issue: bool) -> str:
    response = client.post(
        "/api/v1/certificates",
        content=unique_dcc(),
        headers={**headers, "Content-Type": "application/xml"},
        params={"issue": str(issue).lower()},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def seeded_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededHub]:
    """Build the hub once for the module: schemathesis runs all operations inside one pytest test."""
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    app = create_app(Settings(data_dir=data_dir, bootstrap_admin_key=ADMIN_KEY, log_level="WARNING"))
    with TestClient(app) as client:
        created = client.post("/api/v1/organizations", json={"name": "Fuzz Lab", "kind": "lab"}, headers=ADMIN_HEADERS)
        assert created.status_code == 201, created.text
        lab_id = created.json()["id"]
        key = client.post(
            f"/api/v1/organizations/{lab_id}/keys",
            json={"name": "schemathesis", "scopes": ["certificates:read", "certificates:write"]},
            headers=ADMIN_HEADERS,
        )
        assert key.status_code == 201, key.text
        lab_headers = {"Authorization": f"Bearer {key.json()['key']}"}
        draft_id = _submit(client, lab_headers, issue=False)
        issued_id = _submit(client, lab_headers, issue=True)
        # Fuzzed inside the app's lifespan, as a served hub is: its verification processes are running.
        yield SeededHub(app=app, lab_id=lab_id, lab_headers=lab_headers, draft_id=draft_id, issued_id=issued_id)
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(seeded_hub: SeededHub) -> Any:
    """The hub's own OpenAPI document, loaded from the running app (so it cannot drift from the code)."""
    return schemathesis.openapi.from_asgi("/openapi.json", seeded_hub.app)


schema = schemathesis.pytest.from_fixture("api_schema")

# RFC 3161 requests are binary DER: send whatever bytes were generated, as for application/octet-stream.
schemathesis.serializer.alias("application/timestamp-query", "application/octet-stream")
schemathesis.serializer.alias("application/zip", "application/octet-stream")


@pytest.fixture(autouse=True)
def _pytest9_node_id_shim(request: pytest.FixtureRequest) -> None:
    """Give the test node the `_nodeid` attribute schemathesis' lazy loader reads and rewrites.

    schemathesis 4.32 (`pytest/lazy.py`) relabels subtests through `request.node._nodeid`, which pytest 9.2
    no longer has (node ids live in `_id`). Without this the test dies with AttributeError before any
    request is sent. Harmless: the attribute is only read back by schemathesis itself.
    """
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# Per case: which credentials to send. Mostly the right ones (so the handlers run), sometimes none or a
# wrong/insufficient key, so the documented 401/403 answers are exercised too.
AUTH_CHOICES = st.sampled_from(["proper", "proper", "proper", "none", "unknown", "other-role"])
# Per case: keep the generated path id, or swap in a real one.
ID_CHOICES = st.sampled_from(["generated", "draft", "issued"])
BODY_CHOICES = st.sampled_from(["generated", "real"])


def _credentials(case: Any, hub: SeededHub, choice: str) -> dict[str, str]:
    admin_route = case.path.startswith("/api/v1/organizations")
    if choice == "none":
        return {}
    if choice == "unknown":
        return {"Authorization": "Bearer qh_not_a_real_key"}
    if choice == "other-role":
        # A valid key without the needed scope: the lab key on admin routes, the admin key elsewhere.
        return hub.lab_headers if admin_route else ADMIN_HEADERS
    return ADMIN_HEADERS if admin_route else hub.lab_headers


def _swap_in_real_material(case: Any, hub: SeededHub, id_choice: str, body_choice: str) -> None:
    parameters = case.path_parameters or {}
    if "certificate_id" in parameters and id_choice != "generated":
        parameters["certificate_id"] = hub.draft_id if id_choice == "draft" else hub.issued_id
    if "organization_id" in parameters and id_choice != "generated":
        parameters["organization_id"] = hub.lab_id
    if body_choice != "real" or case.method.upper() != "POST":
        return
    if case.path in {"/api/v1/certificates", "/api/v1/validate"}:
        if case.media_type == "application/json":
            case.body = json.loads(unique_submission())
        else:
            case.media_type = "application/xml"
            case.body = unique_dcc()
    elif case.path.endswith("/supersede"):
        # A draft of the same lab is a legitimate replacement for the issued certificate.
        case.body = {"replacementId": hub.draft_id, "reason": "schemathesis"}


@schema.given(
    auth=AUTH_CHOICES,
    id_choice=ID_CHOICES,
    body_choice=BODY_CHOICES,
)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_every_operation_conforms_to_the_openapi_document(
    case: Any, seeded_hub: SeededHub, auth: str, id_choice: str, body_choice: str
) -> None:
    """No 5xx, and status code, content type and body as documented, for every operation."""
    _swap_in_real_material(case, seeded_hub, id_choice, body_choice)
    case.call_and_validate(headers=_credentials(case, seeded_hub, auth), checks=CHECKS)


def test_the_seeded_certificate_is_readable(seeded_hub: SeededHub) -> None:
    """Guard for the fixture itself: the ids swapped into cases really exist."""
    with TestClient(seeded_hub.app) as client:
        for certificate_id in (seeded_hub.draft_id, seeded_hub.issued_id):
            response = client.get(f"/api/v1/certificates/{certificate_id}", headers=seeded_hub.lab_headers)
            assert response.status_code == 200, response.text
