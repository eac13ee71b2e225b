"""The worker and the runtime context: restarts with backoff, config changes, loops, retries, resume evidence."""

import asyncio
import uuid
from typing import ClassVar

import pytest
from sqlmodel import Session, select

from adapters import discovery
from adapters import worker as worker_module
from adapters.discovery import AdapterCatalog, PluginInfo
from adapters.framework import AdapterContext, AdapterManifest, InboundMessage, Transport
from adapters.models import AdapterAttempt, AdapterEvidence, AdapterHealth, AdapterInstance
from adapters.runtime import InstanceRuntime, RetriesExhaustedError, backoff_delay
from adapters.worker import Worker
from storage.database import session_scope
from tests.adapters.echo_adapter import EchoAdapter


class FlakyAdapter(EchoAdapter):
    """Lands one reading per run, then crashes (until told to behave); remembers the configs it ran with."""

    manifest: ClassVar[AdapterManifest] = EchoAdapter.manifest.model_copy(update={"name": "flaky-test"})
    runs: ClassVar[list[dict]] = []
    crash = True

    async def run(self, context: AdapterContext) -> None:
        """Land, then fail like a plug-in losing its source."""
        FlakyAdapter.runs.append(dict(self.config))
        minute = len(FlakyAdapter.runs)
        payload = f'{{"sensor": "f", "value": 1, "at": "2026-03-02T08:{minute:02d}:00Z"}}'.encode()
        await context.land(
            [
                InboundMessage(
                    payload=payload,
                    content_type="application/json",
                    source="test://flaky",
                    transport=Transport.mqtt,
                    cursor=str(minute),
                )
            ]
        )
        if FlakyAdapter.crash:
            raise ConnectionError("source went away")
        await context.stopping.wait()


@pytest.fixture
def plugins(monkeypatch):
    """Make test plug-ins discoverable next to the installed ones."""
    catalog = discovery.adapter_catalog()
    found = dict(catalog.plugins)
    for adapter in (EchoAdapter, FlakyAdapter):
        found[adapter.manifest.name] = PluginInfo(adapter.manifest.name, "tests", None, adapter)
    monkeypatch.setattr(discovery, "_cached", AdapterCatalog(plugins=found, errors=list(catalog.errors)))
    FlakyAdapter.runs = []
    FlakyAdapter.crash = True


def _instance(engine, adapter: str, config: dict | None = None) -> AdapterInstance:
    with session_scope(engine) as session:
        instance = AdapterInstance(
            name=f"{adapter}-{uuid.uuid4().hex[:8]}", adapter=adapter, adapter_version="0.0.1", config=config or {}
        )
        session.add(instance)
    return instance


def _settings(hub, **extra):
    return hub.settings.model_copy(
        update={"worker_poll_interval_s": 0.05, "adapter_retry_base_s": 0.01, "adapter_retry_max_s": 0.05, **extra}
    )


async def _until(condition, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _rows(engine, model, instance_id):
    with Session(engine) as session:
        return list(session.exec(select(model).where(model.instance_id == instance_id)).all())


def test_a_crashing_adapter_is_restarted_with_recorded_backoff_and_follows_configuration_changes(hub, plugins):
    instance = _instance(hub.engine, "flaky-test", {"room": "R-1"})
    worker = Worker(_settings(hub), engine=hub.engine, instance_ids={instance.id})

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await _until(lambda: len(FlakyAdapter.runs) >= 3)
        FlakyAdapter.crash = False
        with session_scope(hub.engine) as session:
            row = session.get(AdapterInstance, instance.id)
            row.config = {"room": "R-2"}
            row.updated_at = row.updated_at.replace(year=row.updated_at.year + 1)
            session.add(row)
        await _until(lambda: FlakyAdapter.runs[-1] == {"room": "R-2"})
        await _until(lambda: "flaky-test" in {a.manifest.name for a in worker.adapters.values()})
        with session_scope(hub.engine) as session:
            row = session.get(AdapterInstance, instance.id)
            row.enabled = False
            session.add(row)
        await _until(lambda: not worker.running)
        stop.set()
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    attempts = [a for a in _rows(hub.engine, AdapterAttempt, instance.id) if a.operation == "run"]
    assert len(attempts) >= 2
    assert all("source went away" in (a.error or "") and 0.01 <= (a.delay_s or 0) <= 0.05 for a in attempts)
    assert worker.stats.started[instance.id] >= 2
    [health] = _rows(hub.engine, AdapterHealth, instance.id)
    assert (health.connected, health.last_error) == (False, "stopped by the worker")
    with Session(hub.engine) as session:
        assert session.get(AdapterInstance, instance.id).adapter_version == FlakyAdapter.manifest.version
    resumed = [e for e in _rows(hub.engine, AdapterEvidence, instance.id) if e.criterion == "L1.3"]
    assert resumed and all(e.details["event"] == "resumed-from-checkpoint" for e in resumed)


def test_the_periodic_loops_run_what_other_modules_provide_and_survive_a_failing_one(hub, plugins, monkeypatch):
    calls: dict[str, int] = {"rules": 0, "events": 0, "deliver": 0, "dispatch": 0}
    seen_adapters: list[dict] = []

    def apply_due_rules(session, *, clock):
        calls["rules"] += 1
        raise RuntimeError("a bug in a rule")

    def emit_due_events(session, *, clock):
        calls["events"] += 1
        return 0

    async def deliver_pending(engine, *, settings, clock):
        calls["deliver"] += 1
        return 0

    async def dispatch_pending(engine, *, adapters, settings, clock):
        calls["dispatch"] += 1
        seen_adapters.append(dict(adapters))
        return 0

    provided = {
        ("adapters.rules", "apply_due_rules"): apply_due_rules,
        ("adapters.events", "emit_due_events"): emit_due_events,
        ("adapters.delivery", "deliver_pending"): deliver_pending,
        ("adapters.commands", "dispatch_pending"): dispatch_pending,
    }
    monkeypatch.setattr(worker_module, "_optional", lambda module, name: provided.get((module, name)))
    instance = _instance(hub.engine, "echo-test")
    worker = Worker(_settings(hub), engine=hub.engine, instance_ids={instance.id})

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await _until(lambda: min(calls.values()) >= 3 and any(seen_adapters[-1:]))
        stop.set()
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    assert worker.stats.loop_errors["rules"] >= 3
    assert instance.id in seen_adapters[-1]
    assert "fusion" not in worker.stats.loop_runs  # no graph store given: the API process fuses


def test_a_missing_module_is_skipped_but_a_broken_one_is_not_hidden():
    assert worker_module._optional("adapters.no_such_module", "anything") is None
    with pytest.raises(ModuleNotFoundError):
        worker_module._optional("tests.adapters.worker_broken_module", "x")


def test_backoff_grows_exponentially_with_jitter_within_its_bounds():
    low = [backoff_delay(n, base_s=0.5, max_s=60, rng=lambda: 0.0) for n in range(1, 10)]
    high = [backoff_delay(n, base_s=0.5, max_s=60, rng=lambda: 1.0) for n in range(1, 10)]
    assert high == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60, 60]
    assert low == [0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert all(0.5 <= value <= 60 for value in low + high)


def test_retries_are_recorded_and_give_up_after_the_configured_attempts(hub, plugins, manual_clock):
    instance = _instance(hub.engine, "echo-test")
    runtime = InstanceRuntime(
        engine=hub.engine,
        instance=instance,
        adapter=EchoAdapter({}),
        settings=_settings(hub, adapter_retry_max_attempts=3),
        clock=manual_clock,
    )

    async def scenario() -> list[float]:
        delays = [await runtime.retry_delay("poll", attempt, "HTTP 500") for attempt in (1, 2)]
        with pytest.raises(RetriesExhaustedError):
            await runtime.retry_delay("poll", 3, "HTTP 500")
        await runtime.record_success("poll", 4)
        return delays

    delays = asyncio.run(scenario())
    attempts = sorted(_rows(hub.engine, AdapterAttempt, instance.id), key=lambda a: a.id)
    assert [(a.attempt, a.succeeded, a.error) for a in attempts] == [
        (1, False, "HTTP 500"),
        (2, False, "HTTP 500"),
        (3, False, "HTTP 500"),
        (4, True, None),
    ]
    assert [a.delay_s for a in attempts] == [*delays, None, None]
    assert all(a.at == manual_clock.now() for a in attempts)


def test_landing_through_the_context_checkpoints_and_marks_the_source_seen(hub, plugins, manual_clock):
    instance = _instance(hub.engine, "echo-test")
    runtime = InstanceRuntime(
        engine=hub.engine, instance=instance, adapter=EchoAdapter({}), settings=_settings(hub), clock=manual_clock
    )
    message = InboundMessage(
        payload=b'{"sensor": "s", "value": 2, "at": "2026-03-02T08:00:00Z"}',
        content_type="application/json",
        source="test://",
        transport=Transport.mqtt,
        stream="s",
        cursor="c-9",
    )

    async def scenario():
        assert await runtime.start() == {}
        report = await runtime.land([message])
        return report, runtime.checkpoint("s"), runtime.checkpoint("other"), await runtime.start()

    report, cursor, none, resumed = asyncio.run(scenario())
    assert (report.accepted, cursor, none, resumed) == (1, "c-9", None, {"s": "c-9"})
    [health] = _rows(hub.engine, AdapterHealth, instance.id)
    assert (health.connected, health.last_seen) == (True, manual_clock.now())
    [evidence] = _rows(hub.engine, AdapterEvidence, instance.id)
    assert (evidence.criterion, evidence.passed, evidence.details["checkpoints"]) == ("L1.3", True, {"s": "c-9"})
