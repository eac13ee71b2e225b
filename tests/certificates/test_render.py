"""The HTML certificate page: renders every corpus DCC, picks the mandatory language, escapes all text."""

import json
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from certificates.dcc_json import build_dcc_xml
from certificates.render import pretty_unit, render_certificate_html
from certificates.xml import XmlRejected, parse_xml
from tests.paths import DCC_CORPUS

DATA = Path(__file__).resolve().parent / "data"
VALID_330 = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib" / "valid.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend" / "examples" / "DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"
SILICON_SPHERE_210 = DCC_CORPUS / "ptb-xsd-dcc" / "examples" / "v2.1.0" / "siliziumkugel.xml"
NS = {"dcc": "https://ptb.de/dcc", "si": "https://ptb.de/si"}


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


def _unique_identifier(root: etree._Element) -> str:
    return root.xpath("normalize-space(//*[local-name()='coreData']/*[local-name()='uniqueIdentifier'])")


def _assert_self_contained(html: str) -> lxml.html.HtmlElement:
    """Check the page loads nothing from elsewhere and runs no code; return its parsed tree."""
    assert html.startswith("<!DOCTYPE html>")
    page = lxml.html.document_fromstring(html)
    assert page.get("lang")
    assert page.xpath("//meta[@name='viewport']")
    assert page.xpath("//style")
    assert page.xpath("//script | //link | //img | //iframe | //object | //embed") == []
    assert page.xpath("//@src | //@href | //@*[starts-with(name(), 'on')]") == []
    assert "url(" not in "".join(page.xpath("//style/text()"))
    return page


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: str(path.relative_to(DCC_CORPUS)))
def test_every_corpus_dcc_renders(path: Path) -> None:
    root = parse_xml(path.read_bytes())

    html = render_certificate_html(root, status="issued")

    _assert_self_contained(html)
    identifier = _unique_identifier(root)
    if identifier:
        escaped = identifier.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in html


def test_an_empty_certificate_still_renders() -> None:
    html = render_certificate_html(parse_xml(b"<dcc:digitalCalibrationCertificate xmlns:dcc='https://ptb.de/dcc'/>"))

    _assert_self_contained(html)
    assert "No results could be shown." in html


def test_page_shows_identifier_values_and_people() -> None:
    html = render_certificate_html(parse_xml(VALID_330.read_bytes()))

    assert "Calibration certificate 1234" in html
    assert '<html lang="en">' in html
    assert "0.072" in html and "-0.084" in html  # measurement error list, one row per value
    assert "± 0.061" in html
    assert "306.248" in html and "= 33.098 °C" in html  # hybrid: kelvin rows, celsius noted beside
    assert "Michaela Musterfrau" in html and "main signer" in html
    assert "Kalibrierfirma GmbH" in html and "Kunde GmbH" in html
    assert "Measurement error" in html and "Messabweichung" not in html  # mandatory language: en


def test_mandatory_language_text_is_chosen() -> None:
    html = render_certificate_html(parse_xml(GAUGE_BLOCK.read_bytes()))

    assert '<html lang="de">' in html
    assert "Mittenmaß" in html and "Central length" not in html
    assert "0.06000014" in html
    assert "{GUID-NR}" in html


def test_old_release_renders_its_results() -> None:
    root = parse_xml(SILICON_SPHERE_210.read_bytes())

    html = render_certificate_html(root)

    assert "PTB" in html
    value = root.xpath("string((//*[local-name()='real']/*[local-name()='value'])[1])").strip()
    assert value and value in html


def test_document_text_is_escaped() -> None:
    root = parse_xml(VALID_330.read_bytes())
    attack = '<script>alert("dcc")</script><img src=x onerror=alert(1)>'
    for content in root.xpath("//dcc:content", namespaces=NS):
        content.text = attack
    root.xpath("//dcc:uniqueIdentifier", namespaces=NS)[0].text = attack
    root.xpath("//si:value", namespaces=NS)[0].text = attack
    root.xpath("//si:unit", namespaces=NS)[0].text = '"><script>alert(2)</script>'
    root.xpath("//dcc:mandatoryLangCodeISO639_1", namespaces=NS)[0].text = 'en" onload="alert(3)'

    html = render_certificate_html(root, title=attack, status=attack, details={attack: attack})

    page = _assert_self_contained(html)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;dcc&#34;)&lt;/script&gt;" in html
    assert page.get("lang") == 'en" onload="alert(3)'  # stayed one attribute value
    assert page.xpath("//h1")[0].text_content() == attack


@pytest.mark.parametrize(
    ("status", "tone"), [("issued", "ok"), ("revoked", "bad"), ("superseded", "warn"), ("odd", "neutral")]
)
def test_status_banner(status: str, tone: str) -> None:
    html = render_certificate_html(
        parse_xml(VALID_330.read_bytes()),
        title="Certificate 1234",
        status=status,
        details={"Registered": "2025-03-12", "Issuer": "Kalibrierfirma GmbH"},
    )

    assert f'<section class="banner {tone}" role="status">' in html
    assert f'<div class="status">{status}</div>' in html
    assert "<dt>Registered</dt><dd>2025-03-12</dd>" in html
    assert "<title>Certificate 1234</title>" in html


def test_no_banner_without_status() -> None:
    html = render_certificate_html(parse_xml(VALID_330.read_bytes()))

    assert 'class="banner' not in html


def test_built_submission_renders_with_uncertainties() -> None:
    submission = json.loads((DATA / "submission-thermometer.json").read_text(encoding="utf-8"))

    html = render_certificate_html(parse_xml(build_dcc_xml(submission)))

    assert "TLAB-2025-00417" in html
    assert "20.000" in html and "°C" in html
    assert "± 0.0010" in html and '<td class="num">2</td>' in html and "0.95" in html
    assert "u = 0.3e-3" in html
    assert "[100.0036, 100.0056]" in html
    assert "Resistance thermometer Pt100" in html and "SN 4711-0815" in html
    assert "D-K-15999-01-00" in html


@pytest.mark.parametrize(
    ("unit", "symbol"),
    [
        ("\\kelvin", "K"),
        ("\\degreecelsius", "°C"),
        ("\\milli\\metre", "mm"),
        ("\\metre\\second\\tothe{-1}", "m·s⁻¹"),
        ("\\kilogram\\metre\\tothe{-1}\\second\\tothe{-2}", "kg·m⁻¹·s⁻²"),
        ("\\metre\\per\\second", "m/s"),
        ("\\micro\\ohm", "µΩ"),
        ("\\kgf", "\\kgf"),
        ("\\milli", "\\milli"),
        ("|mmHg", "|mmHg"),
        ("", ""),
    ],
)
def test_pretty_unit(unit: str, symbol: str) -> None:
    assert pretty_unit(unit) == symbol
