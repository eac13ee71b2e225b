"""Fusion inside the API process: the background fuser fills the embedded graph store, the saved cross-source
query answers over it through /api/v1/queries, and the fuser stops with the app."""

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from adapters.models import CanonicalRecordRow
from api.adapter_fusion import AdapterFuser
from api.app import create_app
from graph.iris import instrument_iri
from storage.database import session_scope
from storage.settings import Settings
from tests.adapters.semantics_support import (
    BALANCE,
    ROOM,
    at,
    calibration,
    land_records,
    make_instance,
    reading,
    result,
)
from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _wait_fused(engine, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if (
                session.exec(select(CanonicalRecordRow.id).where(col(CanonicalRecordRow.fused_at).is_(None))).first()
                is None
            ):
                return
        time.sleep(0.1)
    raise AssertionError("records were not fused in time")


def test_the_api_fuses_landed_records_in_the_background_and_answers_the_cross_source_query(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_admin_key=ADMIN_KEY, worker_poll_interval_s=0.1)
    app = create_app(settings)
    fuser: AdapterFuser = app.state.adapter_fuser  # create_app installs it: a second one would race it
    with TestClient(app, raise_server_exceptions=False) as client:
        limit = {"room": ROOM, "quantity": "temperature", "unit": "°C", "minimum": "18", "maximum": "26"}
        assert client.put("/api/v1/rules/environment-limits", json=limit, headers=ADMIN).status_code == 201
        with session_scope(app.state.engine) as session:
            lims, iot = make_instance(session), make_instance(session, adapter="mqtt")
            land_records(
                session,
                instance=lims,
                records=[
                    result("R-ok", start=at(9), end=at(10)),
                    result("R-hot", start=at(11), end=at(12)),
                    calibration("CAL-1", start=at(0, day=1), until=at(0, day=20)),
                ],
            )
            land_records(session, instance=iot, records=[reading("21.0", at(9, 15)), reading("29.9", at(11, 15))])
        _wait_fused(app.state.engine)
        instrument = instrument_iri(BALANCE.manufacturer, BALANCE.model, BALANCE.serial)
        answer = client.get(
            "/api/v1/queries/results-with-valid-conditions", params={"instrument": instrument}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text
        assert [row["resultId"] for row in answer.json()["rows"]] == ["R-ok"]
        assert answer.json()["rows"][0]["value"] == "20.10"
        # Tightening the limit rewrites the limits graph at once: now R-ok's 21.0 reading is out too.
        tighter = {**limit, "minimum": "21.5"}
        assert client.put("/api/v1/rules/environment-limits", json=tighter, headers=ADMIN).status_code == 200
        again = client.get(
            "/api/v1/queries/results-with-valid-conditions", params={"instrument": instrument}, headers=ADMIN
        )
        assert again.json()["rows"] == []
        assert fuser.fused == 5
    assert fuser._thread is not None and not fuser._thread.is_alive()  # stopped with the app
