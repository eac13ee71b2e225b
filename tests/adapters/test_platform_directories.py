"""Directories pulled from the platform simulator reach the standards and accreditation registries."""

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select

from adapters.builtin.platform import (
    DIRECTORY_PAGE_SUBJECT,
    LABS,
    STANDARDS,
    PlatformAdapter,
    directory_imports,
    import_directory_page,
    import_pending_directories,
)
from adapters.builtin.platform_contract import LabEntry, ScopeEntry, StandardEntry
from adapters.framework import InboundMessage, Transport
from adapters.models import AdapterCheckpoint, LandingMessage
from adapters.runtime import InstanceRuntime
from adapters.simulators.platform import PlatformSimulator, create_simulator_app
from graph.models import Accreditation, Standard
from graph.service import import_standards_document
from organizations.models import OrganizationCreate, OrganizationKind
from organizations.service import create_organization
from storage.database import session_scope
from storage.models import AuditEvent
from tests.adapters.events_support import ServedApp, make_instance

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOLDER_CREDIT_CODE = "91330100MA2B3C4D5E"


def _lab(number: str, minute: int, **changes) -> LabEntry:
    fields = {
        "labId": f"CNAS {number}",
        "body": "CNAS",
        "number": number,
        "name": f"Zhejiang Test Lab {number}",
        "status": "active",
        "validFrom": date(2024, 1, 15),
        "validTo": date(2030, 1, 14),
        "scope": [ScopeEntry(standard="GB/T 5750.6-2023", testItem="铅 Pb")],
        "updatedAt": START + timedelta(minutes=minute),
        **changes,
    }
    return LabEntry.model_validate(fields)


def _standard(code: str, minute: int, **changes) -> StandardEntry:
    fields = {
        "code": code,
        "title": f"Title of {code}",
        "status": "current",
        "publishedOn": date(2019, 12, 10),
        "implementedOn": date(2020, 7, 1),
        "updatedAt": START + timedelta(minutes=minute),
        **changes,
    }
    return StandardEntry.model_validate(fields)


@pytest.fixture
def simulator():
    state = PlatformSimulator(token="sim-token")
    state.upsert_lab(_lab("L0001", 0, creditCode=HOLDER_CREDIT_CODE))
    state.upsert_lab(_lab("L0002", 1))
    state.upsert_lab(_lab("L0003", 2, status="suspended"))
    state.upsert_standard(_standard("GB/T 27025-2019", 0, titleZh="检测和校准实验室能力的通用要求"))
    state.upsert_standard(_standard("GB/T 5750.6-2023", 1, publishedOn=date(2023, 3, 17), implementedOn=None))
    state.upsert_standard(
        _standard("GB/T 5750.6-2006", 2, status="replaced", implementedOn=None, replacedBy=["GB/T 5750.6-2023"])
    )
    served = ServedApp(create_simulator_app(state))
    yield state, served.url
    served.close()


def _config(url: str) -> dict:
    return {"base_url": url, "token": "sim-token", "page_size": 2, "streams": [LABS, STANDARDS]}


def _poll(hub, instance, config, clock) -> int:
    adapter = PlatformAdapter(config)
    runtime = InstanceRuntime(engine=hub.engine, instance=instance, adapter=adapter, settings=hub.settings, clock=clock)

    async def once() -> int:
        async with adapter._client() as client:
            return await adapter.poll_once(runtime, client)

    return asyncio.run(once())


def _registry(hub) -> tuple[dict[str, Standard], dict[str, Accreditation], int]:
    with session_scope(hub.engine) as session:
        standards = {row.code: row for row in session.exec(select(Standard))}
        accreditations = {row.number: row for row in session.exec(select(Accreditation))}
        registry_events = session.exec(
            select(AuditEvent).where(col(AuditEvent.subject_kind).in_(["standard", "accreditation"]))
        ).all()
    return standards, accreditations, len(registry_events)


def _holder(hub) -> str:
    with session_scope(hub.engine) as session:
        return create_organization(
            session,
            data=OrganizationCreate(
                name="Zhejiang Test Lab L0001",
                kind=OrganizationKind.lab,
                unified_social_credit_code=HOLDER_CREDIT_CODE,
            ),
        ).id


def test_pulled_directories_become_registry_standards_and_accreditations(hub, simulator, manual_clock):
    _, url = simulator
    holder_id = _holder(hub)
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)

    assert _poll(hub, instance, config, manual_clock) == 2 + 2  # labs: 3 in pages of 2; standards: 3 likewise

    standards, accreditations, _ = _registry(hub)
    assert sorted(standards) == ["GB/T 27025-2019", "GB/T 5750.6-2006", "GB/T 5750.6-2023"]
    assert standards["GB/T 27025-2019"].title_zh == "检测和校准实验室能力的通用要求"
    assert standards["GB/T 5750.6-2023"].published_on == date(2023, 3, 17)
    # The registry completes the inverse link the platform only gave on the replaced edition.
    assert standards["GB/T 5750.6-2006"].replaced_by == ["GB/T 5750.6-2023"]
    assert standards["GB/T 5750.6-2023"].replaces == ["GB/T 5750.6-2006"]
    assert sorted(accreditations) == ["CNAS L0001", "CNAS L0002", "CNAS L0003"]
    first = accreditations["CNAS L0001"]
    assert (first.body, first.holder_organization_id, first.status) == ("CNAS", holder_id, "active")
    assert first.valid_to == date(2030, 1, 14)
    assert first.scope[0]["method_code"] == "GB/T 5750.6-2023" and first.scope[0]["description"] == "铅 Pb"
    assert accreditations["CNAS L0002"].holder_organization_id is None
    assert accreditations["CNAS L0003"].status == "suspended"

    with session_scope(hub.engine) as session:
        pages = directory_imports(session, instance_id=instance.id)
        checkpoints = {row.stream: row.cursor for row in session.exec(select(AdapterCheckpoint))}
        messages = {m.id: m for m in session.exec(select(LandingMessage).where(LandingMessage.stream == LABS))}
    assert [(page.stream, len(page.created)) for page in pages if page.stream == LABS] == [(LABS, 2), (LABS, 1)]
    last_labs_page = [page for page in pages if page.stream == LABS][-1]
    assert last_labs_page.cursor == checkpoints[LABS]  # the page imported last is where the stream resumes
    assert last_labs_page.sha256 == messages[last_labs_page.message_id].sha256
    assert sum(len(page.created) for page in pages) == 6
    assert not any(page.refused for page in pages)
    # The page of the replaced edition also updated the newer one: its inverse 'replaces' link.
    assert [page.updated for page in pages if page.updated] == [["GB/T 5750.6-2023"]]


def test_pulling_the_same_pages_again_changes_nothing_in_the_registry(hub, simulator, manual_clock):
    _, url = simulator
    config = _config(url)
    first = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    _poll(hub, first, config, manual_clock)
    standards_before, accreditations_before, events_before = _registry(hub)

    # A second connection starts without checkpoints: it pulls and lands every page again.
    second = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    assert _poll(hub, second, config, manual_clock) == 4
    standards, accreditations, events = _registry(hub)
    assert events == events_before
    assert {code: row.updated_at for code, row in standards.items()} == {
        code: row.updated_at for code, row in standards_before.items()
    }
    assert {number: row.updated_at for number, row in accreditations.items()} == {
        number: row.updated_at for number, row in accreditations_before.items()
    }
    with session_scope(hub.engine) as session:
        pages = directory_imports(session, instance_id=second.id)
        page_events = len(
            session.exec(select(AuditEvent).where(AuditEvent.subject_kind == DIRECTORY_PAGE_SUBJECT)).all()
        )
        message = session.get_one(LandingMessage, pages[0].message_id)
        again = import_directory_page(session, message=message)
    assert sum(len(page.unchanged) for page in pages) == 6
    assert not any(page.created or page.updated for page in pages)
    # Importing one landed page twice is recognised, not redone.
    assert again.already_imported and again.unchanged == pages[0].unchanged
    with session_scope(hub.engine) as session:
        assert len(session.exec(select(AuditEvent).where(AuditEvent.subject_kind == DIRECTORY_PAGE_SUBJECT)).all()) == (
            page_events
        )
    assert _poll(hub, second, config, manual_clock) == 0


def test_a_changed_directory_entry_updates_its_registry_row(hub, simulator, manual_clock):
    state, url = simulator
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    _poll(hub, instance, config, manual_clock)

    state.upsert_lab(_lab("L0002", 30, status="withdrawn", validTo=date(2026, 3, 1)))
    state.upsert_standard(
        _standard("GB/T 27025-2019", 31, title="General requirements for the competence of testing labs")
    )
    assert _poll(hub, instance, config, manual_clock) == 2

    standards, accreditations, _ = _registry(hub)
    assert standards["GB/T 27025-2019"].title == "General requirements for the competence of testing labs"
    assert standards["GB/T 27025-2019"].title_zh == "检测和校准实验室能力的通用要求"  # not in the new entry: kept
    assert (accreditations["CNAS L0002"].status, accreditations["CNAS L0002"].valid_to) == (
        "withdrawn",
        date(2026, 3, 1),
    )
    with session_scope(hub.engine) as session:
        latest = directory_imports(session, instance_id=instance.id)[-2:]
    assert sorted((page.stream, page.updated) for page in latest) == [
        (LABS, ["CNAS L0002"]),
        (STANDARDS, ["GB/T 27025-2019"]),
    ]


def test_registry_fields_the_platform_does_not_publish_are_kept(hub, simulator, manual_clock):
    _, url = simulator
    csv = (
        b"code,title,edition,issuing_body,ics_codes,clauses\n"
        b"GB/T 27025-2019,Old title,2019,SAMR/SAC,03.120.20,7.2 Selection of methods; 7.7 Validity of results\n"
    )
    with session_scope(hub.engine) as session:
        import_standards_document(session, content=csv, media_type="text/csv")
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    _poll(hub, instance, config, manual_clock)

    row = _registry(hub)[0]["GB/T 27025-2019"]
    assert row.title == "Title of GB/T 27025-2019"  # the platform's field wins
    assert (row.edition, row.issuing_body, row.ics_codes) == ("2019", "SAMR/SAC", ["03.120.20"])
    assert [clause["number"] for clause in row.clauses] == ["7.2", "7.7"]


def test_a_page_landed_before_a_crash_is_imported_on_the_next_poll(hub, simulator, manual_clock):
    _, url = simulator
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    adapter = PlatformAdapter(config)
    runtime = InstanceRuntime(
        engine=hub.engine, instance=instance, adapter=adapter, settings=hub.settings, clock=manual_clock
    )
    response = httpx.get(
        f"{url}/platform/v1/directory/standards", params={"limit": 100}, headers={"Authorization": "Bearer sim-token"}
    )
    # The page's landing transaction committed, then the process died before the import ran.
    runtime.land_now(
        [
            InboundMessage(
                payload=response.content,
                content_type="application/json",
                source=str(response.url),
                transport=Transport.http_poll,
                stream=STANDARDS,
                cursor=response.json()["cursor"],
            )
        ]
    )
    assert _registry(hub)[0] == {}

    assert _poll(hub, instance, config, manual_clock) == 2  # the two pages of labs; standards resume after theirs
    assert sorted(_registry(hub)[0]) == ["GB/T 27025-2019", "GB/T 5750.6-2006", "GB/T 5750.6-2023"]


def test_entries_the_registry_refuses_are_recorded_and_the_rest_imported(hub, simulator, manual_clock):
    state, url = simulator
    # The contract allows it, the registry does not: implemented before it was published.
    state.upsert_standard(_standard("GB/T 0000-2020", 5, publishedOn=date(2020, 5, 1), implementedOn=date(2020, 1, 1)))
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=None, adapter="platform", config=config)
    _poll(hub, instance, config, manual_clock)

    assert "GB/T 0000-2020" not in _registry(hub)[0]
    assert len(_registry(hub)[0]) == 3
    with session_scope(hub.engine) as session:
        refused = [item for page in directory_imports(session) for item in page.refused]
        assert import_pending_directories(hub.engine) == []  # nothing left waiting, the refusal included
    assert [item["key"] for item in refused] == ["GB/T 0000-2020"]
    assert "implementedOn is before publishedOn" in refused[0]["problem"]
