"""JSON ↔ DCC: build DCC 3.3.0 XML from a lab's JSON submission, export stored DCCs in the same JSON shape.

The shape is published as `schemas/json/dcc-submission.schema.json`. Decimal strings are written to the XML
verbatim and exported verbatim, so `"20.000"` survives JSON → XML → JSON; exports always use strings.
The exporter matches elements by local name, so it reads every DCC release (2.1.0 used other namespaces);
parts the JSON shape does not cover are skipped, never fatal.
"""

import copy
import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from lxml import etree

from certificates.findings import Finding, Severity

DCC_NS = "https://ptb.de/dcc"
SI_NS = "https://ptb.de/si"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_VERSION = "3.3.0"
SCHEMA_LOCATION = f"{DCC_NS} https://ptb.de/dcc/v{SCHEMA_VERSION}/dcc.xsd"
SUBMISSION_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "json" / "dcc-submission.schema.json"
SUBMISSION_SCHEMA_ID = "https://qihub.example/schemas/json/dcc-submission.schema.json"

_D = f"{{{DCC_NS}}}"
_S = f"{{{SI_NS}}}"
# Keys whose values are texts ({lang: text}): their language keys (e.g. "id", Indonesian) are not XML ids.
_TEXT_KEYS = frozenset({"name", "description", "noQuantity", "declaration", "further", "text"})
_LOCATION_FIELDS = ("street", "streetNo", "postOfficeBox", "postCode", "city", "state", "countryCode")
# Characters outside the XML 1.0 Char production; lxml refuses them.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class SubmissionInvalid(Exception):  # noqa: N818 - the public name is part of the API contract
    """A JSON submission that does not match the submission schema; `findings` locate each problem."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        first = findings[0].message if findings else "invalid submission"
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(f"{first}{more}")


# ---------------------------------------------------------------------------------------------------------
# Schema and submission checks


@cache
def _schema() -> dict[str, Any]:
    with SUBMISSION_SCHEMA_PATH.open(encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _validator() -> Draft202012Validator:
    # Compiled once: building the validator resolves all $refs, validation itself is then cheap.
    schema = _schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def submission_schema() -> dict[str, Any]:
    """Return (a copy of) the published JSON Schema for submissions."""
    return copy.deepcopy(_schema())


def _pointer(parts: Iterator[Any] | list[Any]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indices."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _schema_findings(error: ValidationError) -> list[Finding]:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Point at the missing member itself: "/administrativeData/coreData/uniqueIdentifier".
        missing = [name for name in error.validator_value if name not in error.instance]
        return [
            Finding(
                rule="json-schema",
                severity=Severity.error,
                message=f"'{name}' is required",
                path=_pointer([*path, name]),
            )
            for name in missing
        ]
    if error.context:
        if all(sub.validator == "required" for sub in error.context) and error.validator == "oneOf":
            # A quantity without any value: name the alternatives instead of one arbitrary branch.
            names = sorted({name for sub in error.context for name in sub.validator_value})
            message = "exactly one of " + ", ".join(names) + " is required"
            return [Finding(rule="json-schema", severity=Severity.error, message=message, path=_pointer(path))]
        deeper = best_match(error.context)
        if deeper is not None and len(deeper.absolute_path) > len(path):
            return _schema_findings(deeper)
    return [Finding(rule="json-schema", severity=Severity.error, message=error.message, path=_pointer(path))]


def _error_order(error: ValidationError) -> tuple[tuple[int, int, str], ...]:
    """Sort key: document order of the error's location (indices numerically, members by name)."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path)


def _unwritable_findings(node: Any, path: list[Any]) -> list[Finding]:
    """Values JSON allows but XML 1.0 cannot carry: control characters, Infinity."""
    if isinstance(node, dict):
        return [finding for key, value in node.items() for finding in _unwritable_findings(value, [*path, key])]
    if isinstance(node, list):
        return [finding for index, value in enumerate(node) for finding in _unwritable_findings(value, [*path, index])]
    if isinstance(node, str) and _NOT_XML_CHAR.search(node):
        message = "contains a character XML cannot carry (a control character)"
    elif isinstance(node, float) and math.isinf(node):
        message = "is not a finite number"
    else:
        return []
    return [Finding(rule="json-value", severity=Severity.error, message=message, path=_pointer(path))]


def _walk_ids(node: Any, path: list[Any]) -> Iterator[tuple[str, Any, list[Any]]]:
    """Yield ("id" | "refId", value, path) for every XML id attribute carried by the submission."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _TEXT_KEYS:
                continue
            if key in ("id", "refId") and isinstance(value, str):
                yield key, value, [*path, key]
            else:
                yield from _walk_ids(value, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_ids(value, [*path, index])


def _id_findings(submission: dict[str, Any]) -> list[Finding]:
    # The XSD types id/refId as xs:ID/xs:IDREFS: ids must be unique and every reference must resolve.
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    references: list[tuple[str, str]] = []
    for kind, value, path in _walk_ids(submission, []):
        pointer = _pointer(path)
        if kind == "id":
            if value in seen:
                message = f"id '{value}' is already used at {seen[value]}"
                findings.append(Finding(rule="json-id", severity=Severity.error, message=message, path=pointer))
            else:
                seen[value] = pointer
        else:
            references.extend((token, pointer) for token in value.split())
    for token, pointer in references:
        if token not in seen:
            message = f"refId '{token}' does not match any id"
            findings.append(Finding(rule="json-id", severity=Severity.error, message=message, path=pointer))
    return findings


def check_submission(submission: Any) -> list[Finding]:
    """Check a submission against the JSON Schema and the id rules; an empty list means it can be built."""
    errors = sorted(_validator().iter_errors(submission), key=_error_order)
    findings: list[Finding] = []
    seen: set[tuple[str | None, str]] = set()
    for error in errors:
        for finding in _schema_findings(error):
            if (finding.path, finding.message) not in seen:
                seen.add((finding.path, finding.message))
                findings.append(finding)
    if not findings:
        findings = _unwritable_findings(submission, []) or _id_findings(submission)
    return findings


# ---------------------------------------------------------------------------------------------------------
# JSON → XML


def _decimal(value: Any) -> str:
    """Lexical form of a D-SI decimal: strings verbatim (keeps "20.000"), numbers in shortest form."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return repr(value)
    return str(value)


def _fixed(value: Any) -> str:
    """Lexical form without exponent, for coverage factors and probabilities (their XSD patterns say so)."""
    if isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    return _decimal(value)


def _xml_list(values: list[Any], *, fixed: bool = False) -> str:
    return " ".join(_fixed(value) if fixed else _decimal(value) for value in values)


class _Builder:
    """Writes the submission's parts as DCC 3.3.0 elements, in the order the XSD demands."""

    def el(self, parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, tag)
        if text is not None:
            element.text = text
        return element

    def opt(self, parent: etree._Element, tag: str, data: dict[str, Any], key: str) -> None:
        if key in data:
            self.el(parent, tag, data[key])

    def attrs(self, element: etree._Element, data: dict[str, Any]) -> None:
        for key in ("id", "refId", "refType"):
            if key in data:
                element.set(key, data[key])

    def text(self, parent: etree._Element, tag: str, text: str | dict[str, str]) -> etree._Element:
        element = self.el(parent, tag)
        if isinstance(text, str):
            self.el(element, _D + "content", text)
        else:
            for language, content in text.items():
                self.el(element, _D + "content", content).set("lang", language)
        return element

    def opt_text(self, parent: etree._Element, tag: str, data: dict[str, Any], key: str) -> None:
        if key in data:
            self.text(parent, tag, data[key])

    # --- administrative data

    def document(self, submission: dict[str, Any]) -> etree._Element:
        root = etree.Element(_D + "digitalCalibrationCertificate", nsmap={"dcc": DCC_NS, "si": SI_NS, "xsi": XSI_NS})
        root.set(f"{{{XSI_NS}}}schemaLocation", SCHEMA_LOCATION)
        root.set("schemaVersion", SCHEMA_VERSION)
        admin_data = submission["administrativeData"]
        admin = self.el(root, _D + "administrativeData")
        software_list = self.el(admin, _D + "dccSoftware")
        for software in admin_data["dccSoftware"]:
            self.software(software_list, _D + "software", software)
        self.core_data(admin, admin_data["coreData"])
        items = self.el(admin, _D + "items")
        for item in admin_data["items"]:
            self.item(items, item)
        lab_data = admin_data["calibrationLaboratory"]
        lab = self.el(admin, _D + "calibrationLaboratory")
        self.opt(lab, _D + "calibrationLaboratoryCode", lab_data, "code")
        self.contact(lab, _D + "contact", lab_data["contact"])
        persons = self.el(admin, _D + "respPersons")
        for person in admin_data["respPersons"]:
            self.resp_person(persons, person)
        self.contact(admin, _D + "customer", admin_data["customer"])
        if "statements" in admin_data:
            statements = self.el(admin, _D + "statements")
            for statement in admin_data["statements"]:
                self.statement(statements, _D + "statement", statement)
        results = self.el(root, _D + "measurementResults")
        for result in submission["measurementResults"]:
            self.measurement_result(results, result)
        return root

    def software(self, parent: etree._Element, tag: str, data: dict[str, Any]) -> None:
        element = self.el(parent, tag)
        self.attrs(element, data)
        self.text(element, _D + "name", data["name"])
        self.el(element, _D + "release", data["release"])
        self.opt(element, _D + "type", data, "type")
        self.opt_text(element, _D + "description", data, "description")

    def core_data(self, parent: etree._Element, data: dict[str, Any]) -> None:
        core = self.el(parent, _D + "coreData")
        self.el(core, _D + "countryCodeISO3166_1", data["countryCode"])
        for language in data["usedLanguages"]:
            self.el(core, _D + "usedLangCodeISO639_1", language)
        for language in data["mandatoryLanguages"]:
            self.el(core, _D + "mandatoryLangCodeISO639_1", language)
        self.el(core, _D + "uniqueIdentifier", data["uniqueIdentifier"])
        self.identifications(core, data.get("identifications"))
        self.opt(core, _D + "receiptDate", data, "receiptDate")
        self.el(core, _D + "beginPerformanceDate", data["beginPerformanceDate"])
        self.el(core, _D + "endPerformanceDate", data["endPerformanceDate"])
        self.el(core, _D + "performanceLocation", data["performanceLocation"])
        self.opt(core, _D + "issueDate", data, "issueDate")
        if "reportAmendedSubstituted" in data:
            change = data["reportAmendedSubstituted"]
            element = self.el(core, _D + "reportAmendedSubstituted")
            self.el(element, _D + "typeOfChange", change["typeOfChange"])
            self.el(element, _D + "replacedUniqueIdentifier", change["replacedUniqueIdentifier"])

    def identifications(self, parent: etree._Element, identifications: list[dict[str, Any]] | None) -> None:
        if not identifications:
            return
        container = self.el(parent, _D + "identifications")
        for data in identifications:
            element = self.el(container, _D + "identification")
            self.attrs(element, data)
            self.el(element, _D + "issuer", data["issuer"])
            self.el(element, _D + "value", data["value"])
            self.opt_text(element, _D + "name", data, "name")

    def equipment_classes(self, parent: etree._Element, data: dict[str, Any]) -> None:
        for equipment_class in data.get("equipmentClasses", []):
            element = self.el(parent, _D + "equipmentClass")
            self.attrs(element, equipment_class)
            self.el(element, _D + "reference", equipment_class["reference"])
            self.el(element, _D + "classID", equipment_class["classID"])
            self.opt(element, _D + "link", equipment_class, "link")

    def item(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "item")
        self.attrs(element, data)
        self.text(element, _D + "name", data["name"])
        self.equipment_classes(element, data)
        self.opt_text(element, _D + "description", data, "description")
        if "manufacturer" in data:
            self.contact(element, _D + "manufacturer", data["manufacturer"])
        self.opt(element, _D + "model", data, "model")
        self.identifications(element, data["identifications"])
        if "itemQuantities" in data:
            quantities = self.el(element, _D + "itemQuantities")
            for quantity in data["itemQuantities"]:
                self.quantity(quantities, _D + "itemQuantity", quantity, primitive=True)
        if "subItems" in data:
            sub_items = self.el(element, _D + "subItems")
            for sub_item in data["subItems"]:
                self.item(sub_items, sub_item)

    def location(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "location")
        for field in _LOCATION_FIELDS:
            self.opt(element, _D + field, data, field)
        self.opt_text(element, _D + "further", data, "further")

    def contact_fields(self, element: etree._Element, data: dict[str, Any]) -> None:
        self.text(element, _D + "name", data["name"])
        self.opt(element, _D + "eMail", data, "email")
        self.opt(element, _D + "phone", data, "phone")
        self.opt(element, _D + "fax", data, "fax")
        self.opt(element, _D + "link", data, "link")
        if "location" in data:
            self.location(element, data["location"])

    def contact(self, parent: etree._Element, tag: str, data: dict[str, Any]) -> None:
        self.contact_fields(self.el(parent, tag), data)

    def resp_person(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "respPerson")
        self.attrs(element, data)
        self.contact_fields(self.el(element, _D + "person"), data)
        self.opt_text(element, _D + "description", data, "description")
        self.opt(element, _D + "role", data, "role")
        if "mainSigner" in data:
            self.el(element, _D + "mainSigner", "true" if data["mainSigner"] else "false")

    def strings(self, parent: etree._Element, tag: str, values: list[str] | None) -> None:
        for value in values or []:
            self.el(parent, tag, value)

    def statement(self, parent: etree._Element, tag: str, data: dict[str, Any]) -> None:
        element = self.el(parent, tag)
        self.attrs(element, data)
        self.opt_text(element, _D + "name", data, "name")
        self.opt_text(element, _D + "description", data, "description")
        self.strings(element, _D + "countryCodeISO3166_1", data.get("countryCodes"))
        self.opt(element, _D + "convention", data, "convention")
        if "traceable" in data:
            self.el(element, _D + "traceable", "true" if data["traceable"] else "false")
        self.strings(element, _D + "norm", data.get("norms"))
        self.strings(element, _D + "reference", data.get("references"))
        self.strings(element, _D + "link", data.get("links"))
        self.opt_text(element, _D + "declaration", data, "declaration")
        if "valid" in data:
            self.el(element, _D + "valid", "true" if data["valid"] else "false")
        self.opt(element, _D + "date", data, "date")
        if "respAuthority" in data:
            self.contact(element, _D + "respAuthority", data["respAuthority"])
        self.opt(element, _D + "conformity", data, "conformity")
        if "conformityXMLList" in data:
            self.el(element, _D + "conformityXMLList", " ".join(data["conformityXMLList"]))
        if "data" in data:
            self.data(element, data["data"])

    # --- measurement results

    def measurement_result(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "measurementResult")
        self.attrs(element, data)
        self.text(element, _D + "name", data["name"])
        self.opt_text(element, _D + "description", data, "description")
        self.used_methods(element, data)
        if "measuringEquipments" in data:
            equipments = self.el(element, _D + "measuringEquipments")
            for equipment in data["measuringEquipments"]:
                self.equipment(equipments, equipment)
        self.influence_conditions(element, data)
        results = self.el(element, _D + "results")
        for result in data["results"]:
            result_element = self.el(results, _D + "result")
            self.attrs(result_element, result)
            self.text(result_element, _D + "name", result["name"])
            self.opt_text(result_element, _D + "description", result, "description")
            self.data(result_element, result["data"])
        self.meta_data(element, data)

    def equipment(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "measuringEquipment")
        self.attrs(element, data)
        self.text(element, _D + "name", data["name"])
        self.equipment_classes(element, data)
        self.opt_text(element, _D + "description", data, "description")
        if "manufacturer" in data:
            self.contact(element, _D + "manufacturer", data["manufacturer"])
        self.opt(element, _D + "model", data, "model")
        self.identifications(element, data.get("identifications"))

    def used_methods(self, parent: etree._Element, data: dict[str, Any]) -> None:
        if "usedMethods" not in data:
            return
        methods = self.el(parent, _D + "usedMethods")
        for method in data["usedMethods"]:
            element = self.el(methods, _D + "usedMethod")
            self.attrs(element, method)
            self.text(element, _D + "name", method["name"])
            self.opt_text(element, _D + "description", method, "description")
            self.strings(element, _D + "norm", method.get("norms"))
            self.strings(element, _D + "reference", method.get("references"))
            self.strings(element, _D + "link", method.get("links"))

    def influence_conditions(self, parent: etree._Element, data: dict[str, Any]) -> None:
        if "influenceConditions" not in data:
            return
        conditions = self.el(parent, _D + "influenceConditions")
        for condition in data["influenceConditions"]:
            element = self.el(conditions, _D + "influenceCondition")
            self.attrs(element, condition)
            self.text(element, _D + "name", condition["name"])
            self.opt_text(element, _D + "description", condition, "description")
            self.opt(element, _D + "status", condition, "status")
            self.data(element, condition["data"])

    def meta_data(self, parent: etree._Element, data: dict[str, Any]) -> None:
        if "measurementMetaData" not in data:
            return
        container = self.el(parent, _D + "measurementMetaData")
        for meta in data["measurementMetaData"]:
            self.statement(container, _D + "metaData", meta)

    def data(self, parent: etree._Element, entries: list[dict[str, Any]]) -> None:
        element = self.el(parent, _D + "data")
        self.entries(element, entries)

    def entries(self, parent: etree._Element, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            if "quantity" in entry:
                self.quantity(parent, _D + "quantity", entry["quantity"])
            elif "list" in entry:
                self.list(parent, entry["list"])
            else:
                self.text(parent, _D + "text", entry["text"])

    def list(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _D + "list")
        self.attrs(element, data)
        self.opt_text(element, _D + "name", data, "name")
        self.opt_text(element, _D + "description", data, "description")
        self.opt(element, _D + "dateTime", data, "dateTime")
        self.entries(element, data["data"])
        self.used_methods(element, data)
        self.influence_conditions(element, data)
        self.meta_data(element, data)

    def quantity(self, parent: etree._Element, tag: str, data: dict[str, Any], *, primitive: bool = False) -> None:
        element = self.el(parent, tag)
        self.attrs(element, data)
        self.opt_text(element, _D + "name", data, "name")
        self.opt_text(element, _D + "description", data, "description")
        if "real" in data:
            self.real(element, _S + "real", data["real"])
        elif "realListXMLList" in data:
            self.real_list(element, data["realListXMLList"])
        elif "hybrid" in data:
            hybrid = self.el(element, _S + "hybrid")
            for real in data["hybrid"].get("real", []):
                self.real(hybrid, _S + "real", real)
            for real_list in data["hybrid"].get("realListXMLList", []):
                self.real_list(hybrid, real_list)
        elif "noQuantity" in data:
            self.text(element, _D + "noQuantity", data["noQuantity"])
        else:
            self.el(element, _D + "charsXMLList", " ".join(data["charsXMLList"]))
        if not primitive:
            self.used_methods(element, data)
            self.influence_conditions(element, data)
            self.meta_data(element, data)

    # --- D-SI

    def real(self, parent: etree._Element, tag: str, data: dict[str, Any]) -> None:
        element = self.el(parent, tag)
        self.opt(element, _S + "label", data, "label")
        self.el(element, _S + "value", _decimal(data["value"]))
        self.el(element, _S + "unit", data["unit"])
        self.opt(element, _S + "dateTime", data, "dateTime")
        if "uncertainty" not in data:
            return
        uncertainty = data["uncertainty"]
        container = self.el(element, _S + "measurementUncertaintyUnivariate")
        if "expanded" in uncertainty:
            expanded = uncertainty["expanded"]
            mu = self.el(container, _S + "expandedMU")
            self.el(mu, _S + "valueExpandedMU", _decimal(expanded["uncertainty"]))
            self.el(mu, _S + "coverageFactor", _fixed(expanded["coverageFactor"]))
            self.el(mu, _S + "coverageProbability", _fixed(expanded["coverageProbability"]))
            self.opt(mu, _S + "distribution", expanded, "distribution")
        elif "standard" in uncertainty:
            standard = uncertainty["standard"]
            mu = self.el(container, _S + "standardMU")
            self.el(mu, _S + "valueStandardMU", _decimal(standard["uncertainty"]))
            self.opt(mu, _S + "distribution", standard, "distribution")
        else:
            interval = uncertainty["coverageInterval"]
            mu = self.el(container, _S + "coverageIntervalMU")
            self.el(mu, _S + "valueStandardMU", _decimal(interval["standardUncertainty"]))
            self.el(mu, _S + "intervalMin", _decimal(interval["intervalMin"]))
            self.el(mu, _S + "intervalMax", _decimal(interval["intervalMax"]))
            self.el(mu, _S + "coverageProbability", _fixed(interval["coverageProbability"]))
            self.opt(mu, _S + "distribution", interval, "distribution")

    def real_list(self, parent: etree._Element, data: dict[str, Any]) -> None:
        element = self.el(parent, _S + "realListXMLList")
        if "labelXMLList" in data:
            self.el(element, _S + "labelXMLList", " ".join(data["labelXMLList"]))
        self.el(element, _S + "valueXMLList", _xml_list(data["valueXMLList"]))
        self.el(element, _S + "unitXMLList", " ".join(data["unitXMLList"]))
        if "dateTimeXMLList" in data:
            self.el(element, _S + "dateTimeXMLList", " ".join(data["dateTimeXMLList"]))
        if "uncertainty" not in data:
            return
        uncertainty = data["uncertainty"]
        container = self.el(element, _S + "measurementUncertaintyUnivariateXMLList")
        if "expanded" in uncertainty:
            expanded = uncertainty["expanded"]
            mu = self.el(container, _S + "expandedMUXMLList")
            self.el(mu, _S + "valueExpandedMUXMLList", _xml_list(expanded["uncertaintyXMLList"]))
            self.el(mu, _S + "coverageFactorXMLList", _xml_list(expanded["coverageFactorXMLList"], fixed=True))
            probabilities = _xml_list(expanded["coverageProbabilityXMLList"], fixed=True)
            self.el(mu, _S + "coverageProbabilityXMLList", probabilities)
            source = expanded
        elif "standard" in uncertainty:
            source = uncertainty["standard"]
            mu = self.el(container, _S + "standardMUXMLList")
            self.el(mu, _S + "valueStandardMUXMLList", _xml_list(source["uncertaintyXMLList"]))
        else:
            source = uncertainty["coverageInterval"]
            mu = self.el(container, _S + "coverageIntervalMUXMLList")
            self.el(mu, _S + "valueStandardMUXMLList", _xml_list(source["standardUncertaintyXMLList"]))
            self.el(mu, _S + "intervalMinXMLList", _xml_list(source["intervalMinXMLList"]))
            self.el(mu, _S + "intervalMaxXMLList", _xml_list(source["intervalMaxXMLList"]))
            probabilities = _xml_list(source["coverageProbabilityXMLList"], fixed=True)
            self.el(mu, _S + "coverageProbabilityXMLList", probabilities)
        if "distributionXMLList" in source:
            self.el(mu, _S + "distributionXMLList", " ".join(source["distributionXMLList"]))


def build_dcc_xml(submission: dict) -> bytes:
    """Validate a JSON submission and build its DCC 3.3.0 XML (UTF-8, with XML declaration)."""
    findings = check_submission(submission)
    if findings:
        raise SubmissionInvalid(findings)
    root = _Builder().document(submission)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ---------------------------------------------------------------------------------------------------------
# XML → JSON


def _local(element: etree._Element) -> str | None:
    tag = element.tag
    if not isinstance(tag, str):  # comments and processing instructions
        return None
    return etree.QName(tag).localname


def _kids(element: etree._Element | None, name: str | None = None) -> list[etree._Element]:
    if element is None:
        return []
    return [kid for kid in element if _local(kid) is not None and (name is None or _local(kid) == name)]


def _kid(element: etree._Element | None, name: str) -> etree._Element | None:
    found = _kids(element, name)
    return found[0] if found else None


def _first_kid(element: etree._Element | None, *names: str) -> etree._Element | None:
    # Not `a or b`: an lxml element without children is falsy.
    for name in names:
        found = _kid(element, name)
        if found is not None:
            return found
    return None


def _value(element: etree._Element | None) -> str | None:
    """The element's text, stripped; None when absent or empty."""
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return text or None


def _tokens(element: etree._Element | None) -> list[str] | None:
    text = _value(element)
    return text.split() if text else None


def _boolean(element: etree._Element | None) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get(_value(element) or "")


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != [] and value != {}:
        target[key] = value


class _Reader:
    """Reads one DCC of any release into the submission shape."""

    def __init__(self, root: etree._Element) -> None:
        core = _kid(_kid(root, "administrativeData"), "coreData")
        self.languages = [
            language
            for name in ("mandatoryLangCodeISO639_1", "usedLangCodeISO639_1")
            for language in (_value(element) for element in _kids(core, name))
            if language
        ]

    def text(self, element: etree._Element | None) -> str | dict[str, str] | None:
        """Texts per language; a lone untagged content stays a plain string."""
        if element is None:
            return None
        contents = _kids(element, "content")
        if not contents:
            return None
        texts = [(content.get("lang"), "".join(content.itertext())) for content in contents]
        if len(texts) == 1 and texts[0][0] is None:
            return texts[0][1]
        by_language: dict[str, str] = {}
        untagged: list[str] = []
        for language, content in texts:
            if language is None:
                untagged.append(content)
            elif language in by_language:  # 2.x files split paragraphs into several contents per language
                by_language[language] += "\n" + content
            else:
                by_language[language] = content
        for content in untagged:
            # Untagged text beside tagged text: give it the first declared language still free.
            free = [language for language in self.languages if language not in by_language]
            if free:
                by_language[free[0]] = content
        return by_language or untagged[0]

    def attrs(self, element: etree._Element, target: dict[str, Any]) -> dict[str, Any]:
        for key in ("id", "refId", "refType"):
            value = (element.get(key) or "").strip()
            if value:
                target[key] = " ".join(value.split())
        return target

    # --- administrative data

    def document(self, root: etree._Element) -> dict[str, Any]:
        admin = _kid(root, "administrativeData")
        out: dict[str, Any] = {}
        administrative: dict[str, Any] = {}
        _put(
            administrative,
            "dccSoftware",
            [self.software(element) for element in _kids(_kid(admin, "dccSoftware"), "software")],
        )
        _put(administrative, "coreData", self.core_data(_kid(admin, "coreData")))
        _put(administrative, "items", [self.item(element) for element in _kids(_kid(admin, "items"), "item")])
        lab = _kid(admin, "calibrationLaboratory")
        if lab is not None:
            lab_out: dict[str, Any] = {}
            _put(lab_out, "code", _value(_kid(lab, "calibrationLaboratoryCode")))
            _put(lab_out, "contact", self.contact(_kid(lab, "contact")))
            administrative["calibrationLaboratory"] = lab_out
        _put(
            administrative,
            "respPersons",
            [self.resp_person(element) for element in _kids(_kid(admin, "respPersons"), "respPerson")],
        )
        _put(administrative, "customer", self.contact(_kid(admin, "customer")))
        statements = [self.statement(element) for element in _kids(_kid(admin, "statements"), "statement")]
        _put(administrative, "statements", statements)
        out["administrativeData"] = administrative
        results = _kids(_kid(root, "measurementResults"), "measurementResult")
        out["measurementResults"] = [
            result for result in (self.measurement_result(element) for element in results) if result
        ]
        return out

    def software(self, element: etree._Element) -> dict[str, Any]:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "release", _value(_kid(element, "release")))
        _put(out, "type", _value(_kid(element, "type")))
        _put(out, "description", self.text(_kid(element, "description")))
        return out

    def core_data(self, core: etree._Element | None) -> dict[str, Any] | None:
        if core is None:
            return None
        out: dict[str, Any] = {}
        _put(out, "countryCode", _value(_kid(core, "countryCodeISO3166_1")))
        used = [_value(element) for element in _kids(core, "usedLangCodeISO639_1")]
        _put(out, "usedLanguages", [language for language in used if language])
        mandatory = [_value(element) for element in _kids(core, "mandatoryLangCodeISO639_1")]
        _put(out, "mandatoryLanguages", [language for language in mandatory if language])
        _put(out, "uniqueIdentifier", _value(_kid(core, "uniqueIdentifier")))
        _put(out, "identifications", self.identifications(_kid(core, "identifications")))
        for name in ("receiptDate", "beginPerformanceDate", "endPerformanceDate", "performanceLocation"):
            _put(out, name, _value(_kid(core, name)))
        _put(out, "issueDate", _value(_kid(core, "issueDate")))
        change = _kid(core, "reportAmendedSubstituted")
        if change is not None:
            change_out: dict[str, Any] = {}
            _put(change_out, "typeOfChange", _value(_kid(change, "typeOfChange")))
            _put(change_out, "replacedUniqueIdentifier", _value(_kid(change, "replacedUniqueIdentifier")))
            _put(out, "reportAmendedSubstituted", change_out)
        return out

    def identifications(self, container: etree._Element | None) -> list[dict[str, Any]]:
        out = []
        for element in _kids(container, "identification"):
            identification = self.attrs(element, {})
            _put(identification, "issuer", _value(_kid(element, "issuer")))
            _put(identification, "value", _value(_kid(element, "value")))
            # DCC 2.x called the identifier's name "description".
            name = self.text(_kid(element, "name")) or self.text(_kid(element, "description"))
            _put(identification, "name", name)
            out.append(identification)
        return out

    def equipment_classes(self, element: etree._Element) -> list[dict[str, Any]]:
        out = []
        for class_element in _kids(element, "equipmentClass"):
            equipment_class = self.attrs(class_element, {})
            _put(equipment_class, "reference", _value(_kid(class_element, "reference")))
            _put(equipment_class, "classID", _value(_kid(class_element, "classID")))
            _put(equipment_class, "link", _value(_kid(class_element, "link")))
            out.append(equipment_class)
        return out

    def item(self, element: etree._Element) -> dict[str, Any]:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "equipmentClasses", self.equipment_classes(element))
        _put(out, "description", self.text(_kid(element, "description")))
        _put(out, "manufacturer", self.contact(_kid(element, "manufacturer")))
        _put(out, "model", _value(_kid(element, "model")))
        _put(out, "identifications", self.identifications(_kid(element, "identifications")))
        quantities = [self.quantity(q, primitive=True) for q in _kids(_kid(element, "itemQuantities"))]
        _put(out, "itemQuantities", [quantity for quantity in quantities if quantity])
        _put(out, "subItems", [self.item(sub) for sub in _kids(_kid(element, "subItems"), "item")])
        return out

    def location(self, element: etree._Element | None) -> dict[str, Any] | None:
        if element is None:
            return None
        out: dict[str, Any] = {}
        for field in _LOCATION_FIELDS:
            _put(out, field, _value(_kid(element, field)))
        _put(out, "further", self.text(_kid(element, "further")))
        return out or None

    def contact_fields(self, element: etree._Element, out: dict[str, Any]) -> dict[str, Any]:
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "email", _value(_kid(element, "eMail")))
        _put(out, "phone", _value(_kid(element, "phone")))
        _put(out, "fax", _value(_kid(element, "fax")))
        _put(out, "link", _value(_kid(element, "link")))
        _put(out, "location", self.location(_kid(element, "location")))
        return out

    def contact(self, element: etree._Element | None) -> dict[str, Any] | None:
        if element is None:
            return None
        return self.contact_fields(element, {}) or None

    def resp_person(self, element: etree._Element) -> dict[str, Any]:
        out = self.attrs(element, {})
        person = _kid(element, "person")
        if person is not None:
            self.contact_fields(person, out)
            if "name" not in out and _value(person):  # some 2.x drafts put the name straight in dcc:person
                out["name"] = _value(person)
        _put(out, "description", self.text(_kid(element, "description")))
        _put(out, "role", _value(_kid(element, "role")))
        _put(out, "mainSigner", _boolean(_kid(element, "mainSigner")))
        return out

    def strings(self, element: etree._Element, name: str) -> list[str]:
        return [value for value in (_value(kid) for kid in _kids(element, name)) if value]

    def statement(self, element: etree._Element) -> dict[str, Any]:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "description", self.text(_kid(element, "description")))
        _put(out, "countryCodes", self.strings(element, "countryCodeISO3166_1"))
        _put(out, "convention", _value(_kid(element, "convention")))
        _put(out, "traceable", _boolean(_kid(element, "traceable")))
        _put(out, "norms", self.strings(element, "norm"))
        _put(out, "references", self.strings(element, "reference"))
        _put(out, "links", self.strings(element, "link"))
        _put(out, "declaration", self.text(_kid(element, "declaration")))
        _put(out, "valid", _boolean(_kid(element, "valid")))
        _put(out, "date", _value(_kid(element, "date")))
        _put(out, "respAuthority", self.contact(_kid(element, "respAuthority")))
        _put(out, "conformity", _value(_kid(element, "conformity")))
        _put(out, "conformityXMLList", _tokens(_kid(element, "conformityXMLList")))
        _put(out, "data", self.data(_kid(element, "data")))
        return out

    # --- measurement results

    def measurement_result(self, element: etree._Element) -> dict[str, Any] | None:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "description", self.text(_kid(element, "description")))
        self.methods_and_conditions(element, out)
        equipments = _kids(_kid(element, "measuringEquipments"), "measuringEquipment")
        _put(out, "measuringEquipments", [self.equipment(equipment) for equipment in equipments])
        results = []
        for result_element in _kids(_kid(element, "results"), "result"):
            result = self.attrs(result_element, {})
            _put(result, "name", self.text(_kid(result_element, "name")))
            _put(result, "description", self.text(_kid(result_element, "description")))
            _put(result, "data", self.data(_kid(result_element, "data")))
            if "data" in result:  # a result whose data is all files or formulas has nothing left to say
                results.append(result)
        if not results:
            return None
        out["results"] = results
        _put(out, "measurementMetaData", self.meta_data(element))
        return out

    def equipment(self, element: etree._Element) -> dict[str, Any]:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "equipmentClasses", self.equipment_classes(element))
        _put(out, "description", self.text(_kid(element, "description")))
        _put(out, "manufacturer", self.contact(_kid(element, "manufacturer")))
        _put(out, "model", _value(_kid(element, "model")))
        _put(out, "identifications", self.identifications(_kid(element, "identifications")))
        return out

    def methods_and_conditions(self, element: etree._Element, out: dict[str, Any]) -> None:
        methods = []
        for method_element in _kids(_kid(element, "usedMethods"), "usedMethod"):
            method = self.attrs(method_element, {})
            _put(method, "name", self.text(_kid(method_element, "name")))
            _put(method, "description", self.text(_kid(method_element, "description")))
            _put(method, "norms", self.strings(method_element, "norm"))
            _put(method, "references", self.strings(method_element, "reference"))
            _put(method, "links", self.strings(method_element, "link"))
            methods.append(method)
        _put(out, "usedMethods", methods)
        conditions = []
        for condition_element in _kids(_kid(element, "influenceConditions"), "influenceCondition"):
            condition = self.attrs(condition_element, {})
            _put(condition, "name", self.text(_kid(condition_element, "name")))
            _put(condition, "description", self.text(_kid(condition_element, "description")))
            _put(condition, "status", _value(_kid(condition_element, "status")))
            _put(condition, "data", self.data(_kid(condition_element, "data")))
            if "data" in condition:
                conditions.append(condition)
        _put(out, "influenceConditions", conditions)

    def meta_data(self, element: etree._Element) -> list[dict[str, Any]]:
        return [self.statement(meta) for meta in _kids(_kid(element, "measurementMetaData"), "metaData")]

    def data(self, element: etree._Element | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kid in _kids(element):
            name = _local(kid)
            if name == "quantity":
                quantity = self.quantity(kid)
                if quantity:
                    out.append({"quantity": quantity})
            elif name == "list":
                dcc_list = self.dcc_list(kid)
                if dcc_list:
                    out.append({"list": dcc_list})
            elif name == "text":
                text = self.text(kid)
                if text is not None:
                    out.append({"text": text})
        return out

    def dcc_list(self, element: etree._Element) -> dict[str, Any] | None:
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "description", self.text(_kid(element, "description")))
        _put(out, "dateTime", _value(_kid(element, "dateTime")))
        entries = [entry for entry in self.data(element) if "text" not in entry]
        if not entries:
            return None
        out["data"] = entries
        self.methods_and_conditions(element, out)
        _put(out, "measurementMetaData", self.meta_data(element))
        return out

    def quantity(self, element: etree._Element, *, primitive: bool = False) -> dict[str, Any] | None:
        """A quantity with a value the JSON covers; None for si:constant, si:complex and the like."""
        out = self.attrs(element, {})
        _put(out, "name", self.text(_kid(element, "name")))
        _put(out, "description", self.text(_kid(element, "description")))
        value_found = False
        for kid in _kids(element):
            name = _local(kid)
            if name == "real":
                value: Any = _real(kid)
                key = "real"
            elif name == "realListXMLList":
                value, key = _real_list_xml(kid), "realListXMLList"
            elif name in ("list", "realList"):  # inside a quantity this is si:list (D-SI 1.x) or si:realList
                value, key = _legacy_list(kid), "realListXMLList"
            elif name == "hybrid":
                value, key = _hybrid(kid), "hybrid"
            elif name == "noQuantity":
                value, key = self.text(kid), "noQuantity"
            elif name == "charsXMLList":
                value, key = _tokens(kid), "charsXMLList"
            else:
                continue
            if value is not None:
                out[key] = value
                value_found = True
            break
        if not value_found:
            return None
        if not primitive:
            self.methods_and_conditions(element, out)
            _put(out, "measurementMetaData", self.meta_data(element))
        return out


def _uncertainty(element: etree._Element) -> dict[str, Any] | None:
    """Univariate uncertainty of an si:real in any D-SI release (MU elements or deprecated expandedUnc)."""
    # D-SI 2.x misspells the element inside si:realList ("Univaraite").
    container = _first_kid(element, "measurementUncertaintyUnivariate", "measurementUncertaintyUnivaraite")
    expanded = _kid(container, "expandedMU")
    if expanded is not None:
        return _expanded(expanded, "valueExpandedMU")
    standard = _kid(container, "standardMU")
    if standard is not None:
        value = _value(_kid(standard, "valueStandardMU"))
        if value is None:
            return None
        out: dict[str, Any] = {"uncertainty": value}
        _put(out, "distribution", _value(_kid(standard, "distribution")))
        return {"standard": out}
    interval = _kid(container, "coverageIntervalMU")
    if interval is not None:
        return _interval(interval, "valueStandardMU")
    legacy = _kid(element, "expandedUnc")
    if legacy is not None:
        return _expanded(legacy, "uncertainty")
    legacy = _kid(element, "coverageInterval")
    if legacy is not None:
        return _interval(legacy, "standardUnc")
    return None


def _expanded(element: etree._Element, value_name: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {
        "uncertainty": _value(_kid(element, value_name)),
        "coverageFactor": _value(_kid(element, "coverageFactor")),
        "coverageProbability": _value(_kid(element, "coverageProbability")),
    }
    if None in out.values():
        return None
    _put(out, "distribution", _value(_kid(element, "distribution")))
    return {"expanded": out}


def _interval(element: etree._Element, value_name: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {
        "standardUncertainty": _value(_kid(element, value_name)),
        "intervalMin": _value(_kid(element, "intervalMin")),
        "intervalMax": _value(_kid(element, "intervalMax")),
        "coverageProbability": _value(_kid(element, "coverageProbability")),
    }
    if None in out.values():
        return None
    _put(out, "distribution", _value(_kid(element, "distribution")))
    return {"coverageInterval": out}


def _real(element: etree._Element, *, unit: str | None = None) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    _put(out, "label", _value(_kid(element, "label")))
    value = _value(_kid(element, "value"))
    unit = _value(_kid(element, "unit")) or unit
    if value is None or unit is None:
        return None
    out["value"] = value
    out["unit"] = unit
    _put(out, "dateTime", _value(_kid(element, "dateTime")))
    _put(out, "uncertainty", _uncertainty(element))
    return out


def _list_uncertainty(element: etree._Element) -> dict[str, Any] | None:
    container = _kid(element, "measurementUncertaintyUnivariateXMLList")
    expanded = _kid(container, "expandedMUXMLList")
    legacy = _kid(element, "expandedUncXMLList")
    if expanded is not None or legacy is not None:
        source = expanded if expanded is not None else legacy
        value_name = "valueExpandedMUXMLList" if expanded is not None else "uncertaintyXMLList"
        out: dict[str, Any] = {
            "uncertaintyXMLList": _tokens(_kid(source, value_name)),
            "coverageFactorXMLList": _tokens(_kid(source, "coverageFactorXMLList")),
            "coverageProbabilityXMLList": _tokens(_kid(source, "coverageProbabilityXMLList")),
        }
        kind = "expanded"
    elif (standard := _kid(container, "standardMUXMLList")) is not None:
        source = standard
        out = {"uncertaintyXMLList": _tokens(_kid(standard, "valueStandardMUXMLList"))}
        kind = "standard"
    else:
        interval = _kid(container, "coverageIntervalMUXMLList")
        legacy = _kid(element, "coverageIntervalXMLList")
        if interval is None and legacy is None:
            return None
        source = interval if interval is not None else legacy
        value_name = "valueStandardMUXMLList" if interval is not None else "standardUncXMLList"
        out = {
            "standardUncertaintyXMLList": _tokens(_kid(source, value_name)),
            "intervalMinXMLList": _tokens(_kid(source, "intervalMinXMLList")),
            "intervalMaxXMLList": _tokens(_kid(source, "intervalMaxXMLList")),
            "coverageProbabilityXMLList": _tokens(_kid(source, "coverageProbabilityXMLList")),
        }
        kind = "coverageInterval"
    if None in out.values():
        return None
    _put(out, "distributionXMLList", _tokens(_kid(source, "distributionXMLList")))
    return {kind: out}


def _real_list_xml(element: etree._Element) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    _put(out, "labelXMLList", _tokens(_kid(element, "labelXMLList")))
    values = _tokens(_kid(element, "valueXMLList"))
    units = _tokens(_kid(element, "unitXMLList"))
    if not values or not units:
        return None
    out["valueXMLList"] = values
    out["unitXMLList"] = units
    _put(out, "dateTimeXMLList", _tokens(_kid(element, "dateTimeXMLList")))
    _put(out, "uncertainty", _list_uncertainty(element))
    return out


def _same_or_all(values: list[Any]) -> list[Any]:
    """One entry when all are equal (D-SI lists broadcast a single unit or uncertainty), else all."""
    return values[:1] if all(value == values[0] for value in values) else values


def _legacy_list(element: etree._Element) -> dict[str, Any] | None:
    """An si:list (D-SI 1.x) or si:realList of si:real elements, rewritten as a realListXMLList."""
    reals = _kids(element, "real")
    if not reals:
        nested = [kid for kid in _kids(element) if _local(kid) in ("list", "realList", "realListXMLList")]
        if len(nested) != 1:
            return None  # several sub-lists have no single-list equivalent
        kid = nested[0]
        return _real_list_xml(kid) if _local(kid) == "realListXMLList" else _legacy_list(kid)
    list_unit = _value(_kid(element, "listUnit"))
    parsed = [_real(real, unit=list_unit) for real in reals]
    if any(real is None for real in parsed):
        return None
    entries: list[dict[str, Any]] = [real for real in parsed if real is not None]
    out: dict[str, Any] = {}
    labels = [entry.get("label") for entry in entries]
    if all(label and " " not in label for label in labels):
        out["labelXMLList"] = labels
    out["valueXMLList"] = [entry["value"] for entry in entries]
    out["unitXMLList"] = _same_or_all([entry["unit"] for entry in entries])
    times = [entry.get("dateTime") for entry in entries]
    if all(times):
        out["dateTimeXMLList"] = times
    list_level = _first_kid(element, "listUnivariateUnc", "listMeasurementUncertaintyUnivariate")
    shared = _uncertainty(list_level) if list_level is not None else None
    if shared is None and list_level is not None:
        shared = _expanded_any(list_level)
    uncertainties = [shared] if shared else [entry.get("uncertainty") for entry in entries]
    kinds = {next(iter(u)) for u in uncertainties if u}
    if len(kinds) == 1 and all(uncertainties):
        kind = kinds.pop()
        parts = [u[kind] for u in uncertainties if u]
        if kind == "expanded":
            out["uncertainty"] = {
                "expanded": {
                    "uncertaintyXMLList": [part["uncertainty"] for part in parts],
                    "coverageFactorXMLList": _same_or_all([part["coverageFactor"] for part in parts]),
                    "coverageProbabilityXMLList": _same_or_all([part["coverageProbability"] for part in parts]),
                }
            }
        elif kind == "standard":
            out["uncertainty"] = {"standard": {"uncertaintyXMLList": [part["uncertainty"] for part in parts]}}
    return out


def _expanded_any(element: etree._Element) -> dict[str, Any] | None:
    """List-level uncertainty written as si:expandedMU or si:expandedUnc directly inside its container."""
    expanded = _kid(element, "expandedMU")
    if expanded is not None:
        return _expanded(expanded, "valueExpandedMU")
    legacy = _kid(element, "expandedUnc")
    return _expanded(legacy, "uncertainty") if legacy is not None else None


def _hybrid(element: etree._Element) -> dict[str, Any] | None:
    reals: list[dict[str, Any]] = []
    lists: list[dict[str, Any]] = []
    for kid in _kids(element):
        name = _local(kid)
        if name == "real":
            real = _real(kid)
            if real:
                reals.append(real)
        elif name in ("realListXMLList", "realList", "list"):
            real_list = _real_list_xml(kid) if name == "realListXMLList" else _legacy_list(kid)
            if real_list:
                lists.append(real_list)
    # The XSD wants one kind per hybrid; reals win when a file mixes them.
    if reals:
        return {"real": reals}
    if lists:
        return {"realListXMLList": lists}
    return None


def _prune_references(document: dict[str, Any]) -> None:
    """Drop refId tokens that point at parts the export left out, so a rebuild stays XSD-valid."""
    ids = {value for kind, value, _ in _walk_ids(document, []) if kind == "id"}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                if key in _TEXT_KEYS:
                    continue
                if key == "refId" and isinstance(node[key], str):
                    kept = [token for token in node[key].split() if token in ids]
                    if kept:
                        node[key] = " ".join(kept)
                    else:
                        del node[key]
                else:
                    visit(node[key])
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)


def dcc_to_json(root: etree._Element) -> dict:
    """Export a parsed DCC (any release; 2.x best effort) in the submission JSON shape."""
    document = _Reader(root).document(root)
    _prune_references(document)
    return document
