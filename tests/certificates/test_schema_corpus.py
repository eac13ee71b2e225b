"""XSD verdicts over the whole DCC corpus, driven by the tables in SOURCES.md, plus schema pinning checks."""

import base64
import copy
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from certificates import schema as dcc_schema
from certificates.findings import Severity
from certificates.schema import (
    SCHEMA_DIR,
    SUPPORTED_VERSIONS,
    SchemaReport,
    SchemaUnavailableError,
    compiled_schema,
    declared_schema_version,
    schema_path,
    validate_against_schema,
)
from certificates.xml import XmlRejected, parse_xml
from tests.paths import DCC_CORPUS

SOURCES = DCC_CORPUS / "SOURCES.md"


@dataclass(frozen=True)
class CorpusRow:
    """One example-document row of SOURCES.md."""

    path: Path
    declared: str
    valid: bool
    also_valid_as: tuple[str, ...]
    remark_line: int | None
    remark_message: str | None

    @property
    def test_id(self) -> str:
        return self.path.relative_to(DCC_CORPUS).as_posix()


def _corpus_rows() -> list[CorpusRow]:
    """Read the per-source tables of SOURCES.md: XML rows whose lxml verdict is valid or invalid."""
    rows: list[CorpusRow] = []
    section: str | None = None
    header: list[str] | None = None
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^### `([^`]+)/`", line)
        if heading:
            section, header = heading.group(1), None
            continue
        if section is None or not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "local file":
            header = cells
            continue
        if header is None or "lxml (declared)" not in header or not cells[0].startswith("`"):
            continue
        row = dict(zip(header, cells, strict=False))
        local = row["local file"].strip("`")
        verdict = row["lxml (declared)"]
        # Non-DCC rows (D-SI test data, RDF, CSV, JSON, "not a DCC root", certificates) carry other verdicts.
        if not local.endswith(".xml") or verdict not in {"**valid**", "invalid"}:
            continue
        declared = re.sub(r"[()*]|loc", "", row["declared version"]).strip()
        remark = re.search(r"L(\d+): (.+)$", row["remarks"])
        rows.append(
            CorpusRow(
                path=DCC_CORPUS / section / local,
                declared=declared,
                valid=verdict == "**valid**",
                also_valid_as=tuple(v.strip() for v in row["also valid as"].split(",") if v.strip()),
                remark_line=int(remark.group(1)) if remark else None,
                remark_message=remark.group(2).strip() if remark else None,
            )
        )
    return rows


CORPUS = _corpus_rows()
UPGRADES = [(row, version) for row in CORPUS for version in row.also_valid_as]


def _report(path: Path, *, version: str | None = None) -> SchemaReport:
    return validate_against_schema(parse_xml(path.read_bytes()), version=version)


def test_sources_table_yields_the_whole_example_corpus():
    assert len(CORPUS) >= 40
    assert all(row.path.is_file() for row in CORPUS)
    assert {row.declared for row in CORPUS} >= set(SUPPORTED_VERSIONS) - {"3.1.0", "3.2.1"}
    assert any(row.valid for row in CORPUS) and any(not row.valid for row in CORPUS)


@pytest.mark.parametrize("row", CORPUS, ids=lambda row: row.test_id)
def test_corpus_document_gets_the_sources_md_verdict_for_its_declared_version(row):
    root = parse_xml(row.path.read_bytes())
    assert declared_schema_version(root) == row.declared
    report = validate_against_schema(root)
    assert report.schema_version == row.declared
    assert report.valid is row.valid, [finding.message for finding in report.findings[:3]]
    if row.valid:
        assert report.findings == []
        return
    assert report.findings and all(finding.rule == "xsd" for finding in report.findings)
    assert all(finding.severity is Severity.error for finding in report.findings)
    assert all(finding.path and finding.path.startswith("/") for finding in report.findings)
    if row.remark_line is not None:
        first = report.findings[0]
        assert first.line == row.remark_line
        assert first.message.startswith(row.remark_message)


@pytest.mark.parametrize(("row", "version"), UPGRADES, ids=[f"{row.test_id}-as-{version}" for row, version in UPGRADES])
def test_document_is_valid_as_another_version_once_schema_version_is_rewritten(row, version):
    # SOURCES.md "also valid as": same document, only the schemaVersion attribute changed.
    root = copy.deepcopy(parse_xml(row.path.read_bytes()))
    root.set("schemaVersion", version)
    report = validate_against_schema(root, version=version)
    assert report.schema_version == version
    assert report.valid, [finding.message for finding in report.findings[:3]]


def test_explicit_version_overrides_the_declared_one():
    gp = DCC_CORPUS / "siemens-pydcc" / "examples" / "dcc_gp_temperature_typical_v12.xml"
    assert _report(gp).valid
    report = _report(gp, version="3.3.0")
    assert report.schema_version == "3.3.0"
    assert not report.valid
    # Only the pinned schemaVersion attribute differs between 3.1.1 and 3.3.0 for this document.
    assert len(report.findings) == 1
    assert "schemaVersion" in report.findings[0].message
    assert "3\\.3\\.0" in report.findings[0].message


def test_xsd_finding_carries_message_line_and_xpath():
    report = _report(DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "invalid_schema.xml")
    first = report.findings[0]
    assert first.rule == "xsd"
    assert first.line == 17
    assert first.path == "/dcc:digitalCalibrationCertificate/dcc:administrativeData/dcc:coreData/dcc:uniqueIdentifier"
    assert "[facet 'pattern']" in first.message


def test_dsi_test_data_root_is_not_a_dcc():
    dsi = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dsi_examples" / "GOLD" / "gold-test.xml"
    root = parse_xml(dsi.read_bytes())
    report = validate_against_schema(root)
    assert report.valid is False
    assert [finding.rule for finding in report.findings] == ["not-a-dcc"]
    assert report.findings[0].line == root.sourceline
    assert "testDSIXML" in report.findings[0].message


def test_plain_xml_root_is_not_a_dcc_even_with_an_explicit_version():
    report = validate_against_schema(parse_xml(b"<root><element/></root>"), version="3.3.0")
    assert not report.valid
    assert [finding.rule for finding in report.findings] == ["not-a-dcc"]
    assert report.findings[0].path == "/root"


def test_invalid_syntax_fixture_is_refused_by_the_parser_before_any_schema_check():
    # SOURCES.md lists it as "not a DCC root": it is not well-formed (tag mismatch on line 7).
    with pytest.raises(XmlRejected) as caught:
        parse_xml((DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "invalid_syntax.xml").read_bytes())
    assert caught.value.code == "malformed"
    assert caught.value.line == 7


@pytest.mark.parametrize(
    ("attributes", "version", "expected"),
    [
        ('schemaVersion="3.4.0-rc.2"', None, "3.4.0-rc.2"),
        ("", None, None),
        ('schemaVersion="3.3.0"', "9.9.9", "9.9.9"),
    ],
    ids=["pre-release", "undeclared", "explicit-unknown"],
)
def test_unknown_or_missing_version_is_reported(attributes, version, expected):
    root = parse_xml(f'<dcc:digitalCalibrationCertificate xmlns:dcc="https://ptb.de/dcc" {attributes}/>'.encode())
    report = validate_against_schema(root, version=version)
    assert report.schema_version == expected
    assert not report.valid
    assert [finding.rule for finding in report.findings] == ["schema-version-unknown"]
    assert "3.3.0" in report.findings[0].message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('<c xmlns="https://ptb.de/dcc" schemaVersion=" 3.2.1 "/>', "3.2.1"),
        (
            '<c xmlns="https://ptb.de/dcc" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="https://ptb.de/dcc http://www.ptb.de/dcc/v2.2.0/dcc.xsd"/>',
            "2.2.0",
        ),
        (
            '<d:digitalCalibrationCertificate xmlns:d="https://intranet.ptb.de/fileadmin/dokumente/intranet/'
            'abteilungen/abteilung_1/Digitaler_Kalibrierschein/DCC"/>',
            "2.1.0",
        ),
        ('<c xmlns="https://ptb.de/dcc"/>', None),
    ],
    ids=["attribute", "schema-location", "intranet-namespace", "none"],
)
def test_declared_schema_version_sources(document, expected):
    assert declared_schema_version(parse_xml(document.encode())) == expected


def test_schema_compile_of_every_version_touches_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    requested: list[str] = []
    original = dcc_schema._PinnedSchemaResolver.resolve

    def recording(self, url, pubid, context):
        requested.append(url)
        return original(self, url, pubid, context)

    monkeypatch.setattr(dcc_schema._PinnedSchemaResolver, "resolve", recording)
    for version in SUPPORTED_VERSIONS:
        compiled = dcc_schema._compile_schema(version)  # fresh compile, bypassing the cache
        assert isinstance(compiled, etree.XMLSchema)
    remote = [url for url in requested if url.startswith(("http:", "https:"))]
    assert remote, "imports should be requested by their public URLs"
    for url in requested:
        local = dcc_schema._pinned_file(url)
        assert local is not None and local.is_relative_to(SCHEMA_DIR), url


def test_import_outside_the_catalog_is_refused(tmp_path):
    for location in ("https://example.org/evil.xsd", str(tmp_path / "other.xsd")):
        (tmp_path / "other.xsd").write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>')
        xsd = tmp_path / "entry.xsd"
        xsd.write_text(
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a">'
            f'<xs:import namespace="urn:b" schemaLocation="{location}"/></xs:schema>'
        )
        with pytest.raises(SchemaUnavailableError):
            dcc_schema._compile_schema_file(xsd)


def test_catalog_maps_only_to_pinned_files_and_covers_every_schema():
    catalog = dcc_schema._catalog()
    assert catalog
    assert all(local.is_file() and local.is_relative_to(SCHEMA_DIR) for local in catalog.values())
    pinned = {path.resolve() for path in SCHEMA_DIR.rglob("*.xsd")}
    entry_points = {schema_path(version).resolve() for version in SUPPORTED_VERSIONS}
    assert pinned == set(catalog.values()) | entry_points
    # The public DCC URL of every release resolves to that release's dcc.xsd.
    for version in SUPPORTED_VERSIONS:
        assert catalog[f"https://ptb.de/dcc/v{version}/dcc.xsd"] == schema_path(version).resolve()


# Pinned file -> corpus original. None: a documented modification (see schemas/xsd/NOTICE.md).
PINNED_ORIGINS = {
    **{f"dcc/v{v}/dcc.xsd": f"ptb-xsd-dcc/xsd/v{v}/dcc.xsd" for v in SUPPORTED_VERSIONS[:9]},
    "dcc/v3.2.0/dcc.xsd": "siemens-pydcc/xsd/dcc_3_2_0.xsd",
    "dcc/v3.2.1/dcc.xsd": None,
    "dcc/v3.3.0/dcc.xsd": "drmd-schema/xsd/dcc-v3.3.0/dcc.xsd",
    "si/v1.0.1/SI_Format.xsd": "lutaml-dcc/xsd/dsi/v1.0.1/SI_Format.xsd",
    "si/v1.0.1-smartcom/SI_Format.xsd": None,
    "si/v1.3.0/SI_Format.xsd": "siemens-pydcc/xsd/dsi_1_3_0.xsd",
    "si/v1.3.1/SI_Format.xsd": "siemens-pydcc/xsd/dsi_1_3_1.xsd",
    "si/v2.0.0/SI_Format.xsd": "siemens-pydcc/xsd/dsi_2_0_0.xsd",
    "si/v2.1.0/SI_Format.xsd": "siemens-pydcc/xsd/dsi_2_1_0.xsd",
    "si/v2.2.1/SI_Format.xsd": "drmd-schema/xsd/si-v2.2.1/SI_Format.xsd",
    "si/v2.2.1/qudt/quantitykind.xsd": "lutaml-dcc/xsd/qudt/qudt.xsd",
    "xmldsig/xmldsig-core-schema.xsd": "lutaml-dcc/xsd/xmldsig/xmldsig-core-schema.xsd",
}


def test_pinned_schemas_are_verbatim_copies_except_the_documented_edits():
    assert {path.relative_to(SCHEMA_DIR).as_posix() for path in SCHEMA_DIR.rglob("*.xsd")} == set(PINNED_ORIGINS)
    notice = (SCHEMA_DIR / "NOTICE.md").read_text(encoding="utf-8")
    for pinned, origin in PINNED_ORIGINS.items():
        assert f"`{pinned}`" in notice
        if origin is not None:
            assert (SCHEMA_DIR / pinned).read_bytes() == (DCC_CORPUS / origin).read_bytes(), pinned

    intranet_si = (
        "https://intranet.ptb.de/fileadmin/dokumente/intranet/abteilungen/abteilung_1/Digitaler_Kalibrierschein/SI"
    )
    original = (DCC_CORPUS / "lutaml-dcc/xsd/dsi/v1.0.1/SI_Format.xsd").read_text(encoding="utf-8")
    adjusted = (SCHEMA_DIR / "si/v1.0.1-smartcom/SI_Format.xsd").read_text(encoding="utf-8")
    assert adjusted == original.replace(intranet_si, "https://ptb.de/si/smartcom/d-si/v1_0_1")

    lutaml_321 = (DCC_CORPUS / "lutaml-dcc/xsd/dcc/v3.2.1/dcc.xsd").read_text(encoding="utf-8")
    pinned_321 = (SCHEMA_DIR / "dcc/v3.2.1/dcc.xsd").read_text(encoding="utf-8")
    assert pinned_321 == lutaml_321.replace(
        'schemaLocation="../dsi/v2.1.0.xsd"', 'schemaLocation="https://ptb.de/si/v2.1.0/SI_Format.xsd"'
    ).replace(
        'schemaLocation="../xmldsig-core-schema.xsd"',
        'schemaLocation="https://www.ptb.de/dcc/d-sig/xmldsig-core-schema.xsd"',
    )


def test_concurrent_validations_keep_their_own_findings():
    fixtures = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib"
    roots = [parse_xml((fixtures / name).read_bytes()) for name in ("valid.xml", "invalid_schema.xml")]
    expected = [validate_against_schema(root).model_dump() for root in roots]
    assert expected[0]["valid"] and not expected[1]["valid"]
    mismatches: list[int] = []
    finished: list[int] = []  # a worker that raised never gets here

    def work() -> None:
        for i in range(100):
            index = i % 2
            if validate_against_schema(roots[index]).model_dump() != expected[index]:
                mismatches.append(index)
        finished.append(1)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not any(worker.is_alive() for worker in workers)
    assert mismatches == [] and len(finished) == len(workers)


def test_twenty_megabyte_certificate_with_embedded_pdf_validates():
    source = (DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "valid.xml").read_bytes()
    pdf = base64.b64encode(b"%PDF-1.7\n" + os.urandom(15 * 1024 * 1024))
    document = (
        b"<dcc:document><dcc:fileName>certificate.pdf</dcc:fileName>"
        b"<dcc:mimeType>application/pdf</dcc:mimeType><dcc:dataBase64>" + pdf + b"</dcc:dataBase64></dcc:document>"
    )
    data = source.replace(b"</dcc:measurementResults>", b"</dcc:measurementResults>" + document, 1)
    assert len(data) > 20 * 1024 * 1024
    report = validate_against_schema(parse_xml(data))
    assert report.valid, report.findings[:3]


def test_schema_path_refuses_unknown_versions():
    assert schema_path("3.3.0").is_file()
    with pytest.raises(ValueError):
        schema_path("3.4.0-rc.2")


def test_concurrent_validations_of_one_release_use_copies_of_their_own_and_reuse_them():
    with compiled_schema("3.3.0") as first, compiled_schema("3.3.0") as second:
        assert first is not second  # both validate at once: lxml keeps the error log on the object
    with compiled_schema("3.3.0") as again:
        assert again in (first, second)  # compiled once, then reused
