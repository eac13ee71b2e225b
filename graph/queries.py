"""Saved competency queries over the knowledge graph, with parameters bound safely.

Parameters never reach the query text as raw strings: each is validated by its kind (IRI, QUDT unit or quantity
kind, string, decimal, integer, date), turned into an RDF term and written in N-Triples syntax by pyoxigraph
(which escapes quotes, backslashes and newlines) into one `VALUES` row at the top of the query. A missing
optional parameter is `UNDEF`, so the query text itself never changes shape with the input.

The queries read the union of the hub's named graphs (certificates, standards, accreditations, conformity
certificates), in the terms of `ontologies/qihub.ttl`. Dates a query compares are `xsd:date` literals.

Unit conversion (queries 3 and 5) happens in SPARQL with QUDT's own factors: for the units sharing the target
unit's dimension vector, `qudt:conversionMultiplier` and `qudt:conversionOffset` are read from the vendored
QUDT unit list (`ontologies/vendor/qudt-units.ttl`) and bound as a `VALUES` table, so
`value_in_target = ((value + offset_u) * multiplier_u) / multiplier_t - offset_t`. Multipliers are bound as
`xsd:double`: Oxigraph's `xsd:decimal` (18 fractional digits) overflows on products with QUDT's 34-digit
multipliers. Values in units with no known factor are left out rather than guessed.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from pydantic import Field as PydanticField

from storage.errors import InvalidInputError, NotFoundError
from storage.schemas import ApiSchema

XSD = "http://www.w3.org/2001/XMLSchema#"
QUDT = "http://qudt.org/schema/qudt/"
QUDT_UNIT = "http://qudt.org/vocab/unit/"
QUDT_QUANTITY_KIND = "http://qudt.org/vocab/quantitykind/"
QUDT_UNITS_FILE = Path(__file__).resolve().parents[1] / "ontologies" / "vendor" / "qudt-units.ttl"
PREFIXES = """PREFIX qh: <https://qihub.example/ns#>
PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX dcterms: <http://purl.org/dc/terms/>
PREFIX schema: <https://schema.org/>
PREFIX sosa: <http://www.w3.org/ns/sosa/>
PREFIX qudt: <http://qudt.org/schema/qudt/>
PREFIX sis: <https://ptb.de/sis/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>
"""
_IRI = re.compile(r"^(https?|urn):[^\s<>\"{}|\\^`]+$")
_LOCAL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
MAX_TEXT = 300


class ParameterKind(StrEnum):
    """How a parameter's text is read and checked."""

    iri = "iri"
    unit = "unit"
    quantity_kind = "quantity-kind"
    string = "string"
    decimal = "decimal"
    integer = "integer"
    date = "date"


class QueryParameter(ApiSchema):
    """One parameter of a saved query."""

    name: str
    kind: ParameterKind
    required: bool = False
    default: str | None = None
    description: str


class SavedQueryInfo(ApiSchema):
    """A saved query as listed: what it answers and the parameters it takes."""

    name: str
    title: str
    description: str
    parameters: list[QueryParameter]
    variables: list[str] = PydanticField(description="The columns of each row of the answer.")


class QueryAnswer(ApiSchema):
    """The rows a saved query returned; IRIs and strings as text, numbers as numbers, dates as ISO text."""

    name: str
    parameters: dict[str, str | None] = PydanticField(description="The parameters as bound (defaults applied).")
    variables: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = PydanticField(description="True when the store's result cap cut the answer short.")


class InvalidQueryParameterError(InvalidInputError):
    """A parameter that is missing, unknown or not of its kind."""

    code = "invalid-query-parameter"
    title = "Invalid query parameter"


@dataclass(frozen=True)
class SavedQuery:
    """A competency query: its SPARQL (with `#PARAMETERS#` where the VALUES row goes) and its parameters."""

    name: str
    title: str
    description: str
    parameters: list[QueryParameter]
    variables: list[str]
    body: str
    # Text for `#CONVERSION#` computed from the bound parameters: a VALUES table of unit conversion factors.
    conversion: Callable[[dict[str, ox.Literal | ox.NamedNode | None]], str] = field(default=lambda _bound: "")

    def info(self) -> SavedQueryInfo:
        """The listing entry of this query."""
        return SavedQueryInfo(
            name=self.name,
            title=self.title,
            description=self.description,
            parameters=self.parameters,
            variables=self.variables,
        )


# --- parameter binding ------------------------------------------------------------------------------------


def _qudt(text: str, base: str, parameter: str) -> ox.NamedNode:
    if _LOCAL_NAME.match(text):
        return ox.NamedNode(base + text)
    return _iri(text, parameter)


def _iri(text: str, parameter: str) -> ox.NamedNode:
    if not _IRI.match(text) or len(text) > 2000:
        raise InvalidQueryParameterError(f"{parameter}: not an absolute http(s) or urn IRI.")
    try:
        return ox.NamedNode(text)
    except ValueError as error:
        raise InvalidQueryParameterError(f"{parameter}: not an IRI ({error}).") from error


def bind_value(parameter: QueryParameter, text: str) -> ox.Literal | ox.NamedNode:
    """Check one parameter's text against its kind and turn it into an RDF term."""
    text = text.strip()
    name = parameter.name
    if parameter.kind == ParameterKind.iri:
        return _iri(text, name)
    if parameter.kind == ParameterKind.unit:
        return _qudt(text, QUDT_UNIT, name)
    if parameter.kind == ParameterKind.quantity_kind:
        return _qudt(text, QUDT_QUANTITY_KIND, name)
    if parameter.kind == ParameterKind.string:
        if not text or len(text) > MAX_TEXT:
            raise InvalidQueryParameterError(f"{name}: give 1 to {MAX_TEXT} characters.")
        return ox.Literal(text)
    if parameter.kind == ParameterKind.date:
        try:
            return ox.Literal(date.fromisoformat(text).isoformat(), datatype=ox.NamedNode(f"{XSD}date"))
        except ValueError as error:
            raise InvalidQueryParameterError(f"{name}: not a date YYYY-MM-DD.") from error
    try:
        number = Decimal(text)
    except InvalidOperation as error:
        raise InvalidQueryParameterError(f"{name}: not a number.") from error
    if not number.is_finite() or abs(number) > Decimal("1e15"):
        raise InvalidQueryParameterError(f"{name}: out of range.")
    if parameter.kind == ParameterKind.integer:
        if number != number.to_integral_value() or not 1 <= number <= 100_000:
            raise InvalidQueryParameterError(f"{name}: a whole number from 1 to 100000.")
        return ox.Literal(str(int(number)), datatype=ox.NamedNode(f"{XSD}integer"))
    return ox.Literal(format(number, "f"), datatype=ox.NamedNode(f"{XSD}decimal"))


def bind_parameters(query: SavedQuery, given: Mapping[str, str]) -> dict[str, ox.Literal | ox.NamedNode | None]:
    """Every parameter of `query` bound from `given` (defaults applied); unknown or missing ones are errors."""
    known = {parameter.name for parameter in query.parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidQueryParameterError(
            f"Unknown parameter(s): {', '.join(unknown)}; this query takes {sorted(known)}."
        )
    bound: dict[str, ox.Literal | ox.NamedNode | None] = {}
    for parameter in query.parameters:
        text = given.get(parameter.name, parameter.default)
        if text is None or not text.strip():
            if parameter.required:
                raise InvalidQueryParameterError(f"{parameter.name}: required.")
            bound[parameter.name] = None
            continue
        bound[parameter.name] = bind_value(parameter, text)
    return bound


def render_query(query: SavedQuery, bound: Mapping[str, ox.Literal | ox.NamedNode | None]) -> str:
    """The SPARQL text with the bound parameters as one VALUES row (`UNDEF` for absent ones)."""
    names = [parameter.name for parameter in query.parameters]
    if names:
        terms = " ".join("UNDEF" if bound[name] is None else str(bound[name]) for name in names)
        values = f"VALUES ({' '.join('?' + name for name in names)}) {{ ({terms}) }}"
    else:
        values = ""
    body = query.body.replace("#PARAMETERS#", values).replace("#CONVERSION#", query.conversion(dict(bound)))
    return PREFIXES + body


def get_saved_query_or_raise(name: str, *, catalogue: Mapping[str, SavedQuery] | None = None) -> SavedQuery:
    """The saved query of this name in `catalogue` (default: the graph's own queries), or NotFoundError."""
    query = (SAVED_QUERIES if catalogue is None else catalogue).get(name)
    if query is None:
        raise NotFoundError(f"No saved query {name!r}; see /api/v1/queries.")
    return query


# --- unit conversion factors from QUDT ----------------------------------------------------------------------


@dataclass(frozen=True)
class UnitFactor:
    """How a QUDT unit converts to its coherent SI unit: si = (value + offset) * multiplier."""

    iri: str
    multiplier: float
    offset: float
    dimension: str


@cache
def qudt_unit_factors() -> dict[str, UnitFactor]:
    """Every vendored QUDT unit with a conversion multiplier, by IRI."""
    store = ox.Store()
    store.bulk_load(path=str(QUDT_UNITS_FILE), format=ox.RdfFormat.TURTLE)
    rows = store.query(
        "PREFIX qudt: <http://qudt.org/schema/qudt/> SELECT ?unit ?multiplier ?offset ?dimension WHERE { "
        "?unit qudt:conversionMultiplier ?multiplier ; qudt:hasDimensionVector ?dimension . "
        "OPTIONAL { ?unit qudt:conversionOffset ?offset } }"
    )
    assert isinstance(rows, ox.QuerySolutions)
    factors: dict[str, UnitFactor] = {}
    for row in rows:
        iri = row["unit"].value
        offset = row["offset"]
        factors[iri] = UnitFactor(
            iri=iri,
            multiplier=float(row["multiplier"].value),
            offset=float(offset.value) if offset is not None else 0.0,
            dimension=row["dimension"].value,
        )
    return factors


def _double(value: float) -> str:
    return str(ox.Literal(repr(float(value)), datatype=ox.NamedNode(f"{XSD}double")))


def conversion_table(target_unit: str, *, unit_variable: str) -> str:
    """VALUES of the units convertible to `target_unit` with their factors into it, and the target's offset.

    Binds `?toTargetScale` (multiplier_u / multiplier_t), `?fromOffset` (offset_u) and `?targetOffset`
    (offset_t), so a value v in unit u is `(v + ?fromOffset) * ?toTargetScale - ?targetOffset` in the target.
    """
    factors = qudt_unit_factors()
    target = factors.get(target_unit)
    if target is None:
        raise InvalidQueryParameterError(f"unit: {target_unit} has no QUDT conversion factor.")
    rows = [
        f"(<{unit.iri}> {_double(unit.multiplier / target.multiplier)} {_double(unit.offset)})"
        for unit in factors.values()
        if unit.dimension == target.dimension
    ]
    return (
        f"VALUES (?{unit_variable} ?toTargetScale ?fromOffset) {{ {' '.join(rows)} }}\n"
        f"    BIND({_double(target.offset)} AS ?targetOffset)"
    )


def _conversion_into(parameter: str, *, unit_variable: str, needed_by: tuple[str, ...] = ()) -> Any:
    def conversion(bound: dict[str, Any]) -> str:
        unit = bound.get(parameter)
        if unit is None:
            if any(bound.get(name) is not None for name in needed_by):
                raise InvalidQueryParameterError(f"{parameter}: required with {' and '.join(needed_by)}.")
            return ""
        return conversion_table(unit.value, unit_variable=unit_variable)

    return conversion


# --- the saved queries --------------------------------------------------------------------------------------

EXPIRED_CALIBRATION = SavedQuery(
    name="expired-calibration-at-use",
    title="Instruments whose calibration had expired when a test report used them",
    description=(
        "For every test (qh:Test) that generated a test report and used an instrument (qh:usedEquipment), the "
        "instrument's latest calibration certificate before the test day (by the calibration's "
        "qh:performanceEnd; revoked certificates do not count). It is expired on the test day when its "
        "valid-until date (schema:expires, else the date of its DCC recalibration statement, refType "
        "basic_recalibration) is before that day or, without either, when the calibration is older than "
        "`intervalDays`. Instruments with no calibration at all before the test are not listed here."
    ),
    parameters=[
        QueryParameter(name="instrument", kind=ParameterKind.iri, description="Only this instrument."),
        QueryParameter(
            name="intervalDays",
            kind=ParameterKind.integer,
            default="365",
            description="Calibration interval assumed when a certificate gives no expiry date.",
        ),
    ],
    variables=["report", "reportIdentifier", "instrument", "usedOn", "certificate", "calibratedOn", "validUntil"],
    body="""
SELECT DISTINCT ?report ?reportIdentifier ?instrument ?usedOn ?certificate ?calibratedOn ?validUntil WHERE {
  #PARAMETERS#
  ?report a qh:TestReport ; prov:wasGeneratedBy ?test .
  OPTIONAL { ?report dcterms:identifier ?reportIdentifier }
  ?test qh:usedEquipment ?instrument ; qh:performanceBegin ?usedOn .
  ?certificate a qh:CalibrationCertificate ; qh:calibratedItem ?instrument ; prov:wasGeneratedBy ?calibration .
  ?calibration qh:performanceEnd ?calibratedOn .
  FILTER (?calibratedOn <= ?usedOn)
  FILTER NOT EXISTS { ?certificate qh:status qh:Revoked }
  FILTER NOT EXISTS {
    ?later a qh:CalibrationCertificate ; qh:calibratedItem ?instrument ;
           prov:wasGeneratedBy/qh:performanceEnd ?laterOn .
    FILTER NOT EXISTS { ?later qh:status qh:Revoked }
    FILTER (?laterOn > ?calibratedOn && ?laterOn <= ?usedOn)
  }
  OPTIONAL { ?certificate schema:expires ?expires }
  OPTIONAL {
    ?certificate qh:hasStatement ?recalibration .
    ?recalibration qh:refType "basic_recalibration" ; dcterms:date ?recalibrateBy .
  }
  BIND (COALESCE(?expires, ?recalibrateBy) AS ?validUntil)
  FILTER (IF(BOUND(?validUntil), ?validUntil < ?usedOn,
             ?usedOn - ?calibratedOn > xsd:dayTimeDuration(CONCAT("P", STR(?intervalDays), "D"))))
}
ORDER BY ?usedOn ?report ?instrument
""",
)

REPLACED_STANDARD_CITED = SavedQuery(
    name="replaced-standard-cited",
    title="Certificates and methods citing a standard edition that has been replaced",
    description=(
        "Product conformity certificates (qh:certifiedAgainst), calibration or test methods "
        "(qh:usedMethod → dcterms:conformsTo) and accreditation scope entries (qh:scopeStandard) that cite a "
        "standard with a registered successor (qh:replacedBy). With `asOf`, only successors implemented by then "
        "(or without an implementation date) count."
    ),
    parameters=[
        QueryParameter(name="code", kind=ParameterKind.string, description="Only this cited standard code."),
        QueryParameter(name="asOf", kind=ParameterKind.date, description="Count successors in force on this day."),
    ],
    variables=[
        "citing",
        "citingKind",
        "document",
        "standard",
        "code",
        "replacement",
        "replacementCode",
        "replacementImplementedOn",
    ],
    body="""
SELECT DISTINCT ?citing ?citingKind ?document ?standard ?code ?replacement ?replacementCode ?replacementImplementedOn
WHERE {
  #PARAMETERS#
  {
    ?citing qh:certifiedAgainst ?standard . BIND(?citing AS ?document) BIND("conformity-certificate" AS ?citingKind)
  } UNION {
    ?document prov:wasGeneratedBy ?activity . ?activity qh:usedMethod ?citing .
    ?citing dcterms:conformsTo ?standard . BIND("method" AS ?citingKind)
  } UNION {
    ?document qh:hasScope ?citing . ?citing qh:scopeStandard ?standard . BIND("accreditation-scope" AS ?citingKind)
  }
  ?standard qh:code ?code ; qh:replacedBy ?replacement .
  OPTIONAL { ?replacement qh:code ?replacementCode }
  OPTIONAL { ?replacement qh:implementedOn ?replacementImplementedOn }
  FILTER (!BOUND(?asOf) || !BOUND(?replacementImplementedOn) || ?replacementImplementedOn <= ?asOf)
}
ORDER BY ?code ?citingKind ?citing
""",
)

ACCREDITED_LABS = SavedQuery(
    name="labs-accredited-for",
    title="Labs accredited for a quantity kind over a range",
    description=(
        "Active accreditations with a scope entry of the quantity kind whose range covers [min, max] given in "
        "`unit` (ranges in other units of the same dimension are converted with QUDT factors). Without min and "
        "max, any range of that quantity kind matches. With `on`, the accreditation must be valid that day."
    ),
    parameters=[
        QueryParameter(
            name="quantityKind",
            kind=ParameterKind.quantity_kind,
            required=True,
            description="QUDT quantity kind IRI or local name, e.g. 'Temperature'.",
        ),
        QueryParameter(name="min", kind=ParameterKind.decimal, description="Lower end of the range needed."),
        QueryParameter(name="max", kind=ParameterKind.decimal, description="Upper end of the range needed."),
        QueryParameter(
            name="unit",
            kind=ParameterKind.unit,
            description="Unit of min and max: QUDT unit IRI or local name, e.g. 'DEG_C' (required with min/max).",
        ),
        QueryParameter(name="on", kind=ParameterKind.date, description="Accreditation valid on this day."),
    ],
    variables=["lab", "labName", "accreditation", "number", "scope", "rangeMin", "rangeMax", "rangeUnit", "validTo"],
    body="""
SELECT DISTINCT ?lab ?labName ?accreditation ?number ?scope ?rangeMin ?rangeMax ?rangeUnit ?validTo WHERE {
  #PARAMETERS#
  ?lab qh:hasAccreditation ?accreditation .
  OPTIONAL { ?lab schema:name ?labName }
  ?accreditation qh:status qh:Active ; qh:accreditationNumber ?number ; qh:hasScope ?scope .
  OPTIONAL { ?accreditation schema:validFrom ?validFrom }
  OPTIONAL { ?accreditation schema:expires ?validTo }
  FILTER (!BOUND(?on) || ((!BOUND(?validFrom) || ?validFrom <= ?on) && (!BOUND(?validTo) || ?validTo >= ?on)))
  ?scope qh:scopeQuantityKind ?quantityKind .
  OPTIONAL { ?scope qh:rangeMin ?rangeMin }
  OPTIONAL { ?scope qh:rangeMax ?rangeMax }
  OPTIONAL { ?scope qh:rangeUnit ?rangeUnit }
  OPTIONAL {
    ?scope qh:rangeUnit ?convertibleUnit .
    #CONVERSION#
  }
  FILTER (
    (!BOUND(?min) && !BOUND(?max)) ||
    (BOUND(?toTargetScale) && BOUND(?rangeMin) && BOUND(?rangeMax) &&
     (!BOUND(?min) || (?rangeMin + ?fromOffset) * ?toTargetScale - ?targetOffset <= ?min) &&
     (!BOUND(?max) || (?rangeMax + ?fromOffset) * ?toTargetScale - ?targetOffset >= ?max))
  )
}
ORDER BY ?labName ?number ?scope
""",
    conversion=_conversion_into("unit", unit_variable="convertibleUnit", needed_by=("min", "max")),
)

TRACEABILITY_CHAIN = SavedQuery(
    name="traceability-chain",
    title="The traceability chain of a certificate up to a national standard",
    description=(
        "Every certificate the given one derives from through its reference standards "
        "(prov:wasDerivedFrom, followed as a property path), with its distance from the given certificate "
        "(0 for itself), issuer and calibrated item. `isRoot` marks the end of the chain: a certificate that "
        "derives from no other (normally the national standard's, issued by the national metrology institute)."
    ),
    parameters=[
        QueryParameter(
            name="certificate",
            kind=ParameterKind.iri,
            required=True,
            description="The certificate's IRI, e.g. https://qihub.example/id/certificate/<id>.",
        )
    ],
    variables=["step", "depth", "identifier", "issuer", "issuerName", "item", "calibratedOn", "isRoot"],
    body="""
SELECT ?step ?depth ?identifier ?issuer ?issuerName ?item ?calibratedOn ?isRoot WHERE {
  {
    SELECT ?step (COUNT(DISTINCT ?via) AS ?depth) WHERE {
      #PARAMETERS#
      ?certificate prov:wasDerivedFrom* ?step .
      OPTIONAL { ?certificate prov:wasDerivedFrom* ?via . ?via prov:wasDerivedFrom+ ?step . }
    }
    GROUP BY ?step
  }
  OPTIONAL { ?step dcterms:identifier ?identifier }
  OPTIONAL { ?step qh:issuedBy ?issuer . OPTIONAL { ?issuer schema:name ?issuerName } }
  OPTIONAL { ?step qh:calibratedItem ?item }
  OPTIONAL { ?step prov:wasGeneratedBy/qh:performanceEnd ?calibratedOn }
  BIND (NOT EXISTS { ?step prov:wasDerivedFrom ?further } AS ?isRoot)
}
ORDER BY ?depth ?step
""",
)

MODEL_RESULTS_IN_UNIT = SavedQuery(
    name="model-results-in-unit",
    title="All certificates of an instrument model with their results in one unit",
    description=(
        "Calibration certificates of every instrument of this model (schema:model, exact; optionally of one "
        "manufacturer by name, case-insensitive) with each reported result value (results section), converted "
        "into `unit` with QUDT conversion multipliers and offsets; expanded uncertainties are scaled by the "
        "multiplier only. Results in units of another dimension are left out."
    ),
    parameters=[
        QueryParameter(name="model", kind=ParameterKind.string, required=True, description="Instrument model."),
        QueryParameter(name="manufacturer", kind=ParameterKind.string, description="Manufacturer name."),
        QueryParameter(
            name="unit",
            kind=ParameterKind.unit,
            required=True,
            description="Unit of the answer: QUDT unit IRI or local name, e.g. 'DEG_C'.",
        ),
        QueryParameter(name="quantityKind", kind=ParameterKind.quantity_kind, description="Only this quantity kind."),
    ],
    variables=[
        "certificate",
        "identifier",
        "status",
        "instrument",
        "serial",
        "quantityLabel",
        "value",
        "resultUnit",
        "valueInUnit",
        "uncertaintyInUnit",
    ],
    body="""
SELECT ?certificate ?identifier ?status ?instrument ?serial ?quantityLabel ?value ?resultUnit ?valueInUnit
       ?uncertaintyInUnit
WHERE {
  #PARAMETERS#
  ?instrument schema:model ?model .
  OPTIONAL { ?instrument schema:serialNumber ?serial }
  OPTIONAL { ?instrument schema:manufacturer/schema:name ?manufacturerName }
  FILTER (!BOUND(?manufacturer) || LCASE(STR(?manufacturerName)) = LCASE(STR(?manufacturer)))
  ?certificate a qh:CalibrationCertificate ; qh:calibratedItem ?instrument ; qh:hasMeasurementResult ?result .
  OPTIONAL { ?certificate dcterms:identifier ?identifier }
  OPTIONAL { ?certificate qh:status ?statusConcept BIND (LCASE(STRAFTER(STR(?statusConcept), "#")) AS ?status) }
  ?result sosa:hasMember ?quantity .
  ?quantity qh:section qh:ResultsSection ; sosa:hasMember ?observation .
  OPTIONAL { ?quantity rdfs:label ?quantityLabel }
  ?observation sosa:hasResult ?valueNode .
  ?valueNode qudt:numericValue ?value ; qudt:hasUnit ?resultUnit .
  OPTIONAL { ?valueNode qudt:hasQuantityKind ?kind }
  FILTER (!BOUND(?quantityKind) || (BOUND(?kind) && ?kind = ?quantityKind))
  #CONVERSION#
  BIND ((?value + ?fromOffset) * ?toTargetScale - ?targetOffset AS ?valueInUnit)
  OPTIONAL { ?valueNode sis:hasExpandedMU/sis:hasValueExpandedMU ?uncertainty }
  BIND (?uncertainty * ?toTargetScale AS ?uncertaintyInUnit)
}
ORDER BY ?certificate ?quantityLabel ?valueInUnit
""",
    conversion=_conversion_into("unit", unit_variable="resultUnit"),
)

SAVED_QUERIES: dict[str, SavedQuery] = {
    query.name: query
    for query in (
        EXPIRED_CALIBRATION,
        REPLACED_STANDARD_CITED,
        ACCREDITED_LABS,
        TRACEABILITY_CHAIN,
        MODEL_RESULTS_IN_UNIT,
    )
}


def saved_query_infos(*, catalogue: Mapping[str, SavedQuery] | None = None) -> list[SavedQueryInfo]:
    """The listing of every saved query in `catalogue` (default: the graph's own queries)."""
    return [query.info() for query in (SAVED_QUERIES if catalogue is None else catalogue).values()]


_INTEGER_TYPES = {"integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger"}


def _typed_value(value: str, datatype: str | None) -> Any:
    local = (datatype or "").removeprefix(XSD)
    if local == "boolean":
        return value == "true"
    if local in _INTEGER_TYPES:
        return int(value)
    if local in {"decimal", "double", "float"}:
        number = float(value)
        return number if number == number and abs(number) != float("inf") else value  # NaN/INF stay text
    return value


def term_to_json(term: Any) -> Any:
    """A pyoxigraph result term as plain JSON: numbers as numbers, booleans as booleans, else its text."""
    if term is None:
        return None
    if isinstance(term, ox.Literal):
        return _typed_value(term.value, term.datatype.value)
    return term.value


def sparql_json_term(term: Mapping[str, str] | None) -> Any:
    """A term of SPARQL 1.1 JSON results as plain JSON, like `term_to_json`."""
    if term is None:
        return None
    if term.get("type") in {"literal", "typed-literal"}:
        return _typed_value(term["value"], term.get("datatype"))
    return term["value"]
