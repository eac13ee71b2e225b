"""Moving a DCC 3.x document to release 3.3.0 (the first step before signing a pre-3.2.0 document).

3.x releases differ little: most documents become valid 3.3.0 once `schemaVersion` (and the schema
location) names it. The known blocker is DCC 3.2.0's non-empty string type (pattern `[^\\s]+(\\s+[^\\s]+)*`):
an empty value is dropped when the element may be left out, an untrimmed one is trimmed. Nothing else is
changed or invented; if the result is not valid against the 3.3.0 XSD, the migration is refused.
"""

import copy
import re
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from certificates.findings import Finding
from certificates.schema import DCC_NAMESPACE, declared_schema_version, validate_against_schema
from storage.errors import InvalidInputError

TARGET_VERSION: Final = "3.3.0"
TARGET_DSI_VERSION: Final = "2.2.1"
_XSI_SCHEMA_LOCATION: Final = "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
_DS_SIGNATURE: Final = "{http://www.w3.org/2000/09/xmldsig#}Signature"
_DCC_XSD = re.compile(r"(/dcc/v)\d+\.\d+\.\d+(/dcc\.xsd)$")
_DSI_XSD = re.compile(r"(/si/v)\d+\.\d+\.\d+(/SI_Format\.xsd)$")
_NOT_EMPTY_PATTERN: Final = r"'[^\s]+(\s+[^\s]+)*'"
_ELEMENT_IN_MESSAGE = re.compile(r"^Element '(\{[^}]*\}[^']+)'")


class MigrationRefusedError(InvalidInputError):
    """The document cannot be moved to DCC 3.3.0 without changing what it says."""

    code = "migration-refused"
    title = "The document cannot be migrated to DCC 3.3.0"


@dataclass
class MigrationResult:
    """A migrated document and what was changed to get there."""

    content: bytes
    from_version: str
    to_version: str = TARGET_VERSION
    changes: list[str] = field(default_factory=list)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-", 1)[0].split(".") if part.isdigit())


def _update_schema_location(root: etree._Element, changes: list[str]) -> None:
    location = root.get(_XSI_SCHEMA_LOCATION)
    if not location:
        return
    tokens = location.split()
    updated = [
        _DSI_XSD.sub(rf"\g<1>{TARGET_DSI_VERSION}\g<2>", _DCC_XSD.sub(rf"\g<1>{TARGET_VERSION}\g<2>", token))
        for token in tokens
    ]
    if updated != tokens:
        root.set(_XSI_SCHEMA_LOCATION, " ".join(updated))
        changes.append("xsi:schemaLocation points at the DCC 3.3.0 (D-SI 2.2.1) schemas")


def _fix_non_empty_strings(root: etree._Element, findings: list[Finding], changes: list[str]) -> bool:
    """Drop empty / trim untrimmed values the non-empty string type rejects; True when anything changed."""
    changed = False
    for finding in findings:
        if "[facet 'pattern']" not in finding.message or _NOT_EMPTY_PATTERN not in finding.message:
            continue
        match = _ELEMENT_IN_MESSAGE.match(finding.message)
        if match is None or finding.line is None:
            continue
        tag = match.group(1)
        for element in root.iter(tag):
            if element.sourceline != finding.line or len(element) or element.getparent() is None:
                continue
            text = element.text or ""
            name = etree.QName(element).localname
            if not text.strip():
                parent = element.getparent()
                # Keep the whitespace that followed the element so the layout of the document stays intact.
                previous = element.getprevious()
                if element.tail and previous is not None:
                    previous.tail = element.tail
                elif element.tail:
                    parent.text = element.tail
                parent.remove(element)
                changes.append(f"removed empty dcc:{name} (line {finding.line})")
            else:
                element.text = text.strip()
                changes.append(f"trimmed whitespace around dcc:{name} (line {finding.line})")
            changed = True
    return changed


def migrate_with_report(root: etree._Element) -> MigrationResult:
    """Move a DCC 3.x document to 3.3.0 and say what changed; refuse (MigrationRefusedError) when impossible."""
    if root.tag != f"{{{DCC_NAMESPACE}}}digitalCalibrationCertificate":
        raise MigrationRefusedError("Only DCC 3.x documents (namespace https://ptb.de/dcc) can be migrated.")
    declared = declared_schema_version(root)
    if (
        not declared
        or _version_tuple(declared)[:1] != (3,)
        or _version_tuple(declared) > _version_tuple(TARGET_VERSION)
    ):
        raise MigrationRefusedError(
            f"The document declares DCC {declared or 'no version'}; only 3.x releases up to 3.3.0 can be migrated.",
            extra={"schemaVersion": declared},
        )
    if root.find(_DS_SIGNATURE) is not None:
        raise MigrationRefusedError("The document is signed; migrating it would invalidate the signature.")

    tree = copy.deepcopy(root.getroottree())
    migrated = tree.getroot()
    changes: list[str] = []
    if declared != TARGET_VERSION:
        migrated.set("schemaVersion", TARGET_VERSION)
        changes.append(f"schemaVersion {declared} → {TARGET_VERSION}")
    _update_schema_location(migrated, changes)
    report = validate_against_schema(migrated, version=TARGET_VERSION)
    if not report.valid and _fix_non_empty_strings(migrated, report.findings, changes):
        report = validate_against_schema(migrated, version=TARGET_VERSION)
    if not report.valid:
        raise MigrationRefusedError(
            f"The document is not valid as DCC {TARGET_VERSION} after migration; nothing was changed.",
            extra={
                "fromVersion": declared,
                "toVersion": TARGET_VERSION,
                "findings": [finding.model_dump(mode="json") for finding in report.findings],
            },
        )
    content = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return MigrationResult(content=content, from_version=declared, changes=changes)


def migrate_to_330(root: etree._Element) -> bytes:
    """The document moved to DCC 3.3.0 (schemaVersion, schemaLocation, known blockers), XSD-valid as 3.3.0."""
    return migrate_with_report(root).content
