"""JSON submissions ↔ DCC 3.3.0 XML: schema checks, XSD-valid builds, lossless round trips, corpus exports."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from lxml import etree

from certificates.dcc_json import (
    SUBMISSION_SCHEMA_ID,
    SUBMISSION_SCHEMA_PATH,
    SubmissionInvalid,
    build_dcc_xml,
    check_submission,
    dcc_to_json,
    submission_schema,
)
from certificates.schema import validate_against_schema
from certificates.xml import XmlRejected, parse_xml
from tests.paths import DCC_CORPUS, REPO_ROOT

DATA = Path(__file__).resolve().parent / "data"
VALID_330 = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "valid.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend" / "examples" / "DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"


def _corpus_dccs() -> list[Path]:
    """Every parseable DCC in the shared corpus (XSDs, D-SI fragments and broken XML left out)."""
    found = []
    for path in sorted(DCC_CORPUS.rglob("*.xml")) if DCC_CORPUS.is_dir() else []:
        try:
            root = parse_xml(path.read_bytes())
        except XmlRejected:
            continue
        if etree.QName(root).localname == "digitalCalibrationCertificate":
            found.append(path)
    return found


CORPUS = _corpus_dccs()


def _corpus_id(path: Path) -> str:
    return str(path.relative_to(DCC_CORPUS))


@pytest.fixture
def submission() -> dict[str, Any]:
    return json.loads((DATA / "submission-thermometer.json").read_text(encoding="utf-8"))


def _schema_validator() -> Draft202012Validator:
    # Validate with the published file itself, independent of the module's cached validator.
    schema = json.loads(SUBMISSION_SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _xsd_report(xml: bytes) -> Any:
    return validate_against_schema(parse_xml(xml), version="3.3.0")


def _raised(submission: Any) -> SubmissionInvalid:
    with pytest.raises(SubmissionInvalid) as raised:
        build_dcc_xml(submission)
    return raised.value


# --- the published schema


def test_schema_file_is_a_draft_2020_12_schema_with_a_neutral_id() -> None:
    schema = json.loads(SUBMISSION_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SUBMISSION_SCHEMA_ID
    assert SUBMISSION_SCHEMA_PATH == REPO_ROOT / "schemas" / "json" / "dcc-submission.schema.json"
    assert submission_schema() == schema


def test_every_schema_property_is_documented() -> None:
    schema = json.loads(SUBMISSION_SCHEMA_PATH.read_text(encoding="utf-8"))
    undocumented = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, child in node.get("properties", {}).items():
                if not child.get("description"):
                    undocumented.append(f"{path}/properties/{name}")
            for key, child in node.items():
                visit(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                visit(child, f"{path}/{index}")

    visit(schema, "#")
    assert undocumented == []
    assert all(definition.get("description") for definition in schema["$defs"].values())


def test_the_example_submission_matches_the_schema(submission: dict[str, Any]) -> None:
    assert list(_schema_validator().iter_errors(submission)) == []
    assert check_submission(submission) == []


# --- building


def test_build_gives_utf8_dcc_330_that_validates_against_the_xsd(submission: dict[str, Any]) -> None:
    xml = build_dcc_xml(submission)

    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = parse_xml(xml)
    assert root.tag == "{https://ptb.de/dcc}digitalCalibrationCertificate"
    assert root.get("schemaVersion") == "3.3.0"
    assert root.nsmap["dcc"] == "https://ptb.de/dcc"
    assert root.nsmap["si"] == "https://ptb.de/si"
    report = _xsd_report(xml)
    assert report.valid, [finding.message for finding in report.findings]
    assert report.schema_version == "3.3.0"


def test_build_keeps_decimal_lexical_forms_and_uses_modern_uncertainty(submission: dict[str, Any]) -> None:
    root = parse_xml(build_dcc_xml(submission))
    ns = {"dcc": "https://ptb.de/dcc", "si": "https://ptb.de/si"}

    values = root.xpath("//dcc:influenceCondition//si:real/si:value/text()", namespaces=ns)
    assert values == ["20.000", "23.50"]
    assert (
        root.xpath("//dcc:result//si:valueXMLList/text()", namespaces=ns)[0]
        == "273.150 293.150 323.150 373.150 423.150"
    )
    expanded = root.xpath("//si:real[si:label='dT_sh']//si:expandedMU", namespaces=ns)[0]
    assert [child.text for child in expanded] == ["0.0010", "2", "0.95", "normal"]
    assert root.xpath("//si:expandedUnc | //si:expandedUncXMLList", namespaces=ns) == []
    assert root.xpath("string(//dcc:coreData/dcc:issueDate)", namespaces=ns) == "2025-03-12"


def test_roundtrip_json_xml_json_is_lossless(submission: dict[str, Any]) -> None:
    original = copy.deepcopy(submission)

    exported = dcc_to_json(parse_xml(build_dcc_xml(submission)))

    assert submission == original  # the builder does not touch its input
    assert exported == submission
    assert exported["measurementResults"][0]["influenceConditions"][0]["data"][0]["quantity"]["real"] == {
        "value": "20.000",
        "unit": "\\degreecelsius",
    }


def test_json_numbers_are_accepted_and_exported_as_decimal_strings(submission: dict[str, Any]) -> None:
    real = submission["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"]
    real["value"] = 0.0042
    real["uncertainty"]["expanded"].update(uncertainty=1e-05, coverageFactor=2, coverageProbability=0.95)
    points = submission["measurementResults"][0]["influenceConditions"][1]["data"][0]["quantity"]
    points["realListXMLList"]["valueXMLList"] = [0.3, "0.60"]

    xml = build_dcc_xml(submission)

    assert _xsd_report(xml).valid
    exported = dcc_to_json(parse_xml(xml))
    exported_real = exported["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"]
    assert exported_real["value"] == "0.0042"
    assert exported_real["uncertainty"]["expanded"] == {
        "uncertainty": "1e-05",
        "coverageFactor": "2",
        "coverageProbability": "0.95",
        "distribution": "normal",
    }
    exported_points = exported["measurementResults"][0]["influenceConditions"][1]["data"][0]["quantity"]
    assert exported_points["realListXMLList"]["valueXMLList"] == ["0.3", "0.60"]


def test_minimal_submission_builds_valid_xml(submission: dict[str, Any]) -> None:
    admin = submission["administrativeData"]
    minimal = {
        "administrativeData": {
            "dccSoftware": [{"name": "x", "release": "1"}],
            "coreData": {
                key: admin["coreData"][key]
                for key in (
                    "countryCode",
                    "usedLanguages",
                    "mandatoryLanguages",
                    "uniqueIdentifier",
                    "beginPerformanceDate",
                    "endPerformanceDate",
                    "performanceLocation",
                )
            },
            "items": [{"name": "Thermometer", "identifications": [{"issuer": "manufacturer", "value": "1"}]}],
            "calibrationLaboratory": {"contact": {"name": "Lab", "location": {"city": "Berlin"}}},
            "respPersons": [{"name": "A. Person"}],
            "customer": {"name": "Customer", "location": {"countryCode": "DE"}},
        },
        "measurementResults": [
            {
                "name": "Results",
                "results": [{"name": "R", "data": [{"quantity": {"real": {"value": "1", "unit": "\\one"}}}]}],
            }
        ],
    }

    xml = build_dcc_xml(minimal)

    assert _xsd_report(xml).valid
    assert dcc_to_json(parse_xml(xml)) == minimal


# --- invalid submissions


def test_missing_unique_identifier_is_reported_at_its_json_pointer(submission: dict[str, Any]) -> None:
    del submission["administrativeData"]["coreData"]["uniqueIdentifier"]

    error = _raised(submission)

    assert [(finding.rule, finding.path) for finding in error.findings] == [
        ("json-schema", "/administrativeData/coreData/uniqueIdentifier")
    ]
    assert error.findings[0].severity == "error"
    assert "uniqueIdentifier" in error.findings[0].message


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (
            lambda s: s["administrativeData"]["respPersons"][0].update(mainSigner="yes"),
            "/administrativeData/respPersons/0/mainSigner",
        ),
        (
            lambda s: s["administrativeData"]["coreData"].update(usedLanguages="en"),
            "/administrativeData/coreData/usedLanguages",
        ),
        (lambda s: s["administrativeData"]["items"][0].update(model=42), "/administrativeData/items/0/model"),
        (
            lambda s: s["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"].update(value={"v": 1}),
            "/measurementResults/0/results/1/data/1/quantity/real/value",
        ),
        (
            lambda s: s["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"].update(value="20,5"),
            "/measurementResults/0/results/1/data/1/quantity/real/value",
        ),
        (
            lambda s: s["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"]["uncertainty"][
                "expanded"
            ].update(uncertainty="-0.1"),
            "/measurementResults/0/results/1/data/1/quantity/real/uncertainty/expanded/uncertainty",
        ),
        (lambda s: s.update(extra=True), ""),
        (
            lambda s: s["administrativeData"]["coreData"].update(countryCode="de"),
            "/administrativeData/coreData/countryCode",
        ),
    ],
    ids=[
        "boolean",
        "array",
        "string",
        "decimal-object",
        "decimal-comma",
        "negative-uncertainty",
        "extra",
        "country",
    ],
)
def test_wrong_types_are_reported_at_their_json_pointer(submission: dict[str, Any], mutate: Any, pointer: str) -> None:
    mutate(submission)

    error = _raised(submission)

    assert {finding.path for finding in error.findings} == {pointer}
    assert all(finding.rule == "json-schema" for finding in error.findings)


@pytest.mark.parametrize("bad_date", ["10.03.2025", "2025-3-10", "2025-02-30", "2025-03-10T09:00:00Z", ""])
def test_bad_dates_are_rejected(submission: dict[str, Any], bad_date: str) -> None:
    submission["administrativeData"]["coreData"]["beginPerformanceDate"] = bad_date
    submission["administrativeData"]["statements"][1]["date"] = bad_date

    error = _raised(submission)

    assert {finding.path for finding in error.findings} == {
        "/administrativeData/coreData/beginPerformanceDate",
        "/administrativeData/statements/1/date",
    }


def test_quantity_without_value_names_the_alternatives(submission: dict[str, Any]) -> None:
    quantity = submission["measurementResults"][0]["results"][1]["data"][1]["quantity"]
    del quantity["real"]

    error = _raised(submission)

    assert error.findings[0].path == "/measurementResults/0/results/1/data/1/quantity"
    assert "exactly one of" in error.findings[0].message
    assert "realListXMLList" in error.findings[0].message


def test_two_uncertainty_kinds_at_once_are_rejected(submission: dict[str, Any]) -> None:
    real = submission["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"]
    real["uncertainty"]["standard"] = {"uncertainty": "0.0005"}

    error = _raised(submission)

    assert error.findings[0].path == "/measurementResults/0/results/1/data/1/quantity/real/uncertainty"


def test_duplicate_ids_and_dangling_references_are_rejected(submission: dict[str, Any]) -> None:
    submission["measurementResults"][0]["results"][0]["id"] = "item1"
    submission["measurementResults"][0]["results"][1]["refId"] = "item1 nowhere"

    error = _raised(submission)

    assert [(finding.rule, finding.path) for finding in error.findings] == [
        ("json-id", "/measurementResults/0/results/0/id"),
        ("json-id", "/measurementResults/0/results/1/refId"),
    ]
    assert "nowhere" in error.findings[1].message


def test_language_keyed_text_may_use_the_code_id(submission: dict[str, Any]) -> None:
    # "id" is Indonesian here, not an XML id: it must not count as a duplicate or a reference.
    submission["administrativeData"]["items"][0]["name"]["id"] = "Termometer"
    submission["administrativeData"]["coreData"]["usedLanguages"].append("id")

    assert check_submission(submission) == []
    assert dcc_to_json(parse_xml(build_dcc_xml(submission))) == submission


def test_values_xml_cannot_carry_are_rejected(submission: dict[str, Any]) -> None:
    submission["administrativeData"]["items"][0]["model"] = "TS\x01100"
    real = submission["measurementResults"][0]["results"][1]["data"][1]["quantity"]["real"]
    real["value"] = float("inf")

    error = _raised(submission)

    assert [(finding.rule, finding.path) for finding in error.findings] == [
        ("json-value", "/administrativeData/items/0/model"),
        ("json-value", "/measurementResults/0/results/1/data/1/quantity/real/value"),
    ]


def test_non_object_submission_is_rejected_at_the_root() -> None:
    error = _raised(["not", "an", "object"])

    assert error.findings[0].path == ""


# --- export of stored certificates


@pytest.mark.parametrize("path", [VALID_330, GAUGE_BLOCK], ids=["dcclib-valid", "dkd-gauge-block"])
def test_export_of_real_330_certificates_matches_schema_and_rebuilds_valid(path: Path) -> None:
    exported = dcc_to_json(parse_xml(path.read_bytes()))

    assert list(_schema_validator().iter_errors(exported)) == []
    rebuilt = build_dcc_xml(exported)
    report = _xsd_report(rebuilt)
    assert report.valid, [finding.message for finding in report.findings]
    assert dcc_to_json(parse_xml(rebuilt)) == exported


def test_export_of_dcclib_valid_keeps_its_content() -> None:
    exported = dcc_to_json(parse_xml(VALID_330.read_bytes()))

    core = exported["administrativeData"]["coreData"]
    assert core["uniqueIdentifier"] == "1234"
    assert core["usedLanguages"] == ["en", "de"]
    assert "issueDate" not in core
    item = exported["administrativeData"]["items"][0]
    assert item["identifications"][0]["name"] == {"de": "Serien Nr.", "en": "Serial no."}
    table = exported["measurementResults"][0]["results"][0]["data"][0]["list"]
    reference, _, error = (entry["quantity"] for entry in table["data"])
    assert reference["hybrid"]["realListXMLList"][1]["unitXMLList"] == ["\\degreecelsius"]
    assert error["realListXMLList"]["valueXMLList"] == ["0.072", "0.089", "0.107", "-0.009", "-0.084"]
    assert error["realListXMLList"]["uncertainty"] == {
        "expanded": {
            "uncertaintyXMLList": ["0.061"],
            "coverageFactorXMLList": ["2"],
            "coverageProbabilityXMLList": ["0.95"],
            "distributionXMLList": ["normal"],
        }
    }
    assert error["measurementMetaData"][0]["conformityXMLList"] == ["pass"]


def test_export_of_gauge_block_keeps_sub_items_and_references() -> None:
    exported = dcc_to_json(parse_xml(GAUGE_BLOCK.read_bytes()))

    assert exported["administrativeData"]["coreData"]["issueDate"] == "2024-02-16"
    gauge_set = exported["administrativeData"]["items"][0]
    assert [sub["id"] for sub in gauge_set["subItems"]] == ["Item_1", "Item_2"]
    assert gauge_set["itemQuantities"][0]["charsXMLList"] == ["1"]
    assert gauge_set["itemQuantities"][2]["noQuantity"] == {"de": "Stahl", "en": "Steel"}
    visual = exported["measurementResults"][0]["results"][0]
    assert visual["refId"] == "setOfItems"
    central = exported["measurementResults"][2]["results"][0]["data"][0]["quantity"]["real"]
    assert central["value"] == "0.06000014"
    assert central["uncertainty"]["expanded"]["uncertainty"] == "0.136e-06"


def test_legacy_uncertainty_and_lists_are_exported_in_the_modern_shape() -> None:
    # DCC 2.x / D-SI 1.x: si:expandedUnc and si:list of si:real become `expanded` and a realListXMLList.
    exported = dcc_to_json(
        parse_xml((DCC_CORPUS / "aalto-smartcom" / "examples" / "DCC_K026-17P4654.xml").read_bytes())
    )

    first_list = exported["measurementResults"][0]["results"][0]["data"][0]["list"]
    indicated = first_list["data"][2]["quantity"]["realListXMLList"]
    assert indicated["unitXMLList"] == ["\\kilo\\Pascal"]
    assert indicated["valueXMLList"][:2] == ["0.00003", "5.00972"]
    assert indicated["uncertainty"]["expanded"]["coverageFactorXMLList"] == ["2"]


@pytest.mark.parametrize("path", CORPUS, ids=_corpus_id)
def test_export_of_every_corpus_dcc_does_not_raise(path: Path) -> None:
    exported = dcc_to_json(parse_xml(path.read_bytes()))

    assert set(exported) == {"administrativeData", "measurementResults"}
    json.dumps(exported)  # plain JSON data only


@pytest.mark.parametrize("path", CORPUS, ids=_corpus_id)
def test_every_schema_valid_export_rebuilds_as_valid_dcc_330(path: Path) -> None:
    exported = dcc_to_json(parse_xml(path.read_bytes()))
    if check_submission(exported):
        pytest.skip("export lacks required parts (template placeholders, 2.x core data)")

    report = _xsd_report(build_dcc_xml(exported))

    assert report.valid, [finding.message for finding in report.findings]


@pytest.mark.parametrize(
    "xml",
    [b"<foo/>", b"<dcc:digitalCalibrationCertificate xmlns:dcc='https://ptb.de/dcc'/>"],
    ids=["foreign", "empty"],
)
def test_export_of_an_unexpected_document_is_empty_not_an_error(xml: bytes) -> None:
    assert dcc_to_json(parse_xml(xml)) == {"administrativeData": {}, "measurementResults": []}


def test_corpus_is_present() -> None:
    assert len(CORPUS) >= 40
