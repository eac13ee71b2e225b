"""UCUM normalisation, decimals that keep their digits, censored values and ISO 8601 times (L2.3), table-driven."""

from datetime import UTC, datetime
from decimal import Decimal

import pyoxigraph as ox
import pytest

from adapters.framework import INVALID_VALUE, UNKNOWN_UNIT, QuarantineError
from adapters.units import (
    QUDT_UNIT,
    UCUM_TO_QUDT,
    from_epoch,
    normalise_unit,
    parse_censored,
    parse_decimal,
    parse_time,
    qudt_unit_iri,
)
from graph.queries import QUDT_UNITS_FILE

UNITS = [
    ("°C", "Cel"),
    ("℃", "Cel"),
    ("degC", "Cel"),
    ("deg C", "Cel"),
    ("C", "Cel"),
    ("Cel", "Cel"),
    ("Centigrade", "Cel"),
    ("degree Celsius", "Cel"),
    ("摄氏度", "Cel"),
    ("ucum:Cel", "Cel"),
    ("http://qudt.org/vocab/unit/DEG_C", "Cel"),
    ("%", "%"),
    ("%RH", "%"),
    ("% RH", "%"),
    ("RH%", "%"),
    ("ppm", "[ppm]"),
    ("[ppm]", "[ppm]"),
    ("lux", "lx"),
    ("Lux", "lx"),
    ("lx", "lx"),
    ("K", "K"),
    ("kelvin", "K"),
    ("kPa", "kPa"),
    ("hPa", "hPa"),
    ("mg/L", "mg/L"),
    ("mg/l", "mg/L"),
    ("µg/m³", "ug/m3"),  # micro sign and superscript three (NFKC)
    ("μg/m3", "ug/m3"),  # Greek mu
    ("kg/kg", "kg/kg"),
    ("10^9/L", "10*9/L"),
    ("pH", "[pH]"),
    ("  mg/L ", "mg/L"),
]


@pytest.mark.parametrize(("written", "ucum"), UNITS)
def test_source_units_normalise_to_ucum(written: str, ucum: str) -> None:
    assert normalise_unit(written) == ucum


@pytest.mark.parametrize("written", ["furlongs", "°X", "", "mg/L/", "MA", "degrees"])
def test_unknown_units_are_quarantined_with_unknown_unit(written: str) -> None:
    with pytest.raises(QuarantineError) as caught:
        normalise_unit(written)
    assert caught.value.code == UNKNOWN_UNIT


def test_every_ucum_code_maps_to_the_qudt_unit_with_that_ucum_code() -> None:
    store = ox.Store()
    store.bulk_load(path=str(QUDT_UNITS_FILE), format=ox.RdfFormat.TURTLE)
    codes = {
        row["unit"].value: row["code"].value
        for row in store.query(
            "PREFIX qudt: <http://qudt.org/schema/qudt/> SELECT ?unit ?code WHERE { ?unit qudt:ucumCode ?code }"
        )  # type: ignore[union-attr]
    }
    for ucum, name in UCUM_TO_QUDT.items():
        if ucum == "1":
            continue  # QUDT's UNITLESS has no dimension vector, so the vendored subset omits it
        # QUDT writes quotients with negative exponents: "mg/L" is "mg.L-1", "10*9/L" is "{#}.nL-1".
        assert qudt_unit_iri(ucum) == QUDT_UNIT + name
        assert QUDT_UNIT + name in codes, ucum
    assert codes[QUDT_UNIT + "DEG_C"] == "Cel"
    assert codes[QUDT_UNIT + "MilliGM-PER-L"] == "mg.L-1"


DECIMALS = [
    ("20.10", "20.10"),
    ("0.050", "0.050"),
    ("-3", "-3"),
    ("1.20E-3", "0.00120"),
    ("２０．５", "20.5"),  # full-width digits (NFKC)
    (23.718, "23.718"),  # a float from JSON reads back as its shortest text, not its binary expansion
    (7, "7"),
]


@pytest.mark.parametrize(("given", "expected"), DECIMALS)
def test_decimals_keep_the_digits_written(given: str | float | int, expected: str) -> None:
    number = parse_decimal(given)
    assert number == Decimal(expected)
    if isinstance(given, str) and "E" not in given and "２" not in given:
        assert str(number) == given


@pytest.mark.parametrize("given", ["abc", "1,5", "NaN", "Infinity", "", "1.2.3", True])
def test_non_numbers_are_invalid_values(given: object) -> None:
    with pytest.raises(QuarantineError) as caught:
        parse_decimal(given)  # type: ignore[arg-type]
    assert caught.value.code == INVALID_VALUE


CENSORED = [
    ("<0.5", "<", "0.5"),
    ("< 0.50", "<", "0.50"),
    ("≤ 2", "<=", "2"),
    ("<=2", "<=", "2"),
    ("＜0.05", "<", "0.05"),  # full-width less-than
    (">100", ">", "100"),
    ("≥ 1.0", ">=", "1.0"),
    ("12.30", None, "12.30"),
]


@pytest.mark.parametrize(("given", "operator", "value"), CENSORED)
def test_censored_values_keep_their_operator(given: str, operator: str | None, value: str) -> None:
    parsed = parse_censored(given)
    assert parsed.operator == operator
    assert str(parsed.value) == value


TIMES = [
    ("2026-03-02T08:00:00Z", None, datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
    ("2026-03-02T16:00:00+08:00", None, datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
    ("2026-03-02 16:00:00", "Asia/Shanghai", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
    ("2015-02-02 14:19:00", "UTC", datetime(2015, 2, 2, 14, 19, tzinfo=UTC)),
    ("2026-07-01T12:00:00", "Europe/Berlin", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),  # summer time
    ("2026-03-02", "Asia/Shanghai", datetime(2026, 3, 1, 16, 0, tzinfo=UTC)),
]


@pytest.mark.parametrize(("given", "zone", "expected"), TIMES)
def test_times_become_utc_with_the_source_zone_when_they_lack_an_offset(
    given: str, zone: str | None, expected: datetime
) -> None:
    moment = parse_time(given, zone=zone)
    assert moment == expected
    assert moment.tzinfo is UTC


def test_a_date_alone_can_mean_the_end_of_that_day() -> None:
    end = parse_time("2026-12-31", zone="Asia/Shanghai", end_of_day=True)
    assert end == datetime(2026, 12, 31, 15, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "zone"), [("2026-03-02 16:00:00", None), ("yesterday", "UTC"), ("2026-03-02T16:00", "Mars/Base")]
)
def test_times_without_offset_and_zone_or_unreadable_are_invalid(given: str, zone: str | None) -> None:
    with pytest.raises(QuarantineError) as caught:
        parse_time(given, zone=zone)
    assert caught.value.code == INVALID_VALUE


def test_epoch_timestamps_in_seconds_and_milliseconds() -> None:
    assert from_epoch(1772438400) == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert from_epoch("1772438400500", milliseconds=True) == datetime(2026, 3, 2, 8, 0, 0, 500000, tzinfo=UTC)
