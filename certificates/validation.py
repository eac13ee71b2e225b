"""Validate a DCC: hardened parse, XSD of its declared version, then the semantic rules."""

from dataclasses import dataclass

from lxml import etree

from certificates.findings import Finding, Severity
from certificates.models import ValidationReport
from certificates.rules import RuleHits, run_rules
from certificates.schema import SchemaReport, validate_against_schema
from certificates.xml import DEFAULT_MAX_BYTES, XmlRejected, parse_xml


@dataclass(frozen=True)
class Validation:
    """The verdict on a parsed document; its report (every finding, with XPaths) is built only when asked for."""

    schema: SchemaReport
    rules: RuleHits | None  # None when the root is not a DCC: no rule applies

    @property
    def schema_version(self) -> str | None:
        """The DCC version the document was validated against."""
        return self.schema.schema_version

    @property
    def valid(self) -> bool:
        """Schema-valid and no error-level finding."""
        schema_error = any(finding.severity == Severity.error for finding in self.schema.findings)
        return self.schema.valid and not schema_error and not (self.rules is not None and self.rules.has_error)

    def report(self) -> ValidationReport:
        """The full report: schema findings first, then the rule findings in document order."""
        findings: list[Finding] = list(self.schema.findings)
        if self.rules is not None:
            findings.extend(self.rules.findings())
        return ValidationReport(
            valid=self.valid,
            schema_valid=self.schema.valid,
            schema_version=self.schema.schema_version,
            findings=findings,
        )


def check_root(root: etree._Element, *, verdict_only: bool = False) -> Validation:
    """Validate an already parsed document: schema, then rules (unless it is no DCC at all).

    With `verdict_only`, the rules that can only warn are left out (the caller needs the verdict, e.g. a batch
    ingest); `report()` still gives every finding, running them then.
    """
    schema = validate_against_schema(root)
    not_a_dcc = any(finding.rule == "not-a-dcc" for finding in schema.findings)
    return Validation(schema=schema, rules=None if not_a_dcc else run_rules(root, verdict_only=verdict_only))


def validate_root(root: etree._Element) -> ValidationReport:
    """Validate an already parsed document."""
    return check_root(root).report()


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
