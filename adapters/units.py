"""Reading source values the canonical way: UCUM unit codes, decimals that keep their digits, censored values
and ISO 8601 times with an offset.

Sources write the same unit many ways ("°C", "degC", "℃", "C", "Centigrade"); canonical records carry the
case-sensitive UCUM code ("Cel"), and fusion adds the QUDT unit of that code. Anything not in the table is
quarantined with `unknown-unit` rather than guessed. Numbers are `Decimal` built from the text as written, so
"20.10" stays "20.10" (its trailing zero is the instrument's resolution); JSON payloads should be read with
`json.loads(..., parse_float=Decimal)` for the same reason. A time without an offset is only accepted when
the adapter is configured with the source's zone (e.g. Asia/Shanghai); it is then made UTC.
"""

import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.framework import INVALID_VALUE, UNKNOWN_UNIT, QuarantineError

Operator = Literal["<", "<=", ">", ">="]
QUDT_UNIT = "http://qudt.org/vocab/unit/"

# UCUM code → QUDT unit local name (checked against the vendored QUDT list's ucumCode in the tests).
UCUM_TO_QUDT: dict[str, str] = {
    "Cel": "DEG_C",
    "K": "K",
    "[degF]": "DEG_F",
    "%": "PERCENT",
    "[ppm]": "PPM",
    "[ppb]": "PPB",
    "1": "UNITLESS",
    "lx": "LUX",
    "lm": "LM",
    "cd": "CD",
    "Pa": "PA",
    "kPa": "KiloPA",
    "hPa": "HectoPA",
    "bar": "BAR",
    "mbar": "MilliBAR",
    "mm[Hg]": "MilliM_HG",
    "mg/L": "MilliGM-PER-L",
    "ug/L": "MicroGM-PER-L",
    "g/L": "GM-PER-L",
    "g/dL": "GM-PER-DeciL",
    "mmol/L": "MilliMOL-PER-L",
    "mol/L": "MOL-PER-L",
    "mg/kg": "MilliGM-PER-KiloGM",
    "ug/kg": "MicroGM-PER-KiloGM",
    "ug/m3": "MicroGM-PER-M3",
    "mg/m3": "MilliGM-PER-M3",
    "kg/kg": "KiloGM-PER-KiloGM",
    "g/kg": "GM-PER-KiloGM",
    "umol/mol": "MicroMOL-PER-MOL",
    "uS/cm": "MicroS-PER-CentiM",
    "mS/cm": "MilliS-PER-CentiM",
    "10*9/L": "NUM-PER-NanoL",
    "10*12/L": "NUM-PER-PicoL",
    "[pH]": "PH",
    "dB": "DeciB",
    "W/m2": "W-PER-M2",
    "m/s": "M-PER-SEC",
    "m3/h": "M3-PER-HR",
    "L/min": "L-PER-MIN",
    "s": "SEC",
    "min": "MIN",
    "h": "HR",
    "d": "DAY",
    "V": "V",
    "mV": "MilliV",
    "A": "A",
    "mA": "MilliA",
    "W": "W",
    "kW.h": "KiloW-HR",
    "Hz": "HZ",
    "m": "M",
    "cm": "CentiM",
    "mm": "MilliM",
    "m3": "M3",
    "L": "L",
    "mL": "MilliL",
    "kg": "KiloGM",
    "g": "GM",
    "mg": "MilliGM",
    "ug": "MicroGM",
}

# Symbols as sources write them → UCUM (case-sensitive: "mA" and "MA" are different units).
_SYMBOLS: dict[str, str] = {
    **{code: code for code in UCUM_TO_QUDT},
    "°C": "Cel",
    "° C": "Cel",
    "degC": "Cel",
    "deg C": "Cel",
    "C": "Cel",  # a lone "C" in environment feeds is Celsius (coulomb is never an environment unit)
    "oC": "Cel",
    "°F": "[degF]",
    "degF": "[degF]",
    "%RH": "%",
    "% RH": "%",
    "%rh": "%",
    "RH%": "%",
    "%{RH}": "%",
    "ppm": "[ppm]",
    "ppb": "[ppb]",
    "ppmv": "[ppm]",
    "Lux": "lx",
    "mg/l": "mg/L",
    "mg.L-1": "mg/L",
    "mg L-1": "mg/L",
    "μg/L": "ug/L",
    "μg/l": "ug/L",
    "ug/l": "ug/L",
    "g/l": "g/L",
    "mmol/l": "mmol/L",
    "mol/l": "mol/L",
    "μg/m3": "ug/m3",
    "μg/m^3": "ug/m3",
    "ug/m^3": "ug/m3",
    "mg/m^3": "mg/m3",
    "μg/kg": "ug/kg",
    "μS/cm": "uS/cm",
    "kg/kg": "kg/kg",
    "kg kg-1": "kg/kg",
    "kg.kg-1": "kg/kg",
    "10^9/L": "10*9/L",
    "x10^9/L": "10*9/L",
    "×10^9/L": "10*9/L",
    "10^12/L": "10*12/L",
    "×10^12/L": "10*12/L",
    "pH": "[pH]",
    "W/m^2": "W/m2",
    "m^3": "m3",
    "m3/hr": "m3/h",
    "sec": "s",
    "kWh": "kW.h",
    "l": "L",
    "ml": "mL",
    "mmHg": "mm[Hg]",
    "μg": "ug",
}
# Unit names, matched case-insensitively.
_NAMES: dict[str, str] = {
    "celsius": "Cel",
    "degree celsius": "Cel",
    "degrees celsius": "Cel",
    "centigrade": "Cel",
    "摄氏度": "Cel",
    "kelvin": "K",
    "fahrenheit": "[degF]",
    "percent": "%",
    "pct": "%",
    "percent relative humidity": "%",
    "relative humidity": "%",
    "lux": "lx",
    "lumen": "lm",
    "pascal": "Pa",
    "kilopascal": "kPa",
    "hectopascal": "hPa",
    "parts per million": "[ppm]",
    "parts per billion": "[ppb]",
    "unitless": "1",
    "dimensionless": "1",
    "无量纲": "1",
    "second": "s",
    "seconds": "s",
    "minute": "min",
    "minutes": "min",
    "hour": "h",
    "hours": "h",
}
_UCUM_PREFIX = re.compile(r"^(?:ucum:|urn:ucum:|http://unitsofmeasure\.org/ucum#)", re.IGNORECASE)
_QUDT_TO_UCUM = {name: code for code, name in UCUM_TO_QUDT.items()}


def _clean(text: str) -> str:
    # NFKC folds compatibility forms: "℃" → "°C", "µ" (micro sign) → "μ", "³" → "3", full-width letters.
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


@cache
def normalise_unit(text: str) -> str:
    """The UCUM code of a unit as a source wrote it; `QuarantineError("unknown-unit")` when not recognised."""
    cleaned = _clean(text)
    if cleaned.startswith(QUDT_UNIT) and cleaned.removeprefix(QUDT_UNIT) in _QUDT_TO_UCUM:
        return _QUDT_TO_UCUM[cleaned.removeprefix(QUDT_UNIT)]
    cleaned = _UCUM_PREFIX.sub("", cleaned)
    code = _SYMBOLS.get(cleaned) or _SYMBOLS.get(cleaned.replace("³", "3")) or _NAMES.get(cleaned.casefold())
    if code is None:
        raise QuarantineError(UNKNOWN_UNIT, f"Unknown unit {text!r}: not in the hub's UCUM table.")
    return code


def qudt_unit_iri(ucum: str) -> str | None:
    """The QUDT unit IRI of a UCUM code the hub normalises to (None for codes without one)."""
    name = UCUM_TO_QUDT.get(ucum)
    return None if name is None else QUDT_UNIT + name


# --- numbers -------------------------------------------------------------------------------------------------

_OPERATORS: dict[str, Operator] = {
    "<": "<",
    "<=": "<=",
    "≤": "<=",
    "⩽": "<=",
    ">": ">",
    ">=": ">=",
    "≥": ">=",
    "⩾": ">=",
}
_CENSORED = re.compile(r"^(<=|>=|<|>|≤|≥|⩽|⩾)\s*(.+)$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class CensoredValue(NamedTuple):
    """A measured number with its censoring operator ("<0.5" → ("<", Decimal("0.5"))); operator None if exact."""

    operator: Operator | None
    value: Decimal


def parse_decimal(value: str | int | float | Decimal) -> Decimal:
    """A number as a `Decimal` keeping the digits written ("20.10" → Decimal("20.10")); else `invalid-value`."""
    if isinstance(value, bool):
        raise QuarantineError(INVALID_VALUE, f"{value!r} is not a number.")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text that reads back as this float, not its binary expansion
    else:
        text = _clean(value).replace("−", "-")
        if not _DECIMAL.match(text):
            raise QuarantineError(INVALID_VALUE, f"{value!r} is not a decimal number.")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise QuarantineError(INVALID_VALUE, f"{value!r} is not a decimal number.") from None
    if not number.is_finite():
        raise QuarantineError(INVALID_VALUE, f"{value!r} is not a finite number.")
    return number


def parse_censored(value: str | int | float | Decimal) -> CensoredValue:
    """A possibly censored number: "<0.5", "≤ 2", ">100" keep their operator; plain numbers have none."""
    if isinstance(value, str):
        text = _clean(value)  # NFKC also turns full-width "＜" into "<"
        match = _CENSORED.match(text)
        if match:
            return CensoredValue(_OPERATORS[match.group(1)], parse_decimal(match.group(2)))
        return CensoredValue(None, parse_decimal(text))
    return CensoredValue(None, parse_decimal(value))


# --- times ---------------------------------------------------------------------------------------------------


@cache
def source_zone(name: str) -> tzinfo:
    """The IANA time zone a source's local times are in (e.g. "Asia/Shanghai"); `invalid-value` when unknown."""
    if name.upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QuarantineError(INVALID_VALUE, f"Unknown time zone {name!r}.") from None


def parse_time(
    value: str | datetime | date,
    *,
    zone: str | tzinfo | None = None,
    end_of_day: bool = False,
) -> datetime:
    """An ISO 8601 time as a UTC datetime; without an offset it needs the source's `zone`, else `invalid-value`.

    A date alone means the start of that day in the zone, or its last instant with `end_of_day` (a
    calibration "valid until 2026-12-31" is valid through that day).
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = _day(value, end_of_day)
    else:
        text = _clean(value)
        try:
            is_day = len(text) == 10
            moment = _day(date.fromisoformat(text), end_of_day) if is_day else datetime.fromisoformat(text)
        except ValueError:
            raise QuarantineError(INVALID_VALUE, f"{value!r} is not an ISO 8601 time.") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        if zone is None:
            raise QuarantineError(INVALID_VALUE, f"{value!r} has no UTC offset and the source has no time zone.")
        moment = moment.replace(tzinfo=source_zone(zone) if isinstance(zone, str) else zone)
    return moment.astimezone(UTC)


def _day(day: date, end_of_day: bool) -> datetime:
    start = datetime.combine(day, time())
    return start + timedelta(days=1, microseconds=-1) if end_of_day else start


def from_epoch(value: int | float | str, *, milliseconds: bool = False) -> datetime:
    """A Unix timestamp (seconds, or milliseconds) as a UTC datetime; `invalid-value` when out of range."""
    number = parse_decimal(value)
    seconds = number / 1000 if milliseconds else number
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=float(seconds))
    except OverflowError:
        raise QuarantineError(INVALID_VALUE, f"{value!r} is not a plausible timestamp.") from None
