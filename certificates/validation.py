"""Validate a DCC: hardened parse, XSD of its declared version, then the semantic rules."""

from lxml import etree

from certificates.findings import Finding, Severity
from certificates.models import ValidationReport
from certificates.rules import check_rules
from certificates.schema import validate_against_schema
from certificates.xml import DEFAULT_MAX_BYTES, XmlRejected, parse_xml


def validate_root(root: etree._Element) -> ValidationReport:
    """Validate an already parsed document."""
    schema = validate_against_schema(root)
    findings: list[Finding] = list(schema.findings)
    not_a_dcc = any(finding.rule == "not-a-dcc" for finding in findings)
    if not not_a_dcc:
        findings.extend(check_rules(root))
    has_error = any(finding.severity == Severity.error for finding in findings)
    return ValidationReport(
        valid=schema.valid and not has_error,
        schema_valid=schema.valid,
        schema_version=schema.schema_version,
        findings=findings,
    )


def validate_document(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ValidationReport:
    """Parse and validate raw bytes; unreadable XML becomes a single error finding."""
    try:
        root = parse_xml(data, max_bytes=max_bytes)
    except XmlRejected as rejected:
        return ValidationReport(
            valid=False,
            schema_valid=False,
            schema_version=None,
            findings=[Finding(rule=f"xml-{rejected.code}", severity=Severity.error, message=rejected.detail)],
        )
    return validate_root(root)
