"""The hub's signxml verifier (no redundant document copies, its own parse shared) signs off the same bytes as stock
signxml: for every reference of every signed XML file of both corpora, the same digest input and signed XML or
the same error, and for the signed DCCs the same complete verification result.
"""

import base64
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import CanonicalizationMethod
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from certificates.xml import XmlRejected, parse_xml
from signing.verification import DS, NS, _HubXAdESVerifier, _HubXMLVerifier, _signxml_parser
from tests.paths import DCC_CORPUS, XMLDSIG_CORPUS

SIGNATURE = f"{{{DS}}}Signature"


def _signed_files() -> Iterator[Path]:
    for corpus in (XMLDSIG_CORPUS, DCC_CORPUS):
        for path in sorted(corpus.rglob("*.xml")):
            data = path.read_bytes()
            if b"Signature" in data:
                yield path


def _outcome(call: Any) -> tuple[str, object]:
    try:
        result = call()
    except Exception as error:  # the error itself is the outcome to compare
        return "error", (type(error).__name__, str(error))
    if result is None:
        return "none", None
    return "ok", (result.signed_data, etree.tostring(result.signed_xml) if result.signed_xml is not None else None)


def _prepared(verifier: XMLVerifier) -> XMLVerifier:
    # What XMLVerifier.verify sets up before it resolves references.
    verifier.config = SignatureConfiguration(location=".//", expect_references=True)
    verifier._parser = _signxml_parser()
    verifier.hmac_key = None
    return verifier


FILES = list(_signed_files())


def test_both_corpora_hold_signed_files():
    assert len(FILES) > 200


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_reference_resolves_and_digests_as_stock_signxml_does(path: Path):
    data = path.read_bytes()
    try:
        hub_root = parse_xml(data)
    except XmlRejected:
        pytest.skip("refused by the hardened parser: never reaches signxml")
    stock = _prepared(XMLVerifier())
    stock_root = stock.get_root(data)
    hub = _prepared(_HubXMLVerifier())
    assert hub.get_root(hub_root) is hub_root
    signatures = [hub_root] if hub_root.tag == SIGNATURE else list(hub_root.iter(SIGNATURE))
    stock_signatures = [stock_root] if stock_root.tag == SIGNATURE else list(stock_root.iter(SIGNATURE))
    compared = 0
    for signature, stock_signature in zip(signatures, stock_signatures, strict=True):
        method = signature.find("ds:SignedInfo/ds:CanonicalizationMethod", NS)
        try:
            c14n = CanonicalizationMethod(method.get("Algorithm") if method is not None else "")
        except ValueError:
            continue
        references = signature.findall("ds:SignedInfo/ds:Reference", NS)
        stock_references = stock_signature.findall("ds:SignedInfo/ds:Reference", NS)
        for index, (reference, stock_reference) in enumerate(zip(references, stock_references, strict=True)):
            # signxml locates "the" signature below the root; compare where that is this signature.
            location = "./" if signature.getparent() is None or signature.getparent() is hub_root else ".//"
            hub.config = stock.config = SignatureConfiguration(location=location, expect_references=True)
            expected = _outcome(
                functools.partial(
                    stock._verify_reference, stock_reference, index, stock_root, None, c14n, stock_signature, b"k"
                )
            )
            actual = _outcome(
                functools.partial(hub._verify_reference, reference, index, hub_root, None, c14n, signature, b"k")
            )
            assert actual == expected, f"reference {index} of {path}"
            compared += 1
    # The hub's tree is never modified by verification.
    assert etree.tostring(hub_root) == etree.tostring(parse_xml(data))
    if not compared:
        pytest.skip("no reference with a known canonicalization")


def _dcc_cases() -> Iterator[tuple[Path, bool]]:
    for path in sorted(DCC_CORPUS.rglob("*.xml")):
        data = path.read_bytes()
        if b"X509Certificate" in data:
            yield path, b"SignedProperties" in data


@pytest.mark.parametrize(("path", "xades"), list(_dcc_cases()), ids=lambda value: getattr(value, "name", str(value)))
def test_signed_dccs_verify_as_with_stock_signxml(path: Path, xades: bool):
    data = path.read_bytes()
    root = parse_xml(data)
    text = root.findtext(".//ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    if not text:
        pytest.skip("no embedded certificate")
    certificate = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    config_class = XAdESSignatureConfiguration if xades else SignatureConfiguration
    config = config_class(location="./", expect_references=True, verification_time=certificate.not_valid_before_utc)
    stock = XAdESVerifier() if xades else XMLVerifier()
    hub = _HubXAdESVerifier() if xades else _HubXMLVerifier()

    def results(verifier: XMLVerifier, document: object) -> object:
        try:
            outcome = verifier.verify(document, x509_cert=certificate, parser=_signxml_parser(), expect_config=config)
        except Exception as error:
            return type(error).__name__, str(error)
        outcome = outcome if isinstance(outcome, list) else [outcome]
        return [(result.signed_data, etree.tostring(result.signed_xml)) for result in outcome]

    assert results(hub, root) == results(stock, data)
