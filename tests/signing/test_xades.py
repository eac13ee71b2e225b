"""Enveloped XAdES B-B/B-T signing of DCCs, checked by two independent verifiers (signxml and libxmlsec1)."""

import base64
import hashlib
from datetime import UTC, datetime

import pytest
import xmlsec
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.exceptions import InvalidDigest, InvalidSignature
from signxml.xades import XAdESVerifier

from certificates.validation import validate_root
from certificates.xml import parse_xml
from signing.timestamps import load_or_create_hub_tsa, request_timestamp, token_info, verify_timestamp_token
from signing.trust import TrustContext
from signing.xades import (
    C14N_11,
    DS_NS,
    XADES_NS,
    AlreadySignedError,
    SignatureSlotMissingError,
    UnsupportedSigningKeyError,
    sign_dcc,
    signature_value_c14n,
)
from storage.errors import InvalidInputError
from storage.settings import Settings
from tests.paths import DCC_CORPUS, REPO_ROOT
from tests.signing.signing_helpers import (
    PROFILE_CONFIG,
    make_ca,
    make_signer,
    pem,
    verify_with_signxml,
    verify_with_xmlsec,
)

DCC_330 = REPO_ROOT / "demo" / "certificates" / "dcclib-valid.xml"
DCC_311 = DCC_CORPUS / "siemens-pydcc" / "examples" / "dcc_gp_temperature_typical_v12.xml"
NS = {"ds": DS_NS, "xades": XADES_NS}


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def signer(ca):
    return make_signer(ca)


def test_signed_dcc_verifies_with_signxml_and_xmlsec(ca, signer, tmp_path):
    signed = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)

    results = verify_with_signxml(signed, anchor=ca.certificate, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=ca.certificate)

    signed_root = results[0].signed_xml
    assert etree.QName(signed_root).localname == "digitalCalibrationCertificate"
    assert signed_root.find("ds:Signature", NS) is None  # what was signed is the document without its signature
    assert etree.QName(results[1].signed_xml).localname == "SignedProperties"


def test_rsa_pss_3072_signature_verifies_with_both_verifiers(ca, tmp_path):
    rsa_signer = make_signer(ca, algorithm="rsa-pss-3072")
    signed = sign_dcc(DCC_330.read_bytes(), private_key=rsa_signer.private_key, certificate_chain=rsa_signer.chain)

    verify_with_signxml(signed, anchor=ca.certificate, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=ca.certificate)
    method = etree.fromstring(signed).find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS)
    assert method.get("Algorithm") == "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
    assert etree.fromstring(signed).find("ds:Signature/ds:KeyInfo/ds:KeyValue", NS) is None


def test_signature_follows_the_dcc_profile(signer):
    signing_time = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    signed = sign_dcc(
        DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain, signing_time=signing_time
    )
    root = etree.fromstring(signed)

    signature = root[-1]
    assert signature.tag == f"{{{DS_NS}}}Signature" and signature.prefix == "ds"
    assert len(root.findall("ds:Signature", NS)) == 1
    signed_info = signature.find("ds:SignedInfo", NS)
    assert signed_info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == C14N_11
    assert signed_info.find("ds:SignatureMethod", NS).get("Algorithm").endswith("#ecdsa-sha256")
    references = signed_info.findall("ds:Reference", NS)
    assert len(references) == 2
    data, properties = references
    assert data.get("URI") == ""
    assert [t.get("Algorithm") for t in data.findall("ds:Transforms/ds:Transform", NS)] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        C14N_11,
    ]
    assert properties.get("Type") == "http://uri.etsi.org/01903#SignedProperties"
    signed_properties = signature.find(".//xades:SignedProperties", NS)
    assert properties.get("URI") == f"#{signed_properties.get('Id')}"
    assert signed_properties.findtext(".//xades:SigningTime", namespaces=NS) == "2026-03-01T12:30:00Z"
    cert_digests = signed_properties.findall(".//xades:SigningCertificateV2/xades:Cert", NS)
    assert len(cert_digests) == 1
    leaf_der = base64.b64decode(signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS))
    expected_digest = base64.b64encode(hashlib.sha256(leaf_der).digest()).decode()
    assert cert_digests[0].findtext(".//ds:DigestValue", namespaces=NS) == expected_digest
    data_format = signed_properties.find(".//xades:DataObjectFormat", NS)
    assert data_format.findtext("xades:MimeType", namespaces=NS) == "application/xml"
    assert data_format.get("ObjectReference") == f"#{data.get('Id')}"
    assert len(signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)) == len(signer.chain)
    assert signature.find(".//xades:UnsignedProperties", NS) is None  # B-B


def test_signed_dcc_is_still_a_valid_certificate_of_its_release(signer):
    signed = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)

    report = validate_root(parse_xml(signed))

    assert report.valid, report.findings
    assert report.schema_version == "3.3.0"


def test_a_value_changed_after_signing_fails_both_verifiers(ca, signer, tmp_path):
    signed = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)
    root = etree.fromstring(signed)
    value = root.find(".//{https://ptb.de/si}value")
    value.text = value.text + "1"
    tampered = etree.tostring(root)

    with pytest.raises((InvalidDigest, InvalidSignature)):
        verify_with_signxml(tampered, anchor=ca.certificate, tmp_path=tmp_path)
    with pytest.raises(xmlsec.Error):
        verify_with_xmlsec(tampered, anchor=ca.certificate)


def test_signature_from_another_ca_is_not_trusted(signer, tmp_path):
    other_ca = make_ca("Some Other CA")
    signed = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain[:1])

    with pytest.raises(InvalidSignature):
        verify_with_signxml(signed, anchor=other_ca.certificate, tmp_path=tmp_path)
    with pytest.raises(xmlsec.Error):
        verify_with_xmlsec(signed, anchor=other_ca.certificate)


def test_dcc_older_than_3_2_0_is_refused_for_lack_of_a_signature_slot(signer):
    with pytest.raises(SignatureSlotMissingError) as refused:
        sign_dcc(DCC_311.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)

    assert refused.value.code == "signature-slot-missing"
    assert "3.1.1" in refused.value.detail


def test_an_already_signed_dcc_is_refused(signer):
    signed = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)

    with pytest.raises(AlreadySignedError):
        sign_dcc(signed, private_key=signer.private_key, certificate_chain=signer.chain)


def test_rsa_keys_below_3072_bits_are_refused(ca):
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = ca.issue_certificate(
        subject=make_signer(ca).chain[0].subject, public_key=weak_key.public_key(), profile="signer"
    )

    with pytest.raises(UnsupportedSigningKeyError):
        sign_dcc(DCC_330.read_bytes(), private_key=weak_key, certificate_chain=[certificate])


def test_a_key_that_does_not_match_the_certificate_is_refused(ca, signer):
    stranger = make_signer(ca)

    with pytest.raises(InvalidInputError):
        sign_dcc(DCC_330.read_bytes(), private_key=stranger.private_key, certificate_chain=signer.chain)


def test_b_t_timestamp_covers_the_signature_value_and_verifies(tmp_path, signer):
    settings = Settings(data_dir=tmp_path / "data")
    tsa = load_or_create_hub_tsa(settings)
    signed = sign_dcc(
        DCC_330.read_bytes(),
        private_key=signer.private_key,
        certificate_chain=signer.chain,
        timestamper=lambda data: request_timestamp(data, tsa=tsa),
    )
    root = etree.fromstring(signed)
    signature = root.find("ds:Signature", NS)
    stamp = signature.find(".//xades:UnsignedSignatureProperties/xades:SignatureTimeStamp", NS)
    token = base64.b64decode(stamp.findtext("xades:EncapsulatedTimeStamp", namespaces=NS))
    covered = signature_value_c14n(signature, algorithm=stamp.find("ds:CanonicalizationMethod", NS).get("Algorithm"))

    verdict = verify_timestamp_token(token, signed_data=covered, trust=TrustContext(anchors=tsa.chain))

    assert verdict.valid, verdict.reason
    assert covered.startswith(b"<ds:SignatureValue")
    assert token_info(token)["message_imprint"]["hashed_message"].native == hashlib.sha256(covered).digest()
    # The unsigned timestamp leaves the signature itself intact for both verifiers.
    verify_with_signxml(signed, anchor=signer.chain[-1], tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=signer.chain[-1])


def test_b_t_timestamp_does_not_verify_for_another_signature_value(tmp_path, signer):
    settings = Settings(data_dir=tmp_path / "data")
    tsa = load_or_create_hub_tsa(settings)
    signed = sign_dcc(
        DCC_330.read_bytes(),
        private_key=signer.private_key,
        certificate_chain=signer.chain,
        timestamper=lambda data: request_timestamp(data, tsa=tsa),
    )
    other = sign_dcc(DCC_330.read_bytes(), private_key=signer.private_key, certificate_chain=signer.chain)
    stamp = etree.fromstring(signed).find(".//xades:EncapsulatedTimeStamp", NS)
    other_signature = etree.fromstring(other).find("ds:Signature", NS)

    verdict = verify_timestamp_token(
        base64.b64decode(stamp.text),
        signed_data=signature_value_c14n(other_signature),
        trust=TrustContext(anchors=tsa.chain),
    )

    assert not verdict.valid


def test_top_level_processing_instructions_do_not_break_whole_document_verification(ca, signer, tmp_path):
    document = b'<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="dcc.xsl"?>\n'
    document += DCC_330.read_bytes().split(b"?>", 1)[1]

    signed = sign_dcc(document, private_key=signer.private_key, certificate_chain=signer.chain)

    verify_with_signxml(signed, anchor=ca.certificate, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=ca.certificate)


def test_a_dcc_with_a_text_node_beyond_10_mb_can_be_signed(ca, signer, tmp_path):
    # Embedded PDFs make text nodes larger than libxml2's default limit; signing must not trip over it.
    root = parse_xml(DCC_330.read_bytes())
    comment = etree.SubElement(root.find("{https://ptb.de/dcc}administrativeData"), "{https://ptb.de/dcc}filler")
    comment.text = "A" * 10_500_000
    signed = sign_dcc(etree.tostring(root), private_key=signer.private_key, certificate_chain=signer.chain)

    ca_file = tmp_path / "anchor.pem"
    ca_file.write_bytes(pem(ca.certificate))
    huge = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
    XAdESVerifier().verify(signed, ca_pem_file=str(ca_file), expect_config=PROFILE_CONFIG, parser=huge)
