"""Fusion renders N-Quads text itself: byte for byte what the pyoxigraph-term fusion wrote, for every record kind.

The expected text (test_fusion_nquads_golden.txt) was written by the fusion of commit cf1f68b, which built a
pyoxigraph Quad per statement and serialised them with `pyoxigraph.serialize`, from the inputs below.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest

from adapters.fusion import (
    FusionSource,
    _Batch,
    _build,
    _quoted,
    _replacement_update,
    _value_of,
    record_nquads,
    record_quads,
)
from graph import adapter_iris as ai
from tests.adapters.test_canonical import GOLDEN

GOLDEN_FILE = Path(__file__).with_name("test_fusion_nquads_golden.txt")
SOURCE = FusionSource("instance-1", None, "mqtt", "2.1.0")
OTHER_SOURCE = FusionSource("instance 2/β", "org-1", "senaite", "1.0.0")  # a graph IRI with escapes
RECORDED_AT = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)
EDGE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sample-escapes": (
        "sample",
        {
            "sample_id": "S 1/ä",
            "lab_id": " cnas  l0001 ",
            "client": 'He said "hi" \\ \n\t\x01\x7f\ufffe 😀',
            "client_credit_code": "91330100ma27xl1234",
            "sample_type": "",
            "status": "received",
        },
    ),
    "result-text": (
        "test-result",
        {
            "result_id": "R-2",
            "sample_id": "S-9",
            "test_item": "appearance",
            "text_value": "clear, no odour",
            "instrument": {"model": "X1", "serial": "42"},
            "status": "verified",
            "source_status": "verified",
            "analyst": "李",
        },
    ),
    "reading-odd": (
        "environment-reading",
        {
            "room": "LAB-B",
            "sensor_id": "s-1",
            "quantity": "vibration",
            "value": "1E+2",
            "unit": "xyz",
            "observed_at": "2015-02-02T14:19:00Z",
        },
    ),
    "reading-nan": (
        "environment-reading",
        {
            "room": "LAB-B",
            "sensor_id": "s-1",
            "quantity": "temperature",
            "value": "n/a",
            "unit": "Cel",
            "observed_at": "2015-02-02T14:20:00Z",
        },
    ),
    "video-bare": (
        "video-event",
        {"event_id": "e1", "room": None, "event_type": "person-entered", "observed_at": "2026-03-02T06:01:02Z"},
    ),
    "calibration-bare": (
        "calibration-event",
        {"certificate_number": "c-1", "instrument": None, "calibrated_on": "2025-06-01T00:00:00Z"},
    ),
    "status-bare": ("equipment-status", {"status": "idle", "observed_at": "2026-03-02T06:00:00Z"}),
}
CASES = {kind.value: (kind.value, record) for kind, record in GOLDEN.items()} | EDGE_CASES


def _expected() -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in GOLDEN_FILE.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif not line.startswith("#"):
            current.append(line)
    return {name: "".join(lines) for name, lines in sections.items()}


EXPECTED = _expected()


def test_the_golden_file_covers_every_record_kind_and_case() -> None:
    assert set(EXPECTED) == set(CASES) | {"__batch__", "__update__"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_record_renders_the_nquads_pyoxigraph_wrote(case: str) -> None:
    kind, record = CASES[case]
    text = record_nquads(kind, record, source=SOURCE, message_id=17, recorded_at=RECORDED_AT)
    assert text == EXPECTED[case]
    # And it is the text pyoxigraph writes for the quads it reads from it.
    quads = record_quads(kind, record, source=SOURCE, message_id=17, recorded_at=RECORDED_AT)
    assert (ox.serialize(quads, format=ox.RdfFormat.N_QUADS) or b"").decode() == text


def test_a_batch_of_every_kind_over_two_graphs_describes_shared_nodes_once_per_graph() -> None:
    batch = _Batch()
    for index, (kind, record) in enumerate((kind.value, record) for kind, record in GOLDEN.items()):
        _build(
            batch,
            kind,
            record,
            source=SOURCE if index % 2 == 0 else OTHER_SOURCE,
            message_id=100 + index,
            # SQLite hands back naive datetimes: they are UTC.
            recorded_at=RECORDED_AT if index % 2 == 0 else RECORDED_AT.replace(tzinfo=None),
        )
    assert batch.text() == EXPECTED["__batch__"]


def test_a_revised_subject_is_replaced_by_the_same_sparql_update() -> None:
    batch = _Batch()
    kind, record = CASES["complaint"]
    node = _value_of(
        _build(batch, kind, record, source=SOURCE, message_id=9, recorded_at=RECORDED_AT, earlier_messages=[3, 5])
    )
    graph = ai.adapter_graph_iri("instance-1")
    update = _replacement_update(batch.lines, {(graph, node), (graph, node + "/value")})
    assert update + "\n" == EXPECTED["__update__"]


def test_literals_are_escaped_as_pyoxigraph_writes_them_for_every_code_point() -> None:
    below = "".join(chr(code) for code in range(0x3000))
    above = "".join(chr(code) for code in range(0x3000, 0x110000) if not 0xD800 <= code < 0xE000)
    for text in (below, above, "", "plain", '"', "\\"):
        assert _quoted(text) == str(ox.Literal(text))


def test_a_code_that_makes_no_iri_fails_the_record_as_pyoxigraph_did() -> None:
    with pytest.raises(ValueError):
        record_nquads(
            "sample",
            {"sample_id": "S-1", "status": "not a code"},
            source=SOURCE,
            message_id=1,
            recorded_at=None,
        )
