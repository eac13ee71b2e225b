"""Migration of DCC 3.x documents to 3.3.0, on the corpus files SOURCES.md marks as also valid as 3.3.0."""

import re

import pytest
from lxml import etree

from certificates.migrate import MigrationRefusedError, migrate_to_330, migrate_with_report
from certificates.schema import declared_schema_version, validate_against_schema
from certificates.xml import parse_xml
from tests.paths import DCC_CORPUS, REPO_ROOT

_SECTION = re.compile(r"^### `([^`]+)/`")
_ROW = re.compile(r"^\| `([^`]+\.xml)` \|")
_VERSION = re.compile(r"^3\.[01]\.\d$")


def _corpus_files_also_valid_as_330() -> list[str]:
    """3.x files before 3.2.0 whose SOURCES.md row lists 3.3.0 under "also valid as" (signed ones excluded)."""
    folder = None
    found: list[str] = []
    for line in (DCC_CORPUS / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        section = _SECTION.match(line)
        if section:
            folder = section.group(1)
            continue
        row = _ROW.match(line)
        if not row or folder is None:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        declared, also_valid, remarks = cells[3], cells[6], cells[-1]
        if _VERSION.match(declared) and "3.3.0" in also_valid and "ds:Signature" not in remarks:
            found.append(f"{folder}/{row.group(1)}")
    return found


ALSO_VALID_AS_330 = _corpus_files_also_valid_as_330()


def _elements(root: etree._Element) -> list[tuple[str, str]]:
    return [(str(element.tag), (element.text or "").strip()) for element in root.iter()]


def test_the_corpus_lists_enough_upgradeable_files():
    assert len(ALSO_VALID_AS_330) >= 10


@pytest.mark.parametrize("relative", ALSO_VALID_AS_330)
def test_upgradeable_corpus_file_becomes_valid_dcc_330_with_only_its_version_changed(relative):
    original = parse_xml((DCC_CORPUS / relative).read_bytes())

    migrated = parse_xml(migrate_to_330(original))

    assert migrated.get("schemaVersion") == "3.3.0"
    assert declared_schema_version(migrated) == "3.3.0"
    report = validate_against_schema(migrated)
    assert report.valid, report.findings
    assert _elements(migrated) == _elements(original)  # same elements, same values
    location = migrated.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation")
    assert location is None or "v3.3.0/dcc.xsd" in location


def test_migration_records_from_and_to_versions():
    root = parse_xml((DCC_CORPUS / "siemens-pydcc/examples/dcc_gp_temperature_typical_v12.xml").read_bytes())

    result = migrate_with_report(root)

    assert (result.from_version, result.to_version) == ("3.1.1", "3.3.0")
    assert "schemaVersion 3.1.1 → 3.3.0" in result.changes
    assert root.get("schemaVersion") == "3.1.1"  # the caller's tree is left alone


def test_empty_value_made_non_empty_by_3_2_0_is_dropped():
    # attachment.xml (3.1.2) has an empty dcc:eMail: fine until 3.2.0 made the field non-empty.
    root = parse_xml((DCC_CORPUS / "pdf-a-3u/examples/attachment.xml").read_bytes())
    assert not validate_against_schema(_with_version(root, "3.3.0"), version="3.3.0").valid

    result = migrate_with_report(root)

    migrated = parse_xml(result.content)
    assert validate_against_schema(migrated).valid
    assert migrated.find(".//{https://ptb.de/dcc}customer/{https://ptb.de/dcc}eMail") is None
    assert any("removed empty dcc:eMail" in change for change in result.changes)


def test_document_still_invalid_as_330_is_refused_with_findings():
    root = parse_xml((DCC_CORPUS / "dfm-dk/examples/2022-08-29_DFM_Template_Temperature.xml").read_bytes())

    with pytest.raises(MigrationRefusedError) as refused:
        migrate_to_330(root)

    assert refused.value.code == "migration-refused"
    assert refused.value.extra["findings"]
    assert "receiptDate" in refused.value.extra["findings"][0]["message"]


def test_signed_document_is_refused():
    root = parse_xml((DCC_CORPUS / "siemens-pydcc/examples/dcc_gp_temperature_typical_v12_signed.xml").read_bytes())

    with pytest.raises(MigrationRefusedError, match="signature"):
        migrate_to_330(root)


def test_dcc_2_x_is_refused():
    root = parse_xml((DCC_CORPUS / "ptb-xsd-dcc/examples/v2.4.0/example.xml").read_bytes())

    with pytest.raises(MigrationRefusedError, match=r"2\.4\.0"):
        migrate_to_330(root)


def test_dcc_330_is_left_as_it_is():
    root = parse_xml((REPO_ROOT / "demo/certificates/dcclib-valid.xml").read_bytes())

    result = migrate_with_report(root)

    assert result.changes == []
    assert _elements(parse_xml(result.content)) == _elements(root)


def _with_version(root: etree._Element, version: str) -> etree._Element:
    copy = parse_xml(etree.tostring(root))
    copy.set("schemaVersion", version)
    return copy
