"""Enveloped XAdES baseline signatures (B-B, B-T) for DCC documents, built on signxml's XAdESSigner.

Profile (design/trust.md): one `ds:Signature` (ds: prefix) appended as the last child of the DCC root; one
`URI=""` data reference with the enveloped-signature and C14N 1.1 transforms plus the SignedProperties
reference; SignedProperties carry SigningTime, SigningCertificateV2 (the signing certificate) and a
DataObjectFormat `application/xml`; C14N 1.1 for SignedInfo (exclusive C14N does not verify with XAdES);
ECDSA P-256/SHA-256 by default, RSA-PSS (3072 bits and more) allowed; the chain in `ds:X509Data`.
B-T adds an RFC 3161 SignatureTimeStamp over the canonicalized `ds:SignatureValue` element.
"""

import base64
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import SignatureReference
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.util import SigningSettings
from signxml.xades import XAdESDataObjectFormat, XAdESSigner

from certificates.schema import DCC_ROOT_TAGS, declared_schema_version
from certificates.xml import parse_xml
from storage.errors import ConflictError, InvalidInputError

DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS: Final = "http://uri.etsi.org/01903/v1.3.2#"
C14N_10: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11: Final = CanonicalizationMethod.CANONICAL_XML_1_1.value
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
SIGNED_PROPERTIES_TYPE: Final = "http://uri.etsi.org/01903#SignedProperties"
DCC_MIME_TYPE: Final = "application/xml"
# The first DCC release whose schema has a slot for ds:Signature (last children of the root).
FIRST_SIGNABLE_VERSION: Final = (3, 2, 0)
MIN_RSA_BITS: Final = 3072

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Timestamper = Callable[[bytes], bytes]


class SignatureSlotMissingError(ConflictError):
    """The document's DCC release has no place for a signature (only 3.2.0 and later do)."""

    code = "signature-slot-missing"
    title = "This DCC release cannot carry a signature"


class AlreadySignedError(ConflictError):
    """The document already carries a signature, which a further enveloped signature would break."""

    code = "already-signed"
    title = "The document is already signed"


class UnsupportedSigningKeyError(InvalidInputError):
    """The key is not one the hub's signing profile allows (ECDSA P-256/P-384, RSA-PSS ≥ 3072 bits)."""

    code = "unsupported-signing-key"
    title = "Signing key not allowed"


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """`"3.2.1"` → `(3, 2, 1)`; pre-release suffixes are ignored; None when unreadable."""
    if not version:
        return None
    numbers: list[int] = []
    for part in version.split("-", 1)[0].split("."):
        if not part.isdigit():
            return None
        numbers.append(int(part))
    return tuple(numbers) if numbers else None


def has_signature_slot(root: etree._Element) -> bool:
    """True when the document declares a DCC release (≥ 3.2.0) whose schema allows `ds:Signature`."""
    version = version_tuple(declared_schema_version(root))
    return version is not None and version >= FIRST_SIGNABLE_VERSION


def signature_algorithm_for(private_key: object) -> SignatureMethod:
    """The XMLDSig signature method the profile uses for this key, or UnsupportedSigningKeyError."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if isinstance(private_key.curve, ec.SECP256R1):
            return SignatureMethod.ECDSA_SHA256
        if isinstance(private_key.curve, ec.SECP384R1):
            return SignatureMethod.ECDSA_SHA384
        raise UnsupportedSigningKeyError(f"Elliptic curve {private_key.curve.name} is not allowed; use P-256.")
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < MIN_RSA_BITS:
            raise UnsupportedSigningKeyError(
                f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {private_key.key_size}."
            )
        return SignatureMethod.SHA256_RSA_MGF1
    raise UnsupportedSigningKeyError(f"{type(private_key).__name__} keys are not allowed; use ECDSA P-256.")


def signature_value_c14n(signature: etree._Element, *, algorithm: str = C14N_11) -> bytes:
    """The canonical `ds:SignatureValue` of a signature in its document: what a SignatureTimeStamp covers."""
    value = signature.find(f"{{{DS_NS}}}SignatureValue")
    if value is None:
        raise InvalidInputError("The signature has no ds:SignatureValue.")
    if algorithm not in {C14N_10, C14N_11, EXC_C14N}:
        raise InvalidInputError(f"Unsupported canonicalization {algorithm!r} for the signature timestamp.")
    # lxml has no separate C14N 1.1; for an element without xml:id/xml:base it equals C14N 1.0.
    return etree.tostring(value, method="c14n", exclusive=algorithm == EXC_C14N)


class _DccXAdESSigner(XAdESSigner):
    """signxml's XAdESSigner narrowed to the DCC profile (two references, leaf-only SigningCertificateV2)."""

    def __init__(self, *, signature_algorithm: SignatureMethod, signing_time: datetime, signature_id: str) -> None:
        super().__init__(
            signature_algorithm=signature_algorithm,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
            data_object_format=XAdESDataObjectFormat(
                Description="Digital Calibration Certificate (PTB DCC)", MimeType=DCC_MIME_TYPE
            ),
        )
        self._signing_time = signing_time
        self._signature_id = signature_id
        # DCCs with an embedded PDF have text nodes beyond libxml2's default 10 MB limit.
        self._parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)

    def _unpack(self, data: Any, references: Any) -> Any:
        sig_root, doc_root, c14n_inputs, _ = super()._unpack(data, references)
        sig_root.set("Id", self._signature_id)
        # The whole document, never an Id-based reference (an Id on the root must not change what is signed).
        return sig_root, doc_root, c14n_inputs, [SignatureReference(URI="")]

    def _build_xades_ds_object(self, sig_root: etree._Element, signing_settings: SigningSettings) -> None:
        super()._build_xades_ds_object(sig_root, signing_settings)
        # signxml also references KeyInfo; the profile signs only the data and the SignedProperties.
        signed_info = self._find(sig_root, "SignedInfo")
        key_info = self._find(sig_root, "KeyInfo")
        for reference in self._findall(signed_info, "Reference"):
            if reference.get("URI") == f"#{key_info.get('Id')}":
                signed_info.remove(reference)
        del key_info.attrib["Id"]

    def add_signing_time(
        self, signed_signature_properties: etree._Element, sig_root: etree._Element, signing_settings: SigningSettings
    ) -> None:
        """SigningTime as given by the caller (signxml always writes "now")."""
        element = etree.SubElement(signed_signature_properties, f"{{{XADES_NS}}}SigningTime")
        element.text = self._signing_time.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def add_signing_certificate(
        self, signed_signature_properties: etree._Element, sig_root: etree._Element, signing_settings: SigningSettings
    ) -> None:
        """SigningCertificateV2 naming the signing certificate only (the chain travels in ds:X509Data)."""
        leaf_only = replace(signing_settings, cert_chain=(signing_settings.cert_chain or [])[:1])
        super().add_signing_certificate(signed_signature_properties, sig_root, leaf_only)


def _add_signature_timestamp(signature: etree._Element, *, signature_id: str, timestamper: Timestamper) -> None:
    """Append the B-T SignatureTimeStamp (RFC 3161 token over the canonical ds:SignatureValue)."""
    token = timestamper(signature_value_c14n(signature, algorithm=C14N_11))
    qualifying = signature.find(f"{{{DS_NS}}}Object/{{{XADES_NS}}}QualifyingProperties")
    if qualifying is None:  # cannot happen: the XAdES signer always writes it
        raise InvalidInputError("The signature has no xades:QualifyingProperties.")
    unsigned = etree.SubElement(qualifying, f"{{{XADES_NS}}}UnsignedProperties")
    unsigned_signature = etree.SubElement(unsigned, f"{{{XADES_NS}}}UnsignedSignatureProperties")
    stamp = etree.SubElement(unsigned_signature, f"{{{XADES_NS}}}SignatureTimeStamp", Id=f"{signature_id}-ts")
    etree.SubElement(stamp, f"{{{DS_NS}}}CanonicalizationMethod", Algorithm=C14N_11)
    encapsulated = etree.SubElement(stamp, f"{{{XADES_NS}}}EncapsulatedTimeStamp", Id=f"{signature_id}-ets")
    encapsulated.text = base64.b64encode(token).decode("ascii")


def sign_dcc(
    xml: bytes,
    *,
    private_key: SigningKey,
    certificate_chain: list[x509.Certificate],
    signing_time: datetime | None = None,
    timestamper: Timestamper | None = None,
) -> bytes:
    """Sign a DCC (≥ 3.2.0) with an enveloped XAdES B-B signature, B-T when a timestamper is given."""
    if not certificate_chain:
        raise InvalidInputError("A signing certificate is required.")
    root = parse_xml(xml)
    if root.tag not in DCC_ROOT_TAGS:
        raise InvalidInputError(f"The root element {root.tag} is not a DCC digitalCalibrationCertificate.")
    if not has_signature_slot(root):
        declared = declared_schema_version(root) or "no version"
        raise SignatureSlotMissingError(
            f"The document declares DCC {declared}; only DCC 3.2.0 and later have a slot for ds:Signature. "
            "Migrate it to 3.3.0 first.",
            extra={"schemaVersion": declared},
        )
    if root.find(f"{{{DS_NS}}}Signature") is not None:
        raise AlreadySignedError("The document already carries a ds:Signature; a second one would break it.")
    signature_algorithm = signature_algorithm_for(private_key)
    if certificate_chain[0].public_key() != private_key.public_key():
        raise InvalidInputError("The private key does not belong to the first certificate of the chain.")

    signature_id = f"qihub-sig-{secrets.token_hex(8)}"
    signer = _DccXAdESSigner(
        signature_algorithm=signature_algorithm,
        signing_time=signing_time or datetime.now(UTC),
        signature_id=signature_id,
    )
    # KeyValue beside the certificate is ambiguous, and breaks RSA-PSS verification in signxml.
    signed_root = signer.sign(root, key=private_key, cert=certificate_chain, always_add_key_value=False)
    signature = signed_root[-1]
    signature.find(f"{{{DS_NS}}}SignatureValue").set("Id", f"{signature_id}-value")  # type: ignore[union-attr]
    if timestamper is not None:
        _add_signature_timestamp(signature, signature_id=signature_id, timestamper=timestamper)
    return etree.tostring(signed_root, xml_declaration=True, encoding="UTF-8")
