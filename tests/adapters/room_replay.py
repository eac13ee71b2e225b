"""Replay of the real UCI room-occupancy series (../shared/external/iot/room-environment/) as MQTT payloads.

One payload per CSV row: a room sensor's five readings at that minute, numbers copied as written (so "23.7"
and "0.00476416302416414" keep their digits). The office is in Mons, Belgium: times are CET (+01:00).
Data: L. M. Candanedo, V. Feldheim, Energy and Buildings 112 (2016) 28–39, UCI ML repository, CC BY 4.0.
"""

import csv
from collections.abc import Iterator
from pathlib import Path

from tests.paths import SHARED

ROOM_CSV = SHARED / "external" / "iot" / "room-environment" / "uci-occupancy-datatest.csv"
SENSOR = "uci-occupancy-1"
ROOM = "office-1"
COLUMNS = {"Temperature": "°C", "Humidity": "%", "Light": "lx", "CO2": "ppm", "HumidityRatio": "kg/kg"}


def room_rows(path: Path = ROOM_CSV) -> list[dict[str, str]]:
    """The CSV rows as written."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def row_payload(row: dict[str, str], *, sensor: str = SENSOR, room: str = ROOM) -> bytes:
    """One row as the JSON a room sensor publishes (numbers verbatim from the CSV)."""
    moment = row["Date"].replace(" ", "T") + "+01:00"
    readings = ", ".join(f'"{name}": {{"value": {row[name]}, "unit": "{unit}"}}' for name, unit in COLUMNS.items())
    return f'{{"sensor": "{sensor}", "room": "{room}", "time": "{moment}", "readings": {{{readings}}}}}'.encode()


def room_payloads(path: Path = ROOM_CSV, *, sensor: str = SENSOR) -> Iterator[bytes]:
    """Every row of the series as a payload, in time order."""
    for row in room_rows(path):
        yield row_payload(row, sensor=sensor)
