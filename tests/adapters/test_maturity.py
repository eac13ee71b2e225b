"""The maturity endpoint decides levels from the hub's own evidence: nothing collected → L0; the sample
third-party plug-in, run through landing, fusion, events, rules and write-back, reaches L5."""

import asyncio
import json
from pathlib import Path

import pytest
import typer
from qihub_sample_adapter import BalanceFileAdapter
from sqlmodel import Session, select
from typer.testing import CliRunner

from adapters.maturity import _backoff_grows
from adapters.models import AdapterAssessment, AdapterAttempt, EnvironmentLimit
from adapters.rules import EnvironmentLimitWrite, upsert_environment_limit
from api.cli_maturity import assess
from organizations.models import Scope
from storage.database import session_scope
from tests.adapters.maturity_scenario import create_instance, fuse_all, run_until, runtime_for, write_back

BALANCE = {"manufacturer": "Sartorius", "model": "Cubis II MCA225S", "serial": "0039012345"}


def _reading(folder: Path, name: str, **fields: object) -> Path:
    path = folder / name
    path.write_text(json.dumps({"balance": BALANCE, "room": "R-204", **fields}))
    return path


def _criteria(report: dict) -> dict[str, dict]:
    return {item["id"]: item for item in report["criteria"]}


def test_an_instance_without_evidence_reaches_no_level_and_says_why(hub, tmp_path):
    _lab, headers = hub.make_org("Balance lab", scopes=[Scope.certificates_read, Scope.certificates_write])
    instance_id = create_instance(
        hub, headers, name=f"idle-{hub.backend}", adapter="sample-balance", config={"directory": str(tmp_path)}
    )

    response = hub.client.get(f"/api/v1/adapters/{instance_id}/maturity", headers=headers)

    assert response.status_code == 200, response.text
    report = response.json()
    criteria = _criteria(report)
    assert report["achievedLevel"] == 0
    assert len(criteria) == 24
    # Declarations alone prove nothing: no landed message, no record, no event.
    for criterion in ("L1.2", "L1.3", "L2.4", "L2.5", "L3.1", "L4.1", "L4.2"):
        assert criteria[criterion]["passed"] is False, criterion
    assert "No message has landed yet" in criteria["L1.2"]["evidence"]
    # What the hub can probe itself passes: discovery, golden fixtures, contracts, the conformance kit.
    assert criteria["L5.1"]["passed"] is True
    assert criteria["L2.2"]["passed"] is True
    assert criteria["L5.3"]["passed"] is True, criteria["L5.3"]["evidence"]


def test_another_organization_cannot_read_an_instances_maturity(hub, tmp_path):
    _lab, headers = hub.make_org("Owner lab")
    _other, other_headers = hub.make_org("Other lab")
    instance_id = create_instance(
        hub, headers, name=f"private-{hub.backend}", adapter="sample-balance", config={"directory": str(tmp_path)}
    )

    assert hub.client.get(f"/api/v1/adapters/{instance_id}/maturity", headers=other_headers).status_code == 404
    response = hub.client.get(f"/api/v1/adapters/{instance_id}/service-levels", headers=other_headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_sample_plugin_reaches_level_5_from_a_scenario_that_produces_the_evidence(hub, tmp_path, admin_headers):
    lab_id, headers = hub.make_org("Weighing lab")
    readings, commands_folder = tmp_path / "readings", tmp_path / "commands"
    config = {"directory": str(readings), "command_directory": str(commands_folder), "lab_id": "CNAS L0001"}
    instance_id = create_instance(hub, headers, name=f"balances-{hub.backend}", adapter="sample-balance", config=config)
    with session_scope(hub.engine) as session:
        upsert_environment_limit(
            session,
            data=EnvironmentLimitWrite(room="R-204", quantity="temperature", unit="Cel", minimum="18", maximum="23"),
        )
    adapter = BalanceFileAdapter(config)
    runtime = runtime_for(hub, instance_id, adapter)

    def landed(count: int) -> bool:
        return hub.client.get(f"/api/v1/adapters/{instance_id}/counters", headers=headers).json()["received"] >= count

    # The folder is not there yet: the adapter backs off and retries (L1.4); then files arrive, one of them
    # unreadable (poison), and the stream goes on past it.
    async def first_run() -> None:
        async def files_arrive_later() -> None:
            await asyncio.sleep(0.6)
            readings.mkdir()
            _reading(
                readings,
                "001.json",
                state="WEIGHING",
                at="2026-03-02T09:00:00+08:00",
                temperature={"value": "21.40", "unit": "°C"},
                weighing={"sample": "S-2026-0001", "net": "12.3450", "unit": "g", "approved": True},
            )
            (readings / "002.json").write_text("{ this is not json")
            _reading(
                readings,
                "003.json",
                state="IDLE",
                at="2026-03-02T09:05:30+08:00",
                temperature={"value": "23.60", "unit": "Cel"},
            )

        arrival = asyncio.create_task(files_arrive_later())
        await run_until(runtime, adapter, lambda: landed(3))
        await arrival

    asyncio.run(first_run())
    # A restart resumes from the checkpoint; the source then redelivers a file already landed.
    _reading(
        readings,
        "004.json",
        state="WEIGHING",
        at="2026-03-02T09:10:00+08:00",
        temperature={"value": "21.70", "unit": "Cel"},
    )
    asyncio.run(run_until(runtime, adapter, lambda: landed(4)))
    asyncio.run(runtime.land([adapter.message(readings / "001.json")]))

    assert fuse_all(hub) >= 7
    acknowledged = write_back(
        hub,
        instance_id,
        adapter,
        kind="balance.tare",
        target="0039012345",
        payload={"reason": "daily check"},
        key="tare-2026-03-02",
        before_retry=commands_folder.mkdir,
    )

    assert acknowledged.status == "acknowledged"
    assert acknowledged.attempts == 2  # the folder was missing at the first try
    assert [p.name for p in commands_folder.iterdir()] == ["tare-2026-03-02.json"]  # written once

    response = hub.client.get(f"/api/v1/adapters/{instance_id}/maturity", headers=headers)
    assert response.status_code == 200, response.text
    report = response.json()
    criteria = _criteria(report)
    failing = {key: value["evidence"] for key, value in criteria.items() if not value["passed"]}
    assert failing == {}, json.dumps(failing, indent=1, ensure_ascii=False)
    assert report["achievedLevel"] == 5
    assert "contract documents read and validated" in criteria["L5.2"]["evidence"]
    assert report["adapterVersion"] == "0.3.0"
    assert "1 redelivered duplicates" in criteria["L1.3"]["evidence"]
    assert "poison message" in criteria["L1.4"]["evidence"]
    assert any(link.endswith("/messages?outcome=quarantined") for link in criteria["L2.4"]["links"])
    assert "equipment.status.changed" in criteria["L4.1"]["evidence"]
    assert "environment-excursion" in criteria["L4.3"]["evidence"]

    levels = hub.client.get(f"/api/v1/adapters/{instance_id}/service-levels", headers=headers).json()
    assert levels["received"] == 5 and levels["duplicates"] == 1 and levels["quarantined"] == 1
    assert levels["completeness"] == 0.75  # 3 of 4 distinct files were readable
    assert levels["endToEndLatency"]["count"] >= 7
    assert levels["commandsAcknowledged"] == 1

    # Each assessment is kept: a second one shows the trend.
    again = hub.client.get(f"/api/v1/adapters/{instance_id}/maturity", headers=admin_headers).json()
    assert [point["achievedLevel"] for point in again["trend"]] == [report["achievedLevel"]] * 2
    with Session(hub.engine) as session:
        assert (
            len(session.exec(select(AdapterAssessment).where(AdapterAssessment.instance_id == instance_id)).all()) == 2
        )
        assert session.exec(select(EnvironmentLimit)).first() is not None

    # The CLI prints the same report.

    app = typer.Typer()
    app.command()(assess)
    result = CliRunner().invoke(
        app,
        [instance_id, "--json"],
        env={
            "QIHUB_DATA_DIR": str(hub.settings.data_dir),
            **({"QIHUB_DATABASE_URL": hub.settings.database_url} if hub.settings.database_url else {}),
        },
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["instanceId"] == instance_id
    # The running hub holds the embedded graph store, so a local CLI run cannot probe L3 (it says so).
    assert _criteria(printed)["L1.2"]["passed"] is True
    del lab_id


@pytest.mark.parametrize(
    ("delays", "grows"),
    [
        ([0.05, 0.078, 0.163, 0.284, 0.235], True),  # equal jitter at the cap may wait a little less: still growing
        ([0.1, 0.1, 0.1], False),  # a fixed delay is not a backoff
        ([0.4, 0.1, 0.5], False),  # below half the longest wait so far: not the hub's jittered backoff
    ],
)
def test_backoff_is_judged_growing_despite_jitter(delays: list[float], grows: bool):
    attempts = [
        AdapterAttempt(instance_id="i", operation="poll", attempt=n, succeeded=False, delay_s=delay)
        for n, delay in enumerate(delays, start=1)
    ]

    assert _backoff_grows(attempts) is grows
