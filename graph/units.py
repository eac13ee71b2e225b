"""D-SI unit strings (`\\milli\\kelvin`) to QUDT unit IRIs and BIPM SI Reference Point unit IRIs.

SI Reference Point: built from the unit's atoms (prefix + unit name + exponent, `\\per` as negative exponents,
joined by '.'), the identifier scheme PTB's `dsiunits` (`to_sirp(pid=True)`) uses, but only when every atom is a
unit the SI Reference Point defines (so `\\percent`, `\\bar`, `\\mmhg` get none rather than a dead IRI).

QUDT: the vendored unit list is indexed by dimension vector; a D-SI unit's candidates are the QUDT units of the
same dimension vector, conversion multiplier and offset. Several can match (`\\newton\\metre` is J and N-M,
`\\kilogram\\metre\\tothe{-1}\\second\\tothe{-2}` is PA, N-PER-M2 and J-PER-M3), so the choice is, in order:
the quantity kind (from si:quantityTypeQUDT or the DCC refType) keeps only units declared for it; then the unit
spelled the same way (a curated table for `\\one`, `\\percent`, `\\bar`, `\\degreecelsius`, …, else the same UCUM
code); then the QUDT unit that is an exact match of the SI Reference Point unit; then the only candidate, or
the only candidate that is exactly an SI unit. Anything still ambiguous stays unmapped (no guessed IRI).
"""

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path

import pyoxigraph as ox

from certificates.dsi_units import canonical_dsi_unit, check_dsi_unit

VENDOR_DIR = Path(__file__).resolve().parents[1] / "ontologies" / "vendor"
QUDT_UNIT = "http://qudt.org/vocab/unit/"
QUDT_QUANTITY_KIND = "http://qudt.org/vocab/quantitykind/"
SIRP_UNIT = "https://si-digital-framework.org/SI/units/"
_QUDT_SCHEMA = "http://qudt.org/schema/qudt/"
_SKOS_BROADER = "http://www.w3.org/2004/02/skos/core#broader"

# Dimension order of QUDT dimension vectors: amount, current, length, luminous intensity, mass, temperature, time.
_DIMENSIONS = "AELIMHT"

# D-SI unit → (UCUM symbol, SI Reference Point name or None, dimension exponents, factor to coherent SI, offset).
_A, _E, _L, _I, _M, _H, _T = ({dimension: 1} for dimension in _DIMENSIONS)
_ANGLE_UNITS = frozenset({"radian", "steradian", "degree", "arcminute", "arcsecond"})
_UNITS: dict[str, tuple[str, str | None, dict[str, int], float, float]] = {
    "metre": ("m", "metre", _L, 1.0, 0.0),
    "kilogram": ("kg", "kilogram", _M, 1.0, 0.0),
    "gram": ("g", "gram", _M, 1e-3, 0.0),
    "second": ("s", "second", _T, 1.0, 0.0),
    "ampere": ("A", "ampere", _E, 1.0, 0.0),
    "kelvin": ("K", "kelvin", _H, 1.0, 0.0),
    "mole": ("mol", "mole", _A, 1.0, 0.0),
    "candela": ("cd", "candela", _I, 1.0, 0.0),
    "one": ("1", "one", {}, 1.0, 0.0),
    "radian": ("rad", "radian", {}, 1.0, 0.0),
    "steradian": ("sr", "steradian", {}, 1.0, 0.0),
    "hertz": ("Hz", "hertz", {"T": -1}, 1.0, 0.0),
    "newton": ("N", "newton", {"M": 1, "L": 1, "T": -2}, 1.0, 0.0),
    "pascal": ("Pa", "pascal", {"M": 1, "L": -1, "T": -2}, 1.0, 0.0),
    "joule": ("J", "joule", {"M": 1, "L": 2, "T": -2}, 1.0, 0.0),
    "watt": ("W", "watt", {"M": 1, "L": 2, "T": -3}, 1.0, 0.0),
    "coulomb": ("C", "coulomb", {"E": 1, "T": 1}, 1.0, 0.0),
    "volt": ("V", "volt", {"M": 1, "L": 2, "T": -3, "E": -1}, 1.0, 0.0),
    "farad": ("F", "farad", {"M": -1, "L": -2, "T": 4, "E": 2}, 1.0, 0.0),
    "ohm": ("Ohm", "ohm", {"M": 1, "L": 2, "T": -3, "E": -2}, 1.0, 0.0),
    "siemens": ("S", "siemens", {"M": -1, "L": -2, "T": 3, "E": 2}, 1.0, 0.0),
    "weber": ("Wb", "weber", {"M": 1, "L": 2, "T": -2, "E": -1}, 1.0, 0.0),
    "tesla": ("T", "tesla", {"M": 1, "T": -2, "E": -1}, 1.0, 0.0),
    "henry": ("H", "henry", {"M": 1, "L": 2, "T": -2, "E": -2}, 1.0, 0.0),
    "degreecelsius": ("Cel", "degreeCelsius", _H, 1.0, 273.15),
    "lumen": ("lm", "lumen", _I, 1.0, 0.0),
    "lux": ("lx", "lux", {"I": 1, "L": -2}, 1.0, 0.0),
    "becquerel": ("Bq", "becquerel", {"T": -1}, 1.0, 0.0),
    "gray": ("Gy", "gray", {"L": 2, "T": -2}, 1.0, 0.0),
    "sievert": ("Sv", "sievert", {"L": 2, "T": -2}, 1.0, 0.0),
    "katal": ("kat", "katal", {"A": 1, "T": -1}, 1.0, 0.0),
    "percent": ("%", None, {}, 1e-2, 0.0),
    "ppm": ("[ppm]", None, {}, 1e-6, 0.0),
    "minute": ("min", "minute", _T, 60.0, 0.0),
    "hour": ("h", "hour", _T, 3600.0, 0.0),
    "day": ("d", "day", _T, 86400.0, 0.0),
    "degree": ("deg", "degree", {}, math.pi / 180, 0.0),
    "arcminute": ("'", "arcminute", {}, math.pi / 10800, 0.0),
    "arcsecond": ("''", "arcsecond", {}, math.pi / 648000, 0.0),
    "hectare": ("har", "hectare", {"L": 2}, 1e4, 0.0),
    "litre": ("L", "litre", {"L": 3}, 1e-3, 0.0),
    "tonne": ("t", "tonne", _M, 1e3, 0.0),
    "electronvolt": ("eV", "electronvolt", {"M": 1, "L": 2, "T": -2}, 1.602176634e-19, 0.0),
    "dalton": ("u", "dalton", _M, 1.66053906660e-27, 0.0),
    "astronomicalunit": ("AU", "astronomicalunit", _L, 149597870700.0, 0.0),
    "angstrom": ("Ao", None, _L, 1e-10, 0.0),
    "nauticalmile": ("[nmi_i]", None, _L, 1852.0, 0.0),
    "barn": ("b", None, {"L": 2}, 1e-28, 0.0),
    "knot": ("[kn_i]", None, {"L": 1, "T": -1}, 1852.0 / 3600.0, 0.0),
    "bar": ("bar", None, {"M": 1, "L": -1, "T": -2}, 1e5, 0.0),
    "mmhg": ("mm[Hg]", None, {"M": 1, "L": -1, "T": -2}, 133.322387415, 0.0),
    "atomicmassunit": ("u", None, _M, 1.66053906660e-27, 0.0),
}
_PREFIXES: dict[str, tuple[str, float]] = {
    "quecto": ("q", 1e-30), "ronto": ("r", 1e-27), "yocto": ("y", 1e-24), "zepto": ("z", 1e-21),
    "atto": ("a", 1e-18), "femto": ("f", 1e-15), "pico": ("p", 1e-12), "nano": ("n", 1e-9),
    "micro": ("u", 1e-6), "milli": ("m", 1e-3), "centi": ("c", 1e-2), "deci": ("d", 1e-1),
    "deca": ("da", 1e1), "hecto": ("h", 1e2), "kilo": ("k", 1e3), "mega": ("M", 1e6),
    "giga": ("G", 1e9), "tera": ("T", 1e12), "peta": ("P", 1e15), "exa": ("E", 1e18),
    "zetta": ("Z", 1e21), "yotta": ("Y", 1e24), "ronna": ("R", 1e27), "quetta": ("Q", 1e30),
}  # fmt: skip
# Curated choices where the D-SI spelling has one obvious QUDT unit but dimension matching alone would not
# (dimensionless ratios share one dimension vector with angles and counts; °C carries an offset).
CURATED_QUDT: dict[str, str] = {
    "\\one": "UNITLESS",
    "\\percent": "PERCENT",
    "\\ppm": "PPM",
    "\\bar": "BAR",
    "\\milli\\bar": "MilliBAR",
    "\\degreecelsius": "DEG_C",
    "\\kelvin": "K",
    "\\mmhg": "MilliM_HG",
}
# Dimensionless units that are plain ratios: a unit like \kilogram\per\kilogram cancels to one of these,
# never to a radian, steradian or count.
_RATIO_UNITS = frozenset(
    f"{QUDT_UNIT}{name}" for name in ("UNITLESS", "PERCENT", "PERCENT_RH", "PERMILLE", "PPM", "PPB")
)
_EXPONENT = re.compile(r"tothe\{([+-]?\d+(?:[._]\d+)?)\}")


@dataclass(frozen=True)
class UnitMapping:
    """What one D-SI unit string maps to; IRIs are None when not (unambiguously) known.

    `valid` is False for strings that are not D-SI as written; letter-case slips ('\\degreeCelsius') are still
    mapped as the unit they spell.
    """

    dsi: str
    qudt: str | None
    sirp: str | None
    valid: bool


@dataclass(frozen=True)
class _QudtUnit:
    iri: str
    multiplier: float
    offset: float
    ucum: frozenset[str]
    kinds: frozenset[str]
    si_exact: frozenset[str]


@dataclass(frozen=True)
class _Atom:
    prefix: str
    unit: str
    exponent: Fraction


def _number(term: ox.NamedNode | ox.Literal) -> float:
    return float(term.value)


@cache
def _qudt_index() -> dict[str, list[_QudtUnit]]:
    """QUDT units by dimension-vector local name (loaded once from the vendored subset)."""
    fields: dict[str, dict[str, list[ox.NamedNode | ox.Literal]]] = {}
    for triple in ox.parse(path=str(VENDOR_DIR / "qudt-units.ttl"), format=ox.RdfFormat.TURTLE):
        predicate = triple.predicate.value
        if predicate.startswith(_QUDT_SCHEMA):
            fields.setdefault(triple.subject.value, {}).setdefault(predicate[len(_QUDT_SCHEMA) :], []).append(
                triple.object
            )
    index: dict[str, list[_QudtUnit]] = {}
    for iri, values in fields.items():
        if "hasDimensionVector" not in values or "conversionMultiplier" not in values:
            continue
        unit = _QudtUnit(
            iri=iri,
            multiplier=_number(values["conversionMultiplier"][0]),
            offset=_number(values["conversionOffset"][0]) if "conversionOffset" in values else 0.0,
            ucum=frozenset(value.value for value in values.get("ucumCode", [])),
            kinds=frozenset(value.value for value in values.get("unitForQuantityKind", [])),
            si_exact=frozenset(value.value for value in values.get("siExactMatch", [])),
        )
        vector = values["hasDimensionVector"][0].value.rsplit("/", 1)[-1]
        index.setdefault(vector, []).append(unit)
    for units in index.values():
        units.sort(key=lambda unit: unit.iri)  # deterministic order, whatever the file order
    return index


@cache
def _quantity_kinds() -> dict[str, frozenset[str]]:
    """Every known QUDT quantity kind IRI with its broader kinds (transitively)."""
    broader: dict[str, set[str]] = {}
    for triple in ox.parse(path=str(VENDOR_DIR / "qudt-quantitykinds.ttl"), format=ox.RdfFormat.TURTLE):
        kind = triple.subject.value
        broader.setdefault(kind, set())
        if triple.predicate.value == _SKOS_BROADER:
            broader[kind].add(triple.object.value)

    def ancestors(kind: str, seen: frozenset[str] = frozenset()) -> set[str]:
        found: set[str] = set()
        for parent in broader.get(kind, ()):
            if parent not in seen:
                found |= {parent} | ancestors(parent, seen | {kind})
        return found

    return {kind: frozenset(ancestors(kind)) for kind in broader}


def quantity_kind_iri(text: str | None) -> str | None:
    """The QUDT quantity kind IRI for a local name, `quantitykind:X`, `qudt:X` or full IRI; None if unknown."""
    if not text:
        return None
    name = text.strip()
    for lead in (QUDT_QUANTITY_KIND, "https://qudt.org/vocab/quantitykind/", "quantitykind:", "qudt:", "qk:"):
        if name.startswith(lead):
            name = name[len(lead) :]
            break
    iri = QUDT_QUANTITY_KIND + name
    return iri if iri in _quantity_kinds() else None


def _parse(unit: str) -> list[_Atom] | None:
    """The atoms of a valid D-SI unit, `\\per` folded into negative exponents."""
    atoms: list[_Atom] = []
    prefix = ""
    sign = 1
    for part in unit[1:].split("\\"):
        if part == "per":
            sign = -1
        elif part in _PREFIXES:
            prefix = part
        elif part.startswith("tothe"):
            match = _EXPONENT.fullmatch(part)
            if match is None or not atoms:
                return None
            last = atoms[-1]
            exponent = Fraction(match.group(1).replace("_", "."))
            atoms[-1] = _Atom(last.prefix, last.unit, exponent * (1 if last.exponent > 0 else -1))
        elif part in _UNITS:
            atoms.append(_Atom(prefix, part, Fraction(sign)))
            prefix = ""
        else:
            return None  # valid D-SI but outside the table (natural units, bit/byte): no mapping
    return atoms


def _format_exponent(exponent: Fraction) -> str:
    if exponent.denominator == 1:
        return str(exponent.numerator)
    return f"{exponent.numerator}_{exponent.denominator}"


def _sirp_iri(atoms: list[_Atom]) -> str | None:
    parts = []
    for atom in atoms:
        name = _UNITS[atom.unit][1]
        if name is None:
            return None
        token = atom.prefix + name
        if atom.exponent != 1:
            token += _format_exponent(atom.exponent)
        parts.append(token)
    return SIRP_UNIT + ".".join(parts)


def _ucum(atoms: list[_Atom]) -> str | None:
    """The UCUM code spelled like the D-SI unit (None for fractional exponents, which UCUM cannot write)."""
    parts = []
    for atom in atoms:
        if atom.exponent.denominator != 1:
            return None
        symbol = (_PREFIXES[atom.prefix][0] if atom.prefix else "") + _UNITS[atom.unit][0]
        parts.append(symbol if atom.exponent == 1 else f"{symbol}{atom.exponent.numerator}")
    return ".".join(parts)


def _dimension_vector(atoms: list[_Atom]) -> tuple[str, float, float]:
    """QUDT dimension vector local name, conversion multiplier and offset of the whole unit."""
    exponents = dict.fromkeys(_DIMENSIONS, Fraction(0))
    multiplier = 1.0
    for atom in atoms:
        _, _, dimensions, factor, _ = _UNITS[atom.unit]
        scale = factor * (_PREFIXES[atom.prefix][1] if atom.prefix else 1.0)
        multiplier *= scale ** float(atom.exponent)
        for dimension, power in dimensions.items():
            exponents[dimension] += power * atom.exponent
    # An offset only survives for a lone unit to the first power (°C, not °C per second).
    offset = _UNITS[atoms[0].unit][4] if len(atoms) == 1 and atoms[0].exponent == 1 else 0.0
    dimensionless = all(value == 0 for value in exponents.values())

    def text(value: Fraction) -> str:
        return str(value.numerator) if value.denominator == 1 else str(float(value))

    vector = "".join(f"{dimension}{text(exponents[dimension])}" for dimension in _DIMENSIONS)
    return f"{vector}D{1 if dimensionless else 0}", multiplier, offset


def _unique(units: list[_QudtUnit]) -> str | None:
    return units[0].iri if len(units) == 1 else None


def _choose_qudt(dsi: str, atoms: list[_Atom], sirp: str | None, quantity_kind: str | None) -> str | None:
    vector, multiplier, offset = _dimension_vector(atoms)
    candidates = [
        unit
        for unit in _qudt_index().get(vector, [])
        if math.isclose(unit.multiplier, multiplier, rel_tol=1e-9) and math.isclose(unit.offset, offset, abs_tol=1e-9)
    ]
    if quantity_kind:
        wanted = {quantity_kind} | _quantity_kinds().get(quantity_kind, frozenset())
        declared = [unit for unit in candidates if unit.kinds & wanted]
        if declared:
            candidates = declared
    curated = CURATED_QUDT.get(dsi)
    spelled = [unit for unit in candidates if unit.iri == f"{QUDT_UNIT}{curated}"] if curated else []
    ucum = _ucum(atoms)
    spelled = spelled or [unit for unit in candidates if ucum in unit.ucum]
    if spelled:
        return spelled[0].iri
    if vector.endswith("D1") and not any(atom.unit in _ANGLE_UNITS for atom in atoms):
        candidates = [unit for unit in candidates if unit.iri in _RATIO_UNITS]
    if sirp:
        exact = [unit for unit in candidates if sirp in unit.si_exact]
        if exact:
            return exact[0].iri
    return _unique(candidates) or _unique([unit for unit in candidates if unit.si_exact])


@lru_cache(maxsize=4096)  # a few dozen distinct units cover most certificates
def map_dsi_unit(text: str, quantity_kind: str | None = None) -> UnitMapping:
    """Map a D-SI unit string (and optionally the QUDT quantity kind IRI of its quantity) to QUDT and SIRP."""
    unit = text.strip()
    fixed = canonical_dsi_unit(unit)  # '\degreeCelsius' is common in real files: map it as '\degreecelsius'
    candidate = fixed or unit
    if check_dsi_unit(candidate) is not None or candidate.startswith("|"):
        return UnitMapping(dsi=unit, qudt=None, sirp=None, valid=False)
    atoms = _parse(candidate)
    if not atoms:
        return UnitMapping(dsi=unit, qudt=None, sirp=None, valid=fixed is None)
    sirp = _sirp_iri(atoms)
    qudt = _choose_qudt(candidate, atoms, sirp, quantity_kind)
    return UnitMapping(dsi=unit, qudt=qudt, sirp=sirp, valid=fixed is None)


# Quantity kinds implied by common DCC refType tokens (DCC refType vocabulary, "basic_", "gp_", "length_" …).
REF_TYPE_QUANTITY_KINDS: dict[str, str] = {
    "basic_temperature": "Temperature",
    "basic_temperatureMin": "Temperature",
    "basic_temperatureMax": "Temperature",
    "basic_referenceTemperature": "Temperature",
    "basic_humidityRelative": "RelativeHumidity",
    "basic_humidityRelativeMin": "RelativeHumidity",
    "basic_humidityRelativeMax": "RelativeHumidity",
    "gp_relativeGasHumidityAboveWater": "RelativeHumidity",
    "gp_immersionDepth": "Length",
    "gp_current": "ElectricCurrent",
    "length_nominalLength": "Length",
    "length_centralLength": "Length",
    "length_deviationFromNominalLength": "Length",
    "length_measuringDeviceLength": "Length",
    "length_linearThermalExpansionCoefficient": "LinearExpansionCoefficient",
    "basic_valueSettlingTime": "Time",
    "gp_valueAdjustmentTime": "Time",
    "gp_valueFlowVelocity": "Velocity",
}


def quantity_kind_for_ref_types(ref_types: list[str]) -> str | None:
    """The QUDT quantity kind IRI the first recognised refType token implies, or None."""
    for token in ref_types:
        name = REF_TYPE_QUANTITY_KINDS.get(token)
        if name:
            return quantity_kind_iri(name)
    return None
