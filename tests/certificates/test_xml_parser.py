"""Behaviour of the hardened XML parser: attacks refused, caps enforced, encodings handled, lines kept."""

import base64
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from certificates import xml as hub_xml
from certificates.xml import DEFAULT_MAX_BYTES, XmlRejected, parse_xml
from tests.paths import DCC_CORPUS, XMLDSIG_CORPUS

ATTACKS = XMLDSIG_CORPUS / "xml-attacks-defusedxml"
# Decided per file after reading it: everything with a DOCTYPE is refused, the two plain files parse.
ATTACK_OUTCOMES = {
    "cyclic.xml": "dtd-forbidden",  # recursive entities a -> b -> a
    "dtd.xml": "dtd-forbidden",  # external XHTML DTD (network fetch)
    "external.xml": "dtd-forbidden",  # XXE over http
    "external_file.xml": "dtd-forbidden",  # XXE over file://
    "quadratic.xml": "dtd-forbidden",  # quadratic blowup
    "xmlbomb.xml": "dtd-forbidden",  # billion laughs
    "xmlbomb2.xml": "dtd-forbidden",  # internal entity
    "simple.xml": None,
    "simple-ns.xml": None,
}
DTD_ATTACKS = sorted(name for name, code in ATTACK_OUTCOMES.items() if code == "dtd-forbidden")
GP_TEMPERATURE = DCC_CORPUS / "siemens-pydcc" / "examples" / "dcc_gp_temperature_typical_v12.xml"


def _within(seconds: float, call: Callable[[], object]) -> object:
    """Run `call` in a daemon thread so a hang fails the test instead of blocking the run."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"parser did not answer within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def _rejection(data: bytes, **limits: int) -> XmlRejected:
    with pytest.raises(XmlRejected) as caught:
        _within(30, lambda: parse_xml(data, **limits))
    return caught.value


def test_attack_table_covers_every_file_in_the_corpus():
    assert sorted(path.name for path in ATTACKS.iterdir()) == sorted(ATTACK_OUTCOMES)


@pytest.mark.parametrize("name", sorted(ATTACK_OUTCOMES))
def test_defusedxml_attack_file_is_refused_or_parsed_as_decided(name):
    data = (ATTACKS / name).read_bytes()
    expected = ATTACK_OUTCOMES[name]
    if expected is None:
        root = _within(30, lambda: parse_xml(data))
        assert isinstance(root, etree._Element)
        assert etree.QName(root).localname == "root"
        assert [element.text for element in root.iter("{*}element")] == ["text", "text"]
    else:
        rejected = _rejection(data)
        assert rejected.code == expected
        assert "DOCTYPE" in rejected.detail
        doctype_line = next(i for i, ln in enumerate(data.decode().splitlines(), 1) if ln.startswith("<!DOCTYPE"))
        assert rejected.line == doctype_line


@pytest.mark.parametrize("huge", [False, True], ids=["default", "huge"])
@pytest.mark.parametrize("name", DTD_ATTACKS)
def test_inner_libxml2_parser_never_fetches_or_expands_entities(name, huge, monkeypatch):
    # Defence in depth: even if the prolog scan were bypassed, libxml2 itself must stay inert.
    requested: list[str] = []
    monkeypatch.setattr(hub_xml._RefuseExternal, "resolve", lambda self, url, pubid, ctx: requested.append(url))
    data = (ATTACKS / name).read_bytes()
    try:
        root = _within(30, lambda: etree.fromstring(data, hub_xml._parser(huge=huge)))
    except etree.XMLSyntaxError:
        root = None  # libxml2's own entity-loop/amplification guards fired
    assert requested == []
    if root is not None:
        serialized = etree.tostring(root)
        assert len(serialized) <= len(data)
        assert b"www.w3schools.com" not in serialized and b"simple.xml" not in serialized


@pytest.mark.parametrize(
    ("label", "data"),
    [
        (
            "after-comment-and-pi",
            b"<?xml version='1.0'?>\n<!-- c -->\n<?pi x?>\n<!DOCTYPE r [<!ENTITY a 'b'>]><r>&a;</r>",
        ),
        ("lowercase", b"<!doctype r><r/>"),
        ("utf8-bom", b"\xef\xbb\xbf<!DOCTYPE r SYSTEM 'http://example.org/r.dtd'><r/>"),
        (
            "utf16",
            "<?xml version='1.0' encoding='UTF-16'?><!DOCTYPE r [<!ENTITY a 'b'>]><r>&a;</r>".encode("utf-16"),
        ),
        ("utf16le-no-bom", "<?xml version='1.0' encoding='UTF-16'?><!DOCTYPE r><r/>".encode("utf-16-le")),
        ("latin1", b"<?xml version='1.0' encoding='ISO-8859-1'?><!DOCTYPE r><r>\xe9</r>"),
    ],
)
def test_doctype_is_refused_whatever_the_encoding_or_prolog(label, data):
    assert _rejection(data).code == "dtd-forbidden"


def test_undeclared_entity_reference_is_refused_as_entity():
    rejected = _rejection(b"<r>\n<a>&xxe;</a></r>")
    assert rejected.code == "entity-forbidden"
    assert rejected.line == 2


def test_predefined_entities_and_character_references_still_work():
    root = parse_xml(b"<r a='&quot;'>&lt;&amp;&#x41;&#66;</r>")
    assert root.text == "<&AB"
    assert root.get("a") == '"'


def test_xinclude_is_never_processed():
    data = b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd" parse="text"/></r>'
    root = parse_xml(data)
    assert [child.tag for child in root] == ["{http://www.w3.org/2001/XInclude}include"]
    assert root[0].text is None and "root:" not in etree.tostring(root).decode()


def test_truncated_document_is_malformed_with_its_line():
    data = GP_TEMPERATURE.read_bytes()
    truncated = data[: len(data) // 2]
    rejected = _rejection(truncated)
    assert rejected.code == "malformed"
    assert rejected.line is not None and rejected.line >= truncated.count(b"\n")
    assert "line" in rejected.detail


def test_mismatched_tag_is_malformed_with_the_line_in_the_detail():
    rejected = _rejection((DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "invalid_syntax.xml").read_bytes())
    assert rejected.code == "malformed"
    assert rejected.line == 7
    assert "mismatch" in rejected.detail


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b'{"digitalCalibrationCertificate": {}}',
        b"just some text",
        random.Random(7).randbytes(64).replace(b"<", b"x"),
    ],
    ids=["pdf", "png", "json", "text", "random"],
)
def test_non_xml_bytes_are_refused_as_not_xml(data):
    assert _rejection(data).code == "not-xml"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf"], ids=["no-bytes", "whitespace", "bom-only"])
def test_empty_input_is_refused_as_empty(data):
    assert _rejection(data).code == "empty"


def test_ebcdic_or_ascii_incompatible_encodings_are_refused():
    assert _rejection(b"\x4c\x6f\xa7\x94\x93@").code == "not-xml"
    assert _rejection(b"<?xml version='1.0' encoding='IBM037'?><r/>").code == "malformed"
    assert _rejection(b"<?xml version='1.0' encoding='no-such-codec'?><r/>").code == "malformed"


def test_legacy_and_utf16_encodings_are_decoded():
    assert parse_xml(b"<?xml version='1.0' encoding='ISO-8859-1'?><r>Gr\xfc\xdfe</r>").text == "Grüße"
    assert parse_xml("<?xml version='1.0' encoding='UTF-16'?><r>Grüße</r>".encode("utf-16")).text == "Grüße"
    assert parse_xml("<r>µ</r>".encode("utf-8-sig")).text == "µ"


def test_one_byte_over_the_cap_is_refused_before_parsing():
    data = b"<r>" + b"a" * (DEFAULT_MAX_BYTES - 8) + b"</r>" + b"  "
    assert len(data) == DEFAULT_MAX_BYTES + 1
    rejected = _rejection(data)
    assert rejected.code == "too-large"
    assert str(DEFAULT_MAX_BYTES) in rejected.detail


def test_custom_cap_is_inclusive():
    data = b"<r>" + b"a" * 993 + b"</r>"
    assert len(data) == 1000
    assert parse_xml(data, max_bytes=1000).text == "a" * 993
    assert _rejection(data + b" ", max_bytes=1000).code == "too-large"


def _dcc_with_embedded_pdf(payload_bytes: int) -> bytes:
    pdf = b"%PDF-1.7\n" + os.urandom(payload_bytes)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<dcc:digitalCalibrationCertificate xmlns:dcc="https://ptb.de/dcc" schemaVersion="3.3.0">\n'
        b"  <dcc:administrativeData/>\n"
        b"  <dcc:document>\n"
        b"    <dcc:fileName>certificate.pdf</dcc:fileName>\n"
        b"    <dcc:mimeType>application/pdf</dcc:mimeType>\n"
        b"    <dcc:dataBase64>" + base64.b64encode(pdf) + b"</dcc:dataBase64>\n"
        b"  </dcc:document>\n"
        b"  <dcc:comment>after the PDF</dcc:comment>\n"
        b"</dcc:digitalCalibrationCertificate>\n"
    )


def test_twenty_megabyte_certificate_with_embedded_pdf_parses():
    data = _dcc_with_embedded_pdf(15 * 1024 * 1024)
    assert 20 * 1024 * 1024 <= len(data) < DEFAULT_MAX_BYTES
    root = _within(60, lambda: parse_xml(data))
    ns = {"dcc": "https://ptb.de/dcc"}
    encoded = root.findtext("dcc:document/dcc:dataBase64", namespaces=ns)
    assert base64.b64decode(encoded).startswith(b"%PDF-1.7")
    assert root.find("dcc:comment", ns).sourceline == 9


def test_deep_nesting_is_refused_as_too_deep():
    rejected = _rejection(b"<a>" * 300 + b"</a>" * 300)
    assert rejected.code == "too-deep"
    assert "256" in rejected.detail


def test_depth_limit_is_exact_and_configurable():
    assert parse_xml(b"<a>" * 256 + b"</a>" * 256).tag == "a"
    assert parse_xml(b"<a>" * 10 + b"</a>" * 10, max_depth=10).tag == "a"
    assert _rejection(b"<a>" * 11 + b"</a>" * 11, max_depth=10).code == "too-deep"
    assert parse_xml(b"<a>" * 400 + b"</a>" * 400, max_depth=400).tag == "a"


def test_depth_limit_also_holds_for_documents_needing_the_huge_parser():
    nested = b"<x>" * 300 + b"</x>" * 300
    data = _dcc_with_embedded_pdf(8 * 1024 * 1024).replace(b"<dcc:comment>", nested + b"<dcc:comment>")
    assert len(data) > 10_000_000  # above libxml2's default text limit
    assert _rejection(data).code == "too-deep"


def test_source_lines_are_preserved():
    root = parse_xml(b"<r>\n  <a/>\n\n  <b\n   x='1'/>\n<c>\n</c></r>")
    # libxml2 reports the line on which a start tag ends (relevant for multi-line start tags).
    assert [(element.tag, element.sourceline) for element in root.iter()] == [
        ("r", 1),
        ("a", 2),
        ("b", 5),
        ("c", 6),
    ]


def test_source_lines_of_a_real_certificate_point_at_each_start_tag():
    data = GP_TEMPERATURE.read_bytes()
    root = parse_xml(data)
    lines = data.decode("utf-8").splitlines()
    checked = 0
    for element in root.iter(etree.Element):
        opening = "<" + (f"{element.prefix}:" if element.prefix else "") + etree.QName(element).localname
        window = lines[max(0, element.sourceline - 10) : element.sourceline]
        assert any(opening in line for line in window), (element.tag, element.sourceline)
        checked += 1
    assert checked > 100


def test_source_lines_beyond_65535_are_kept():
    root = parse_xml(b"<r>" + b"\n" * 70_000 + b"<deep/></r>")
    assert root[0].sourceline == 70_001


def test_parser_is_safe_to_use_from_many_threads():
    sources = [GP_TEMPERATURE, *sorted((DCC_CORPUS / "ptb-xsd-dcc" / "examples").rglob("*.xml"))]
    expected = {path: etree.tostring(parse_xml(path.read_bytes())) for path in sources}
    mismatches: list[Path] = []

    def work() -> None:
        for _ in range(5):
            for path in sources:
                if etree.tostring(parse_xml(path.read_bytes())) != expected[path]:
                    mismatches.append(path)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not any(worker.is_alive() for worker in workers)
    assert mismatches == []


def test_rejection_carries_code_and_detail():
    rejected = _rejection(b"<r>")
    assert rejected.code == "malformed"
    assert str(rejected).startswith("malformed: ")
    with pytest.raises(ValueError):
        XmlRejected("no-such-code", "x")


def test_non_bytes_input_is_a_programming_error():
    with pytest.raises(TypeError):
        parse_xml("<r/>")  # type: ignore[arg-type]
