"""Verification of signed documents (XMLDSig and XAdES): profile, crypto, chain, revocation, time, policy.

The process follows ETSI EN 319 102-1 as EU DSS implements it, with the pitfalls of `trust.md` closed:

* the document is parsed only by the hub's hardened parser, and signxml verifies that very tree (its own
  copies of it use an entity-free parser), so the profile checks and the crypto see the same document;
* exactly one top-level `ds:Signature` (for a DCC: the last child of the root); its data reference must
  cover the whole document (`URI=""` or the root's Id, enveloped-signature + C14N only) — anything else is
  PARTIAL, and selecting transforms (XPath, XSLT, Filter 2.0) are never handed to signxml, which would
  silently skip them;
* signxml checks digests and the signature value with the signing certificate the hub identified
  (`x509_cert`), so it never builds a chain itself and never sees the public web CA bundle;
* pyhanko-certvalidator builds and validates the X.509 path to the TrustContext's anchors only, with CRLs and
  OCSP responses from the TrustContext, `ds:X509CRL` and XAdES `RevocationValues`, at the best signature time
  (the time of a valid signature timestamp, else the validation time);
* algorithms, key sizes and key usage are checked against the hub's own policy, never signxml's defaults;
* after verification nothing but signxml's `signed_xml` is read from the signed content.
"""

import asyncio
import base64
import binascii
import concurrent.futures
import copy
import functools
import hashlib
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptographyInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, SignXMLException
from signxml.exceptions import InvalidSignature as SignxmlInvalidSignature
from signxml.util import _remove_sig, add_pem_header
from signxml.verifier import VerifyResult
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from certificates.schema import DCC_ROOT_TAGS, declared_schema_version, validate_against_schema
from certificates.xml import parse_xml
from signing.pki import certificate_from_der
from signing.policy import Constraint, Level, ValidationPolicy
from signing.report import (
    Check,
    CheckResult,
    Indication,
    RegistryEntry,
    SignatureScope,
    SignerIdentity,
    SubIndication,
    TimestampInfo,
    TransparencyInfo,
    VerificationReport,
    indication_of,
)
from signing.trust import LabIdentity, TrustContext

DS: Final = "http://www.w3.org/2000/09/xmldsig#"
DSIG11: Final = "http://www.w3.org/2009/xmldsig11#"
XADES: Final = "http://uri.etsi.org/01903/v1.3.2#"
XADES141: Final = "http://uri.etsi.org/01903/v1.4.1#"
NS: Final = {"ds": DS, "dsig11": DSIG11, "xades": XADES, "xades141": XADES141}
SIGNATURE_TAG: Final = f"{{{DS}}}Signature"
SIGNED_PROPERTIES_TYPES: Final = frozenset(
    {"http://uri.etsi.org/01903#SignedProperties", "http://uri.etsi.org/01903/v1.1.1#SignedProperties"}
)
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
BASE64_TRANSFORM: Final = "http://www.w3.org/2000/09/xmldsig#base64"
C14N_ALGORITHMS: Final = frozenset(method.value for method in CanonicalizationMethod)
# Transforms that select part of the input: signxml does not implement them (it would skip them silently),
# and a hub cannot vouch that what they select is the document.
SELECTING_TRANSFORMS: Final = {
    "http://www.w3.org/TR/1999/REC-xpath-19991116": "XPath",
    "http://www.w3.org/2002/06/xmldsig-filter2": "XPath Filter 2.0",
    "http://www.w3.org/TR/1999/REC-xslt-19991116": "XSLT",
    "http://www.w3.org/2002/07/decrypt#XML": "decryption",
}
# A document-signing purpose in the signer's ExtendedKeyUsage (names for the report).
_EKU_NAMES: Final = {
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
}
# Every non-HMAC method signxml knows: which of them pass is the policy's decision (the `algorithms` check),
# so that a weak-but-intact signature is reported as such and a tampered one as tampered.
_SIGNXML_METHODS: Final = frozenset(method for method in SignatureMethod if not method.name.startswith("HMAC"))
_SIGNXML_DIGESTS: Final = frozenset(DigestAlgorithm)
_XML_WHITESPACE: Final = " \t\r\n"
_REPORT_ORDER: Final = {constraint: position for position, constraint in enumerate(Constraint)}

_local = threading.local()


# ------------------------------------------------------------------------------------------------ helpers


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _local_name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _b64(text: str | None) -> bytes:
    if not text:
        raise ValueError("empty base64 content")
    return base64.b64decode("".join(text.split()), validate=True)


@functools.lru_cache(maxsize=4096)
def _asn1_certificate(der: bytes) -> asn1_x509.Certificate:
    # asn1crypto caches name hashes on the object: parsing each certificate once saves most of
    # certvalidator's time (see bench/verify.py).
    return asn1_x509.Certificate.load(der)


# Per-certificate caches: the signatures of one signer carry the same certificates, so loading each DER once
# (`certificate_from_der`) keeps one object per certificate, and what the checks derive from it (names,
# fingerprint) is computed once. cryptography's certificates are immutable; they hash and compare by DER.


@functools.lru_cache(maxsize=4096)
def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


@functools.lru_cache(maxsize=4096)
def _fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(_der(certificate)).hexdigest()


@functools.lru_cache(maxsize=4096)
def _subject(certificate: x509.Certificate) -> x509.Name:
    return certificate.subject


@functools.lru_cache(maxsize=4096)
def _issuer(certificate: x509.Certificate) -> x509.Name:
    return certificate.issuer


@functools.lru_cache(maxsize=4096)
def _subject_text(certificate: x509.Certificate) -> str:
    return _subject(certificate).rfc4514_string()


@functools.lru_cache(maxsize=4096)
def _issuer_text(certificate: x509.Certificate) -> str:
    return _issuer(certificate).rfc4514_string()


@functools.lru_cache(maxsize=4096)
def _subject_attribute(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    return _name_attribute(_subject(certificate), oid)


def _name_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _public_key(certificate: x509.Certificate) -> object | None:
    """The certificate's key, or None for key types cryptography cannot load (GOST, ML-DSA, ...)."""
    try:
        return certificate.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return None


def _describe_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return "unsupported key type" if key is None else type(key).__name__


def _signxml_parser() -> etree.XMLParser:
    """This thread's parser for signxml's copies: no entities, no DTD, no network (the tree came from parse_xml)."""
    parser = getattr(_local, "signxml_parser", None)
    if parser is None:
        parser = _local.signxml_parser = etree.XMLParser(
            resolve_entities=False, load_dtd=False, no_network=True, huge_tree=True, remove_blank_text=False
        )
    return parser


def _run_coroutine(coroutine: Any) -> Any:
    """Run certvalidator's coroutine to completion on this thread's loop (or a helper thread inside a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class _HubVerifierMixin:
    """signxml as the hub runs it: no chain building, the hub's own parse, and no redundant document copies.

    Path validation is pyhanko-certvalidator's, with hub anchors. signxml 5.2 parses a document five times for
    an enveloped XAdES signature (its own parse, a copy per reference, a copy before C14N, the signed result);
    the copies only protect the tree from the enveloped-signature transform and isolate a sub-element's
    namespaces, so the hub copies where that can happen and nowhere else. The bytes signed are the same:
    `tests/signing/test_signxml_equivalence.py` compares every corpus vector with stock signxml.
    """

    config: SignatureConfiguration
    _fromstring: Any
    _tostring: Any
    _find: Any
    _findall: Any
    _get_signature: Any
    _c14n: Any
    _get_inclusive_ns_prefixes: Any
    _get_digest: Any
    check_digest_alg_expected: Any
    id_attributes: tuple[str, ...]

    def get_cert_chain_verifier(self, ca_pem_file: object, ee_policy: object, ca_policy: object) -> object:
        raise InvalidCertificate("certificate chains are validated by the hub, never against a CA bundle")

    def get_root(self, data: Any) -> Any:
        # The root of the hub's own hardened parse: signxml then verifies the very tree the profile checks
        # read (no parser differential). Nothing below modifies it; references that transform get a copy.
        if isinstance(data, etree._Element) and data.getparent() is None:
            return data
        return super().get_root(data)  # type: ignore[misc]

    def _verify_reference(
        self,
        reference: etree._Element,
        index: int,
        root: etree._Element,
        uri_resolver: Any,
        c14n_algorithm: Any,
        signature: etree._Element,
        signature_key_used: Any,
    ) -> VerifyResult:
        """signxml's `_verify_reference`, copying the document only for the enveloped-signature transform."""
        transforms = self._find(reference, "Transforms", require=False)
        nodes = self._findall(transforms, "Transform") if transforms is not None else []
        algorithms = [transform.get("Algorithm") for transform in nodes]
        # Only the enveloped-signature transform modifies the tree (it removes the signature): it gets a copy.
        # signxml serializes and re-parses the document for it; for a root (no ancestor whose namespaces a copy
        # could lose) lxml's deep copy makes the same tree in under half the time.
        if ENVELOPED not in algorithms:
            document = root
        elif root.getparent() is None:
            document = copy.deepcopy(root)
        else:
            document = self._fromstring(self._tostring(root))
        document_signature = self._get_signature(document)
        digest_method_alg_name = self._find(reference, "DigestMethod").get("Algorithm")
        digest_value = self._find(reference, "DigestValue")
        payload = self._resolve_reference(document, reference, uri_resolver=uri_resolver)
        payload_c14n = self._hub_apply_transforms(
            payload,
            transforms=transforms,
            signature=document_signature,
            private_root=document if document is not root else None,
        )
        digest_alg = DigestAlgorithm(digest_method_alg_name)
        self.check_digest_alg_expected(digest_alg)
        if base64.b64decode(digest_value.text) != self._get_digest(payload_c14n, digest_alg):
            raise InvalidDigest(f"Digest mismatch for reference {index} ({reference.get('URI')})")
        # As signxml: the signed XML is re-read from the canonical bytes, so no unsigned comment survives.
        try:
            payload_c14n_xml = self._fromstring(payload_c14n)
        except etree.XMLSyntaxError:
            payload_c14n_xml = None
        if isinstance(signature_key_used, bytes):
            signature_key = signature_key_used
        else:
            signature_key = signature_key_used.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return VerifyResult(payload_c14n, payload_c14n_xml, signature, signature_key=signature_key)

    def _resolve_reference(self, doc_root: etree._Element, reference: etree._Element, uri_resolver: Any = None) -> Any:
        """signxml's resolution of `#id` references (same answer and errors) in one scan instead of one per name.

        signxml asks, for each of its Id attribute names in turn, for the elements with an attribute of that local
        name equal to the id; the first name with one element wins, more than one is ambiguous.
        """
        uri = reference.get("URI")
        if uri is None or not uri.startswith("#") or uri.startswith("#xpointer("):
            return super()._resolve_reference(doc_root, reference, uri_resolver=uri_resolver)  # type: ignore[misc]
        matching = _ATTRIBUTES_EQUAL_TO(doc_root, value=uri.lstrip("#"))
        for id_attribute in self.id_attributes:
            results = list(
                dict.fromkeys(
                    attribute.getparent()
                    for attribute in matching
                    if attribute.attrname.rpartition("}")[2] == id_attribute
                )
            )
            if len(results) > 1:
                raise InvalidInput(f"Ambiguous reference URI {uri} resolved to {len(results)} nodes")
            if len(results) == 1:
                return results[0]
        raise InvalidInput(f"Unable to resolve reference URI: {uri}")

    def _hub_apply_transforms(
        self,
        payload: Any,
        *,
        transforms: etree._Element | None,
        signature: etree._Element,
        private_root: etree._Element | None,
    ) -> Any:
        """signxml's `_apply_transforms`, without re-copying a document root that is already a private copy."""
        nodes = self._findall(transforms, "Transform") if transforms is not None else []
        c14n_applied = False
        for transform in nodes:
            if transform.get("Algorithm") == ENVELOPED:
                _remove_sig(signature, idempotent=True)
        for transform in nodes:
            if transform.get("Algorithm") == BASE64_TRANSFORM:
                payload = base64.b64decode(payload.text)
        for transform in nodes:
            try:
                algorithm = CanonicalizationMethod(transform.get("Algorithm"))
            except ValueError:
                continue
            inclusive_ns_prefixes = self._get_inclusive_ns_prefixes(transform)
            # signxml serializes and re-parses the payload so that no namespace of an ancestor leaks into the
            # C14N; the root of a private copy has no ancestor, and re-parsing it would yield the same tree.
            if payload is not private_root:
                payload = self._fromstring(self._tostring(payload))
            payload = self._c14n(payload, algorithm=algorithm, inclusive_ns_prefixes=inclusive_ns_prefixes)
            c14n_applied = True
        if not c14n_applied and not isinstance(payload, str | bytes):
            payload = self._fromstring(self._tostring(payload))
            payload = self._c14n(payload, algorithm=self.config.default_reference_c14n_method)
        return payload


class _HubXMLVerifier(_HubVerifierMixin, XMLVerifier):
    pass


@functools.lru_cache(maxsize=1024)
def _pem_certificate(text: str | None) -> x509.Certificate:
    # signxml reads X509Certificate texts as PEM after re-wrapping them (textwrap): the same conversion, once
    # per text.
    return x509.load_pem_x509_certificate(add_pem_header(text))


class _HubXAdESVerifier(_HubVerifierMixin, XAdESVerifier):
    def _verify_cert_digests(self, verify_result: VerifyResult) -> None:
        """signxml's `_verify_cert_digests`, with each X509Certificate text converted once (`_pem_certificate`)."""
        certs = [
            _pem_certificate(cert.text)
            for x509_data in self._findall(verify_result.signature_xml, "ds:KeyInfo/ds:X509Data")
            for cert in self._findall(x509_data, "X509Certificate")
        ]
        signing_cert = self._find_signing_cert(verify_result, certs)
        if signing_cert is not None:
            self._add_cert_if_missing(certs, signing_cert)
        signed_signature_props = self._find(verify_result.signed_xml, "xades:SignedSignatureProperties")
        signing_cert_node = self._find(signed_signature_props, "xades:SigningCertificate", require=False)
        signing_cert_v2_node = self._find(signed_signature_props, "xades:SigningCertificateV2", require=False)
        if signing_cert_node is None and signing_cert_v2_node is None:
            raise InvalidInput("Expected to find XML element xades:SigningCertificate or xades:SigningCertificateV2")
        if signing_cert_node is not None and signing_cert_v2_node is not None:
            raise InvalidInput("Expected to find exactly one of xades:SigningCertificate or xades:SigningCertificateV2")
        self._verify_cert_digest(
            signing_cert_node if signing_cert_node is not None else signing_cert_v2_node,
            certs=certs,
            signing_cert=signing_cert,
        )


class _DigestProbeMixin:
    """Used only after the signature value failed: do the reference digests match? (never makes anything pass)

    EN 319 102-1 checks the reference digests before the signature value, signxml the other way round; a
    re-formatted document breaks both, and must be reported as HASH_FAILURE, as DSS does.
    """

    def _verify_signature_with_pubkey(
        self, *, signed_info_c14n: bytes, signing_certificate: Any = None, **_: Any
    ) -> Any:
        if signing_certificate is None:
            raise SignxmlInvalidSignature("no certificate to probe with")
        return signed_info_c14n, signing_certificate.public_key()


class _XMLDigestProbe(_DigestProbeMixin, _HubXMLVerifier):
    pass


class _XAdESDigestProbe(_DigestProbeMixin, _HubXAdESVerifier):
    pass


# ------------------------------------------------------------------------------------------------ checks


def _check(
    *, id: Constraint, result: CheckResult, level: Level, message: str, sub_indication: SubIndication | None = None
) -> Check:
    # Every value is typed here already: constructing without re-validation saves a report's worth of
    # pydantic validations per verification.
    return Check.model_construct(id=id, result=result, level=level, message=message, sub_indication=sub_indication)


class _Checks:
    """Collects check outcomes and applies the policy level of each."""

    _RESULT_BY_LEVEL: Final = {
        Level.FAIL: CheckResult.FAILED,
        Level.WARN: CheckResult.WARNING,
        Level.INFORM: CheckResult.INFORMATION,
        Level.IGNORE: CheckResult.SKIPPED,
    }

    def __init__(self, policy: ValidationPolicy) -> None:
        self.policy = policy
        self.items: dict[Constraint, Check] = {}

    def enabled(self, constraint: Constraint) -> bool:
        return self.policy.level(constraint) != Level.IGNORE

    def passed(self, constraint: Constraint, message: str) -> None:
        level = self.policy.level(constraint)
        result = CheckResult.SKIPPED if level == Level.IGNORE else CheckResult.PASSED
        message = f"ignored by policy ({message})" if level == Level.IGNORE else message
        self.items[constraint] = _check(id=constraint, result=result, level=level, message=message)

    def failed(self, constraint: Constraint, message: str, sub_indication: SubIndication | None = None) -> None:
        level = self.policy.level(constraint)
        result = self._RESULT_BY_LEVEL[level]
        if level == Level.IGNORE:
            message = f"ignored by policy ({message})"
        self.items[constraint] = _check(
            id=constraint,
            result=result,
            level=level,
            message=message,
            sub_indication=sub_indication if level == Level.FAIL else None,
        )

    def skipped(self, constraint: Constraint, message: str) -> None:
        if constraint not in self.items:
            level = self.policy.level(constraint)
            self.items[constraint] = _check(id=constraint, result=CheckResult.SKIPPED, level=level, message=message)

    def ordered(self) -> list[Check]:
        return sorted(self.items.values(), key=lambda check: _REPORT_ORDER[check.id])

    def verdict(self) -> tuple[Indication, SubIndication | None]:
        """TOTAL_FAILED outranks INDETERMINATE (EN 319 102-1); within one, the first failing check decides."""
        failed = [check for check in self.ordered() if check.result == CheckResult.FAILED]
        if not failed:
            return Indication.TOTAL_PASSED, None
        total = [
            check
            for check in failed
            if check.sub_indication is None or indication_of(check.sub_indication) == Indication.TOTAL_FAILED
        ]
        if total:
            return Indication.TOTAL_FAILED, total[0].sub_indication
        return Indication.INDETERMINATE, failed[0].sub_indication


# ------------------------------------------------------------------------------------------------ structure


@dataclass
class _Reference:
    """One ds:Reference of the SignedInfo as the profile check sees it."""

    uri: str | None
    type: str | None
    transforms: list[str]
    digest_method: str | None
    target: etree._Element | None = None
    role: str = "data"  # data | signed-properties | internal


@dataclass
class _Material:
    """Certificates and revocation data offered by the signature itself (all untrusted)."""

    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    ocsps: list[bytes] = field(default_factory=list)


def _top_level_signatures(root: etree._Element) -> list[etree._Element]:
    signatures = [root] if root.tag == SIGNATURE_TAG else []
    signatures += root.iterdescendants(SIGNATURE_TAG)
    top = []
    for signature in signatures:
        if not any(ancestor.tag == SIGNATURE_TAG for ancestor in signature.iterancestors()):
            top.append(signature)
    return top


# The attributes signxml resolves references by (Id, ID, id, xml:id): a duplicate makes a reference ambiguous.
_ID_ATTRIBUTE_NAMES: Final = frozenset({"Id", "ID", "id", "{http://www.w3.org/XML/1998/namespace}id"})
# Every attribute of the document with a given value: one scan, and few attributes share a reference's value.
_ATTRIBUTES_EQUAL_TO: Final = etree.XPath("//@*[. = $value]")


def _elements_with_id(root: etree._Element, value: str) -> list[etree._Element]:
    """Elements carrying an Id-like attribute equal to `value`, in document order, once per such attribute."""
    return [
        attribute.getparent()
        for attribute in _ATTRIBUTES_EQUAL_TO(root, value=value)
        if attribute.attrname in _ID_ATTRIBUTE_NAMES
    ]


def _is_inside(element: etree._Element, container: etree._Element) -> bool:
    return element is container or any(ancestor is container for ancestor in element.iterancestors())


def _references(signature: etree._Element) -> list[_Reference]:
    references = []
    for reference in signature.findall("ds:SignedInfo/ds:Reference", NS):
        transforms = [
            transform.get("Algorithm") or "" for transform in reference.findall("ds:Transforms/ds:Transform", NS)
        ]
        digest = reference.find("ds:DigestMethod", NS)
        references.append(
            _Reference(
                uri=reference.get("URI"),
                type=reference.get("Type"),
                transforms=transforms,
                digest_method=digest.get("Algorithm") if digest is not None else None,
            )
        )
    return references


def _signed_properties(signature: etree._Element) -> etree._Element | None:
    """The SignedProperties of this signature's own QualifyingProperties (Target must name the signature)."""
    signature_id = signature.get("Id")
    for qualifying in signature.findall("ds:Object/xades:QualifyingProperties", NS):
        target = qualifying.get("Target")
        if signature_id is None or target != f"#{signature_id}":
            continue
        return qualifying.find("xades:SignedProperties", NS)
    return None


_UNSIGNED_SIGNATURE_PROPERTIES: Final = (
    "ds:Object/xades:QualifyingProperties/xades:UnsignedProperties/xades:UnsignedSignatureProperties"
)
# Compiled once (lxml serialises evaluations of one XPath object, so sharing it between threads is safe).
_CERTIFICATE_TEXTS: Final = etree.XPath(
    "ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()"
    f" | {_UNSIGNED_SIGNATURE_PROPERTIES}/xades:CertificateValues/xades:EncapsulatedX509Certificate/text()",
    namespaces=NS,
)
_CRL_TEXTS: Final = etree.XPath(
    "ds:KeyInfo/ds:X509Data/ds:X509CRL/text()"
    f" | {_UNSIGNED_SIGNATURE_PROPERTIES}/xades:RevocationValues/xades:CRLValues/xades:EncapsulatedCRLValue/text()",
    namespaces=NS,
)
_OCSP_TEXTS: Final = etree.XPath(
    f"{_UNSIGNED_SIGNATURE_PROPERTIES}/xades:RevocationValues/xades:OCSPValues/xades:EncapsulatedOCSPValue/text()",
    namespaces=NS,
)
_KEYINFO_CERTIFICATE_TEXTS: Final = etree.XPath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces=NS)


def _collect_material(signature: etree._Element) -> _Material:
    material = _Material()
    for text in _CERTIFICATE_TEXTS(signature):
        try:
            material.certificates.append(certificate_from_der(_b64(str(text))))
        except (ValueError, binascii.Error):
            continue  # an unreadable certificate cannot help anyone; identification will say so
    for text in _CRL_TEXTS(signature):
        try:
            material.crls.append(_b64(str(text)))
        except (ValueError, binascii.Error):
            continue
    for text in _OCSP_TEXTS(signature):
        try:
            material.ocsps.append(_b64(str(text)))
        except (ValueError, binascii.Error):
            continue
    return material


def _key_value_key(signature: etree._Element) -> object | None:
    """The public key a KeyValue / DEREncodedKeyValue carries (only to match it against pinned anchors)."""
    try:
        der = signature.find("ds:KeyInfo/dsig11:DEREncodedKeyValue", NS)
        if der is not None:
            return serialization.load_der_public_key(_b64(der.text))
        modulus = signature.find("ds:KeyInfo/ds:KeyValue/ds:RSAKeyValue/ds:Modulus", NS)
        exponent = signature.find("ds:KeyInfo/ds:KeyValue/ds:RSAKeyValue/ds:Exponent", NS)
        if modulus is not None and exponent is not None:
            numbers = rsa.RSAPublicNumbers(
                e=int.from_bytes(_b64(exponent.text), "big"), n=int.from_bytes(_b64(modulus.text), "big")
            )
            return numbers.public_key()
        dsa_key = signature.find("ds:KeyInfo/ds:KeyValue/ds:DSAKeyValue", NS)
        if dsa_key is not None:
            p, q, g, y = (int.from_bytes(_b64(dsa_key.findtext(f"ds:{name}", namespaces=NS)), "big") for name in "PQGY")
            return dsa.DSAPublicNumbers(y=y, parameter_numbers=dsa.DSAParameterNumbers(p=p, q=q, g=g)).public_key()
        curve = signature.find("ds:KeyInfo/ds:KeyValue/dsig11:ECKeyValue/dsig11:NamedCurve", NS)
        point = signature.find("ds:KeyInfo/ds:KeyValue/dsig11:ECKeyValue/dsig11:PublicKey", NS)
        if curve is not None and point is not None:
            known = XMLVerifier.known_ecdsa_curves.get(curve.get("URI") or "")
            if known is not None:
                return ec.EllipticCurvePublicKey.from_encoded_point(known, _b64(point.text))
    except (ValueError, TypeError, binascii.Error):
        return None
    return None


def _same_key(left: object, right: object) -> bool:
    try:
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return left.public_bytes(*spki) == right.public_bytes(*spki)  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _normalized_dn(text: str) -> str:
    return re.sub(r"\s*([,=+])\s*", r"\1", text.strip()).casefold()


def _resolve_x509_reference(x509_data: etree._Element, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    """Resolve X509IssuerSerial / X509SKI / X509SubjectName / X509Digest against certificates the hub holds."""
    serial = x509_data.findtext("ds:X509IssuerSerial/ds:X509SerialNumber", namespaces=NS)
    issuer = x509_data.findtext("ds:X509IssuerSerial/ds:X509IssuerName", namespaces=NS)
    ski = x509_data.findtext("ds:X509SKI", namespaces=NS)
    subject = x509_data.findtext("ds:X509SubjectName", namespaces=NS)
    digest = x509_data.find("dsig11:X509Digest", NS)
    for certificate in candidates:
        same_serial = bool(serial) and serial.strip().isdigit() and int(serial.strip()) == certificate.serial_number
        if same_serial and (not issuer or _normalized_dn(issuer) == _normalized_dn(_issuer_text(certificate))):
            return certificate
        if ski:
            try:
                extension = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
                if extension.value.digest == _b64(ski):
                    return certificate
            except (x509.ExtensionNotFound, ValueError, binascii.Error):
                pass
        if subject and _normalized_dn(subject) == _normalized_dn(_subject_text(certificate)):
            return certificate
        if digest is not None and digest.text:
            try:
                algorithm = DigestAlgorithm(digest.get("Algorithm"))
                if certificate.fingerprint(algorithm.implementation()) == _b64(digest.text):
                    return certificate
            except (ValueError, binascii.Error):
                pass
    return None


def _leaf_of(certificates: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of an X509Data set that issued none of the others (XMLDSig implies no order)."""
    if not certificates:
        return None
    leaves = [
        certificate
        for certificate in certificates
        if not any(
            other is not certificate and _issuer(other) == _subject(certificate) and _subject(other) != _issuer(other)
            for other in certificates
        )
    ]
    return (leaves or certificates)[0]


# ------------------------------------------------------------------------------------------------ chain


@dataclass(frozen=True)
class _ChainOutcome:
    """What path validation concluded; cached per inputs and second (certvalidator's own time tolerance)."""

    path: tuple[x509.Certificate, ...] = ()
    error: str | None = None
    sub_indication: SubIndication | None = None
    revoked_at: datetime | None = None
    revoked_ca: bool = False
    revinfo_checked: bool = False
    revinfo_problem: str | None = None
    disallowed_algorithm: bool = False


_CHAIN_CACHE: dict[tuple[object, ...], _ChainOutcome] = {}
_CHAIN_CACHE_LOCK = threading.Lock()
_CHAIN_CACHE_MAX = 4096
CHAIN_CACHE_ENABLED = True  # bench/verify.py switches it (and the timestamp cache) off to report cold figures
# Verdicts of timestamp tokens, like chain outcomes keyed by every input: the token, the data it must cover and
# the trust material (a token's verdict does not depend on the validation time).
_TIMESTAMP_CACHE: dict[tuple[object, ...], Any] = {}


def _has_revinfo_for(leaf: x509.Certificate, crls: list[bytes], ocsps: list[bytes]) -> bool:
    """True when some CRL is issued by the leaf's issuer or some OCSP response names the leaf's serial."""
    issuer = asn1_x509.Name.load(leaf.issuer.public_bytes())
    for der in crls:
        try:
            if asn1_crl.CertificateList.load(der).issuer == issuer:
                return True
        except ValueError:
            continue
    for der in ocsps:
        try:
            response = asn1_ocsp.OCSPResponse.load(der)
            if response["response_status"].native != "successful":
                continue
            for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
                if single["cert_id"]["serial_number"].native == leaf.serial_number:
                    return True
        except (ValueError, KeyError, TypeError):
            continue
    return False


def _validate_chain(
    leaf: x509.Certificate,
    *,
    others: list[x509.Certificate],
    anchors: list[x509.Certificate],
    crls: list[bytes],
    ocsps: list[bytes],
    moment: datetime,
    weak_hashes: frozenset[str],
) -> _ChainOutcome:
    # Certificates by fingerprint (cached per certificate object), revocation data by digest.
    key = (
        _fingerprint(leaf),
        frozenset(_fingerprint(certificate) for certificate in others),
        frozenset(_fingerprint(anchor) for anchor in anchors),
        frozenset(hashlib.sha256(der).digest() for der in crls),
        frozenset(hashlib.sha256(der).digest() for der in ocsps),
        weak_hashes,
        int(moment.timestamp()),
    )
    if CHAIN_CACHE_ENABLED:
        cached = _CHAIN_CACHE.get(key)
        if cached is not None:
            return cached
    outcome = _validate_chain_uncached(
        leaf, others=others, anchors=anchors, crls=crls, ocsps=ocsps, moment=moment, weak_hashes=weak_hashes
    )
    if CHAIN_CACHE_ENABLED:
        with _CHAIN_CACHE_LOCK:
            if len(_CHAIN_CACHE) >= _CHAIN_CACHE_MAX:
                _CHAIN_CACHE.clear()
            _CHAIN_CACHE[key] = outcome
    return outcome


def _effective_anchors(anchors: list[x509.Certificate]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Anchors whose own issuer is an anchor too become intermediates: same trust, and certvalidator can then
    validate CRLs those CAs issue (it cannot build a CRL issuer's path that ends at an intermediate anchor)."""
    kept: list[x509.Certificate] = []
    demoted: list[x509.Certificate] = []
    for anchor in anchors:
        issuer = next(
            (
                other
                for other in anchors
                if other is not anchor
                and other.subject == anchor.issuer
                and anchor.subject != anchor.issuer
                and _issued_by(anchor, other)
            ),
            None,
        )
        (demoted if issuer is not None else kept).append(anchor)
    return kept, demoted


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, CryptographyInvalidSignature):
        return False


def _path_certificates(path: Any) -> tuple[x509.Certificate, ...]:
    return tuple(certificate_from_der(certificate.dump()) for certificate in path.iter_certs(include_root=True))


def _validate_chain_uncached(
    leaf: x509.Certificate,
    *,
    others: list[x509.Certificate],
    anchors: list[x509.Certificate],
    crls: list[bytes],
    ocsps: list[bytes],
    moment: datetime,
    weak_hashes: frozenset[str],
) -> _ChainOutcome:
    revinfo_for_leaf = _has_revinfo_for(leaf, crls, ocsps)
    anchors, demoted = _effective_anchors(anchors)
    others = others + demoted

    def attempt(ee_rule: RevocationCheckingRule) -> Any:
        context = ValidationContext(
            trust_roots=[
                _asn1_certificate(_der(anchor)) for anchor in anchors
            ],  # a list, even empty: never the OS store
            other_certs=[_asn1_certificate(_der(certificate)) for certificate in others],
            moment=moment,
            crls=crls,
            ocsps=ocsps,
            allow_fetching=False,
            # CRLs gathered after signing still tell the status at the signing time (revocation dates).
            revinfo_policy=CertRevTrustPolicy(
                RevocationCheckingPolicy(ee_rule, RevocationCheckingRule.CHECK_IF_DECLARED_SOFT),
                retroactive_revinfo=True,
            ),
            weak_hash_algos=weak_hashes,
        )
        validator = CertificateValidator(_asn1_certificate(_der(leaf)), validation_context=context)
        return _run_coroutine(validator.async_validate_path())

    ee_rule = RevocationCheckingRule.CRL_OR_OCSP_REQUIRED if revinfo_for_leaf else RevocationCheckingRule.NO_CHECK
    revinfo_problem = None
    try:
        try:
            path = attempt(ee_rule)
            return _ChainOutcome(path=_path_certificates(path), revinfo_checked=revinfo_for_leaf)
        except InsufficientRevinfoError as error:
            # Revocation data for the signer exists but cannot be used (stale, unverifiable): say so, and
            # still decide the chain itself.
            revinfo_problem = error.failure_msg
            path = attempt(RevocationCheckingRule.NO_CHECK)
            return _ChainOutcome(path=_path_certificates(path), revinfo_problem=revinfo_problem)
    except RevokedError as error:
        return _ChainOutcome(
            path=_path_certificates(error.original_path),
            error=error.failure_msg,
            revoked_at=error.revocation_dt,
            revoked_ca=not error.is_ee_cert,
            revinfo_checked=True,
            revinfo_problem=revinfo_problem,
        )
    except (ExpiredError, NotYetValidError) as error:
        return _ChainOutcome(
            error=error.failure_msg, sub_indication=SubIndication.OUT_OF_BOUNDS_NO_POE, revinfo_problem=revinfo_problem
        )
    except DisallowedAlgorithmError as error:
        return _ChainOutcome(
            error=error.failure_msg,
            sub_indication=SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
            disallowed_algorithm=True,
        )
    except PathBuildingError as error:
        return _ChainOutcome(error=str(error), sub_indication=SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    except PathValidationError as error:
        # A certificate that names a trusted issuer but is not signed by it (a same-name CA) has no chain.
        unsigned = "signature of" in error.failure_msg and "could not be verified" in error.failure_msg
        sub = SubIndication.NO_CERTIFICATE_CHAIN_FOUND if unsigned else SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE
        return _ChainOutcome(error=error.failure_msg, sub_indication=sub)
    except Exception as error:  # malformed certificates, unsupported key types inside certvalidator
        return _ChainOutcome(
            error=f"path validation failed: {error}", sub_indication=SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE
        )


# ------------------------------------------------------------------------------------------------ the process


@dataclass
class _Verification:
    """State of one verification run."""

    data: bytes
    trust: TrustContext
    policy: ValidationPolicy
    validation_time: datetime
    checks: _Checks
    document_sha256: str
    root: etree._Element | None = None  # the hardened parse, shared with signxml
    signature: etree._Element | None = None
    references: list[_Reference] = field(default_factory=list)
    is_xades: bool = False
    scope: SignatureScope | None = None
    crypto_possible: bool = True
    material: _Material = field(default_factory=_Material)
    signing_certificate: x509.Certificate | None = None
    signed_properties_xml: etree._Element | None = None
    claimed_signing_time: datetime | None = None
    best_signature_time: datetime | None = None
    timestamp: TimestampInfo | None = None
    signature_format: str | None = None
    crypto_ok: bool = False
    bound_lab: LabIdentity | None = None


def verify_document(
    data: bytes,
    *,
    trust: TrustContext,
    policy: ValidationPolicy,
    at: datetime | None = None,
    registry: RegistryEntry | None = None,
    expected_lab: LabIdentity | None = None,
    inclusion_proof: object | None = None,
) -> VerificationReport:
    """Verify the one signature of a document and report as EN 319 102-1; unreadable XML raises XmlRejected."""
    validation_time = _utc(at) if at is not None else datetime.now(UTC)
    run = _Verification(
        data=bytes(data),
        trust=trust,
        policy=policy,
        validation_time=validation_time,
        checks=_Checks(policy),
        document_sha256=hashlib.sha256(data).hexdigest(),
    )
    root = run.root = parse_xml(run.data)
    if _check_format(run, root):
        _check_dcc_schema(run, root)
        _check_scope(run, root)
        _identify_signing_certificate(run)
        _check_algorithms_before_crypto(run)
        _verify_crypto(run)
        _check_unsigned_content(run, root)
        _check_timestamp(run)
        _check_chain(run)
        _check_lab(run, expected_lab)
        _check_claimed_signing_time(run)
    else:
        _check_dcc_schema(run, root)
    _check_registry(run, registry)
    _check_transparency(run, registry, inclusion_proof)
    return _report(run, registry, inclusion_proof)


def _check_format(run: _Verification, root: etree._Element) -> bool:
    """One top-level ds:Signature (a DCC's as the root's last child) with the mandatory XMLDSig parts."""
    checks = run.checks
    signatures = _top_level_signatures(root)
    if not signatures:
        checks.failed(
            Constraint.format, "the document carries no ds:Signature: it is not signed", SubIndication.FORMAT_FAILURE
        )
        return False
    if len(signatures) > 1:
        checks.failed(
            Constraint.format,
            f"{len(signatures)} ds:Signature elements side by side: the hub verifies documents with exactly one "
            "signature (a parallel signature could claim what the first does not sign)",
            SubIndication.FORMAT_FAILURE,
        )
        return False
    signature = run.signature = signatures[0]
    if root.tag in DCC_ROOT_TAGS:
        last = next((child for child in reversed(root) if isinstance(child.tag, str)), None)
        if signature.getparent() is not root or last is not signature:
            checks.failed(
                Constraint.format,
                "DCC profile: the ds:Signature must be the last child of the digitalCalibrationCertificate root",
                SubIndication.FORMAT_FAILURE,
            )
            return False
    signed_info = signature.findall("ds:SignedInfo", NS)
    if len(signed_info) != 1 or signature.find("ds:SignatureValue", NS) is None:
        checks.failed(
            Constraint.format, "ds:Signature lacks its SignedInfo or SignatureValue", SubIndication.FORMAT_FAILURE
        )
        return False
    run.references = _references(signature)
    if not run.references:
        checks.failed(Constraint.format, "the SignedInfo holds no ds:Reference", SubIndication.FORMAT_FAILURE)
        return False
    run.material = _collect_material(signature)
    where = "root" if signature is root else f"child of {_local_name(signature.getparent())}"  # type: ignore[arg-type]
    checks.passed(Constraint.format, f"one ds:Signature ({where}) with {len(run.references)} reference(s)")
    return True


def _check_dcc_schema(run: _Verification, root: etree._Element) -> None:
    checks = run.checks
    if root.tag not in DCC_ROOT_TAGS:
        checks.skipped(Constraint.dcc_schema, "not a DCC document")
        return
    if not checks.enabled(Constraint.dcc_schema):
        checks.passed(Constraint.dcc_schema, "DCC schema not checked")
        return
    report = validate_against_schema(root)
    if report.valid:
        checks.passed(Constraint.dcc_schema, f"valid against the DCC {report.schema_version} schema")
        return
    errors = [finding for finding in report.findings if finding.severity == "error"]
    first = errors[0].message if errors else "invalid"
    version = declared_schema_version(root) or "?"
    signature_refused = any("Signature" in finding.message for finding in errors)
    if signature_refused:
        message = f"DCC {version} does not allow a ds:Signature (signatures need DCC 3.2.0 or later): {first}"
    else:
        message = f"not valid against the DCC {version} schema ({len(errors)} error(s)): {first}"
    checks.failed(Constraint.dcc_schema, message, SubIndication.FORMAT_FAILURE)


def _check_scope(run: _Verification, root: etree._Element) -> None:
    """FULL only for one data reference over the whole document (URI="" or the root's Id), enveloped + C14N."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    problems: list[str] = []
    format_problems: list[str] = []
    whole = 0
    signed_properties_refs = [ref for ref in run.references if ref.type in SIGNED_PROPERTIES_TYPES]
    own_signed_properties = _signed_properties(signature)
    if len(signed_properties_refs) > 1:
        format_problems.append("more than one SignedProperties reference")
    for reference in run.references:
        uri = reference.uri
        for algorithm in reference.transforms:
            if algorithm in SELECTING_TRANSFORMS:
                problems.append(f"{SELECTING_TRANSFORMS[algorithm]} transform on reference {uri!r}")
                run.crypto_possible = False
            elif algorithm not in C14N_ALGORITHMS and algorithm not in (ENVELOPED, BASE64_TRANSFORM):
                format_problems.append(f"unknown transform algorithm {algorithm!r}")
                run.crypto_possible = False
        if reference.type in SIGNED_PROPERTIES_TYPES:
            reference.role = "signed-properties"
            targets = _elements_with_id(root, uri[1:]) if uri and uri.startswith("#") else []
            if len(targets) != 1 or own_signed_properties is None or targets[0] is not own_signed_properties:
                format_problems.append("the SignedProperties reference does not name this signature's SignedProperties")
            run.is_xades = True
            continue
        if uri is None:
            format_problems.append("a reference without URI")
            continue
        if uri == "":
            target = root
        elif uri.startswith("#xpointer("):
            problems.append(f"XPointer reference {uri!r}")
            run.crypto_possible = False
            continue
        elif uri.startswith("#"):
            targets = _elements_with_id(root, uri[1:])
            if len(targets) != 1:
                format_problems.append(f"reference {uri!r} names {len(targets)} elements (Ids must be unique)")
                continue
            target = targets[0]
        else:
            problems.append(f"external reference {uri!r} (a detached signature covers another file)")
            run.crypto_possible = False
            continue
        reference.target = target
        if target is root and root is not signature:
            if ENVELOPED not in reference.transforms:
                problems.append(f"reference {uri!r} covers the document without the enveloped-signature transform")
            elif any(t not in C14N_ALGORITHMS and t != ENVELOPED for t in reference.transforms):
                problems.append(f"reference {uri!r} transforms the document beyond canonicalization")
            else:
                whole += 1
        elif _is_inside(target, signature) and root is not signature:
            reference.role = "internal"  # e.g. the KeyInfo: signing it adds to, never replaces, the document
        elif root is signature:
            problems.append(
                f"enveloping signature: reference {uri!r} signs a ds:Object inside the signature, not a document"
            )
        else:
            path = target.getroottree().getpath(target)
            problems.append(f"reference {uri!r} signs only the element {path}, not the whole document")
    if own_signed_properties is not None and not signed_properties_refs:
        problems.append("xades:SignedProperties present but not signed")
    if format_problems:
        checks.failed(Constraint.format, "; ".join(format_problems), SubIndication.FORMAT_FAILURE)
    if whole == 1 and not problems:
        run.scope = SignatureScope.FULL
        kind = "XAdES SignedProperties + " if run.is_xades else ""
        checks.passed(Constraint.signature_scope, f"FULL: {kind}one reference over the whole document (enveloped)")
        return
    run.scope = SignatureScope.PARTIAL
    if whole > 1:
        problems.append(f"{whole} references over the whole document")
    if whole == 0 and not problems:
        problems.append("no reference covers the whole document")
    checks.failed(Constraint.signature_scope, "PARTIAL: " + "; ".join(problems), SubIndication.SIGNED_DATA_NOT_FOUND)


def _identify_signing_certificate(run: _Verification) -> None:
    """XAdES: the certificate matching SigningCertificate(V2); XMLDSig: X509Data, or a pinned key / reference."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    embedded = run.material.certificates
    known = list(run.trust.anchors) + list(run.trust.intermediates)
    candidates = embedded + [certificate for certificate in known if certificate not in embedded]
    if run.is_xades:
        properties = _signed_properties(signature)
        cert_digest = None
        if properties is not None:
            cert_digest = properties.find(
                "xades:SignedSignatureProperties/xades:SigningCertificateV2/xades:Cert/xades:CertDigest", NS
            )
            if cert_digest is None:
                cert_digest = properties.find(
                    "xades:SignedSignatureProperties/xades:SigningCertificate/xades:Cert/xades:CertDigest", NS
                )
        if cert_digest is None:
            checks.failed(
                Constraint.signing_certificate,
                "XAdES without SigningCertificate(V2): the signing certificate is not protected by the signature",
                SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            )
            run.crypto_possible = False
            return
        try:
            algorithm = DigestAlgorithm(cert_digest.find("ds:DigestMethod", NS).get("Algorithm"))  # type: ignore[union-attr]
            expected = _b64(cert_digest.findtext("ds:DigestValue", namespaces=NS))
        except (ValueError, AttributeError, binascii.Error):
            checks.failed(
                Constraint.signing_certificate,
                "SigningCertificate digest is unreadable",
                SubIndication.FORMAT_FAILURE,
            )
            run.crypto_possible = False
            return
        run.signing_certificate = next(
            (c for c in candidates if c.fingerprint(algorithm.implementation()) == expected), None
        )
        if run.signing_certificate is None:
            checks.failed(
                Constraint.signing_certificate,
                "no certificate in the signature or the trust material matches the signed SigningCertificate digest",
                SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            )
            run.crypto_possible = False
            return
        checks.passed(
            Constraint.signing_certificate,
            f"identified by the signed SigningCertificate digest ({algorithm.name}): "
            f"{_subject_text(run.signing_certificate)}",
        )
        return

    x509_data = signature.findall("ds:KeyInfo/ds:X509Data", NS)
    keyinfo_certificates = []
    for text in _KEYINFO_CERTIFICATE_TEXTS(signature):
        try:
            keyinfo_certificates.append(certificate_from_der(_b64(str(text))))
        except (ValueError, binascii.Error):
            continue
    if keyinfo_certificates:
        run.signing_certificate = _leaf_of(keyinfo_certificates)
        source = "ds:X509Data certificate"
    elif x509_data:
        run.signing_certificate = next(
            (found for data in x509_data if (found := _resolve_x509_reference(data, known)) is not None), None
        )
        source = "ds:X509Data reference resolved against the trust material"
    else:
        key = _key_value_key(signature)
        pinned = next(
            (anchor for anchor in run.trust.anchors if key is not None and _same_key(_public_key(anchor), key)), None
        )
        run.signing_certificate = pinned
        source = "KeyValue equal to a pinned trust anchor's key"
        if pinned is None:
            what = "a KeyValue that no trust anchor pins" if key is not None else "no usable key information"
            checks.failed(
                Constraint.signing_certificate,
                f"no signing certificate: the signature carries {what}; a bare key proves nobody's identity",
                SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            )
            if key is None or signature.find("ds:KeyInfo/ds:X509Data", NS) is not None:
                run.crypto_possible = False
            return
    if run.signing_certificate is None:
        checks.failed(
            Constraint.signing_certificate,
            "the ds:X509Data names a certificate that neither the signature nor the trust material holds",
            SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
        )
        run.crypto_possible = False
        return
    checks.passed(Constraint.signing_certificate, f"{source}: {_subject_text(run.signing_certificate)}")


def _check_algorithms_before_crypto(run: _Verification) -> None:
    """Signature method, reference digests, SigningCertificate digest and the signer's key against the policy."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    crypto = run.policy.crypto
    problems: list[str] = []
    method_uri = signature.find("ds:SignedInfo/ds:SignatureMethod", NS)
    method_uri = method_uri.get("Algorithm") if method_uri is not None else None
    try:
        method = SignatureMethod(method_uri)
    except ValueError:
        method = None
        if method_uri and "hmac" in method_uri.lower():
            problems.append(f"HMAC signature method {method_uri} (a shared secret proves nobody's identity)")
            run.crypto_possible = False
        else:
            problems.append(f"signature method {method_uri!r} is not supported")
    if method is not None:
        if method.name.startswith("HMAC"):
            problems.append(f"{method.name}: HMAC (a shared secret) proves nobody's identity and is never accepted")
            run.crypto_possible = False  # the hub holds no shared secrets
        elif method.name not in crypto.signature_algorithms:
            problems.append(f"signature method {method.name} is not accepted")
    digests = [reference.digest_method for reference in run.references]
    if run.is_xades:
        properties = _signed_properties(signature)
        if properties is not None:
            digests += [
                method.get("Algorithm")
                for method in properties.findall(
                    "xades:SignedSignatureProperties/*/xades:Cert/xades:CertDigest/ds:DigestMethod", NS
                )
            ]
    for uri in dict.fromkeys(digests):
        try:
            name = DigestAlgorithm(uri).name
        except ValueError:
            problems.append(f"digest method {uri!r} is not supported")
            continue
        if name not in crypto.digest_algorithms:
            problems.append(f"digest method {name} is not accepted")
    hmac_length = signature.find("ds:SignedInfo/ds:SignatureMethod/ds:HMACOutputLength", NS)
    if hmac_length is not None:
        problems.append(f"HMACOutputLength {hmac_length.text} (truncated HMAC, CVE-2009-0217)")
    if run.signing_certificate is not None:
        problems += _key_problems(_public_key(run.signing_certificate), run.policy, "signer")
    if problems:
        checks.failed(Constraint.algorithms, "; ".join(problems), SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    else:
        key = _describe_key(_public_key(run.signing_certificate)) if run.signing_certificate else "no signer key"
        checks.passed(Constraint.algorithms, f"{method.name if method else '?'}, {key}: accepted by the policy")


def _key_problems(key: object, policy: ValidationPolicy, whose: str) -> list[str]:
    crypto = policy.crypto
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < crypto.rsa_min_bits:
            return [f"{whose} RSA key of {key.key_size} bits (minimum {crypto.rsa_min_bits})"]
        return []
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in crypto.ec_curves:
            return [f"{whose} curve {key.curve.name} is not accepted"]
        return []
    return [f"{whose} key type {_describe_key(key)} is not accepted"]


def _verify_crypto(run: _Verification) -> None:
    """Digests of every reference and the signature value, by signxml, with the identified certificate only."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    if not run.crypto_possible:
        checks.skipped(Constraint.crypto, "not executed: the signature cannot be processed under the hub's profile")
        return
    certificate = run.signing_certificate
    if run.is_xades and certificate is None:
        checks.skipped(Constraint.crypto, "not executed: no signing certificate")
        return
    config_class = XAdESSignatureConfiguration if run.is_xades else SignatureConfiguration
    if certificate is not None:
        # signxml only checks that its verification time lies inside the certificate's validity; whether the
        # certificate was valid is the chain check's question, at the best signature time.
        moment = min(max(run.validation_time, certificate.not_valid_before_utc), certificate.not_valid_after_utc)
    else:
        moment = run.validation_time
    root_is_signature = signature.getparent() is None
    location = "./" if root_is_signature or signature.getparent().getparent() is None else ".//"  # type: ignore[union-attr]
    config = config_class(
        require_x509=certificate is not None,
        location=location,
        expect_references=True,
        signature_methods=_SIGNXML_METHODS,
        digest_algorithms=_SIGNXML_DIGESTS,
        verification_time=moment,
    )
    verifier = _HubXAdESVerifier() if run.is_xades else _HubXMLVerifier()
    try:
        results = verifier.verify(run.root, x509_cert=certificate, parser=_signxml_parser(), expect_config=config)
    except InvalidDigest as error:
        if "certificate digest" in str(error):
            checks.failed(
                Constraint.signing_certificate,
                f"the signed SigningCertificate does not match the certificates offered: {error}",
                SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
            )
            checks.skipped(Constraint.crypto, "not executed: signing certificate not confirmed")
        else:
            checks.failed(Constraint.crypto, f"digest mismatch: {error}", SubIndication.HASH_FAILURE)
        return
    except (SignxmlInvalidSignature, CryptographyInvalidSignature) as error:
        digest_error = _probe_digests(run, config, certificate)
        if digest_error is not None:
            checks.failed(
                Constraint.crypto,
                f"digest mismatch: {digest_error} (and the signature value does not verify)",
                SubIndication.HASH_FAILURE,
            )
        else:
            checks.failed(
                Constraint.crypto,
                f"signature value does not verify: {error}".rstrip(": "),
                SubIndication.SIG_CRYPTO_FAILURE,
            )
        return
    except (InvalidInput, etree.DocumentInvalid) as error:
        checks.failed(Constraint.crypto, f"signature not processable: {error}", SubIndication.FORMAT_FAILURE)
        return
    except (
        SignXMLException,
        etree.LxmlError,
        UnsupportedAlgorithm,
        ValueError,
        TypeError,
        KeyError,
        NotImplementedError,
    ) as error:
        checks.failed(
            Constraint.crypto,
            f"signature not processable: {type(error).__name__}: {error}",
            SubIndication.FORMAT_FAILURE,
        )
        return
    results = results if isinstance(results, list) else [results]
    signed_properties = next((r for r in results if getattr(r, "signed_properties", None) is not None), None)
    if signed_properties is not None:
        # From here on only what signxml returns as signed is read.
        run.signed_properties_xml = signed_properties.signed_xml
        signing_time = signed_properties.signed_xml.findtext(  # type: ignore[union-attr]
            "xades:SignedSignatureProperties/xades:SigningTime", namespaces=NS
        )
        if signing_time:
            try:
                run.claimed_signing_time = _utc(datetime.fromisoformat(signing_time.strip().replace("Z", "+00:00")))
            except ValueError:
                run.claimed_signing_time = None
    run.crypto_ok = True
    checks.passed(
        Constraint.crypto,
        f"{len(results)} reference digest(s) and the signature value verify (signxml)",
    )


def _probe_digests(
    run: _Verification, config: SignatureConfiguration, certificate: x509.Certificate | None
) -> str | None:
    """After a failed signature value: the first reference digest that does not match, if any."""
    if certificate is None:
        return None
    probe = _XAdESDigestProbe() if run.is_xades else _XMLDigestProbe()
    try:
        probe.verify(run.root, x509_cert=certificate, parser=_signxml_parser(), expect_config=config)
    except InvalidDigest as error:
        return str(error)
    except Exception:  # the probe only refines a failure that is already certain
        return None
    return None


def _check_unsigned_content(run: _Verification, root: etree._Element) -> None:
    """Comments are outside C14N: one that splits a text value makes readers see what was not signed."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    data_reference = next((r for r in run.references if r.role == "data" and r.target is root), None)
    if data_reference is None or run.scope != SignatureScope.FULL:
        checks.skipped(Constraint.unsigned_content, "not applicable: no reference over the whole document")
        return
    if any(t.endswith("#WithComments") for t in data_reference.transforms):
        checks.passed(Constraint.unsigned_content, "comments are signed (C14N with comments)")
        return
    for comment in root.iter(etree.Comment):
        if _is_inside(comment, signature):
            continue
        parent = comment.getparent()
        before = comment.getprevious()
        text_before = (before.tail if before is not None else parent.text if parent is not None else None) or ""
        text_after = comment.tail or ""
        split = text_before.strip(_XML_WHITESPACE) or text_after.strip(_XML_WHITESPACE)
        if parent is not None and split:
            line = comment.sourceline
            checks.failed(
                Constraint.unsigned_content,
                f"a comment splits the text of <{_local_name(parent)}> (line {line}): readers would see a value "
                "other than the signed one",
                SubIndication.FORMAT_FAILURE,
            )
            return
    checks.passed(Constraint.unsigned_content, "no unsigned comment inside a text value")


def _check_timestamp(run: _Verification) -> None:
    """A valid XAdES SignatureTimeStamp proves the signature existed at its time (the best signature time)."""
    checks = run.checks
    signature = run.signature
    assert signature is not None
    run.best_signature_time = run.validation_time
    unsigned = signature.find(
        "ds:Object/xades:QualifyingProperties/xades:UnsignedProperties/xades:UnsignedSignatureProperties", NS
    )
    run.signature_format = "XMLDSig"
    if run.is_xades:
        run.signature_format = "XAdES-B-B"
    stamps = unsigned.findall("xades:SignatureTimeStamp", NS) if unsigned is not None else []
    if unsigned is not None and run.is_xades:
        if stamps:
            run.signature_format = "XAdES-B-T"
        if (
            unsigned.find("xades:CertificateValues", NS) is not None
            or unsigned.find("xades:RevocationValues", NS) is not None
        ):
            run.signature_format = "XAdES-B-LT"
        if unsigned.find("xades141:ArchiveTimeStamp", NS) is not None:
            run.signature_format = "XAdES-B-LTA"
    if not stamps:
        checks.skipped(Constraint.timestamp, "no signature timestamp: the best signature time is the validation time")
        return
    value = signature.find("ds:SignatureValue", NS)
    verdicts: list[TimestampInfo] = []
    for stamp in stamps:
        verdicts.append(_verify_one_timestamp(run, stamp, value))
    valid = [verdict for verdict in verdicts if verdict.valid and verdict.time is not None]
    if valid:
        earliest = min(valid, key=lambda verdict: verdict.time)  # type: ignore[arg-type, return-value]
        run.timestamp = earliest
        assert earliest.time is not None
        if earliest.time <= run.validation_time:
            run.best_signature_time = earliest.time
            checks.passed(
                Constraint.timestamp,
                f"valid signature timestamp of {earliest.time.isoformat()} by {earliest.tsa_name or 'a trusted TSA'}",
            )
        else:
            checks.failed(
                Constraint.timestamp,
                f"the timestamp ({earliest.time.isoformat()}) is later than the validation time: no proof at that time",
            )
        return
    run.timestamp = verdicts[0]
    checks.failed(
        Constraint.timestamp,
        f"signature timestamp not accepted ({verdicts[0].reason}): it proves no time",
    )


def _verify_one_timestamp(run: _Verification, stamp: etree._Element, value: etree._Element | None) -> TimestampInfo:
    encapsulated = stamp.find("xades:EncapsulatedTimeStamp", NS)
    if value is None or encapsulated is None:
        return TimestampInfo(valid=False, reason="no EncapsulatedTimeStamp (XML timestamps are not supported)")
    try:
        token = _b64(encapsulated.text)
    except (ValueError, binascii.Error):
        return TimestampInfo(valid=False, reason="the EncapsulatedTimeStamp is not base64")
    algorithm = stamp.find("ds:CanonicalizationMethod", NS)
    algorithm_uri = (
        algorithm.get("Algorithm") if algorithm is not None else CanonicalizationMethod.CANONICAL_XML_1_0.value
    )
    if algorithm_uri not in C14N_ALGORITHMS:
        return TimestampInfo(valid=False, reason=f"unknown canonicalization {algorithm_uri!r}")
    # XAdES: the imprint covers the canonicalized ds:SignatureValue element, in its document context.
    signed_data = etree.tostring(
        value,
        method="c14n",
        exclusive="xml-exc-c14n" in algorithm_uri,
        with_comments=algorithm_uri.endswith("#WithComments"),
    )
    try:
        from signing.timestamps import verify_timestamp_token
    except ImportError:
        return TimestampInfo(valid=False, reason="no timestamp verifier is installed")
    key = (
        hashlib.sha256(token).digest(),
        hashlib.sha256(signed_data).digest(),
        frozenset(_fingerprint(anchor) for anchor in run.trust.anchors),
        frozenset(_fingerprint(certificate) for certificate in run.trust.intermediates),
        tuple(hashlib.sha256(der).digest() for der in run.trust.crl_ders()),  # in order: the first entry counts
    )
    verdict = _TIMESTAMP_CACHE.get(key) if CHAIN_CACHE_ENABLED else None
    try:
        if verdict is None:
            verdict = verify_timestamp_token(token, signed_data=signed_data, trust=run.trust)
            if CHAIN_CACHE_ENABLED:
                with _CHAIN_CACHE_LOCK:
                    if len(_TIMESTAMP_CACHE) >= _CHAIN_CACHE_MAX:
                        _TIMESTAMP_CACHE.clear()
                    _TIMESTAMP_CACHE[key] = verdict
    except NotImplementedError:
        return TimestampInfo(valid=False, reason="the timestamp verifier is not available yet")
    except Exception as error:  # a hostile token must not break the verification of the signature
        return TimestampInfo(valid=False, reason=f"the timestamp cannot be read: {type(error).__name__}: {error}")
    moment = _utc(verdict.time) if verdict.time is not None else None
    return TimestampInfo(valid=bool(verdict.valid), time=moment, tsa_name=verdict.tsa_name, reason=verdict.reason)


def _check_chain(run: _Verification) -> None:
    """X.509 path to a trust anchor with revocation, key usage and CA key sizes, at the best signature time."""
    checks = run.checks
    certificate = run.signing_certificate
    for constraint in (Constraint.chain, Constraint.key_usage, Constraint.extended_key_usage):
        if certificate is None:
            checks.skipped(constraint, "not executed: no signing certificate")
    if certificate is None:
        checks.skipped(Constraint.revocation, "not executed: no signing certificate")
        checks.skipped(Constraint.revocation_data, "not executed: no signing certificate")
        return
    _check_key_usage(run, certificate)
    moment = run.best_signature_time or run.validation_time
    others = list(run.material.certificates) + list(run.trust.intermediates)
    crls = list(run.material.crls) + run.trust.crl_ders()
    outcome = _validate_chain(
        certificate,
        others=[c for c in others if c != certificate],
        anchors=list(run.trust.anchors),
        crls=crls,
        ocsps=list(run.material.ocsps),
        moment=moment,
        weak_hashes=run.policy.crypto.weak_certificate_hashes,
    )
    proof = (
        "timestamp" if run.timestamp and run.timestamp.valid and moment != run.validation_time else "validation time"
    )
    when = f"at {moment.isoformat()} ({proof})"
    if outcome.path:
        anchor = outcome.path[0]
        names = " → ".join(_subject_attribute(c, NameOID.COMMON_NAME) or _subject_text(c) for c in outcome.path)
        checks.passed(Constraint.chain, f"path to trust anchor {_subject_text(anchor)} {when}: {names}")
        ca_problems = [
            problem
            for ca in outcome.path[1:-1]
            for problem in _key_problems(_public_key(ca), run.policy, f"CA {_subject_text(ca)}")
        ]
        if ca_problems:
            _add_algorithm_problem(run, "; ".join(ca_problems))
    else:
        sub = outcome.sub_indication or SubIndication.NO_CERTIFICATE_CHAIN_FOUND
        proven = run.timestamp is not None and run.timestamp.valid
        if sub == SubIndication.OUT_OF_BOUNDS_NO_POE and proven and moment < certificate.not_valid_before_utc:
            sub = SubIndication.NOT_YET_VALID  # the signature provably existed before its certificate
        if outcome.disallowed_algorithm:
            _add_algorithm_problem(run, f"certificate chain: {outcome.error}")
        checks.failed(Constraint.chain, f"{outcome.error} ({when})", sub)

    revoked, revocation_message = outcome.revoked_at, outcome.error
    # Registered external certificates are revoked in the hub's registry only (their CA's CRL may not say so).
    registered = getattr(run.trust, "revoked_fingerprints", {}).get(_fingerprint(certificate))
    if revoked is None and registered is not None and _utc(registered) <= moment:
        revoked = _utc(registered)
        revocation_message = f"The hub's registry revoked the signing certificate on {revoked.isoformat()}."
    if revoked is not None:
        if outcome.revoked_ca:
            checks.failed(Constraint.revocation, f"{revocation_message}", SubIndication.REVOKED_CA_NO_POE)
        elif run.claimed_signing_time is not None and revoked <= run.claimed_signing_time:
            # The signer's own claim puts the signature after the revocation: no proof could save it.
            checks.failed(
                Constraint.revocation,
                f"{revocation_message} The signature claims to be made later ({run.claimed_signing_time.isoformat()}).",
                SubIndication.REVOKED,
            )
        else:
            checks.failed(
                Constraint.revocation,
                f"{revocation_message} No proof of existence before the revocation.",
                SubIndication.REVOKED_NO_POE,
            )
    elif outcome.path:
        checks.passed(Constraint.revocation, "no certificate of the path is revoked according to the revocation data")
    else:
        checks.skipped(Constraint.revocation, "not executed: no certificate path")

    if outcome.revinfo_problem:
        checks.failed(
            Constraint.revocation_data,
            f"revocation data for the signer cannot be used: {outcome.revinfo_problem}",
            SubIndication.TRY_LATER,
        )
    elif outcome.revinfo_checked:
        checks.passed(Constraint.revocation_data, "CRL/OCSP data for the signing certificate checked")
    elif outcome.path:
        checks.failed(
            Constraint.revocation_data,
            "no CRL or OCSP response for the signing certificate (in the signature or the hub's trust material)",
            SubIndication.TRY_LATER,
        )
    else:
        checks.skipped(Constraint.revocation_data, "not executed: no certificate path")


def _add_algorithm_problem(run: _Verification, problem: str) -> None:
    existing = run.checks.items.get(Constraint.algorithms)
    if existing is not None and existing.result != CheckResult.PASSED:
        problem = f"{existing.message}; {problem}"
    run.checks.failed(Constraint.algorithms, problem, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)


def _check_key_usage(run: _Verification, certificate: x509.Certificate) -> None:
    checks = run.checks
    wanted = run.policy.key_usage.signer_key_usage
    try:
        certificate.extensions  # noqa: B018 - parse once: a malformed extension must not break the report
    except ValueError as error:
        for constraint in (Constraint.key_usage, Constraint.extended_key_usage):
            checks.failed(
                constraint,
                f"the signing certificate's extensions cannot be read: {error}",
                SubIndication.FORMAT_FAILURE,
            )
        return
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        checks.passed(Constraint.key_usage, "no KeyUsage extension: the certificate does not restrict its use")
    else:
        allowed = {name for name in ("digital_signature", "content_commitment") if getattr(usage, name)}
        allowed = {"non_repudiation" if name == "content_commitment" else name for name in allowed}
        if allowed & wanted:
            checks.passed(Constraint.key_usage, f"KeyUsage allows {', '.join(sorted(allowed))}")
        else:
            checks.failed(
                Constraint.key_usage,
                f"KeyUsage allows neither of {', '.join(sorted(wanted))}",
                SubIndication.CHAIN_CONSTRAINTS_FAILURE,
            )
    try:
        purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        checks.passed(Constraint.extended_key_usage, "no ExtendedKeyUsage extension")
        return
    dotted = {oid.dotted_string for oid in purposes}
    accepted = run.policy.key_usage.signer_extended_key_usage
    names = ", ".join(sorted(_EKU_NAMES.get(oid, oid) for oid in dotted))
    if dotted & accepted:
        checks.passed(Constraint.extended_key_usage, f"ExtendedKeyUsage includes a signing purpose ({names})")
    else:
        checks.failed(
            Constraint.extended_key_usage,
            f"ExtendedKeyUsage ({names}) names no document-signing purpose",
            SubIndication.CHAIN_CONSTRAINTS_FAILURE,
        )


def _lab_matches(lab: LabIdentity, certificate: x509.Certificate) -> bool:
    if _fingerprint(certificate) in {fingerprint.lower() for fingerprint in lab.registered_fingerprints}:
        return True
    number = (lab.accreditation_number or "").strip()
    identifier = _subject_attribute(certificate, NameOID.ORGANIZATION_IDENTIFIER) or ""
    return bool(number) and number.casefold() in identifier.casefold()


def _check_lab(run: _Verification, expected_lab: LabIdentity | None) -> None:
    """A valid certificate of lab A must not sign for lab B (organizationIdentifier / registered fingerprint)."""
    checks = run.checks
    certificate = run.signing_certificate
    if certificate is None:
        checks.skipped(Constraint.lab_binding, "not executed: no signing certificate")
        checks.skipped(Constraint.lab_binding_known, "not executed: no signing certificate")
        return
    bound = None
    if run.trust.lab_of_certificate is not None:
        bound = run.trust.lab_of_certificate(certificate)
    if bound is None and expected_lab is not None and _lab_matches(expected_lab, certificate):
        bound = expected_lab
    run.bound_lab = bound
    if expected_lab is None:
        checks.skipped(Constraint.lab_binding, "no issuing lab to compare with (offline verification)")
        if bound is not None:
            checks.passed(Constraint.lab_binding_known, f"the signer is bound to {bound.name}")
        else:
            checks.failed(Constraint.lab_binding_known, "the hub knows no lab this signing certificate belongs to")
        return
    if bound is not None and bound.organization_id != expected_lab.organization_id:
        checks.failed(
            Constraint.lab_binding,
            f"the signing certificate belongs to {bound.name}, not to the issuing lab {expected_lab.name}",
            SubIndication.SIG_CONSTRAINTS_FAILURE,
        )
        checks.passed(Constraint.lab_binding_known, f"the signer is bound to {bound.name}")
        return
    checks.passed(Constraint.lab_binding, f"not bound to any lab other than {expected_lab.name}")
    if bound is not None:
        checks.passed(Constraint.lab_binding_known, f"the signer is bound to the issuing lab {expected_lab.name}")
    else:
        checks.failed(
            Constraint.lab_binding_known,
            f"the hub cannot tell whether the signing certificate belongs to {expected_lab.name} "
            "(no registered fingerprint, no matching organizationIdentifier)",
        )


def _check_claimed_signing_time(run: _Verification) -> None:
    checks = run.checks
    claimed = run.claimed_signing_time
    certificate = run.signing_certificate
    if claimed is None:
        checks.skipped(Constraint.claimed_signing_time, "no signed xades:SigningTime")
        return
    problems = []
    if certificate is not None and not (certificate.not_valid_before_utc <= claimed <= certificate.not_valid_after_utc):
        problems.append("outside the signing certificate's validity")
    if (
        run.timestamp
        and run.timestamp.valid
        and run.timestamp.time
        and claimed > run.timestamp.time + timedelta(minutes=5)
    ):
        problems.append("later than the signature timestamp")
    if claimed > run.validation_time + timedelta(minutes=5):
        problems.append("in the future")
    if problems:
        checks.failed(
            Constraint.claimed_signing_time,
            f"claimed signing time {claimed.isoformat()} is {' and '.join(problems)}",
            SubIndication.SIG_CONSTRAINTS_FAILURE,
        )
    else:
        checks.passed(Constraint.claimed_signing_time, f"claimed {claimed.isoformat()} (a claim, not a proof)")


def _check_registry(run: _Verification, registry: RegistryEntry | None) -> None:
    checks = run.checks
    if registry is None:
        for constraint in (Constraint.registry_status, Constraint.registry_superseded, Constraint.registry_known):
            checks.skipped(constraint, "not looked up (offline verification)")
        return
    if registry.status == "unknown":
        checks.failed(Constraint.registry_known, "this exact document is not registered at this hub")
        checks.skipped(Constraint.registry_status, "not registered")
        checks.skipped(Constraint.registry_superseded, "not registered")
        return
    who = f" by {registry.organization_name}" if registry.organization_name else ""
    checks.passed(Constraint.registry_known, f"registered{who} as certificate {registry.certificate_id}")
    if registry.status == "revoked":
        reason = f": {registry.reason}" if registry.reason else ""
        checks.failed(Constraint.registry_status, f"revoked by its issuer{reason}")
    else:
        checks.passed(Constraint.registry_status, f"status {registry.status}")
    if registry.status == "superseded":
        checks.failed(
            Constraint.registry_superseded,
            f"superseded by certificate {registry.superseded_by_id}"
            + (f": {registry.reason}" if registry.reason else ""),
        )
    else:
        checks.passed(Constraint.registry_superseded, "not superseded")


def _check_transparency(run: _Verification, registry: RegistryEntry | None, proof: object | None) -> None:
    checks = run.checks
    if proof is None:
        if registry is None or registry.status == "unknown":
            checks.skipped(Constraint.transparency, "not looked up")
        else:
            checks.failed(Constraint.transparency, "no inclusion proof in the transparency log")
        return
    leaf = getattr(proof, "leaf_index", None)
    size = getattr(proof, "tree_size", None)
    entry = getattr(proof, "leaf", None)
    if entry is not None and getattr(entry, "sha256", run.document_sha256).lower() != run.document_sha256:
        checks.failed(Constraint.transparency, "the inclusion proof is for another document")
        return
    from signing.transparency import InclusionProof, verify_inclusion_proof

    if isinstance(proof, InclusionProof) and not verify_inclusion_proof(proof):
        checks.failed(Constraint.transparency, "the inclusion proof does not lead to the signed tree head's root")
        return
    checks.passed(
        Constraint.transparency,
        f"included in the transparency log: leaf {leaf} of a tree of size {size} (audit path verified)",
    )


def _signer_identity(run: _Verification) -> SignerIdentity | None:
    certificate = run.signing_certificate
    if certificate is None:
        return None
    return SignerIdentity(
        subject=_subject_text(certificate),
        issuer=_issuer_text(certificate),
        serial_number=format(certificate.serial_number, "x"),
        sha256_fingerprint=_fingerprint(certificate),
        organization=_subject_attribute(certificate, NameOID.ORGANIZATION_NAME),
        organization_identifier=_subject_attribute(certificate, NameOID.ORGANIZATION_IDENTIFIER),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        public_key=_describe_key(_public_key(certificate)),
        bound_lab=run.bound_lab.name if run.bound_lab else None,
    )


def _proof_as_dict(proof: object) -> dict[str, object]:
    dump = getattr(proof, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True)
    if isinstance(proof, dict):
        return proof
    return {"value": str(proof)}


def _report(run: _Verification, registry: RegistryEntry | None, proof: object | None) -> VerificationReport:
    for constraint in Constraint:
        run.checks.skipped(constraint, "not executed: the signature could not be processed")
    indication, sub_indication = run.checks.verdict()
    transparency = None
    if proof is not None:
        transparency = TransparencyInfo(included=True, proof=_proof_as_dict(proof))
    elif registry is not None and registry.status != "unknown":
        transparency = TransparencyInfo(included=False)
    return VerificationReport(
        indication=indication,
        sub_indication=sub_indication,
        signature_format=run.signature_format,
        signature_scope=run.scope,
        checks=run.checks.ordered(),
        signer=_signer_identity(run),
        claimed_signing_time=run.claimed_signing_time,
        best_signature_time=run.best_signature_time or run.validation_time,
        validation_time=run.validation_time,
        timestamp=run.timestamp,
        policy=run.policy.name,
        document_sha256=run.document_sha256,
        registry=registry,
        transparency=transparency,
    )


def trust_from_pem(pems: Iterable[bytes]) -> TrustContext:
    """A TrustContext whose anchors are every certificate (PEM or DER) given, e.g. for `qihub verify --trust`."""
    anchors: list[x509.Certificate] = []
    for blob in pems:
        if b"-----BEGIN" in blob:
            anchors.extend(x509.load_pem_x509_certificates(blob))
        else:
            anchors.append(x509.load_der_x509_certificate(blob))
    return TrustContext(anchors=anchors)
