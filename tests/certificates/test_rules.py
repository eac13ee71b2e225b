"""Semantic DCC rules and the D-SI unit check: one triggering and one clean case per rule, plus the corpus."""

import re
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from certificates.dsi_units import canonical_dsi_unit, check_dsi_unit
from certificates.findings import Finding, Severity
from certificates.rules import RULES, SEVERITIES, check_rules
from certificates.xml import parse_xml
from tests.paths import DCC_CORPUS

DCCLIB = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib"

# A small certificate that passes every rule; each test breaks exactly one thing in it.
CLEAN = r"""<?xml version="1.0" encoding="UTF-8"?>
<dcc:digitalCalibrationCertificate xmlns:dcc="https://ptb.de/dcc" xmlns:si="https://ptb.de/si"
    schemaVersion="3.3.0">
  <dcc:administrativeData>
    <dcc:dccSoftware>
      <dcc:software>
        <dcc:name><dcc:content>Editor</dcc:content></dcc:name>
        <dcc:release>v1.2</dcc:release>
      </dcc:software>
    </dcc:dccSoftware>
    <dcc:coreData>
      <dcc:countryCodeISO3166_1>DE</dcc:countryCodeISO3166_1>
      <dcc:usedLangCodeISO639_1>en</dcc:usedLangCodeISO639_1>
      <dcc:usedLangCodeISO639_1>de</dcc:usedLangCodeISO639_1>
      <dcc:mandatoryLangCodeISO639_1>en</dcc:mandatoryLangCodeISO639_1>
      <dcc:uniqueIdentifier>QI-2024-0001</dcc:uniqueIdentifier>
      <dcc:receiptDate>2024-02-14</dcc:receiptDate>
      <dcc:beginPerformanceDate>2024-02-15</dcc:beginPerformanceDate>
      <dcc:endPerformanceDate>2024-02-16</dcc:endPerformanceDate>
      <dcc:performanceLocation>laboratory</dcc:performanceLocation>
      <dcc:issueDate>2024-02-20</dcc:issueDate>
    </dcc:coreData>
    <dcc:items>
      <dcc:item>
        <dcc:name>
          <dcc:content lang="en">Thermometer</dcc:content>
          <dcc:content lang="de">Thermometer</dcc:content>
        </dcc:name>
      </dcc:item>
    </dcc:items>
    <dcc:statements>
      <dcc:statement>
        <dcc:nonSIDefinition>1 inch = 25.4 mm</dcc:nonSIDefinition>
        <dcc:nonSIUnit>|inch</dcc:nonSIUnit>
      </dcc:statement>
    </dcc:statements>
  </dcc:administrativeData>
  <dcc:measurementResults>
    <dcc:measurementResult>
      <dcc:name><dcc:content>Calibration</dcc:content></dcc:name>
      <dcc:usedMethods>
        <dcc:usedMethod id="method-1">
          <dcc:name><dcc:content>Comparison</dcc:content></dcc:name>
        </dcc:usedMethod>
      </dcc:usedMethods>
      <dcc:usedSoftware>
        <dcc:software>
          <dcc:name><dcc:content>Evaluation</dcc:content></dcc:name>
          <dcc:release>v2.0.1</dcc:release>
        </dcc:software>
      </dcc:usedSoftware>
      <dcc:influenceConditions>
        <dcc:influenceCondition>
          <dcc:name><dcc:content>Ambient temperature</dcc:content></dcc:name>
        </dcc:influenceCondition>
      </dcc:influenceConditions>
      <dcc:results>
        <dcc:result>
          <dcc:name><dcc:content>Indication</dcc:content></dcc:name>
          <dcc:data>
            <dcc:quantity refId="method-1">
              <dcc:name><dcc:content>Temperature</dcc:content></dcc:name>
              <si:real>
                <si:value>20.0</si:value>
                <si:unit>\degreecelsius</si:unit>
                <si:measurementUncertaintyUnivariate>
                  <si:expandedMU>
                    <si:valueExpandedMU>0.05</si:valueExpandedMU>
                    <si:coverageFactor>2</si:coverageFactor>
                    <si:coverageProbability>0.95</si:coverageProbability>
                  </si:expandedMU>
                </si:measurementUncertaintyUnivariate>
              </si:real>
            </dcc:quantity>
            <dcc:quantity>
              <dcc:name><dcc:content>Reference</dcc:content></dcc:name>
              <si:hybrid>
                <si:realListXMLList>
                  <si:valueXMLList>293.15 303.15 313.15</si:valueXMLList>
                  <si:unitXMLList>\kelvin</si:unitXMLList>
                  <si:measurementUncertaintyUnivariateXMLList>
                    <si:expandedMUXMLList>
                      <si:valueExpandedMUXMLList>0.01 0.01 0.02</si:valueExpandedMUXMLList>
                      <si:coverageFactorXMLList>2</si:coverageFactorXMLList>
                      <si:coverageProbabilityXMLList>0.95</si:coverageProbabilityXMLList>
                    </si:expandedMUXMLList>
                  </si:measurementUncertaintyUnivariateXMLList>
                </si:realListXMLList>
                <si:realListXMLList>
                  <si:valueXMLList>20 30 40</si:valueXMLList>
                  <si:unitXMLList>\degreecelsius \degreecelsius \kelvin</si:unitXMLList>
                </si:realListXMLList>
              </si:hybrid>
            </dcc:quantity>
            <dcc:quantity>
              <dcc:name><dcc:content>Length</dcc:content></dcc:name>
              <si:hybrid>
                <si:real><si:value>0.0254</si:value><si:unit>\metre</si:unit></si:real>
                <si:real><si:value>1</si:value><si:unit>|inch</si:unit></si:real>
              </si:hybrid>
            </dcc:quantity>
          </dcc:data>
        </dcc:result>
      </dcc:results>
    </dcc:measurementResult>
  </dcc:measurementResults>
</dcc:digitalCalibrationCertificate>
"""


def certificate(*edits: tuple[str, str], base: str = CLEAN) -> etree._Element:
    """Parse `base` after replacing each (old, new) pair; every `old` must occur exactly once."""
    text = base
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return parse_xml(text.encode())


def findings(*edits: tuple[str, str], base: str = CLEAN) -> list[Finding]:
    """Run the rules on the edited clean certificate."""
    return check_rules(certificate(*edits, base=base))


def only(rule: str, *edits: tuple[str, str], base: str = CLEAN) -> list[Finding]:
    """Findings of one rule after the edits; asserts the edits caused nothing else."""
    found = findings(*edits, base=base)
    assert {f.rule for f in found} == {rule}, [(f.rule, f.message) for f in found]
    return found


def parse_file(path: Path) -> etree._Element:
    """Parse a corpus file with the hub's hardened parser."""
    return parse_xml(path.read_bytes())


# --- the clean certificate and the registry --------------------------------------------------------


def test_clean_certificate_has_no_findings():
    assert findings() == []


def test_every_rule_has_a_description_and_a_severity():
    assert set(RULES) == set(SEVERITIES)
    assert all(RULES[rule] and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule) for rule in RULES)


def test_findings_carry_xpath_and_source_line():
    (found,) = only("date-order", ("<dcc:issueDate>2024-02-20", "<dcc:issueDate>2024-02-01"))
    assert found.path == "/dcc:digitalCalibrationCertificate/dcc:administrativeData/dcc:coreData/dcc:issueDate"
    assert found.line == CLEAN.splitlines().index("      <dcc:issueDate>2024-02-20</dcc:issueDate>") + 1


# --- references and identifiers --------------------------------------------------------------------


def test_unresolved_ref_id_is_an_error():
    (found,) = only("ref-id-unresolved", ('refId="method-1"', 'refId="method-1 method-9"'))
    assert found.severity is Severity.error
    assert "method-9" in found.message


def test_ref_id_naming_a_formula_resolves():
    formula = '<m:math xmlns:m="http://www.w3.org/1998/Math/MathML" id="f1"/>'
    assert (
        findings(
            ('<dcc:usedMethod id="method-1">', f'<dcc:usedMethod id="method-1">{formula}'),
            ('refId="method-1"', 'refId="method-1 f1"'),
        )
        == []
    )


def test_duplicate_id_is_an_error():
    found = findings(("<dcc:item>", '<dcc:item id="method-1">'))
    assert [(f.rule, f.severity) for f in found] == [("id-duplicate", Severity.error)]


def test_unreferenced_id_is_a_warning():
    (found,) = only("id-unreferenced", ("<dcc:item>", '<dcc:item id="item-1">'))
    assert found.severity is Severity.warning


# --- languages and country -------------------------------------------------------------------------


def test_invalid_language_code_is_an_error():
    found = findings(
        ("<dcc:usedLangCodeISO639_1>de<", "<dcc:usedLangCodeISO639_1>xx<"),
        ('lang="de">Thermometer', 'lang="xx">Thermometer'),
    )
    assert [(f.rule, f.severity) for f in found] == [("lang-code-invalid", Severity.error)]


def test_language_declared_twice_is_an_error():
    extra = "<dcc:usedLangCodeISO639_1>de</dcc:usedLangCodeISO639_1>"
    (found,) = only(
        "lang-code-duplicate", ("<dcc:mandatoryLangCodeISO639_1>", extra + "<dcc:mandatoryLangCodeISO639_1>")
    )
    assert found.severity is Severity.error


def test_mandatory_language_must_be_used():
    found = findings(("<dcc:mandatoryLangCodeISO639_1>en<", "<dcc:mandatoryLangCodeISO639_1>fr<"))
    rules = {(f.rule, f.severity) for f in found}
    assert ("mandatory-lang-undeclared", Severity.error) in rules
    assert ("content-lang-missing", Severity.error) in rules  # the item name has no French text


@pytest.mark.parametrize("code", ["XY", "de", "DEU"])
def test_invalid_country_code_is_an_error(code):
    (found,) = only("country-code-invalid", (">DE</dcc:countryCodeISO3166_1>", f">{code}</dcc:countryCodeISO3166_1>"))
    assert found.severity is Severity.error


def test_country_code_missing_from_dcc_sch_list_is_accepted():
    assert findings((">DE</dcc:countryCodeISO3166_1>", ">AF</dcc:countryCodeISO3166_1>")) == []


def test_content_in_undeclared_language_is_an_error():
    french = '<dcc:content lang="fr">Thermomètre</dcc:content>'
    (found,) = only(
        "content-lang-undeclared",
        ("</dcc:content>\n        </dcc:name>", f"</dcc:content>{french}</dcc:name>"),
    )
    assert found.severity is Severity.error
    # PTB's invalid_schematron fixture is this case: English texts, English no longer declared.


def test_text_without_a_mandatory_language_is_an_error():
    (found,) = only("content-lang-missing", ('<dcc:content lang="en">Thermometer</dcc:content>', ""))
    assert found.severity is Severity.error
    assert found.path.endswith("dcc:item/dcc:name")


def test_text_without_an_optional_language_is_a_warning():
    (found,) = only("content-lang-incomplete", ('<dcc:content lang="de">Thermometer</dcc:content>', ""))
    assert found.severity is Severity.warning


def test_repeated_language_in_one_text_is_a_warning():
    (found,) = only(
        "content-lang-duplicate",
        (
            '<dcc:content lang="de">Thermometer</dcc:content>',
            '<dcc:content lang="de">Thermometer</dcc:content>' * 2,
        ),
    )
    assert found.severity is Severity.warning


def test_untagged_content_outside_names_is_a_warning():
    declaration = "<dcc:declaration><dcc:content>Valid at 20 °C</dcc:content></dcc:declaration>"
    (found,) = only("content-lang-attribute-missing", ("<dcc:statement>", f"<dcc:statement>{declaration}"))
    assert found.severity is Severity.warning


def test_untagged_names_need_no_language():
    # dcc.sch exempts content whose grandparent has a name, further or referral (names, in practice)
    description = "<dcc:description><dcc:content>Glass</dcc:content></dcc:description>"
    assert findings(("<dcc:item>", f"<dcc:item>{description}")) == []


# --- methods, software, influence conditions -------------------------------------------------------

METHODS = """<dcc:usedMethods>
        <dcc:usedMethod id="method-1">
          <dcc:name><dcc:content>Comparison</dcc:content></dcc:name>
        </dcc:usedMethod>
      </dcc:usedMethods>"""


def test_result_quantity_without_used_methods_is_an_error():
    found = findings((METHODS, ""), ('refId="method-1"', ""))
    assert {(f.rule, f.severity) for f in found} == {("used-methods-missing", Severity.error)}
    assert len(found) == 3  # one per result quantity


def test_used_methods_declared_per_quantity_satisfy_the_rule():
    edits = [(METHODS, ""), ('<dcc:quantity refId="method-1">', f'<dcc:quantity refId="method-1">{METHODS}')]
    for name in ("Reference", "Length"):
        quantity = f"<dcc:quantity>\n              <dcc:name><dcc:content>{name}"
        edits.append((quantity, quantity.replace("<dcc:quantity>", "<dcc:quantity><dcc:usedMethods/>")))
    assert findings(*edits) == []


def test_list_of_quantities_without_used_methods_is_an_error():
    listed = "<dcc:list><dcc:quantity><dcc:name><dcc:content>x</dcc:content></dcc:name></dcc:quantity></dcc:list>"
    found = findings((METHODS, ""), ('refId="method-1"', ""), ("<dcc:data>", f"<dcc:data>{listed}"))
    assert {f.path.rsplit("/", 1)[-1] for f in found} == {
        "dcc:list",
        "dcc:quantity[1]",
        "dcc:quantity[2]",
        "dcc:quantity[3]",
    }


def test_missing_used_software_is_a_warning():
    software = CLEAN[
        CLEAN.index("<dcc:usedSoftware>") : CLEAN.index("</dcc:usedSoftware>") + len("</dcc:usedSoftware>")
    ]
    found = only("used-software-missing", (software, ""))
    assert {f.severity for f in found} == {Severity.warning}


def test_missing_influence_conditions_is_a_warning():
    start, end = CLEAN.index("<dcc:influenceConditions>"), CLEAN.index("</dcc:influenceConditions>")
    found = only("influence-conditions-missing", (CLEAN[start : end + len("</dcc:influenceConditions>")], ""))
    assert {f.severity for f in found} == {Severity.warning}


# --- core data ------------------------------------------------------------------------------------


def test_outdated_schema_version_is_a_warning():
    (found,) = only("schema-version-outdated", ('schemaVersion="3.3.0"', 'schemaVersion="3.1.2"'))
    assert found.severity is Severity.warning
    assert "3.1.2" in found.message


def test_missing_schema_version_is_reported_as_outdated():
    (found,) = only("schema-version-outdated", ('schemaVersion="3.3.0"', ""))
    assert "no schemaVersion" in found.message


def test_unusual_software_release_is_a_warning():
    (found,) = only("software-release-format", ("<dcc:release>v1.2<", "<dcc:release>d8ee51d50dc8<"))
    assert found.severity is Severity.warning


@pytest.mark.parametrize("identifier", ["", "   "])
def test_blank_unique_identifier_is_an_error(identifier):
    (found,) = only("unique-identifier-empty", (">QI-2024-0001<", f">{identifier}<"))
    assert found.severity is Severity.error


@pytest.mark.parametrize("value", ["§DFM_StartDate§", "2024-02-30", "15.02.2024", ""])
def test_placeholder_or_malformed_date_is_an_error(value):
    (found,) = only("date-invalid", (">2024-02-15</dcc:beginPerformanceDate>", f">{value}</dcc:beginPerformanceDate>"))
    assert found.severity is Severity.error


def test_end_before_begin_is_an_error():
    (found,) = only("date-order", (">2024-02-16</dcc:endPerformanceDate>", ">2024-02-14</dcc:endPerformanceDate>"))
    assert found.severity is Severity.error
    assert found.path.endswith("dcc:endPerformanceDate")


def test_issue_before_end_of_calibration_is_an_error():
    (found,) = only("date-order", (">2024-02-20</dcc:issueDate>", ">2024-02-15</dcc:issueDate>"))
    assert found.severity is Severity.error


def test_dates_on_the_same_day_and_with_time_zone_are_in_order():
    assert (
        findings(
            (">2024-02-15</dcc:beginPerformanceDate>", ">2024-02-16Z</dcc:beginPerformanceDate>"),
            (">2024-02-20</dcc:issueDate>", ">2024-02-16+01:00</dcc:issueDate>"),
        )
        == []
    )


def test_receipt_after_calibration_end_is_a_warning():
    (found,) = only("receipt-date-order", (">2024-02-14</dcc:receiptDate>", ">2024-02-19</dcc:receiptDate>"))
    assert found.severity is Severity.warning


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [r"\kgf", r"\°C", "degreeFahrenheit", r"\milli\kilogram", r"\metre\tothe{2", ""])
def test_non_dsi_unit_is_an_error(unit):
    (found,) = only("dsi-unit-invalid", (r"<si:unit>\degreecelsius<", f"<si:unit>{unit}<"))
    assert found.severity is Severity.error


def test_unmarked_non_si_unit_in_a_hybrid_is_a_warning():
    (found,) = only("dsi-unit-unmarked", ("<si:unit>|inch<", "<si:unit>inch<"))
    assert found.severity is Severity.warning


def test_hybrid_without_a_dsi_alternative_is_an_error():
    found = findings((r"<si:unit>\metre<", r"<si:unit>\kgf<"))
    assert [(f.rule, f.severity) for f in found] == [
        ("hybrid-without-dsi-unit", Severity.error),
        ("dsi-unit-unmarked", Severity.warning),
    ]


def test_every_token_of_a_unit_list_is_checked():
    # this list is one alternative of a hybrid whose other alternative is D-SI, hence only a warning
    (found,) = only("dsi-unit-unmarked", (r"<si:unitXMLList>\kelvin<", r"<si:unitXMLList>\kelvin \Kelvin2 \kelvin<"))
    assert "Kelvin2" in found.message


def test_unit_in_wrong_letter_case_is_a_spelling_warning():
    (found,) = only("dsi-unit-spelling", (r"<si:unit>\degreecelsius<", r"<si:unit>\degreeCelsius<"))
    assert found.severity is Severity.warning
    assert r"\degreecelsius" in found.message


def test_undeclared_non_si_unit_in_hybrid_is_an_error():
    (found,) = only("non-si-unit-undeclared", ("<si:unit>|inch<", "<si:unit>|foot<"))
    assert found.severity is Severity.error


def test_non_si_unit_without_definition_is_an_error():
    (found,) = only("non-si-definition-unpaired", ("<dcc:nonSIDefinition>1 inch = 25.4 mm</dcc:nonSIDefinition>", ""))
    assert found.severity is Severity.error


def test_redundant_unit_list_is_a_warning():
    (found,) = only("unit-list-redundant", (r"<si:unitXMLList>\kelvin<", r"<si:unitXMLList>\kelvin \kelvin \kelvin<"))
    assert found.severity is Severity.warning


# --- uncertainty ----------------------------------------------------------------------------------


def test_negative_uncertainty_is_an_error():
    (found,) = only("uncertainty-negative", (">0.01 0.01 0.02<", ">0.01 -0.01 0.02<"))
    assert found.severity is Severity.error


def test_expanded_uncertainty_without_coverage_factor_is_an_error():
    (found,) = only("coverage-missing", ("<si:coverageFactor>2</si:coverageFactor>", ""))
    assert found.severity is Severity.error
    assert "coverageFactor" in found.message


def test_expanded_uncertainty_list_without_coverage_probability_is_an_error():
    (found,) = only("coverage-missing", ("<si:coverageProbabilityXMLList>0.95</si:coverageProbabilityXMLList>", ""))
    assert "coverageProbabilityXMLList" in found.message


@pytest.mark.parametrize("probability", ["0", "95", "-0.5", "1.05"])
def test_coverage_probability_outside_unit_interval_is_an_error(probability):
    (found,) = only(
        "coverage-probability-range",
        (">0.95</si:coverageProbability>", f">{probability}</si:coverageProbability>"),
    )
    assert found.severity is Severity.error


def test_coverage_probability_of_one_and_factor_of_one_are_fine():
    assert (
        findings(
            (">0.95</si:coverageProbability>", ">1</si:coverageProbability>"),
            (">2</si:coverageFactor>", ">1.0</si:coverageFactor>"),
        )
        == []
    )


def test_coverage_factor_below_one_is_an_error():
    (found,) = only("coverage-factor-range", (">2</si:coverageFactorXMLList>", ">0.5</si:coverageFactorXMLList>"))
    assert found.severity is Severity.error


RELATIVE = """<dcc:relativeUncertainty><dcc:relativeUncertaintySingle>
                <si:value>{value}</si:value><si:unit>{unit}</si:unit>
              </dcc:relativeUncertaintySingle></dcc:relativeUncertainty>"""


@pytest.mark.parametrize(
    ("value", "unit"), [("0.0025", r"\one"), ("0.25", r"\percent"), ("2500", r"\ppm"), ("0.003", r"\one")]
)
def test_relative_uncertainty_matching_the_absolute_one_is_fine(value, unit):
    # U / |value| = 0.05 / 20.0 = 0.0025; "0.003" is that value rounded to one digit.
    assert (
        findings(
            (
                "</si:real>\n            </dcc:quantity>",
                "</si:real>" + RELATIVE.format(value=value, unit=unit) + "</dcc:quantity>",
            )
        )
        == []
    )


def test_relative_uncertainty_contradicting_the_absolute_one_is_an_error():
    relative = RELATIVE.format(value="0.025", unit=r"\one")
    (found,) = only(
        "relative-uncertainty-mismatch",
        ("</si:real>\n            </dcc:quantity>", f"</si:real>{relative}</dcc:quantity>"),
    )
    assert found.severity is Severity.error


def test_relative_uncertainty_without_absolute_one_is_an_error():
    start, end = (
        CLEAN.index("<si:measurementUncertaintyUnivariate>"),
        CLEAN.index("</si:measurementUncertaintyUnivariate>"),
    )
    absolute = CLEAN[start : end + len("</si:measurementUncertaintyUnivariate>")]
    relative = RELATIVE.format(value="0.0025", unit=r"\one")
    (found,) = only(
        "relative-uncertainty-without-absolute",
        (absolute, ""),
        ("</si:real>\n            </dcc:quantity>", f"</si:real>{relative}</dcc:quantity>"),
    )
    assert found.severity is Severity.error


# --- XML lists ------------------------------------------------------------------------------------


def test_uncertainty_list_of_other_length_is_an_error():
    (found,) = only("xmllist-length", (">0.01 0.01 0.02<", ">0.01 0.02<"))
    assert found.severity is Severity.error
    assert "2 entries for 3 values" in found.message


def test_unit_list_of_other_length_is_an_error():
    (found,) = only("xmllist-length", (r"\degreecelsius \degreecelsius \kelvin<", r"\degreecelsius \kelvin<"))
    assert found.path.endswith("si:unitXMLList")


def test_empty_value_list_is_an_error():
    found = findings((">20 30 40<", "><"))
    assert {f.rule for f in found} == {"xmllist-length", "hybrid-length-mismatch", "list-whitespace"}


def test_hybrid_representations_of_different_length_are_an_error():
    (found,) = only(
        "hybrid-length-mismatch",
        (">20 30 40<", ">20 30 40 50<"),
        (r"\degreecelsius \degreecelsius \kelvin<", r"\degreecelsius<"),
    )
    assert found.severity is Severity.error


@pytest.mark.parametrize("spaced", [" 20 30 40", "20  30 40", "20 30 40\n"])
def test_irregular_list_spacing_is_a_warning(spaced):
    (found,) = only("list-whitespace", (">20 30 40<", f">{spaced}<"))
    assert found.severity is Severity.warning


# --- older versions -------------------------------------------------------------------------------

INTRANET = "https://intranet.ptb.de/fileadmin/dokumente/intranet/abteilungen/abteilung_1/Digitaler_Kalibrierschein"


def test_dcc_2_1_0_intranet_namespaces_are_checked():
    old = CLEAN.replace("https://ptb.de/dcc", f"{INTRANET}/DCC").replace("https://ptb.de/si", f"{INTRANET}/SI")
    old = old.replace(' schemaVersion="3.3.0"', "")
    found = findings((r"<si:unit>\degreecelsius<", r"<si:unit>\meter<"), base=old)
    assert {f.rule for f in found} == {"dsi-unit-invalid", "schema-version-outdated"}


def test_dsi_1_x_expanded_uncertainty_is_checked():
    old = (
        "<si:expandedUnc><si:uncertainty>-0.1</si:uncertainty><si:coverageFactor>2</si:coverageFactor></si:expandedUnc>"
    )
    start, end = (
        CLEAN.index("<si:measurementUncertaintyUnivariate>"),
        CLEAN.index("</si:measurementUncertaintyUnivariate>"),
    )
    found = findings((CLEAN[start : end + len("</si:measurementUncertaintyUnivariate>")], old))
    assert sorted(f.rule for f in found) == ["coverage-missing", "uncertainty-negative"]


def test_signature_and_foreign_elements_are_not_inspected():
    ds = "http://www.w3.org/2000/09/xmldsig#"
    foreign = f'<ds:Signature xmlns:ds="{ds}" Id="s"><ds:unit>kgf</ds:unit></ds:Signature>'
    assert findings(("</dcc:digitalCalibrationCertificate>", f"{foreign}</dcc:digitalCalibrationCertificate>")) == []


def test_foreign_elements_sharing_a_rule_element_name_are_ignored():
    x = 'xmlns:x="urn:example"'
    foreign = f"<x:content {x}/><x:unit {x}>kgf</x:unit><x:quantity {x}/><x:realListXMLList {x}/>"
    assert findings(("<dcc:statement>", f"<dcc:statement>{foreign}")) == []


def test_dsi_namespace_of_an_unknown_version_is_checked():
    v9 = CLEAN.replace('xmlns:si="https://ptb.de/si"', 'xmlns:si="https://ptb.de/si/v9.0.0"')
    (found,) = only("dsi-unit-spelling", (r"<si:unit>\degreecelsius<", r"<si:unit>\degreeCelsius<"), base=v9)
    assert found.path.endswith("/dcc:quantity[1]/si:real/si:unit")


def test_dcc_in_the_default_namespace_is_checked_and_located():
    default = CLEAN.replace("<dcc:", "<").replace("</dcc:", "</").replace("xmlns:dcc=", "xmlns=")
    (found,) = only("date-order", ("<issueDate>2024-02-20", "<issueDate>2024-02-01"), base=default)
    # libxml2's XPath for elements of the default namespace: `*` steps, numbered among all siblings
    assert found.path == "/*/*[1]/*[2]/*[10]"
    assert found.line == CLEAN.splitlines().index("      <dcc:issueDate>2024-02-20</dcc:issueDate>") + 1


def test_comments_and_processing_instructions_change_nothing():
    assert (
        findings(
            ("<dcc:coreData>", "<dcc:coreData><?editor x?><!-- core -->"),
            ('lang="en">Thermometer</dcc:content>', 'lang="en">Thermometer</dcc:content><!-- de: -->'),
            ("<si:valueXMLList>293.15", "<!-- K --><si:valueXMLList>293.15"),
            ("<si:hybrid>\n                <si:realListXMLList>", "<si:hybrid><?pi?><!-- h --><si:realListXMLList>"),
            ("<dcc:usedMethods>", "<dcc:usedMethods><!-- m -->"),
        )
        == []
    )


def test_repeated_language_is_located_at_the_repeated_text_among_untagged_ones():
    thermometer = '<dcc:content lang="en">Thermometer</dcc:content>'
    repeated = f'{thermometer}<dcc:content>Glass</dcc:content><dcc:content lang="en">Glas</dcc:content>'
    (found,) = only("content-lang-duplicate", (thermometer, repeated))
    assert found.path.endswith("/dcc:item/dcc:name/dcc:content[3]")


def test_results_do_not_depend_on_previously_checked_documents():
    # tag classifications are cached per DCC namespace; a 2.1.0 intranet document must not leak into 3.x
    intranet = CLEAN.replace("https://ptb.de/dcc", f"{INTRANET}/DCC").replace("https://ptb.de/si", f"{INTRANET}/SI")
    broken = ((r"<si:unit>\degreecelsius<", r"<si:unit>\meter<"),)
    first = [f.model_dump() for f in findings(*broken)]
    assert {f.rule for f in findings(*broken, base=intranet)} == {"dsi-unit-invalid"}
    assert [f.model_dump() for f in findings(*broken)] == first


def test_findings_come_back_sorted_by_line_then_rule():
    found = check_rules(parse_file(DCCLIB / "invalid_schematron.xml"))
    keys = [(f.line or 0, f.rule) for f in found]
    assert len(found) > 30
    assert keys == sorted(keys)


# --- D-SI unit syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    [
        r"\kelvin",
        r"\milli\metre",
        r"\metre\second\tothe{-1}",
        r"\degreecelsius",
        r"\percent",
        r"\one",
        r"\decibel",
        r"\kilogram\metre\tothe{2}\second\tothe{-3}\ampere\tothe{-2}",
        r"\metre\per\second",  # D-SI 1.x style, still valid
        r"\kilogram\tothe{1}\metre\tothe{-3}\kilogram\tothe{-1}\metre\tothe{3}",  # PTB 2.x examples
        r"\ampere\tothe{+0.5}",
        r"\kibi\byte",
        r"\gram",
        r"\mmHg",
        "|kgf",
        "  \\volt  ",
    ],
)
def test_valid_dsi_units_pass(unit):
    assert check_dsi_unit(unit) is None


@pytest.mark.parametrize(
    ("unit", "reason"),
    [
        (r"\kgf", "not a D-SI unit"),
        (r"\°C", r"\degreecelsius"),
        (r"\degreeCelsius", "case-sensitive"),
        ("kg.m2", "backslash"),
        (r"\kelvin|\degreecelsius", "not a D-SI unit"),
        (r"\meter", r"did you mean \metre"),
        (r"\milli\kilogram", "takes no prefix"),
        (r"\kilo\gram", r"write \kilogram"),
        (r"\one\tothe{2}", "takes no exponent"),
        (r"\kibi\metre", "binary prefix"),
        (r"\milli\byte", "greater than one"),
        (r"\micro\nano\metre", "two prefixes"),
        (r"\metre\tothe{2/3}", "malformed exponent"),
        (r"\tothe{2}\metre", "must directly follow a unit"),
        (r"\metre\tothe{2}\tothe{2}", "must directly follow a unit"),
        (r"\metre\per\second\per\second", r"more than one \per"),
        (r"\metre\per", "without a denominator"),
        (r"\metre\\second", "double backslash"),
        (r"\kilogram \metre", "whitespace"),
        (r"\kilo", "without a unit"),
        ("", "empty"),
        ("|", "empty"),
    ],
)
def test_invalid_dsi_units_give_a_reason(unit, reason):
    assert reason in (check_dsi_unit(unit) or "")


def test_canonical_spelling_is_offered_only_for_case_variants():
    assert canonical_dsi_unit(r"\degreeCelsius\tothe{-1}") == r"\degreecelsius\tothe{-1}"
    assert canonical_dsi_unit(r"\kilo\Pascal") == r"\kilo\pascal"
    assert canonical_dsi_unit(r"\kelvin") is None
    assert canonical_dsi_unit(r"\kgf") is None


def corpus_units() -> set[str]:
    """Every unit string in the corpus (DCCs and PTB's D-SI test sets)."""
    units: set[str] = set()
    for path in DCC_CORPUS.rglob("*.xml"):
        try:
            root = parse_file(path)
        except Exception:  # the corpus has a deliberately malformed file
            continue
        for el in root.iter("{*}unit", "{*}listUnit", "{*}unitPhase", "{*}listUnitPhase"):
            units.add((el.text or "").strip())
        for el in root.iter("{*}unitXMLList", "{*}unitPhaseXMLList"):
            units.update((el.text or "").split())
    return units


def test_unit_verdicts_agree_with_ptb_dsiunits_regex():
    regex = pytest.importorskip("dsi_unit.regex_generator").DSI_UNIT_REGEX
    # Deliberate differences: dsiunits' regex wants a prefix on \gram and \bel, rejects "+" exponent signs
    # (used in PTB's PLATINUM test set) and knows only \mmHg (PTB's BRONZE set writes \mmhg).
    ours_only = {r"\gram", r"\bel", r"\mmhg", r"\ampere\tothe{+0.5}", r"\ampere\tothe{+0}"}
    ours_only.add(r"\milli\metre\tothe{+0}\nano\second\tothe{-0}")
    disagreements = {unit for unit in corpus_units() if (check_dsi_unit(unit) is None) != bool(re.match(regex, unit))}
    assert disagreements == ours_only


def test_unit_check_is_cached_and_fast():
    units = sorted(corpus_units())
    check_dsi_unit.cache_clear()
    start = time.perf_counter()
    for unit in units:
        check_dsi_unit(unit)
    assert (time.perf_counter() - start) / len(units) < 100e-6
    assert check_dsi_unit.cache_info().currsize == len(units)


# --- PTB fixtures and the corpus ------------------------------------------------------------------


def errors(found: list[Finding]) -> Counter[str]:
    """Error-level findings counted by rule."""
    return Counter(f.rule for f in found if f.severity is Severity.error)


def test_dcclib_invalid_schematron_fixture_gets_the_intended_error():
    # PTB removed "en" from the used languages while English texts and mandatory "en" remain.
    found = check_rules(parse_file(DCCLIB / "invalid_schematron.xml"))
    assert set(errors(found)) == {"content-lang-undeclared", "mandatory-lang-undeclared"}
    assert all("'en'" in f.message for f in found if f.rule == "content-lang-undeclared")


def test_dcclib_valid_fixture_has_no_error():
    assert errors(check_rules(parse_file(DCCLIB / "valid.xml"))) == Counter()


# Error-level findings per corpus DCC (file -> {rule: count}); docs/corpus-rule-findings.md explains them.
EXPECTED_CORPUS_ERRORS: dict[str, dict[str, int]] = {
    "aalto-smartcom/examples/DCC-signed.xml": {"content-lang-missing": 2, "content-lang-undeclared": 7},
    "aalto-smartcom/examples/DCC_BX-10504-CAL.xml": {"content-lang-missing": 2, "content-lang-undeclared": 7},
    "aalto-smartcom/examples/DCC_K026-17P4654.xml": {"content-lang-missing": 7},
    "aalto-smartcom/examples/DCC_K026-17P5172.xml": {"content-lang-missing": 243},
    "aalto-smartcom/examples/DCC_M-16P013.xml": {"content-lang-missing": 1},
    "dfm-dk/examples/2022-08-29_DFM_Template_Temperature.xml": {
        "content-lang-missing": 1,
        "date-invalid": 3,
        "hybrid-without-dsi-unit": 4,
    },
    "lutaml-dcc/fixtures/dcclib/invalid_schema.xml": {"unique-identifier-empty": 1},
    "lutaml-dcc/fixtures/dcclib/invalid_schematron.xml": {
        "content-lang-undeclared": 34,
        "mandatory-lang-undeclared": 1,
    },
    "lutaml-dcc/fixtures/dcclib/valid_formula.xml": {"content-lang-missing": 2, "content-lang-undeclared": 2},
    "pdf-a-3u/examples/attachment.xml": {"content-lang-undeclared": 1},
    "pt-100-dcc-ar/examples/dcc.xml": {"content-lang-missing": 2, "content-lang-undeclared": 2},
    "ptb-xsd-dcc/examples/v3.0.0/dcc-vacuumlab-SRG.xml": {"content-lang-missing": 1},
    "ptb-xsd-dcc/examples/v3.1.1/dcc-vacuumlab-SRG.xml": {"content-lang-missing": 1},
}


def corpus_certificates() -> list[Path]:
    """All corpus XML files whose root is a DCC."""
    found = []
    for path in sorted(DCC_CORPUS.rglob("*.xml")):
        try:
            root = parse_file(path)
        except Exception:  # invalid_syntax.xml is malformed on purpose
            continue
        if etree.QName(root).localname == "digitalCalibrationCertificate":
            found.append(path)
    return found


def test_corpus_error_findings_match_the_expected_table():
    certificates = corpus_certificates()
    assert len(certificates) >= 46
    actual = {}
    for path in certificates:
        found = check_rules(parse_file(path))
        assert all(f.rule in RULES and f.severity is SEVERITIES[f.rule] for f in found)
        if counted := errors(found):
            actual[path.relative_to(DCC_CORPUS).as_posix()] = dict(counted)
    assert actual == EXPECTED_CORPUS_ERRORS


def test_rules_take_about_a_millisecond_on_a_25_kb_certificate():
    root = parse_file(DCC_CORPUS / "siemens-pydcc/examples/dcc_gp_temperature_typical_adjustment_v12.xml")
    check_rules(root)
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        check_rules(root)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 5e-3  # ~0.8 ms measured; generous for loaded CI machines
