"""Test PKI and verifiers shared by the signing tests: a throwaway root CA, lab signers, two XAdES verifiers."""

from dataclasses import dataclass
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from signing.keys import PrivateKey, generate_private_key
from signing.pki import HubCertificateAuthority, create_root_ca

# The profile's two references: the whole document (URI="") and the XAdES SignedProperties.
PROFILE_CONFIG = XAdESSignatureConfiguration(expect_references=2)


@dataclass
class LabSigner:
    """A lab's signing key with its certificate chain (leaf first)."""

    private_key: PrivateKey
    chain: list[x509.Certificate]


def make_ca(name: str = "Test Root CA") -> HubCertificateAuthority:
    """A fresh root CA standing in for the hub CA or an accreditation body."""
    return create_root_ca(common_name=name, organization="qihub tests")


def make_signer(ca: HubCertificateAuthority, *, algorithm: str = "ecdsa-p256") -> LabSigner:
    """A lab signing key and its CA-issued certificate (profile "signer")."""
    private_key = generate_private_key(algorithm)  # type: ignore[arg-type]
    certificate = ca.issue_certificate(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Calibration Lab Signer")]),
        public_key=private_key.public_key(),
        profile="signer",
        organization_identifier="D-K-15000-01-00",
    )
    return LabSigner(private_key=private_key, chain=[certificate, ca.certificate])


def pem(certificate: x509.Certificate) -> bytes:
    """A certificate as PEM bytes."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def verify_with_signxml(signed: bytes, *, anchor: x509.Certificate, tmp_path: Path) -> list:
    """signxml's XAdES verification against one trust anchor; returns the verify results (data first)."""
    ca_file = tmp_path / "anchor.pem"
    ca_file.write_bytes(pem(anchor))
    return XAdESVerifier().verify(signed, ca_pem_file=str(ca_file), expect_config=PROFILE_CONFIG)


def verify_with_xmlsec(signed: bytes, *, anchor: x509.Certificate) -> None:
    """libxmlsec1's verification (python-xmlsec) against one trust anchor; raises xmlsec.Error on failure."""
    root = etree.fromstring(signed)
    xmlsec.tree.add_ids(root, ["Id"])  # the SignedProperties reference points at an Id attribute
    signature = xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature)
    manager = xmlsec.KeysManager()
    manager.load_cert_from_memory(
        pem(anchor), xmlsec.constants.KeyDataFormatCertPem, xmlsec.constants.KeyDataTypeTrusted
    )
    xmlsec.SignatureContext(manager).verify(signature)
