"""The SENAITE adapter against a local fake serving the real saved senaite.jsonapi responses."""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from adapters.builtin.senaite import (
    TRANSITION_COMMAND,
    Cursor,
    SenaiteAdapter,
    recent_modified_range,
)
from adapters.canonical import record_json
from adapters.framework import (
    CommandFailedError,
    CommandRequest,
    InboundMessage,
    ManualClock,
    QuarantineError,
    Transport,
)
from adapters.models import (
    AdapterAttempt,
    AdapterCounters,
    AdapterHealth,
    AdapterInstance,
    CanonicalRecordRow,
    LandingMessage,
)
from adapters.runtime import InstanceRuntime, RetriesExhaustedError
from storage.database import session_scope
from tests.adapters.senaite_fake import FakeSenaite, load_saved

SAMPLE_UID = "99afa09663054c18b1ae7a1cd2cd7693"
ANALYSIS_UID = "043bcbb7f3234e99acc99de7f992100c"
NOW = datetime(2024, 10, 8, 9, 0, tzinfo=UTC)
EXAMPLE: dict[str, Any] = SenaiteAdapter.manifest.config_schema["examples"][0]


@pytest.fixture
def fake() -> Iterator[FakeSenaite]:
    server = FakeSenaite.with_saved_responses()
    server.now = lambda: NOW
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _config(fake: FakeSenaite, **extra: Any) -> dict[str, Any]:
    return {**EXAMPLE, "base_url": fake.site_url, "lab_id": "CNAS L0001", "poll_interval_s": 0.05, **extra}


def _runtime(hub, instance: AdapterInstance, clock: ManualClock) -> InstanceRuntime:
    # Short backoffs and four tries keep fault-injection tests quick; the jitter is fixed.
    settings = hub.settings.model_copy(
        update={"adapter_retry_base_s": 0.01, "adapter_retry_max_s": 0.05, "adapter_retry_max_attempts": 4}
    )
    adapter = SenaiteAdapter(instance.config)
    return InstanceRuntime(
        engine=hub.engine, instance=instance, adapter=adapter, settings=settings, clock=clock, rng=lambda: 0.5
    )


def _context(hub, config: dict[str, Any]) -> InstanceRuntime:
    with session_scope(hub.engine) as session:
        instance = AdapterInstance(
            name=f"senaite-{uuid.uuid4().hex[:8]}",
            adapter="senaite",
            adapter_version=SenaiteAdapter.manifest.version,
            config=config,
        )
        session.add(instance)
    return _runtime(hub, instance, ManualClock(NOW))


def _restarted(hub, context: InstanceRuntime) -> InstanceRuntime:
    """The same instance with a new adapter object and runtime, as after a worker restart."""
    return _runtime(hub, context.instance, context.clock)  # type: ignore[arg-type]


def _health(engine, instance_id: str) -> AdapterHealth:
    with session_scope(engine) as session:
        health = session.get(AdapterHealth, instance_id)
        assert health is not None
        return health


async def _sync(context: InstanceRuntime) -> int:
    async with context.adapter.client() as client:
        return await context.adapter.sync(context, client)


def _messages(engine, instance_id: str) -> list[LandingMessage]:
    with session_scope(engine) as session:
        query = select(LandingMessage).where(LandingMessage.instance_id == instance_id).order_by(LandingMessage.id)
        return list(session.exec(query))


def _records(engine, instance_id: str) -> list[CanonicalRecordRow]:
    with session_scope(engine) as session:
        query = (
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance_id)
            .order_by(CanonicalRecordRow.id)
        )
        return list(session.exec(query))


def _counters(engine, instance_id: str) -> tuple[int, int, int, int]:
    with session_scope(engine) as session:
        row = session.get(AdapterCounters, instance_id)
        assert row is not None
        return row.received, row.accepted, row.quarantined, row.duplicates


def _analysis(**fields: Any) -> InboundMessage:
    item = {**load_saved("get-analyses.json")["items"][0], **fields}
    return InboundMessage(
        payload=__import__("json").dumps({"count": 1, "items": [item]}).encode(),
        content_type="application/json",
        source="test",
        transport=Transport.http_poll,
        stream="Analysis",
    )


# --- parsing (pure) -----------------------------------------------------------------------------------------


def test_golden_fixtures_become_their_expected_canonical_json():
    adapter = SenaiteAdapter(EXAMPLE)
    fixtures = adapter.golden_fixtures()
    assert {fixture.name for fixture in fixtures} == {"get-analysis-request.json", "get-analyses.json"}
    for fixture in fixtures:
        assert [record_json(record) for record in adapter.parse(fixture.message)] == fixture.expected
        # The fixtures are the saved real responses, byte for byte.
        assert (
            fixture.message.payload
            == (
                __import__("tests.paths", fromlist=["SHARED"]).SHARED / "external/lims/senaite-jsonapi" / fixture.name
            ).read_bytes()
        )


def test_censored_results_keep_their_operator_and_digits_and_units_become_ucum():
    adapter = SenaiteAdapter(EXAMPLE)
    written = adapter.parse(_analysis(Result="<0.50", Unit="mg/l", review_state="to_be_verified"))[0]
    assert record_json(written)["value"] == "0.50"
    assert (written.operator, written.unit, written.status, written.source_status) == (
        "<",
        "mg/L",
        "unverified",
        "to_be_verified",
    )
    limit = adapter.parse(_analysis(Result="0.05", DetectionLimitOperand=">", Unit="μg/L"))[0]
    assert (limit.operator, str(limit.value), limit.unit) == (">", "0.05", "ug/L")
    textual = adapter.parse(_analysis(Result="negative", review_state="verified"))[0]
    assert (textual.value, textual.text_value, textual.status) == (None, "negative", "verified")


def test_configured_instruments_give_results_their_authoritative_identity_and_room():
    instruments = {"ins-1": {"manufacturer": "Agilent", "model": "7900", "serial": "JP1234", "room": "R101"}}
    adapter = SenaiteAdapter({**EXAMPLE, "instruments": instruments})
    result = adapter.parse(_analysis(Instrument={"uid": "ins-1", "url": "u", "api_url": "a"}))[0]
    assert result.instrument is not None
    assert (result.instrument.manufacturer, result.instrument.serial, result.room) == ("Agilent", "JP1234", "R101")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Unit": "furlongs"}, "unknown-unit"),
        ({"Keyword": "LAB-999", "id": "LAB-999"}, "unknown-unit"),  # a number, and no unit from SENAITE or config
        ({"review_state": "in_orbit"}, "unknown-code"),
        ({"parent_id": None, "getRequestID": None}, "missing-identifier"),
        ({"ResultCaptureDate": "yesterday-ish"}, "invalid-value"),
    ],
)
def test_unreadable_analyses_are_quarantined_with_a_code(fields, code):
    adapter = SenaiteAdapter(EXAMPLE)
    with pytest.raises(QuarantineError) as raised:
        adapter.parse(_analysis(**fields))
    assert raised.value.code == code


def test_review_states_map_through_the_published_code_lists():
    adapter = SenaiteAdapter(EXAMPLE)
    lists = adapter.code_lists()
    sample = load_saved("get-analysis-request.json")["items"][0]
    for state, hub_status in lists["senaite.sample"].items():
        parsed = adapter.parse_object({**sample, "review_state": state})[0]
        assert parsed.model_dump()["status"] == hub_status
    for state, hub_status in lists["senaite.analysis"].items():
        assert adapter.parse(_analysis(review_state=state))[0].model_dump()["status"] == hub_status


def test_field_mapping_covers_every_required_canonical_field():
    from adapters.canonical import Sample, TestResult

    mapped = {(m.record_kind.value, m.canonical_field) for m in SenaiteAdapter(EXAMPLE).field_mappings()}
    for model in (Sample, TestResult):
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        assert {(model.kind.value, name) for name in required} <= mapped


def test_recent_modified_asks_for_the_narrowest_range_sure_to_include_the_cursor():
    now = datetime(2024, 10, 16, 9, 0, tzinfo=UTC)  # a Wednesday
    assert recent_modified_range(None, now) is None
    assert recent_modified_range(now - timedelta(hours=3), now) == "yesterday"
    assert recent_modified_range(datetime(2024, 10, 15, 0, 0, tzinfo=UTC), now) == "this-week"
    assert recent_modified_range(datetime(2024, 10, 3, tzinfo=UTC), now) == "this-month"
    assert recent_modified_range(datetime(2024, 3, 1, tzinfo=UTC), now) == "this-year"
    assert recent_modified_range(datetime(2023, 12, 31, tzinfo=UTC), now) is None


# --- polling the fake -----------------------------------------------------------------------------------------


def test_samples_and_results_land_once_with_their_envelopes(hub, fake):
    context = _context(hub, _config(fake))
    assert asyncio.run(_sync(context)) == 2
    assert asyncio.run(_sync(context)) == 0  # nothing changed: nothing fetched again, nothing counted twice
    messages = _messages(hub.engine, context.instance_id)
    assert [(m.stream, m.outcome) for m in messages] == [("AnalysisRequest", "accepted"), ("Analysis", "accepted")]
    sample_message = messages[0]
    assert sample_message.dedup_key == f"{SAMPLE_UID}@2024-10-07T08:20:33+00:00"
    assert sample_message.source == f"{fake.site_url}/@@API/senaite/v1/AnalysisRequest/{SAMPLE_UID}"
    assert sample_message.transport == "http-poll"
    assert sample_message.source_time == datetime(2024, 10, 7, 8, 20, 33, tzinfo=UTC)
    assert b'"URI-0001"' in sample_message.raw
    records = _records(hub.engine, context.instance_id)
    assert [(r.kind, r.natural_key) for r in records] == [
        ("sample", "CNAS L0001/URI-0001"),
        ("test-result", "CNAS L0001/BLD-0109-P01/LAB-047"),
    ]
    assert all(r.message_id in {m.id for m in messages} for r in records)
    assert _counters(hub.engine, context.instance_id) == (2, 2, 0, 0)
    # Two-step reads: a catalog listing first, then each object in full.
    paths = [(r.method, r.path, r.query.get("complete")) for r in fake.requests]
    assert ("GET", "/senaite/@@API/senaite/v1/AnalysisRequest", None) in paths
    assert ("GET", f"/senaite/@@API/senaite/v1/AnalysisRequest/{SAMPLE_UID}", ["yes"]) in paths


def test_a_changed_object_lands_again_as_its_new_version(hub, fake):
    context = _context(hub, _config(fake))
    asyncio.run(_sync(context))
    fake.modify(SAMPLE_UID, modified=NOW - timedelta(minutes=5), review_state="sample_received")
    assert asyncio.run(_sync(context)) == 1
    records = [r for r in _records(hub.engine, context.instance_id) if r.kind == "sample"]
    assert [r.record["status"] for r in records] == ["due", "received"]


def test_resumes_from_the_recent_modified_cursor_after_a_restart(hub, fake):
    context = _context(hub, _config(fake))
    asyncio.run(_sync(context))
    assert Cursor.read(context.checkpoint("AnalysisRequest")) == Cursor(
        datetime(2024, 10, 7, 8, 20, 33, tzinfo=UTC), SAMPLE_UID
    )
    fake.derive(SAMPLE_UID, new_uid="a" * 32, modified=NOW - timedelta(hours=1), id="URI-0002")
    fake.requests.clear()

    restarted = _restarted(hub, context)
    assert asyncio.run(_sync(restarted)) == 1
    listing = next(r for r in fake.requests if r.path.endswith("/AnalysisRequest"))
    assert listing.query["recent_modified"] == ["this-month"]  # the cursor is 25 h old on a Tuesday
    assert listing.query["sort_on"] == ["modified"]
    fetched = [r.path for r in fake.requests if r.query.get("complete")]
    assert fetched == [f"/senaite/@@API/senaite/v1/AnalysisRequest/{'a' * 32}"]
    samples = [r.record["sample_id"] for r in _records(hub.engine, context.instance_id) if r.kind == "sample"]
    assert samples == ["URI-0001", "URI-0002"]
    assert _counters(hub.engine, context.instance_id) == (3, 3, 0, 0)


def test_listings_are_followed_page_by_page(hub, fake):
    for number in range(5):
        fake.derive(
            SAMPLE_UID, new_uid=f"{number:032d}", modified=NOW - timedelta(hours=5 - number), id=f"URI-1{number:03d}"
        )
    context = _context(hub, _config(fake, page_size=2, resources=["AnalysisRequest"]))
    assert asyncio.run(_sync(context)) == 6
    starts = sorted(int(r.query.get("b_start", ["0"])[0]) for r in fake.requests if r.path.endswith("AnalysisRequest"))
    assert starts == [0, 2, 4]
    assert len({m.dedup_key for m in _messages(hub.engine, context.instance_id)}) == 6


def test_server_errors_are_retried_with_backoff_and_recorded(hub, fake):
    context = _context(hub, _config(fake))
    fake.fail_next(2, status=500, path_contains="/AnalysisRequest")
    assert asyncio.run(_sync(context)) == 2
    with session_scope(hub.engine) as session:
        attempts = list(session.exec(select(AdapterAttempt).where(AdapterAttempt.instance_id == context.instance_id)))
    failures = [(a.operation, a.attempt, a.succeeded) for a in attempts if not a.succeeded]
    assert failures == [("list AnalysisRequest", 1, False), ("list AnalysisRequest", 2, False)]
    assert [a.attempt for a in attempts if a.succeeded] == [3]
    assert all("HTTP 500" in (a.error or "") for a in attempts if not a.succeeded)
    assert _counters(hub.engine, context.instance_id) == (2, 2, 0, 0)


def test_a_malformed_object_is_quarantined_and_the_stream_goes_on(hub, fake):
    fake.derive(SAMPLE_UID, new_uid="b" * 32, modified=NOW - timedelta(hours=2), id="URI-0003")
    fake.broken[SAMPLE_UID] = b'{"count": 1, "items": [{"portal_type": "AnalysisRe'
    context = _context(hub, _config(fake))
    asyncio.run(_sync(context))
    outcomes = {
        m.dedup_key.split("@")[0]: (m.outcome, m.error_code) for m in _messages(hub.engine, context.instance_id)
    }
    assert outcomes[SAMPLE_UID] == ("quarantined", "malformed-payload")
    assert outcomes["b" * 32] == ("accepted", None)
    assert outcomes[ANALYSIS_UID] == ("accepted", None)
    # The cursor moved past the broken object: it is not fetched again on every pass.
    assert Cursor.read(context.checkpoint("AnalysisRequest")).uid == "b" * 32  # type: ignore[union-attr]
    assert _counters(hub.engine, context.instance_id) == (3, 2, 1, 0)


def test_an_unreachable_source_is_reported_unhealthy_and_the_next_pass_recovers(hub, fake):
    context = _context(hub, _config(fake))
    fake.stop()
    with pytest.raises(RetriesExhaustedError):
        asyncio.run(_sync(context))
    health = _health(hub.engine, context.instance_id)
    assert (health.connected, health.last_seen) == (False, None)
    assert "ConnectError" in (health.last_error or "")
    fake.start()
    assert asyncio.run(_sync(context)) == 2
    health = _health(hub.engine, context.instance_id)
    assert (health.connected, health.last_seen, health.last_error) == (True, NOW, None)


def test_run_polls_until_stopped(hub, fake):
    context = _context(hub, _config(fake))

    async def scenario() -> None:
        task = asyncio.create_task(context.adapter.run(context))
        for _ in range(200):
            if len(_messages(hub.engine, context.instance_id)) == 2:
                break
            await asyncio.sleep(0.02)
        fake.derive(SAMPLE_UID, new_uid="c" * 32, modified=NOW - timedelta(minutes=1), id="URI-0004")
        for _ in range(200):
            if len(_messages(hub.engine, context.instance_id)) == 3:
                break
            await asyncio.sleep(0.02)
        context.stopping.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert _counters(hub.engine, context.instance_id) == (3, 3, 0, 0)
    assert _health(hub.engine, context.instance_id).connected is True


def test_health_probe_follows_the_source(fake):
    adapter = SenaiteAdapter(_config(fake))
    assert asyncio.run(adapter.check_health()) is True
    fake.stop()
    assert asyncio.run(adapter.check_health()) is False


def test_basic_auth_is_sent_when_configured(hub, fake):
    fake.username, fake.password = "labclerk", "s3cret"
    context = _context(hub, _config(fake, username="labclerk", password="s3cret"))
    assert asyncio.run(_sync(context)) == 2
    wrong = _context(hub, _config(fake, username="labclerk", password="nope"))
    with pytest.raises(Exception, match="HTTP 401"):
        asyncio.run(_sync(wrong))


# --- write-back -----------------------------------------------------------------------------------------------


def _transition(uid: str, transition: str, key: str = "k-1") -> CommandRequest:
    return CommandRequest(
        id=str(uuid.uuid4()),
        kind=TRANSITION_COMMAND,
        target=uid,
        payload={"uid": uid, "transition": transition},
        idempotency_key=key,
    )


def test_a_transition_is_written_back_and_acknowledged_by_the_source(fake):
    adapter = SenaiteAdapter(_config(fake))
    ack = asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "receive")))
    assert (ack["uid"], ack["review_state"], ack["already_applied"]) == (SAMPLE_UID, "sample_received", False)
    assert [w["transition"] for w in fake.writes_for(SAMPLE_UID)] == ["receive"]
    post = next(r for r in fake.requests if r.method == "POST")
    assert (post.path, post.body) == ("/senaite/@@API/senaite/v1/update", {"uid": SAMPLE_UID, "transition": "receive"})
    # The same command again (a retry) finds the transition done and writes nothing.
    again = asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "receive")))
    assert again["already_applied"] is True
    assert len(fake.writes_for(SAMPLE_UID)) == 1


def test_a_lost_acknowledgement_is_retried_without_writing_twice(fake):
    adapter = SenaiteAdapter(_config(fake))
    fake.fail_next(1, status=502, method="POST", after_apply=True)
    with pytest.raises(CommandFailedError) as raised:
        asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "receive")))
    assert raised.value.retryable is True
    ack = asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "receive")))
    assert (ack["review_state"], ack["already_applied"]) == ("sample_received", True)
    assert len(fake.writes_for(SAMPLE_UID)) == 1


def test_a_refused_transition_fails_without_retry(fake):
    adapter = SenaiteAdapter(_config(fake))
    with pytest.raises(CommandFailedError) as raised:
        asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "publish")))
    assert raised.value.retryable is False
    assert "not allowed" in raised.value.detail
    assert fake.writes == []


def test_an_unreachable_source_fails_the_command_retryably(fake):
    adapter = SenaiteAdapter(_config(fake))
    fake.stop()
    with pytest.raises(CommandFailedError) as raised:
        asyncio.run(adapter.execute_command(_transition(SAMPLE_UID, "receive")))
    assert raised.value.retryable is True


def test_commands_it_does_not_know_fail_without_retry(fake):
    adapter = SenaiteAdapter(_config(fake))
    unknown = CommandRequest(id="1", kind="opcua.call", target="x", payload={}, idempotency_key="k")
    with pytest.raises(CommandFailedError) as raised:
        asyncio.run(adapter.execute_command(unknown))
    assert raised.value.retryable is False
    with pytest.raises(CommandFailedError):
        asyncio.run(adapter.execute_command(_transition("no-such-uid", "receive")))
    assert fake.writes == []


def test_the_conformance_kit_passes_against_the_fake(fake):
    from adapters.conformance.checks import run_conformance

    # Without a lab id: the golden fixtures pin the output of the schema's example configuration.
    config = {**EXAMPLE, "base_url": fake.site_url}
    outcomes = run_conformance(SenaiteAdapter, config=config, write_back=True)
    failed = [(o.name, o.detail) for o in outcomes if not o.passed]
    assert failed == []
    assert {o.name for o in outcomes if not o.skipped} >= {"golden-fixtures", "write-back-idempotent"}
    assert len(fake.writes_for(SAMPLE_UID)) == 1
