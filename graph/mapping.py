"""A registered DCC (any release, 2.1.0–3.3.0) as RDF triples in the hub's ontology (ontologies/qihub.ttl).

One certificate maps to the triples of its own named graph (`graph.iris.certificate_graph_iri`): the
certificate with its registry status, the issuing lab, the item as an instrument, the calibration as a PROV
activity with its methods and reference standards, and every D-SI value as a SOSA observation whose result is
a QUDT quantity value with QUDT and SI Reference Point units and PTB SIS uncertainty. The XML is walked by local
name (one walker for every release, including 2.1.0's intranet namespace); values are taken verbatim, so the
lexical value survives next to the numeric literal. All IRIs are deterministic: mapping the same certificate
twice gives the same triples, so re-mapping replaces instead of duplicating.

The mapping writes N-Triples text (`map_certificate_ntriples`), which the store loads as it is: building a
pyoxigraph term per node and a `Triple` per statement, only to serialise them again, cost more than the
mapping itself. Every term is rendered once (vocabulary at import, units and repeated literals cached), and the
XML is read once into a light tree (`_Node`) whose lookups are dictionary hits instead of child scans.
`map_certificate` gives the same triples as pyoxigraph objects (tests, SHACL validation).
"""

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import pyoxigraph as ox
from lxml import etree

from certificates.models import Certificate, CertificateKind
from graph import iris
from graph.models import normalize_standard_code
from graph.units import map_dsi_unit, quantity_kind_for_ref_types, quantity_kind_iri

MAPPING_VERSION = "1.0.0"

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
DCTERMS = "http://purl.org/dc/terms/"
PROV = "http://www.w3.org/ns/prov#"
ORG = "http://www.w3.org/ns/org#"
SCHEMA = "https://schema.org/"
SOSA = "http://www.w3.org/ns/sosa/"
SSN_EXT = "http://www.w3.org/ns/ssn/ext/"
QUDT = "http://qudt.org/schema/qudt/"
SIS = "https://ptb.de/sis/"
QH = iris.QH
LANGUAGE_BASE = "http://id.loc.gov/vocabulary/iso639-1/"

# --- N-Triples terms -----------------------------------------------------------------------------------------
# Terms are kept as N-Triples text ("<iri>", "\"literal\"^^<datatype>"); a triple is "s p o .\n".


def _ref(iri: str) -> str:
    """An IRI as an N-Triples term, checked the way pyoxigraph checks it (ValueError when it is not an IRI)."""
    return f"<{ox.NamedNode(iri).value}>"


@lru_cache(maxsize=4096)
def _cached_ref(iri: str) -> str:
    """`_ref` for IRIs that repeat across certificates (units, quantity kinds, standards, languages)."""
    return _ref(iri)


# oxrdf's escapes, so the text is the one pyoxigraph would write for the same literal.
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES.update({code: f"\\u{code:04X}" for code in (*range(0x20), 0x7F) if code not in _ESCAPES})
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _quoted(text: str) -> str:
    return f'"{text.translate(_ESCAPES)}"' if _NEEDS_ESCAPE.search(text) else f'"{text}"'


def _literal(text: str) -> str:
    """A plain (xsd:string) literal."""
    return _quoted(text)


# Literals repeat across values and certificates (units, coverage factors, labels): rendered once.
@lru_cache(maxsize=65_536)
def _string_literal(text: str) -> str:
    return _quoted(text)


def _typed(text: str, datatype: str) -> str:
    """A literal of a datatype given as an N-Triples IRI term."""
    return f"{_quoted(text)}^^{datatype}"


# --- vocabulary (as N-Triples terms) ---------------------------------------------------------------------

A = _ref(f"{RDF}type")
LABEL = _ref(f"{RDFS}label")
XSD_STRING = _ref(f"{XSD}string")
XSD_DECIMAL = _ref(f"{XSD}decimal")
XSD_DOUBLE = _ref(f"{XSD}double")
XSD_DATE = _ref(f"{XSD}date")
XSD_DATETIME = _ref(f"{XSD}dateTime")
XSD_BOOLEAN = _ref(f"{XSD}boolean")
XSD_POSITIVE = _ref(f"{XSD}positiveInteger")


def _qh(name: str) -> str:
    return _ref(f"{QH}{name}")


def _sis(name: str) -> str:
    return _ref(f"{SIS}{name}")


CALIBRATION_CERTIFICATE = _qh("CalibrationCertificate")
TEST_REPORT = _qh("TestReport")
LABORATORY = _qh("Laboratory")
ORGANIZATION = _ref(f"{ORG}Organization")
INSTRUMENT = _qh("Instrument")
MEASUREMENT_STANDARD = _qh("MeasurementStandard")
MANUFACTURER = _qh("Manufacturer")
SCHEMA_ORGANIZATION = _ref(f"{SCHEMA}Organization")
FEATURE_OF_INTEREST = _ref(f"{SOSA}FeatureOfInterest")
PRODUCT = _ref(f"{SCHEMA}Product")
CALIBRATION = _qh("Calibration")
TEST = _qh("Test")
ACTIVITY = _ref(f"{PROV}Activity")
METHOD = _qh("Method")
PROCEDURE = _ref(f"{SOSA}Procedure")
STANDARD = _qh("Standard")
CLAUSE = _qh("Clause")
STATEMENT = _qh("Statement")
MEASUREMENT_RESULT = _qh("MeasurementResult")
OBSERVATION_COLLECTION = _ref(f"{SOSA}ObservationCollection")
SSN_EXT_COLLECTION = _ref(f"{SSN_EXT}ObservationCollection")
QUANTITY = _qh("Quantity")
OBSERVATION = _ref(f"{SOSA}Observation")
QUANTITY_VALUE = _ref(f"{QUDT}QuantityValue")
SIS_QUANTITY_VALUE = _sis("QuantityValue")
EXPANDED_MU = _sis("ExpandedMU")
STANDARD_MU = _sis("StandardMU")
COVERAGE_INTERVAL_MU = _sis("CoverageIntervalMU")

STATUS_IRIS = {
    "draft": f"{QH}Draft",
    "issued": f"{QH}Issued",
    "revoked": f"{QH}Revoked",
    "superseded": f"{QH}Superseded",
}
STATUS = {name: _ref(iri) for name, iri in STATUS_IRIS.items()}
RESULTS_SECTION = _qh("ResultsSection")
METADATA_SECTION = _qh("MetaDataSection")
INFLUENCE_SECTION = _qh("InfluenceConditionsSection")
STATEMENTS_SECTION = _qh("StatementsSection")
ITEM_SECTION = _qh("ItemQuantitiesSection")

P_IDENTIFIER = _ref(f"{DCTERMS}identifier")
P_ISSUED = _ref(f"{DCTERMS}issued")
P_MODIFIED = _ref(f"{DCTERMS}modified")
P_LANGUAGE = _ref(f"{DCTERMS}language")
P_CONFORMS_TO = _ref(f"{DCTERMS}conformsTo")
P_REFERENCES = _ref(f"{DCTERMS}references")
P_HAS_PART = _ref(f"{DCTERMS}hasPart")
P_DATE = _ref(f"{DCTERMS}date")
P_GENERATED_BY = _ref(f"{PROV}wasGeneratedBy")
P_ASSOCIATED_WITH = _ref(f"{PROV}wasAssociatedWith")
P_STARTED = _ref(f"{PROV}startedAtTime")
P_ENDED = _ref(f"{PROV}endedAtTime")
P_DERIVED_FROM = _ref(f"{PROV}wasDerivedFrom")
P_NAME = _ref(f"{SCHEMA}name")
P_MANUFACTURER = _ref(f"{SCHEMA}manufacturer")
P_MODEL = _ref(f"{SCHEMA}model")
P_SERIAL = _ref(f"{SCHEMA}serialNumber")
P_HAS_FOI = _ref(f"{SOSA}hasFeatureOfInterest")
P_HAS_MEMBER = _ref(f"{SOSA}hasMember")
P_HAS_RESULT = _ref(f"{SOSA}hasResult")
P_RESULT_TIME = _ref(f"{SOSA}resultTime")
P_USED_PROCEDURE = _ref(f"{SOSA}usedProcedure")
P_NUMERIC_VALUE = _ref(f"{QUDT}numericValue")
P_HAS_UNIT = _ref(f"{QUDT}hasUnit")
P_HAS_QUANTITY_KIND = _ref(f"{QUDT}hasQuantityKind")
P_STANDARD_UNCERTAINTY = _ref(f"{QUDT}standardUncertainty")
P_SI_UNIT = _sis("hasSIMeasurementUnit")
P_UNIT_IDENTIFIER = _sis("hasUnitIdentifier")
P_HAS_EXPANDED_MU = _sis("hasExpandedMU")
P_HAS_COVERAGE_INTERVAL_MU = _sis("hasCoverageIntervalMU")
P_HAS_UNIVARIATE_MU = _sis("hasMeasurementUncertaintyUnivariate")
P_VALUE_EXPANDED_MU = _sis("hasValueExpandedMU")
P_VALUE_STANDARD_MU = _sis("hasValueStandardMU")
P_COVERAGE_FACTOR = _sis("hasCoverageFactor")
P_COVERAGE_PROBABILITY = _sis("hasCoverageProbability")
P_DISTRIBUTION = _sis("hasDistribution")
P_INTERVAL_MIN = _sis("hasIntervalMin")
P_INTERVAL_MAX = _sis("hasIntervalMax")
P_REGISTRY_ID = _qh("registryId")
P_STATUS = _qh("status")
P_STATUS_REASON = _qh("statusReason")
P_SHA256 = _qh("sha256")
P_SCHEMA_VERSION = _qh("schemaVersion")
P_PUBLIC = _qh("public")
P_ISSUED_BY = _qh("issuedBy")
P_CALIBRATED_ITEM = _qh("calibratedItem")
P_SUPERSEDES = _qh("supersedes")
P_SUPERSEDED_BY = _qh("supersededBy")
P_HAS_MEASUREMENT_RESULT = _qh("hasMeasurementResult")
P_HAS_STATEMENT = _qh("hasStatement")
P_CONFORMITY = _qh("conformity")
P_LABORATORY_CODE = _qh("laboratoryCode")
P_ACCREDITATION_NUMBER = _qh("accreditationNumber")
P_HAS_ACCREDITATION = _qh("hasAccreditation")
P_IDENTIFICATION = _qh("identification")
P_USED_METHOD = _qh("usedMethod")
P_USED_EQUIPMENT = _qh("usedEquipment")
P_PERFORMANCE_BEGIN = _qh("performanceBegin")
P_PERFORMANCE_END = _qh("performanceEnd")
P_PERFORMANCE_LOCATION = _qh("performanceLocation")
P_REF_TYPE = _qh("refType")
P_NORM_REFERENCE = _qh("normReference")
P_CODE = _qh("code")
P_EDITION = _qh("edition")
P_EDITION_OF = _qh("editionOf")
P_CLAUSE_OF = _qh("clauseOf")
P_CLAUSE_NUMBER = _qh("clauseNumber")
P_SECTION = _qh("section")
P_LIST_INDEX = _qh("listIndex")
P_VALUE_LABEL = _qh("valueLabel")
P_EQUIVALENT_RESULT = _qh("equivalentResult")
P_LEXICAL_VALUE = _qh("lexicalValue")

# --- lexical checks ------------------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DOUBLE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?INF|NaN")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"-?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")
# Standard codes people write in dcc:norm: family prefix, a number (with parts), an optional edition.
_STANDARD_CODE = re.compile(
    r"(?<![\w/])(?P<family>DIN EN ISO/IEC|DIN EN ISO|DIN EN IEC|DIN EN|DIN ISO|DIN IEC|DIN VDE|DIN|BS EN ISO|BS EN|"
    r"EN ISO/IEC|EN ISO|EN IEC|EN|ISO/IEC Guide|ISO/IEC|ISO/TR|ISO/TS|ISO|IEC/TR|IEC|GB/T|GB/Z|GB|JJF|JJG|"
    r"DKD-R|DKD-L|DKD-E|OIML [RDG]|ASTM [A-Z]|VDI/VDE|VDI|EURAMET cg-|EURAMET Calibration Guide No\.|JCGM|ILAC-G|"
    r"ILAC-P|API|IEEE|ANSI|JIS [A-Z]|NF EN)\s?(?P<number>\d+(?:[.\-]\d+)*)"
    r"(?:\s?[:\-]\s?(?P<edition>(?:19|20)\d{2}(?:-\d{2})?))?(?!\w)"
)
_CODE_ALIASES = {"GUM": "JCGM 100:2008", "VIM": "JCGM 200:2012"}
_SERIAL_WORDS = ("serial", "serien", "série", "serie", "s/n", "sn", "序列号", "出厂编号")
_BODY = re.compile(r"([A-Z][A-Za-z]{1,9})(?=[\s\-]\S)")


# --- the XML, read once by local name (so every DCC release reads the same) -------------------------------


_LOCAL_NAMES: dict[str, str] = {}


def _local_name(tag: str) -> str:
    """The local name of a Clark tag ('{ns}name' → 'name'); tags repeat, so cached."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag[tag.find("}") + 1 :]
        if len(_LOCAL_NAMES) < 10_000:  # hostile documents cannot grow the cache without bound
            _LOCAL_NAMES[tag] = name
    return name


class _Node:
    """An element as the mapper reads it: local name, child elements in order and by name, its lxml element.

    The mapper asks each element for a few children by name, many times over; scanning the lxml children (a
    proxy object per child) for every question cost more than the rest of the mapping. A node indexes its
    children once, when first asked: subtrees the mapping never enters are never indexed.
    """

    __slots__ = ("_first", "_kids", "element", "name")

    def __init__(self, element: etree._Element, name: str) -> None:
        self.element = element
        self.name = name
        self._kids: list[_Node] | None = None
        self._first: dict[str, _Node] = {}

    def _index(self) -> list["_Node"]:
        kids: list[_Node] = []
        first = self._first
        for child in self.element:
            tag = child.tag
            if isinstance(tag, str):  # not a comment or processing instruction
                kid = _Node(child, _local_name(tag))
                kids.append(kid)
                if kid.name not in first:
                    first[kid.name] = kid
        self._kids = kids
        return kids

    @property
    def kids(self) -> list["_Node"]:
        """The child elements, in document order."""
        kids = self._kids
        return self._index() if kids is None else kids

    @property
    def first(self) -> dict[str, "_Node"]:
        """The first child element of each local name."""
        if self._kids is None:
            self._index()
        return self._first

    def get(self, attribute: str) -> str | None:
        """An attribute's value (unqualified name)."""
        return self.element.get(attribute)


def _tree(root: etree._Element) -> _Node:
    """The document's root node (children are indexed on demand)."""
    return _Node(root, _local_name(root.tag) if isinstance(root.tag, str) else "")


def _kids(node: _Node | None, name: str | None = None) -> list[_Node]:
    if node is None:
        return []
    if name is None:
        return node.kids
    return [kid for kid in node.kids if kid.name == name]


def _kid(node: _Node | None, name: str) -> _Node | None:
    return None if node is None else node.first.get(name)


def _raw_text(node: _Node) -> str:
    """All text inside the element (lxml's itertext), unstripped."""
    element = node.element
    if not len(element):  # no child nodes at all (comments included): the text is the element's own
        return element.text or ""
    return "".join(element.itertext())


def _text(node: _Node | None) -> str | None:
    if node is None:
        return None
    return _raw_text(node).strip() or None


def _tokens(node: _Node | None) -> list[str]:
    text = _text(node)
    return text.split() if text else []


def _ref_types(node: _Node) -> list[str]:
    return (node.get("refType") or "").split()


def _texts(node: _Node | None) -> list[tuple[str | None, str]]:
    """(language, text) of each dcc:content of a multilingual element, whitespace collapsed."""
    if node is None:
        return []
    found = []
    for content in node.kids:
        if content.name == "content":
            text = " ".join(_raw_text(content).split())
            if text:
                found.append((content.get("lang"), text))
    return found


def _first_text(node: _Node | None) -> str | None:
    texts = _texts(node)
    return texts[0][1] if texts else None


# --- what the caller can tell about reference standards -----------------------------------------------


@dataclass(frozen=True)
class EquipmentIdentity:
    """How a certificate identifies one of its reference standards (dcc:measuringEquipment)."""

    manufacturer: str | None
    model: str | None
    serial: str | None


@dataclass(frozen=True)
class KnownInstrument:
    """A reference standard the hub has a certificate for: that certificate and the instrument's IRI."""

    certificate_id: str
    instrument_iri: str


ReferenceResolver = Callable[[EquipmentIdentity], Sequence[KnownInstrument]]


# --- standard codes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandardCode:
    """A standard code recognised in free text: the code as keyed by the hub, and its undated form."""

    code: str
    undated: str | None
    edition: str | None


def recognise_standard_codes(text: str) -> list[StandardCode]:
    """The standard codes a norm reference names (e.g. 'DKD-R 5-1:2018', 'GB/T 27025-2019', 'GUM')."""
    normalized = normalize_standard_code(text)
    alias = _CODE_ALIASES.get(normalized.upper())
    if alias:
        normalized = alias
    found: list[StandardCode] = []
    for match in _STANDARD_CODE.finditer(normalized):
        family, number, edition = match.group("family"), match.group("number"), match.group("edition")
        undated = f"{family} {number}" if not family.endswith("-") else f"{family}{number}"
        code = normalize_standard_code(match.group(0))
        found.append(StandardCode(code=code, undated=undated if edition else None, edition=edition))
    return found


# --- the mapping ----------------------------------------------------------------------------------------


@dataclass
class _Context:
    """Where a quantity stands: its section, the result collection it belongs to, inherited refTypes."""

    section: str
    collection: str | None = None
    parent: str | None = None
    ref_types: list[str] = field(default_factory=list)


class _Mapper:
    """Builds the N-Triples lines of one certificate; nodes are N-Triples terms ("<iri>")."""

    def __init__(
        self,
        root: _Node,
        certificate: Certificate,
        lab_name: str | None,
        lab_accreditation: str | None,
        resolve_reference: ReferenceResolver | None,
    ) -> None:
        self.root = root
        self.certificate = certificate
        self.lab_name = lab_name
        self.lab_accreditation = lab_accreditation
        self.resolve_reference = resolve_reference
        self.lines: list[str] = []
        # Every node IRI of the certificate extends this one, so checking it checks them all.
        self.base = ox.NamedNode(iris.certificate_iri(certificate.id)).value
        self.node = f"<{self.base}>"
        self.lab = _ref(iris.organization_iri(certificate.organization_id))
        self.activity = f"<{self.base}/calibration>"
        self.item = f"<{self.base}/item/1>"
        self.methods_by_id: dict[str, str] = {}
        self.quantities = 0
        self.methods = 0
        self.equipments = 0
        self.statements = 0
        self.seen_standards: set[str] = set()

    # -- emitting

    def add(self, subject: str, predicate: str, obj: str) -> None:
        self.lines.append(f"{subject} {predicate} {obj} .\n")

    def string(self, subject: str, predicate: str, value: str | None) -> None:
        if value:
            self.lines.append(f"{subject} {predicate} {_literal(value)} .\n")

    def typed(self, subject: str, predicate: str, value: str, datatype: str) -> None:
        self.lines.append(f"{subject} {predicate} {_typed(value, datatype)} .\n")

    def texts(self, subject: str, predicate: str, node: _Node | None) -> None:
        seen: set[tuple[str | None, str]] = set()
        for language, text in _texts(node):
            key = (language, text)
            if key in seen:
                continue
            seen.add(key)
            if language and _LANGUAGE.fullmatch(language):
                literal = f"{_string_literal(text)}@{language.lower()}"
            else:
                literal = _string_literal(text)
            self.lines.append(f"{subject} {predicate} {literal} .\n")

    def ref_types(self, subject: str, node: _Node) -> None:
        for token in _ref_types(node):
            self.lines.append(f"{subject} {P_REF_TYPE} {_string_literal(token)} .\n")

    # -- document

    def run(self) -> list[str]:
        admin = _kid(self.root, "administrativeData")
        core = _kid(admin, "coreData")
        self.certificate_node(core)
        self.laboratory(_kid(admin, "calibrationLaboratory"))
        self.items(_kid(admin, "items"))
        self.calibration(core)
        self.statements_of(_kid(admin, "statements"))
        results = _kid(self.root, "measurementResults")
        for index, result in enumerate(_kids(results, "measurementResult"), start=1):
            self.measurement_result(result, index)
        return self.lines

    def certificate_node(self, core: _Node | None) -> None:
        certificate = self.certificate
        node = self.node
        kind = TEST_REPORT if certificate.kind == CertificateKind.test_report else CALIBRATION_CERTIFICATE
        self.add(node, A, kind)
        self.string(node, P_REGISTRY_ID, certificate.id)
        self.string(node, P_IDENTIFIER, certificate.unique_identifier or _text(_kid(core, "uniqueIdentifier")))
        self.add(node, P_STATUS, STATUS.get(str(certificate.status), STATUS["draft"]))
        self.string(node, P_STATUS_REASON, certificate.status_reason)
        self.string(node, P_SHA256, certificate.sha256)
        self.string(node, P_SCHEMA_VERSION, certificate.schema_version)
        self.typed(node, P_PUBLIC, "true" if certificate.public else "false", XSD_BOOLEAN)
        if certificate.issue_date:
            self.typed(node, P_ISSUED, certificate.issue_date.isoformat(), XSD_DATE)
        if certificate.updated_at:
            self.typed(node, P_MODIFIED, certificate.updated_at.isoformat(), XSD_DATETIME)
        self.add(node, P_ISSUED_BY, self.lab)
        self.add(node, P_GENERATED_BY, self.activity)
        if certificate.supersedes_id:
            self.add(node, P_SUPERSEDES, _ref(iris.certificate_iri(certificate.supersedes_id)))
        if certificate.superseded_by_id:
            self.add(node, P_SUPERSEDED_BY, _ref(iris.certificate_iri(certificate.superseded_by_id)))
        languages: list[str] = []
        for name in ("mandatoryLangCodeISO639_1", "usedLangCodeISO639_1"):
            languages += [code.lower() for code in (_text(kid) for kid in _kids(core, name)) if code]
        for code in dict.fromkeys(languages):
            if _LANGUAGE.fullmatch(code):
                self.add(node, P_LANGUAGE, _cached_ref(f"{LANGUAGE_BASE}{code}"))

    def laboratory(self, element: _Node | None) -> None:
        lab = self.lab
        self.add(lab, A, LABORATORY)
        self.add(lab, A, ORGANIZATION)
        contact = _kid(element, "contact")
        name = self.lab_name or _first_text(_kid(contact, "name"))
        self.string(lab, P_NAME, name)
        self.string(lab, P_LABORATORY_CODE, _text(_kid(element, "calibrationLaboratoryCode")))
        if self.lab_accreditation:
            number = " ".join(self.lab_accreditation.split())
            self.string(lab, P_ACCREDITATION_NUMBER, number)
            body = _accreditation_body(number)
            if body:
                self.add(lab, P_HAS_ACCREDITATION, _ref(iris.accreditation_iri(body, number)))

    def items(self, items: _Node | None) -> None:
        certificate = self.certificate
        elements = _kids(items, "item")
        if not elements:  # not schema-valid, but the observations still need a typed feature of interest
            elements = [_Node(etree.Element("item"), "item")]
        for index, item in enumerate(elements, start=1):
            if index == 1:
                # The registry's index fields name the first item: same IRI as the hub's searches use.
                manufacturer, model, serial = (
                    certificate.item_manufacturer,
                    certificate.item_model,
                    certificate.item_serial,
                )
            else:
                manufacturer, model, serial = _identity(item)
            node = self.instrument(item, manufacturer, model, serial, fallback=f"{self.base}/item/{index}")
            if index == 1:
                self.item = node
            self.add(self.node, P_CALIBRATED_ITEM, node)
            for quantity in _kids(_kid(item, "itemQuantities"), "quantity"):
                self.quantity(quantity, _Context(section=ITEM_SECTION))

    def instrument(
        self,
        element: _Node,
        manufacturer: str | None,
        model: str | None,
        serial: str | None,
        *,
        fallback: str,
        iri: str | None = None,
    ) -> str:
        # Without a serial number two instruments of one model would share an IRI: keep them per certificate.
        node = _ref(iri or (iris.instrument_iri(manufacturer, model, serial) if serial else fallback))
        self.add(node, A, INSTRUMENT)
        self.add(node, A, FEATURE_OF_INTEREST)
        self.add(node, A, PRODUCT)
        self.texts(node, P_NAME, _kid(element, "name"))
        if manufacturer:
            maker = _ref(iris.named_organization_iri(manufacturer))
            self.add(node, P_MANUFACTURER, maker)
            self.add(maker, A, MANUFACTURER)
            self.add(maker, A, SCHEMA_ORGANIZATION)
            self.string(maker, P_NAME, manufacturer)
        self.string(node, P_MODEL, model)
        self.string(node, P_SERIAL, serial)
        for identification in _kids(_kid(element, "identifications"), "identification"):
            value = _text(_kid(identification, "value"))
            if value and value != serial:
                issuer = _text(_kid(identification, "issuer")) or "other"
                self.string(node, P_IDENTIFICATION, f"{issuer}: {value}")
        return node

    def calibration(self, core: _Node | None) -> None:
        activity = self.activity
        certificate = self.certificate
        is_test = certificate.kind == CertificateKind.test_report
        self.add(activity, A, TEST if is_test else CALIBRATION)
        self.add(activity, A, ACTIVITY)
        self.add(activity, P_ASSOCIATED_WITH, self.lab)
        begin = certificate.performance_begin or _date(_text(_kid(core, "beginPerformanceDate")))
        end = certificate.performance_end or _date(_text(_kid(core, "endPerformanceDate")))
        if begin:
            self.typed(activity, P_PERFORMANCE_BEGIN, begin.isoformat(), XSD_DATE)
            # PROV wants instants; the certificate gives days: the activity spans from the start of the first
            # day to the end of the last (no time zone, as the certificate gives none).
            self.typed(activity, P_STARTED, f"{begin.isoformat()}T00:00:00", XSD_DATETIME)
        if end:
            self.typed(activity, P_PERFORMANCE_END, end.isoformat(), XSD_DATE)
            self.typed(activity, P_ENDED, f"{end.isoformat()}T23:59:59", XSD_DATETIME)
        self.string(activity, P_PERFORMANCE_LOCATION, _text(_kid(core, "performanceLocation")))

    # -- statements, methods, standards

    def standard(self, code: StandardCode) -> str:
        node = _cached_ref(iris.standard_iri(code.code))
        if code.code not in self.seen_standards:
            self.seen_standards.add(code.code)
            self.add(node, A, STANDARD)
            self.string(node, P_CODE, code.code)
            if code.undated and code.edition:
                self.string(node, P_EDITION, code.edition)
                undated = _cached_ref(iris.standard_iri(code.undated))
                self.add(node, P_EDITION_OF, undated)
                if code.undated not in self.seen_standards:
                    self.seen_standards.add(code.undated)
                    self.add(undated, A, STANDARD)
                    self.string(undated, P_CODE, code.undated)
        return node

    def norms(self, subject: str, element: _Node, predicate: str) -> list[StandardCode]:
        found: list[StandardCode] = []
        for norm in _kids(element, "norm"):
            text = _text(norm)
            if not text:
                continue
            self.string(subject, P_NORM_REFERENCE, text)
            for code in recognise_standard_codes(text):
                self.add(subject, predicate, self.standard(code))
                found.append(code)
        return found

    def statements_of(self, statements: _Node | None) -> None:
        for statement in _kids(statements, "statement"):
            self.statement(statement, self.node, P_HAS_STATEMENT)

    def statement(self, element: _Node, owner: str, link: str) -> str:
        self.statements += 1
        node = f"<{self.base}/statement/{self.statements}>"
        self.add(owner, link, node)
        self.add(node, A, STATEMENT)
        self.ref_types(node, element)
        self.texts(node, LABEL, _kid(element, "name"))
        codes = self.norms(node, element, P_REFERENCES)
        for reference in _kids(element, "reference"):
            number = _text(reference)
            for code in codes:
                if number:
                    clause = _ref(iris.clause_iri(code.code, number))
                    self.add(node, P_REFERENCES, clause)
                    self.add(clause, A, CLAUSE)
                    self.add(clause, P_CLAUSE_OF, _cached_ref(iris.standard_iri(code.code)))
                    self.string(clause, P_CLAUSE_NUMBER, number)
        self.string(node, P_CONFORMITY, _text(_kid(element, "conformity")))
        when = _text(_kid(element, "date"))
        if when and _DATE.fullmatch(when):
            self.typed(node, P_DATE, when, XSD_DATE)
        context = _Context(section=STATEMENTS_SECTION, parent=node, ref_types=_ref_types(element))
        self.data(_kid(element, "data"), context)
        return node

    def used_methods(self, element: _Node) -> list[str]:
        nodes = []
        for method in _kids(_kid(element, "usedMethods"), "usedMethod"):
            self.methods += 1
            node = f"<{self.base}/method/{self.methods}>"
            nodes.append(node)
            identifier = method.get("id")
            if identifier:
                self.methods_by_id[identifier] = node
            self.add(node, A, METHOD)
            self.add(node, A, PROCEDURE)
            self.texts(node, LABEL, _kid(method, "name"))
            self.ref_types(node, method)
            self.norms(node, method, P_CONFORMS_TO)
            self.add(self.activity, P_USED_METHOD, node)
        return nodes

    def equipment(self, element: _Node) -> None:
        self.equipments += 1
        manufacturer, model, serial = _identity(element)
        known: Sequence[KnownInstrument] = ()
        if self.resolve_reference is not None and serial:
            known = self.resolve_reference(EquipmentIdentity(manufacturer, model, serial))
        known = [entry for entry in known if entry.certificate_id != self.certificate.id]
        node = self.instrument(
            element,
            manufacturer,
            model,
            serial,
            fallback=f"{self.base}/equipment/{self.equipments}",
            iri=known[0].instrument_iri if known else None,
        )
        self.add(node, A, MEASUREMENT_STANDARD)
        self.add(self.activity, P_USED_EQUIPMENT, node)
        for entry in sorted({entry.certificate_id for entry in known}):
            self.add(self.node, P_DERIVED_FROM, _ref(iris.certificate_iri(entry)))

    # -- results

    def measurement_result(self, element: _Node, index: int) -> None:
        node = f"<{self.base}/result/{index}>"
        self.add(self.node, P_HAS_MEASUREMENT_RESULT, node)
        self.add(node, A, MEASUREMENT_RESULT)
        self.add(node, A, OBSERVATION_COLLECTION)
        self.add(node, A, SSN_EXT_COLLECTION)
        self.texts(node, LABEL, _kid(element, "name"))
        self.ref_types(node, element)
        self.add(node, P_HAS_FOI, self.item)
        self.add(node, P_GENERATED_BY, self.activity)
        self.used_methods(element)
        for equipment in _kids(_kid(element, "measuringEquipments"), "measuringEquipment"):
            self.equipment(equipment)
        self.influence_conditions(element, node)
        for result in _kids(_kid(element, "results"), "result"):
            context = _Context(section=RESULTS_SECTION, collection=node, ref_types=_ref_types(result))
            self.data(_kid(result, "data"), context)
        self.meta_data(element, _Context(section=METADATA_SECTION, collection=node))

    def influence_conditions(self, element: _Node, collection: str | None) -> None:
        for condition in _kids(_kid(element, "influenceConditions"), "influenceCondition"):
            context = _Context(section=INFLUENCE_SECTION, collection=collection, ref_types=_ref_types(condition))
            self.data(_kid(condition, "data"), context)

    def meta_data(self, element: _Node, context: _Context) -> None:
        for meta in _kids(_kid(element, "measurementMetaData"), "metaData"):
            inner = _Context(
                section=METADATA_SECTION,
                collection=context.collection,
                parent=context.parent,
                ref_types=_ref_types(meta),
            )
            self.data(_kid(meta, "data"), inner)

    def data(self, element: _Node | None, context: _Context) -> None:
        for kid in _kids(element):
            name = kid.name
            if name == "quantity":
                self.quantity(kid, context)
            elif name == "list":
                self.used_methods(kid)
                inner = _Context(
                    context.section, context.collection, context.parent, _ref_types(kid) or context.ref_types
                )
                self.data(kid, inner)
                self.influence_conditions(kid, context.collection)
                self.meta_data(kid, inner)

    def quantity(self, element: _Node, context: _Context) -> None:
        self.quantities += 1
        iri = f"{self.base}/quantity/{self.quantities}"
        node = f"<{iri}>"
        self.add(node, A, QUANTITY)
        self.add(node, A, OBSERVATION_COLLECTION)
        self.add(node, P_SECTION, context.section)
        self.texts(node, LABEL, _kid(element, "name"))
        ref_types = _ref_types(element)
        self.ref_types(node, element)
        if context.collection is not None:
            self.add(context.collection, P_HAS_MEMBER, node)
        if context.parent is not None:
            self.add(context.parent, P_HAS_PART, node)
        methods = self.used_methods(element)
        for token in (element.get("refId") or "").split():
            method = self.methods_by_id.get(token)
            if method is not None:
                methods.append(method)
        for method in dict.fromkeys(methods):
            self.add(node, P_USED_PROCEDURE, method)
        values = _Values(self, iri, quantity_kind_for_ref_types(ref_types + context.ref_types))
        for kid in element.kids:
            name = kid.name
            if name in ("real", "constant"):
                values.scalar([kid])
                break
            if name in ("realListXMLList", "list", "realList"):
                values.lists([kid])
                break
            if name == "hybrid":
                values.hybrid(kid)
                break
        self.influence_conditions(element, context.collection)
        self.meta_data(element, _Context(METADATA_SECTION, context.collection, node, ref_types))


@dataclass
class _Entry:
    """One D-SI value: lexical value, unit, label, time and univariate uncertainty (all lexical)."""

    value: str
    unit: str
    label: str | None = None
    time: str | None = None
    kind: str | None = None
    uncertainty: dict[str, str] | None = None


class _Values:
    """Turns the D-SI values of one quantity into observations and quantity values."""

    def __init__(self, mapper: _Mapper, quantity: str, kind_hint: str | None) -> None:
        self.mapper = mapper
        self.quantity = quantity  # the quantity's IRI (not a term: value IRIs extend it)
        self.kind_hint = kind_hint  # a quantity kind IRI

    def lists(self, elements: list[_Node]) -> None:
        """List values: entry i of every alternative is one observation."""
        parsed = [_list_entries(element) for element in elements]
        if not parsed or not parsed[0]:
            return
        for position, first in enumerate(parsed[0]):
            alternatives = [first] + [other[position] for other in parsed[1:] if position < len(other)]
            self.observation(alternatives, index=position + 1)

    def hybrid(self, element: _Node) -> None:
        """A si:hybrid: the same value(s) in several units; the first unit is the observation's result."""
        reals = [kid for kid in element.kids if kid.name in ("real", "constant")]
        lists = [kid for kid in element.kids if kid.name in ("realListXMLList", "list", "realList")]
        if reals:  # the XSD wants one kind per hybrid; reals win when a file mixes them
            self.scalar(reals)
        elif lists:
            self.lists(lists)

    def scalar(self, reals: list[_Node]) -> None:
        """One value (si:real or si:constant), or its alternatives in other units."""
        entries = [entry for entry in (_real_entry(element) for element in reals) if entry]
        if entries:
            self.observation(entries, index=None)

    def observation(self, alternatives: list[_Entry], *, index: int | None) -> None:
        mapper = self.mapper
        append = mapper.lines.append
        base = f"{self.quantity}/value/{index or 1}"
        node = f"<{base}>"
        append(f"<{self.quantity}> {P_HAS_MEMBER} {node} .\n")
        append(f"{node} {A} {OBSERVATION} .\n")
        append(f"{node} {P_HAS_FOI} {mapper.item} .\n")
        if index is not None:
            append(f"{node} {P_LIST_INDEX} {_index_literal(index)} .\n")
        first = alternatives[0]
        if first.label:
            append(f"{node} {P_VALUE_LABEL} {_string_literal(first.label)} .\n")
        if first.time and _DATETIME.fullmatch(first.time):
            append(f"{node} {P_RESULT_TIME} {_typed(first.time, XSD_DATETIME)} .\n")
        for position, entry in enumerate(alternatives):
            value = f"{base}/result" if position == 0 else f"{base}/result/{position + 1}"
            append(f"{node} {P_HAS_RESULT if position == 0 else P_EQUIVALENT_RESULT} <{value}> .\n")
            self.quantity_value(value, entry)

    def quantity_value(self, iri: str, entry: _Entry) -> None:
        append = self.mapper.lines.append
        node = f"<{iri}>"
        append(f"{node} {A} {QUANTITY_VALUE} .\n")
        append(f"{node} {A} {SIS_QUANTITY_VALUE} .\n")
        numeric = _numeric_literal(entry.value, True)
        if numeric is not None:
            append(f"{node} {P_NUMERIC_VALUE} {numeric} .\n")
        append(f"{node} {P_LEXICAL_VALUE} {_string_literal(entry.value)} .\n")
        kind = _quantity_kind(entry.kind) or self.kind_hint
        unit_literal, qudt, sirp = _unit_terms(entry.unit, kind)
        append(f"{node} {P_UNIT_IDENTIFIER} {unit_literal} .\n")
        if kind is not None:
            append(f"{node} {P_HAS_QUANTITY_KIND} {_cached_ref(kind)} .\n")
        if qudt is not None:
            append(f"{node} {P_HAS_UNIT} {qudt} .\n")
        if sirp is not None:
            append(f"{node} {P_SI_UNIT} {sirp} .\n")
        if entry.uncertainty:
            _uncertainty(append, iri, entry.uncertainty)


# Numbers, units and list indexes repeat across values and certificates: rendered once.
@lru_cache(maxsize=65_536)
def _numeric_literal(lexical: str, decimal: bool) -> str | None:
    """The numeric literal of a lexical form (decimal where exact, else double); None when not a number."""
    if decimal and _DECIMAL.fullmatch(lexical):
        return _typed(lexical, XSD_DECIMAL)
    if _DOUBLE.fullmatch(lexical):
        return _typed(lexical, XSD_DOUBLE)
    return None


@lru_cache(maxsize=4096)
def _index_literal(index: int) -> str:
    return _typed(str(index), XSD_POSITIVE)


@lru_cache(maxsize=1024)
def _quantity_kind(text: str | None) -> str | None:
    return quantity_kind_iri(text)


@lru_cache(maxsize=4096)
def _unit_terms(unit: str, kind: str | None) -> tuple[str, str | None, str | None]:
    mapping = map_dsi_unit(unit, kind)
    return (
        _quoted(unit),
        _ref(mapping.qudt) if mapping.qudt else None,
        _ref(mapping.sirp) if mapping.sirp else None,
    )


_UNCERTAINTY_SHAPES = {
    # kind: (link from the value, class, (field, predicate) of each numeric field)
    "expanded": (
        P_HAS_EXPANDED_MU,
        EXPANDED_MU,
        (
            ("value", P_VALUE_EXPANDED_MU),
            ("coverageFactor", P_COVERAGE_FACTOR),
            ("coverageProbability", P_COVERAGE_PROBABILITY),
        ),
    ),
    "standard": (P_HAS_UNIVARIATE_MU, STANDARD_MU, (("value", P_VALUE_STANDARD_MU),)),
    "interval": (
        P_HAS_COVERAGE_INTERVAL_MU,
        COVERAGE_INTERVAL_MU,
        (
            ("value", P_VALUE_STANDARD_MU),
            ("intervalMin", P_INTERVAL_MIN),
            ("intervalMax", P_INTERVAL_MAX),
            ("coverageProbability", P_COVERAGE_PROBABILITY),
        ),
    ),
}


def _uncertainty(append: Callable[[str], None], value: str, uncertainty: dict[str, str]) -> None:
    """The univariate uncertainty of a value (its IRI) as a PTB SIS node (numbers as xsd:double, lexical kept)."""
    node = f"<{value}/uncertainty>"
    link, kind_class, numeric_fields = _UNCERTAINTY_SHAPES[uncertainty["kind"]]
    append(f"<{value}> {link} {node} .\n")
    append(f"{node} {A} {kind_class} .\n")
    for name, predicate in numeric_fields:
        lexical = uncertainty.get(name)
        literal = _numeric_literal(lexical, False) if lexical else None
        if literal is not None:
            append(f"{node} {predicate} {literal} .\n")
    if uncertainty["kind"] == "standard":  # QUDT's own (standard) uncertainty property, exact decimal
        literal = _numeric_literal(uncertainty["value"], True)
        if literal is not None:
            append(f"<{value}> {P_STANDARD_UNCERTAINTY} {literal} .\n")
    append(f"{node} {P_LEXICAL_VALUE} {_string_literal(uncertainty['value'])} .\n")
    distribution = uncertainty.get("distribution")
    if distribution:
        append(f"{node} {P_DISTRIBUTION} {_string_literal(distribution)} .\n")


# --- D-SI readers -------------------------------------------------------------------------------------------

# Uncertainty forms read: D-SI 2.x measurementUncertaintyUnivariate (expanded, standard, coverage interval), the
# deprecated 1.x expandedUnc/coverageInterval, and D-SI 1.0.1 (DCC 2.1.0), which put si:uncertainty,
# si:coverageFactor and si:coverageProbability straight into si:real.


def _real_uncertainty(element: _Node, fields: dict[str, _Node] | None = None) -> dict[str, str] | None:
    fields = element.first if fields is None else fields
    container = fields.get("measurementUncertaintyUnivariate")
    if container is None:
        container = fields.get("measurementUncertaintyUnivaraite")  # D-SI 2.x misspells it in si:realList
    if container is not None:
        inner = container.first
        if "expandedMU" in inner:
            return _expanded(inner["expandedMU"], "valueExpandedMU")
        if "standardMU" in inner:
            standard = inner["standardMU"].first
            return _compact(
                {
                    "kind": "standard",
                    "value": _text(standard.get("valueStandardMU")),
                    "distribution": _text(standard.get("distribution")),
                }
            )
        if "coverageIntervalMU" in inner:
            return _interval(inner["coverageIntervalMU"], "valueStandardMU")
    if "expandedUnc" in fields:
        return _expanded(fields["expandedUnc"], "uncertainty")
    if "coverageInterval" in fields:
        return _interval(fields["coverageInterval"], "standardUnc")
    if "uncertainty" in fields:
        if element.name == "constant":  # si:constant carries a standard uncertainty
            return _compact({"kind": "standard", "value": _text(fields["uncertainty"])})
        return _expanded(element, "uncertainty", fields)  # D-SI 1.0.1: expanded uncertainty inline
    return None


def _compact(values: dict[str, str | None]) -> dict[str, str] | None:
    if values.get("value") is None:
        return None
    return {key: value for key, value in values.items() if value is not None}


def _expanded(element: _Node, value_name: str, fields: dict[str, _Node] | None = None) -> dict[str, str] | None:
    fields = element.first if fields is None else fields
    return _compact(
        {
            "kind": "expanded",
            "value": _text(fields.get(value_name)),
            "coverageFactor": _text(fields.get("coverageFactor")),
            "coverageProbability": _text(fields.get("coverageProbability")),
            "distribution": _text(fields.get("distribution")),
        }
    )


def _interval(element: _Node, value_name: str) -> dict[str, str] | None:
    fields = element.first
    return _compact(
        {
            "kind": "interval",
            "value": _text(fields.get(value_name)),
            "intervalMin": _text(fields.get("intervalMin")),
            "intervalMax": _text(fields.get("intervalMax")),
            "coverageProbability": _text(fields.get("coverageProbability")),
            "distribution": _text(fields.get("distribution")),
        }
    )


def _real_entry(element: _Node, *, unit: str | None = None) -> _Entry | None:
    fields = element.first
    value = _text(fields.get("value"))
    unit = _text(fields.get("unit")) or unit
    if value is None or unit is None:
        return None
    return _Entry(
        value=value,
        unit=unit,
        label=_text(fields.get("label")),
        time=_text(fields.get("dateTime")),
        kind=_text(fields.get("quantityTypeQUDT")),
        uncertainty=_real_uncertainty(element, fields),
    )


def _at(values: list[str], index: int) -> str | None:
    """Entry `index` of an XML list; a single entry applies to every position (D-SI broadcasting)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return values[index] if index < len(values) else None


def _list_uncertainties(element: _Node, count: int) -> list[dict[str, str] | None]:
    container = _kid(element, "measurementUncertaintyUnivariateXMLList")
    expanded = _kid(container, "expandedMUXMLList")
    legacy = _kid(element, "expandedUncXMLList")
    fields: dict[str, list[str]]
    if expanded is not None or legacy is not None:
        source = expanded if expanded is not None else legacy
        value_name = "valueExpandedMUXMLList" if expanded is not None else "uncertaintyXMLList"
        kind = "expanded"
        fields = {
            "value": _tokens(_kid(source, value_name)),
            "coverageFactor": _tokens(_kid(source, "coverageFactorXMLList")),
            "coverageProbability": _tokens(_kid(source, "coverageProbabilityXMLList")),
            "distribution": _tokens(_kid(source, "distributionXMLList")),
        }
    elif (standard := _kid(container, "standardMUXMLList")) is not None:
        kind = "standard"
        fields = {
            "value": _tokens(_kid(standard, "valueStandardMUXMLList")),
            "distribution": _tokens(_kid(standard, "distributionXMLList")),
        }
    else:
        source = _kid(container, "coverageIntervalMUXMLList")
        value_name = "valueStandardMUXMLList"
        if source is None:
            source, value_name = _kid(element, "coverageIntervalXMLList"), "standardUncXMLList"
        if source is None:
            return [None] * count
        kind = "interval"
        fields = {
            "value": _tokens(_kid(source, value_name)),
            "intervalMin": _tokens(_kid(source, "intervalMinXMLList")),
            "intervalMax": _tokens(_kid(source, "intervalMaxXMLList")),
            "coverageProbability": _tokens(_kid(source, "coverageProbabilityXMLList")),
            "distribution": _tokens(_kid(source, "distributionXMLList")),
        }
    return [
        _compact({"kind": kind, **{name: _at(tokens, index) for name, tokens in fields.items()}})
        for index in range(count)
    ]


def _list_entries(element: _Node) -> list[_Entry]:
    name = element.name
    if name == "realListXMLList":
        values = _tokens(_kid(element, "valueXMLList"))
        units = _tokens(_kid(element, "unitXMLList"))
        if not values or not units:
            return []
        labels = _tokens(_kid(element, "labelXMLList"))
        times = _tokens(_kid(element, "dateTimeXMLList"))
        kinds = _tokens(_kid(element, "quantityTypeQUDTXMLList"))
        uncertainties = _list_uncertainties(element, len(values))
        entries = []
        for index, value in enumerate(values):
            unit = _at(units, index)
            if unit is None:
                continue
            entries.append(
                _Entry(
                    value=value,
                    unit=unit,
                    label=_at(labels, index),
                    time=_at(times, index),
                    kind=_at(kinds, index),
                    uncertainty=uncertainties[index],
                )
            )
        return entries
    # si:list (D-SI 1.x) or si:realList: si:real children sharing an optional list unit and uncertainty.
    list_unit = _text(_kid(element, "listUnit"))
    shared = None
    for container_name in ("listUnivariateUnc", "listMeasurementUncertaintyUnivariate"):
        container = _kid(element, container_name)
        if container is not None:
            shared = _real_uncertainty(container)
            if shared is None:
                expanded = _kid(container, "expandedMU")
                legacy = _kid(container, "expandedUnc")
                if expanded is not None:
                    shared = _expanded(expanded, "valueExpandedMU")
                elif legacy is not None:
                    shared = _expanded(legacy, "uncertainty")
            break
    entries = []
    for kid in element.kids:
        kid_name = kid.name
        if kid_name == "real":
            entry = _real_entry(kid, unit=list_unit)
            if entry:
                if entry.uncertainty is None:
                    entry.uncertainty = shared
                entries.append(entry)
        elif kid_name in ("list", "realList", "realListXMLList"):
            entries += _list_entries(kid)
    return entries


# --- identities --------------------------------------------------------------------------------------------


def _identity(element: _Node) -> tuple[str | None, str | None, str | None]:
    """Manufacturer name, model and serial number of an item or measuring equipment."""
    manufacturer = _first_text(_kid(_kid(element, "manufacturer"), "name"))
    model = _text(_kid(element, "model"))
    return manufacturer, model, _serial_number(element)


def _serial_number(element: _Node) -> str | None:
    fallback = None
    for identification in _kids(_kid(element, "identifications"), "identification"):
        value = _text(_kid(identification, "value"))
        if not value:
            continue
        names = " ".join(
            text.lower() for name in ("name", "description") for _, text in _texts(_kid(identification, name))
        )
        words = set(re.split(r"[\s.:#()]+", names))
        if any(word in names for word in _SERIAL_WORDS if len(word) > 2) or "sn" in words:
            return value
        if fallback is None and _text(_kid(identification, "issuer")) == "manufacturer":
            fallback = value
    return fallback


def _accreditation_body(number: str) -> str | None:
    """The accreditation body a number names ('CNAS L0001' → CNAS, 'D-K-15012-01-00' → DAkkS)."""
    if number.startswith("D-K-") or number.startswith("D-PL-"):
        return "DAkkS"
    match = _BODY.match(number)
    return match.group(1).upper() if match and match.group(1).isupper() else None


def _date(text: str | None) -> date | None:
    if not text or not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


# --- public API ------------------------------------------------------------------------------------------


def map_certificate_ntriples(
    root: etree._Element,
    *,
    certificate: Certificate,
    lab_name: str | None = None,
    lab_accreditation: str | None = None,
    resolve_reference: ReferenceResolver | None = None,
) -> str:
    """Map a parsed DCC and its registry entry to the N-Triples of its named graph (one triple a line)."""
    mapper = _Mapper(_tree(root), certificate, lab_name, lab_accreditation, resolve_reference)
    return "".join(mapper.run())


def map_certificate(
    root: etree._Element,
    *,
    certificate: Certificate,
    lab_name: str | None = None,
    lab_accreditation: str | None = None,
    resolve_reference: ReferenceResolver | None = None,
) -> list[ox.Triple]:
    """Map a parsed DCC and its registry entry to the triples of its named graph (as pyoxigraph triples)."""
    text = map_certificate_ntriples(
        root,
        certificate=certificate,
        lab_name=lab_name,
        lab_accreditation=lab_accreditation,
        resolve_reference=resolve_reference,
    )
    return [quad.triple for quad in ox.parse(text.encode(), format=ox.RdfFormat.N_TRIPLES)]


_VALUE_TYPE = ox.NamedNode(f"{RDF}type")
_QUANTITY_VALUE = ox.NamedNode(f"{QUDT}QuantityValue")


def iter_values(triples: Sequence[ox.Triple]) -> Iterator[ox.NamedNode]:
    """The quantity-value nodes among mapped triples (for coverage figures and tests)."""
    for triple in triples:
        if (
            triple.predicate == _VALUE_TYPE
            and triple.object == _QUANTITY_VALUE
            and isinstance(triple.subject, ox.NamedNode)
        ):
            yield triple.subject
