"""Scenario helpers for the maturity tests: run a plug-in in the hub's real runtime, fuse, write back."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from adapters import commands, fusion
from adapters.framework import Adapter, ManualClock, SystemClock
from adapters.models import AdapterCommand, AdapterInstance, CanonicalRecordRow
from adapters.runtime import InstanceRuntime
from storage.database import session_scope


def create_instance(hub: Any, headers: dict[str, str], *, name: str, adapter: str, config: dict[str, Any]) -> str:
    """Configure an instance through the API; returns its id."""
    response = hub.client.post(
        "/api/v1/adapters", json={"name": name, "adapter": adapter, "config": config}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def runtime_for(hub: Any, instance_id: str, adapter: Adapter, **settings: Any) -> InstanceRuntime:
    """The hub's runtime context for an instance (fast retries for tests)."""
    with Session(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        assert instance is not None
        session.expunge(instance)
    tuned = hub.settings.model_copy(update={"adapter_retry_base_s": 0.05, "adapter_retry_max_s": 0.4, **settings})
    return InstanceRuntime(engine=hub.engine, instance=instance, adapter=adapter, settings=tuned)


async def run_until(
    runtime: InstanceRuntime, adapter: Adapter, done: Callable[[], bool], timeout_s: float = 30
) -> None:
    """Run the adapter in its runtime until `done()` holds (or fail after the timeout)."""
    await runtime.start()
    runtime.stopping = asyncio.Event()  # one per event loop: each run is its own asyncio.run
    task = asyncio.create_task(adapter.run(runtime))
    deadline = time.monotonic() + timeout_s
    try:
        while not done():
            if task.done():
                task.result()
                raise AssertionError("the adapter stopped before the scenario was done")
            if time.monotonic() > deadline:
                raise AssertionError("the scenario did not complete in time")
            await asyncio.sleep(0.05)
    finally:
        runtime.stopping.set()
        await asyncio.wait_for(task, 20)


def fuse_all(hub: Any) -> int:
    """Fuse every pending record (and the environment limits) now; returns how many records are fused in all.

    The app's own fuser thread may have fused some already: the pass goes through it (one pass at a time), and
    the answer counts the fused rows, so it does not depend on who fused them.
    """
    store = hub.client.app.state.graph_store
    with session_scope(hub.engine) as session:
        fusion.publish_environment_limits(session, store=store)
    hub.client.app.state.adapter_fuser.fuse_now()
    with Session(hub.engine) as session:
        pending = session.exec(select(func.count()).where(col(CanonicalRecordRow.fused_at).is_(None))).one()
        assert pending == 0, f"{pending} records were not fused"
        return int(session.exec(select(func.count()).select_from(CanonicalRecordRow)).one())


def write_back(
    hub: Any,
    instance_id: str,
    adapter: Adapter,
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    key: str,
    before_retry: Callable[[], None] | None = None,
) -> AdapterCommand:
    """Queue a command twice with one key, dispatch it (failing first when the source is down), return it."""
    clock = ManualClock(datetime.now(UTC))
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        assert instance is not None
        for _ in range(2):  # the same request again is answered by the stored command
            command = commands.create_command(
                session,
                instance=instance,
                kind=kind,
                target=target,
                payload=payload,
                idempotency_key=key,
                requested_by=None,
                clock=clock,
            )
        command_id = command.id
    settings = hub.settings
    asyncio.run(commands.dispatch_pending(hub.engine, adapters={instance_id: adapter}, settings=settings, clock=clock))
    if before_retry is not None:
        before_retry()
    for _ in range(10):
        clock.advance(seconds=settings.adapter_retry_max_s + 1)
        asyncio.run(
            commands.dispatch_pending(hub.engine, adapters={instance_id: adapter}, settings=settings, clock=clock)
        )
        with Session(hub.engine) as session:
            stored = session.get(AdapterCommand, command_id)
            assert stored is not None
            if stored.status in ("acknowledged", "dead-lettered"):
                session.expunge(stored)
                return stored
    raise AssertionError("the command never finished")


__all__ = ["SystemClock", "timedelta"]
