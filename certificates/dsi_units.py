"""D-SI unit syntax check (the `si:unit` strings like `\\milli\\metre` or `\\metre\\second\\tothe{-1}`).

The DCC and D-SI schemas type units as plain strings, so nothing but this module checks them.
Grammar (D-SI 1.x and 2.x): one or more terms `[\\prefix]\\unit[\\tothe{n}]`, optionally one `\\per`
followed by more terms; a unit starting with `|` is an explicitly marked non-D-SI unit and is accepted.
The vocabulary and the prefix restrictions follow the D-SI guide as implemented by PTB's `dsiunits`
package (rules R10-R14). We do not call `dsiunits` itself: its parser accepts BIPM-RP strings such as
`kg.m2`, ignores the prefix restrictions that its own regex enforces, warns on every call and costs
~35 µs per unit; this table-driven scanner gives the same verdicts as its `DSI_UNIT_REGEX` in ~2 µs.
"""

import difflib
import re
from functools import lru_cache


def _words(text: str) -> frozenset[str]:
    """Return the set of whitespace-separated words in `text` (keeps long vocabularies readable)."""
    return frozenset(text.split())


# Decimal prefixes (SI brochure, 9th edition incl. 2022 additions) and binary prefixes (IEC 80000-13).
DECIMAL_PREFIXES: frozenset[str] = _words(
    "quecto ronto yocto zepto atto femto pico nano micro milli centi deci "
    "deca hecto kilo mega giga tera peta exa zetta yotta ronna quetta"
)
_SUBUNIT_PREFIXES = _words("quecto ronto yocto zepto atto femto pico nano micro milli centi deci")
BINARY_PREFIXES: frozenset[str] = _words("kibi mebi gibi tebi pebi exbi zebi yobi")
PREFIXES: frozenset[str] = DECIMAL_PREFIXES | BINARY_PREFIXES

UNITS: frozenset[str] = _words(
    # SI base units and the unit one
    "metre kilogram second ampere kelvin mole candela one "
    # SI derived units with special names
    "radian steradian hertz newton pascal joule watt coulomb volt farad ohm siemens weber tesla "
    "henry degreecelsius lumen lux becquerel gray sievert katal gram "
    # dimensionless ratios
    "percent ppm "
    # non-SI units accepted for use with the SI
    "minute hour day degree arcminute arcsecond hectare litre tonne electronvolt dalton "
    "astronomicalunit neper bel decibel "
    # further units listed by the D-SI guide (partly discouraged, still valid syntax)
    "angstrom nauticalmile barn knot bar mmhg mmHg atomicmassunit atomicunittime naturalunittime "
    "clight planckbar electronmass elementarycharge bohr hartree bit byte"
)

# R10: no prefix at all; R14: neither prefix nor exponent; R11/R12: one forbidden prefix each.
_NO_PREFIX = frozenset({"kilogram", "degreecelsius", "minute", "hour", "day", "hectare", "decibel", "mmhg", "mmHg"})
_NO_PREFIX_NO_EXPONENT = frozenset({"one", "percent", "ppm"})
_FORBIDDEN_PREFIX = {"gram": "kilo", "bel": "deci"}
_DIGITAL_UNITS = frozenset({"bit", "byte"})

_EXPONENT = re.compile(r"tothe\{([+-]?\d+(?:[._]\d+)?)\}")
_IDENTIFIER = re.compile(r"[A-Za-z]+")
_CANONICAL_BY_LOWER = {name.lower(): name for name in PREFIXES | UNITS | {"per", "tothe"}}
_CANONICAL_BY_LOWER["mmhg"] = "mmhg"
# Symbols people type instead of D-SI identifiers, with the spelling to suggest.
_SYMBOL_HINTS = {
    "°C": "\\degreecelsius",
    "℃": "\\degreecelsius",
    "°": "\\degree",
    "%": "\\percent",
    "Ω": "\\ohm",
    "µm": "\\micro\\metre",
    "kgf": "\\newton, or mark it as non-D-SI: |kgf",
}


def _suggest(word: str) -> str:
    """Return ' (did you mean …?)' for a near-miss identifier, else ''."""
    close = difflib.get_close_matches(word, sorted(UNITS | PREFIXES), n=2, cutoff=0.75)
    options = " or ".join("\\" + c for c in close)
    return f" (did you mean {options}?)" if close else ""


def _prefix_problem(prefix: str, unit: str) -> str | None:
    """Return why `prefix` may not be combined with `unit`, or None."""
    if unit in _NO_PREFIX or unit in _NO_PREFIX_NO_EXPONENT:
        return f"\\{unit} takes no prefix (\\{prefix} given)"
    if _FORBIDDEN_PREFIX.get(unit) == prefix:
        better = {"gram": "\\kilogram", "bel": "\\decibel"}[unit]
        return f"\\{prefix}\\{unit} is not D-SI; write {better}"
    if unit in _DIGITAL_UNITS:
        if prefix in _SUBUNIT_PREFIXES:
            return f"\\{unit} takes only prefixes greater than one (\\{prefix} given)"
    elif prefix in BINARY_PREFIXES:
        return f"binary prefix \\{prefix} is only allowed on \\bit and \\byte"
    return None


@lru_cache(maxsize=4096)  # units repeat a lot within and across certificates
def check_dsi_unit(text: str) -> str | None:
    """Return None when `text` is a syntactically valid D-SI unit, else a human-readable reason."""
    unit = text.strip()  # surrounding whitespace is formatting (dsiunits' XSD-flavoured regex allows it)
    if not unit:
        return "empty unit"
    if unit.startswith("|"):
        return None if len(unit) > 1 else "empty non-D-SI unit after '|'"
    if any(ch.isspace() for ch in unit):
        return f"unit {unit!r} contains whitespace; a D-SI unit is one token"
    if not unit.startswith("\\"):
        return f"{unit!r} is not D-SI: identifiers start with a backslash; mark non-D-SI units with '|'"
    prefix: str | None = None
    last_unit: str | None = None  # unit that may still take an exponent
    units_before_per = 0
    units_after_per = 0
    per_seen = False
    for part in unit[1:].split("\\"):
        if not part:
            return f"empty identifier (double backslash) in {unit!r}"
        if part.startswith("tothe"):
            if not _EXPONENT.fullmatch(part):
                return f"malformed exponent \\{part} in {unit!r}: write \\tothe{{n}} with a number n"
            if prefix is not None or last_unit is None:
                return f"\\{part} must directly follow a unit in {unit!r}"
            if last_unit in _NO_PREFIX_NO_EXPONENT:
                return f"\\{last_unit} takes no exponent"
            last_unit = None  # a second \tothe on the same unit is an error
            continue
        if not _IDENTIFIER.fullmatch(part) or part in _SYMBOL_HINTS:
            hint = _SYMBOL_HINTS.get(part)
            return f"\\{part} is not a D-SI unit" + (f" (write {hint})" if hint else f" (in {unit!r})")
        if part == "per":
            if prefix is not None:
                return f"prefix \\{prefix} without a unit before \\per"
            if per_seen:
                return f"more than one \\per in {unit!r}"
            if not units_before_per:
                return f"\\per without a numerator in {unit!r}"
            per_seen, last_unit = True, None
            continue
        if part in PREFIXES:
            if prefix is not None:
                return f"two prefixes in a row (\\{prefix}\\{part}) in {unit!r}"
            prefix = part
            continue
        if part in UNITS:
            if prefix is not None and (problem := _prefix_problem(prefix, part)):
                return problem
            prefix, last_unit = None, part
            if per_seen:
                units_after_per += 1
            else:
                units_before_per += 1
            continue
        canonical = _CANONICAL_BY_LOWER.get(part.lower())
        if canonical:
            return f"\\{part} is not D-SI (identifiers are case-sensitive): write \\{canonical}"
        return f"\\{part} is not a D-SI unit or prefix{_suggest(part)}"
    if prefix is not None:
        return f"prefix \\{prefix} without a unit in {unit!r}"
    if per_seen and not units_after_per:
        return f"\\per without a denominator in {unit!r}"
    return None


@lru_cache(maxsize=1024)
def canonical_dsi_unit(text: str) -> str | None:
    """Return the valid D-SI spelling when `text` differs from one only in letter case, else None."""
    unit = text.strip()
    if not unit.startswith("\\") or check_dsi_unit(unit) is None:
        return None
    parts = unit[1:].split("\\")
    fixed = [_CANONICAL_BY_LOWER.get(p.lower(), p) if _IDENTIFIER.fullmatch(p) else p for p in parts]
    candidate = "\\" + "\\".join(fixed)
    return candidate if check_dsi_unit(candidate) is None else None
