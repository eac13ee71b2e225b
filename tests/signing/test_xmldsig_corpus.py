"""The hub's verifier over every vector of the shared XML-signature corpus (`expectations.json`).

Each vector is verified with the trust material its upstream verdict assumes (`verify_with`: trusted CAs,
extra certificates, a pinned or embedded key, the verification time). The hub must answer TOTAL_PASSED
exactly for the `valid` vectors inside its policy, and never for `invalid`, `partial`, `unknown` or attack
files. Valid vectors the policy refuses on purpose are listed in `POLICY_REJECTIONS` with the reasons, each
tied to the check that must fail for it. `docs/xmldsig-corpus.md` is generated from this module:

    .venv/bin/python -m tests.signing.test_xmldsig_corpus --write
"""

import base64
import functools
import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm

from certificates.xml import XmlRejected
from signing.policy import Constraint, load_policy
from signing.report import CheckResult, Indication, SignatureScope, VerificationReport
from signing.trust import TrustContext
from signing.verification import verify_document
from tests.paths import REPO_ROOT, XMLDSIG_CORPUS

EXPECTATIONS = json.loads((XMLDSIG_CORPUS / "expectations.json").read_text(encoding="utf-8"))["cases"]
CORPUS_DOC = REPO_ROOT / "docs" / "xmldsig-corpus.md"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"


@dataclass(frozen=True)
class Reason:
    """Why the policy refuses a vector, and which check must say so."""

    text: str
    check: Constraint | None  # None: refused before verification (unreadable XML)


HMAC = Reason(
    "HMAC (a shared secret proves no signer to a third party; truncated HMAC is CVE-2009-0217)", Constraint.algorithms
)
DSA = Reason("DSA (DSA-SHA1 with 1024-bit keys)", Constraint.algorithms)
MD5 = Reason("MD5 (signature method or certificate signature)", Constraint.algorithms)
SHA1 = Reason("SHA-1 (digest, signature method or certificate signature)", Constraint.algorithms)
RSA_SMALL = Reason("RSA key below 2048 bits", Constraint.algorithms)
EDDSA = Reason("EdDSA (Ed25519/Ed448): not supported by signxml, not in the policy", Constraint.algorithms)
MLDSA = Reason("ML-DSA-65: not supported by signxml, not in the policy", Constraint.algorithms)
GOST = Reason("GOST R 34.10-2012: not supported, not in the policy", Constraint.algorithms)
ENVELOPING = Reason("enveloping: signs a ds:Object inside the signature, not a document", Constraint.signature_scope)
DETACHED = Reason("detached: signs an external resource (external reference)", Constraint.signature_scope)
XPOINTER = Reason("XPointer reference", Constraint.signature_scope)
XSLT = Reason("XSLT transform", Constraint.signature_scope)
XPATH = Reason("XPath transform (selects part of the input; signxml would skip it)", Constraint.signature_scope)
ID_PART = Reason("Id reference to one element, not the whole document", Constraint.signature_scope)
MANIFEST = Reason(
    "no reference over the whole document (data signed through a ds:Manifest)", Constraint.signature_scope
)
KEYVALUE = Reason("bare KeyValue: no certificate, and no trust anchor pins the key", Constraint.signing_certificate)
NO_CERTIFICATE = Reason(
    "no certificate in KeyInfo (KeyName, RetrievalMethod, KeyInfoReference, RFC 4050 key syntax)",
    Constraint.signing_certificate,
)
CERTIFICATE_NOT_GIVEN = Reason(
    "X509Data names a certificate that the vector's trust material does not hold", Constraint.signing_certificate
)
DTD = Reason("DOCTYPE: the hardened parser refuses every DTD", None)
TARGET = Reason("xades:QualifyingProperties Target does not name the signature", Constraint.format)
BAD_EXTENSION = Reason("signing certificate with extensions cryptography cannot parse", Constraint.key_usage)
DSIG_SCHEMA = Reason("XMLDSig schema violation (X509SerialNumber is not an integer)", Constraint.crypto)
BAD_CHAIN_CERTIFICATE = Reason("malformed certificate in the chain", Constraint.chain)

# Valid upstream, refused on purpose by the hub's profile and default policy.
POLICY_REJECTIONS: dict[str, tuple[Reason, ...]] = {
    "w3c-merlin-xmldsig-twenty-three/signature-enveloped-dsa.xml": (DSA, SHA1, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-enveloping-dsa.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-enveloping-b64-dsa.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-enveloping-rsa.xml": (SHA1, ENVELOPING, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-enveloping-hmac-sha1.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-merlin-xmldsig-twenty-three/signature-enveloping-hmac-sha1-40.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-merlin-xmldsig-twenty-three/signature-external-dsa.xml": (DSA, SHA1, DETACHED, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-external-b64-dsa.xml": (DSA, SHA1, DETACHED, KEYVALUE),
    "w3c-merlin-xmldsig-twenty-three/signature-keyname.xml": (DSA, SHA1, DETACHED, NO_CERTIFICATE),
    "w3c-merlin-xmldsig-twenty-three/signature-x509-crt.xml": (DSA, SHA1, DETACHED),
    "w3c-merlin-xmldsig-twenty-three/signature-x509-sn.xml": (DSA, SHA1, DETACHED),
    "w3c-merlin-xmldsig-twenty-three/signature-x509-is.xml": (DSA, SHA1, DETACHED),
    "w3c-merlin-xmldsig-twenty-three/signature-x509-ski.xml": (DSA, SHA1, DETACHED),
    "w3c-merlin-xmldsig-twenty-three/signature-retrievalmethod-rawx509crt.xml": (DSA, SHA1, DETACHED, NO_CERTIFICATE),
    "w3c-merlin-xmldsig-twenty-three/signature.xml": (DTD,),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha1.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha224.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha384.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha512.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha1.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha224.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha384.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha512.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha1.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha224.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha384.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha512.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-rsa-sha224.xml": (SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-rsa-sha256.xml": (SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-rsa_sha384.xml": (SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-rsa_sha512.xml": (SHA1, ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-sha224-rsa_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-sha256-rsa-sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-sha384-rsa_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-sha512-rsa_sha256.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-hmac-sha224.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-hmac-sha256.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-hmac-sha384.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-hmac-sha512.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-hmac-sha1-truncated160.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-derencoded-rsa.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-derencoded-ec.xml": (ENVELOPING, KEYVALUE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-keyinforeference-rsa.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-x509digest-rsa.xml": (RSA_SMALL, ENVELOPING),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha1_4050.xml": (DSA, SHA1, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha256_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha384_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p256_sha512_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha1_4050.xml": (DSA, SHA1, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha256_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha384_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p384_sha512_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha1_4050.xml": (DSA, SHA1, ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha256_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha384_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig11-interop-2012/signature-enveloping-p521_sha512_4050.xml": (ENVELOPING, NO_CERTIFICATE),
    "w3c-xmldsig2ed-tests/defCan-1.xml": (HMAC, DETACHED, XPATH, NO_CERTIFICATE),
    "w3c-xmldsig2ed-tests/defCan-2.xml": (HMAC, DETACHED, XSLT, XPATH, NO_CERTIFICATE),
    "w3c-xmldsig2ed-tests/defCan-3.xml": (HMAC, DETACHED, XSLT, XPATH, NO_CERTIFICATE),
    "w3c-xmldsig2ed-tests/xpointer-1-SUN.xml": (HMAC, XPOINTER, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-dsa-enveloped.xml": (DSA, SHA1),
    "phaos-xmldsig-three/signature-dsa-enveloping.xml": (DSA, SHA1, ENVELOPING),
    "phaos-xmldsig-three/signature-dsa-detached.xml": (DSA, SHA1, DETACHED),
    "phaos-xmldsig-three/signature-dsa-manifest.xml": (DSA, SHA1, ENVELOPING, KEYVALUE),
    "phaos-xmldsig-three/signature-rsa-enveloped.xml": (MD5, SHA1, RSA_SMALL),
    "phaos-xmldsig-three/signature-rsa-enveloping.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-rsa-detached.xml": (MD5, SHA1, RSA_SMALL, DETACHED),
    "phaos-xmldsig-three/signature-rsa-manifest.xml": (SHA1, ENVELOPING, KEYVALUE),
    "phaos-xmldsig-three/signature-rsa-detached-b64-transform.xml": (SHA1, ENVELOPING, KEYVALUE),
    "phaos-xmldsig-three/signature-rsa-detached-xpath-transform.xml": (SHA1, ENVELOPING, KEYVALUE),
    "phaos-xmldsig-three/signature-rsa-detached-xslt-transform.xml": (SHA1, ENVELOPING, KEYVALUE),
    "phaos-xmldsig-three/signature-rsa-detached-xslt-transform-retrieval-method.xml": (
        SHA1,
        ENVELOPING,
        NO_CERTIFICATE,
    ),
    "phaos-xmldsig-three/signature-rsa-xpath-transform-enveloped.xml": (MD5, SHA1, RSA_SMALL, XPATH),
    "phaos-xmldsig-three/signature-rsa-manifest-x509-data-cert.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-rsa-manifest-x509-data-cert-chain.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-rsa-manifest-x509-data-issuer-serial.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-rsa-manifest-x509-data-ski.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-rsa-manifest-x509-data-subject-name.xml": (MD5, SHA1, RSA_SMALL, ENVELOPING),
    "phaos-xmldsig-three/signature-big.xml": (SHA1, ENVELOPING, DETACHED, XPOINTER, XSLT, XPATH, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-hmac-md5-c14n-enveloping.xml": (HMAC, MD5, ENVELOPING, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-hmac-sha1-exclusive-c14n-comments-detached.xml": (HMAC, DETACHED, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-hmac-sha1-exclusive-c14n-enveloped.xml": (HMAC, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-hmac-sha1-40-c14n-comments-detached.xml": (HMAC, DETACHED, NO_CERTIFICATE),
    "phaos-xmldsig-three/signature-hmac-sha1-40-exclusive-c14n-comments-detached.xml": (HMAC, DETACHED, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloping-sha256-rsa-sha256.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloping-sha512-rsa-sha512.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloping-rsa-x509chain.xml": (SHA1, ENVELOPING),
    "aleksey-xmldsig-01/enveloping-sha256-ecdsa-sha256.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloping-sha384-ecdsa-sha384.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloping-sha512-ecdsa-sha512.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloping-rsa-pss-sha256.xml": (ENVELOPING,),
    "aleksey-xmldsig-01/enveloped-gost2012-256.xml": (GOST, XPATH),
    "aleksey-xmldsig-01/enveloping-sha1-rsa-sha1.xml": (SHA1, ENVELOPING),
    "aleksey-xmldsig-01/enveloping-md5-rsa-md5.xml": (MD5, ENVELOPING),
    "aleksey-xmldsig-01/enveloped-sha256-ecdsa-sha256.xml": (XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha3_256-ecdsa-sha3_256.xml": (XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha256-rsa-pss-sha256.xml": (XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha512-rsa-pss-sha512.xml": (XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha3_256-rsa-pss-sha3_256.xml": (XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha256-eddsa-ed25519.xml": (EDDSA, XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha256-eddsa-ed448.xml": (EDDSA, XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloped-sha512-mldsa65.xml": (MLDSA, XPATH, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloping-sha256-eddsa-ed25519-der-encoded-key-value.xml": (EDDSA, ENVELOPING, KEYVALUE),
    "aleksey-xmldsig-01/enveloping-sha256-ec-prime256v1-der-encoded-key-value.xml": (ENVELOPING, KEYVALUE),
    "aleksey-xmldsig-01/enveloping-sha256-rsa2048-der-encoded-key-value.xml": (ENVELOPING, KEYVALUE),
    "aleksey-xmldsig-01/enveloped-x509-same-subj-cert.xml": (XPATH,),
    "aleksey-xmldsig-01/enveloped-x509-missing-cert.xml": (XPATH,),
    "aleksey-xmldsig-01/enveloped-x509-digest-sha256.xml": (XPATH,),
    "aleksey-xmldsig-01/enveloped-x509-issuerserial.xml": (XPATH, CERTIFICATE_NOT_GIVEN),
    "aleksey-xmldsig-01/enveloped-x509-ski.xml": (XPATH,),
    "aleksey-xmldsig-01/enveloped-x509-subjectname.xml": (XPATH,),
    "aleksey-xmldsig-01/enveloping-sha256-hmac-sha256.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "aleksey-xmldsig-01/enveloping-sha256-hmac-sha256-64.xml": (HMAC, ENVELOPING, NO_CERTIFICATE),
    "santuario/signature-good.xml": (DSA, SHA1, ENVELOPING),
    "xades-signxml/11068_signed.xml": (ENVELOPING,),
    "xades-signxml/Signature-X-CZ_SEF-4.xml": (ENVELOPING,),
    "xades-signxml/Signature-X-CZ_SEF-5.xml": (ENVELOPING,),
    "xades-signxml/Signature-X-HU_POL-3.xml": (ENVELOPING,),
    "xades-signxml/Signature-X-SK_DIT-1.xml": (MANIFEST,),
    "xades-signxml/TEST_S1a_C1a_InTL_VALID.xml": (XPATH,),
    "xades-signxml/X_AT_SIT_1.xml": (SHA1, ENVELOPING),
    "xades-signxml/dk_tl-sn21.xml": (SHA1, BAD_EXTENSION),
    "xades-signxml/document.signed.bes.ptcc.xml": (SHA1, RSA_SMALL),
    "xades-signxml/document.signed.c.xml": (RSA_SMALL,),
    "xades-signxml/document.verified.c.xl.xml": (RSA_SMALL,),
    "xades-signxml/factura_ejemplo2_32v1.xml": (SHA1, RSA_SMALL),
    "xades-signxml/nonconformant-Signature-X-ES-100.xml": (SHA1, ID_PART, BAD_CHAIN_CERTIFICATE),
    "xades-signxml/nonconformant-Signature-X-ES-103.xml": (SHA1, ID_PART, BAD_CHAIN_CERTIFICATE),
    "xades-signxml/nonconformant-dss-2293.xml": (ENVELOPING,),
    "xades-signxml/nonconformant-sellosFNMT-XAdES_A.xml": (SHA1, ID_PART, BAD_CHAIN_CERTIFICATE),
    "xades-signxml/nonconformant-xades-sign-cert-v1-wrong-serialnumber.xml": (ENVELOPING, DSIG_SCHEMA),
    "xades-signxml/sig-with-orphan-ocsp-ref.xml": (ENVELOPING,),
    "xades-signxml/signature_property_signed.xml": (ENVELOPING,),
    "xades-signxml/xades-attr-authorities-values.xml": (ENVELOPING,),
    "xades-signxml/xades-counter-signature-injected.xml": (ENVELOPING,),
    "xades-signxml/xades-extended-epes-with-sigPolStore.xml": (ENVELOPING,),
    "xades-signxml/xades-extended-epes.xml": (ENVELOPING,),
    "xades-signxml/xades-extended-short-a.xml": (ENVELOPING,),
    "xades-signxml/xades-extended-t.xml": (ENVELOPING,),
    "xades-signxml/xades-extended-xl.xml": (TARGET,),
    "xades-signxml/xades-fake-counter-signature.xml": (ENVELOPING,),
    "xades-signxml/xades-level-x-double-sigAndRefsTst-refsOnlyTst.xml": (ENVELOPING,),
    "xades-signxml/xades-lt-with-expired-ocsp-responder.xml": (ENVELOPING,),
    "xades-signxml/xades-lta-valid.xml": (ENVELOPING,),
    "xades-signxml/xades-lta-with-additional-cert-in-keyinfo.xml": (ENVELOPING,),
    "xades-signxml/xades-ocsp-before-cert-validity.xml": (ENVELOPING,),
    "xades-signxml/xades-sigPolicy-with-SPDocSpecification.xml": (ENVELOPING,),
    "xades-signxml/xades-sign-cert-v2-wrong-issuer-serial.xml": (ENVELOPING,),
    "xades-signxml/xades-with-enveloped-manifest.xml": (MANIFEST,),
    "xades-signxml/xades-with-manifest-with-object-reference.xml": (MANIFEST,),
    "xades-signxml/xades-with-multiple-alldatatimestamps.xml": (ENVELOPING,),
    "xades-signxml/xades-with-multiple-archivetimestamps.xml": (ENVELOPING,),
    "xades-signxml/xades-with-multiple-signaturetimestamps.xml": (ENVELOPING,),
    "xades-signxml/xades-with-spUserNotice-refs.xml": (ENVELOPING,),
    "xades-signxml/xades-x-level-v2-wrong-sigAndRefsTst-type.xml": (ENVELOPING,),
    "xades-signxml/xades-x-level-v2.xml": (ENVELOPING,),
    "xades-signxml/xades-x-level-wrong-sigAndRefsTstVersion.xml": (ENVELOPING,),
    "xades-signxml/xades-x-level.xml": (ENVELOPING,),
}


@dataclass(frozen=True)
class Outcome:
    """What the hub answered for one vector."""

    indication: str
    sub_indication: str | None
    scope: SignatureScope | None
    failed_checks: frozenset[Constraint]
    rejected_xml: str | None = None

    @property
    def passed(self) -> bool:
        """TOTAL_PASSED."""
        return self.indication == Indication.TOTAL_PASSED


def _certificates(relative: str) -> list[x509.Certificate]:
    data = (XMLDSIG_CORPUS / relative).read_bytes()
    return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]


def _lenient_root(data: bytes) -> etree._Element:
    # Only to read the test's trust material out of the vector (never used to verify).
    return etree.fromstring(
        data, etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=True)
    )


def _embedded_signing_certificate(data: bytes) -> list[x509.Certificate]:
    """The certificate upstream pinned: the XAdES SigningCertificate, else the first ds:X509Certificate."""
    root = _lenient_root(data)
    signature = root if root.tag == f"{{{DS}}}Signature" else root.find(f".//{{{DS}}}Signature")
    if signature is None:
        return []
    texts = signature.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces={"ds": DS})
    certificates = [x509.load_der_x509_certificate(base64.b64decode("".join(str(text).split()))) for text in texts]
    digest = signature.find(f".//{{{XADES}}}SigningCertificateV2/{{{XADES}}}Cert/{{{XADES}}}CertDigest")
    if digest is None:
        digest = signature.find(f".//{{{XADES}}}SigningCertificate/{{{XADES}}}Cert/{{{XADES}}}CertDigest")
    if digest is not None:
        algorithm = DigestAlgorithm(digest.find(f"{{{DS}}}DigestMethod").get("Algorithm"))
        value = base64.b64decode("".join(digest.findtext(f"{{{DS}}}DigestValue").split()))
        matching = [c for c in certificates if c.fingerprint(algorithm.implementation()) == value]
        if matching:
            return matching
    return certificates[:1]


def _claimed_signing_time(data: bytes) -> datetime | None:
    text = _lenient_root(data).findtext(f".//{{{XADES}}}SigningTime")
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")) if text else None


def trust_material(case: dict) -> tuple[TrustContext, datetime | None]:
    """The vector's `verify_with` as a TrustContext and a validation time (HMAC keys have no place in it)."""
    given = case["verify_with"]
    data = (XMLDSIG_CORPUS / case["file"]).read_bytes()
    anchors = [certificate for path in given.get("ca", []) for certificate in _certificates(path)]
    intermediates = [certificate for path in given.get("untrusted", []) for certificate in _certificates(path)]
    key = given.get("key")
    if key == "embedded":
        anchors += _embedded_signing_certificate(data)
    elif key:
        anchors += _certificates(key)
    moment = given.get("time")
    at = None
    if moment == "signing-time":
        at = _claimed_signing_time(data)
    elif moment:
        at = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    return TrustContext(anchors=anchors, intermediates=intermediates), at


@functools.cache
def outcome_of(file: str) -> Outcome:
    """Verify one vector once per test session."""
    case = next(case for case in EXPECTATIONS if case["file"] == file)
    data = (XMLDSIG_CORPUS / file).read_bytes()
    try:
        trust, at = trust_material(case)
    except (ValueError, etree.XMLSyntaxError):
        trust, at = TrustContext(), None  # an unreadable vector gets no trust at all
    try:
        report: VerificationReport = verify_document(data, trust=trust, policy=load_policy(), at=at)
    except XmlRejected as rejected:
        return Outcome("REJECTED", None, None, frozenset(), rejected_xml=rejected.code)
    failed = frozenset(check.id for check in report.checks if check.result == CheckResult.FAILED)
    sub = report.sub_indication.value if report.sub_indication else None
    return Outcome(report.indication.value, sub, report.signature_scope, failed)


def test_the_corpus_has_every_expected_vector():
    assert len(EXPECTATIONS) == 209
    assert set(POLICY_REJECTIONS) <= {case["file"] for case in EXPECTATIONS if case["expected"] == "valid"}


@pytest.mark.parametrize("case", EXPECTATIONS, ids=[case["file"] for case in EXPECTATIONS])
def test_total_passed_exactly_for_valid_vectors_inside_the_policy(case):
    outcome = outcome_of(case["file"])
    if case["expected"] == "valid" and case["file"] not in POLICY_REJECTIONS:
        assert outcome.passed, f"{outcome.indication}/{outcome.sub_indication}: {sorted(outcome.failed_checks)}"
        return
    assert not outcome.passed
    if case["expected"] == "partial":
        assert outcome.scope == SignatureScope.PARTIAL
        assert outcome.sub_indication == "SIGNED_DATA_NOT_FOUND"
    for reason in POLICY_REJECTIONS.get(case["file"], ()):
        if reason.check is None:
            assert outcome.rejected_xml is not None
        else:
            assert reason.check in outcome.failed_checks, reason.text


def _folder_rows() -> list[tuple[str, Counter]]:
    rows: dict[str, Counter] = {}
    for case in EXPECTATIONS:
        folder = case["file"].split("/")[0]
        counter = rows.setdefault(folder, Counter())
        outcome = outcome_of(case["file"])
        counter["cases"] += 1
        counter[f"expected {case['expected']}"] += 1
        counter["TOTAL_PASSED"] += outcome.passed
        counter["policy"] += case["file"] in POLICY_REJECTIONS
        counter["refused as expected"] += case["expected"] != "valid" and not outcome.passed
    return list(rows.items())


def render_corpus_document() -> str:
    """The Markdown summary of the corpus run (counts per folder, every policy rejection with its reasons)."""
    lines = [
        "# The XML-signature corpus through the hub's verifier",
        "",
        "Generated by `.venv/bin/python -m tests.signing.test_xmldsig_corpus --write` from "
        "`tests/signing/test_xmldsig_corpus.py` (which also asserts every line below). Corpus and upstream "
        "verdicts: `shared/external/xmldsig/` (`expectations.json`, 209 vectors; the other files of the "
        "267 are keys, certificates and referenced data). Each vector is verified with the trust material its "
        "upstream verdict assumes; policy: `signing/default-policy.yaml`.",
        "",
        "| folder | vectors | upstream valid | invalid / partial / unknown | hub TOTAL_PASSED "
        "| valid but refused by policy | non-valid refused |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    totals: Counter = Counter()
    for folder, counter in _folder_rows():
        others = counter["cases"] - counter["expected valid"]
        lines.append(
            f"| `{folder}` | {counter['cases']} | {counter['expected valid']} | {others} | {counter['TOTAL_PASSED']} "
            f"| {counter['policy']} | {counter['refused as expected']} of {others} |"
        )
        totals.update(counter)
    others = totals["cases"] - totals["expected valid"]
    lines.append(
        f"| **all** | {totals['cases']} | {totals['expected valid']} | {others} | {totals['TOTAL_PASSED']} "
        f"| {totals['policy']} | {totals['refused as expected']} of {others} |"
    )
    reason_counts = Counter(reason.text for reasons in POLICY_REJECTIONS.values() for reason in reasons)
    lines += ["", "## Why valid vectors are refused", "", "| reason | vectors | check that fails |", "|---|---:|---|"]
    for text, count in reason_counts.most_common():
        check = next(r.check for rs in POLICY_REJECTIONS.values() for r in rs if r.text == text)
        lines.append(f"| {text} | {count} | {'parser (400)' if check is None else f'`{check.value}`'} |")
    lines += ["", "## Every policy rejection", "", "| vector | reasons | hub answer |", "|---|---|---|"]
    for file, reasons in POLICY_REJECTIONS.items():
        outcome = outcome_of(file)
        answer = (
            f"XML refused ({outcome.rejected_xml})"
            if outcome.rejected_xml
            else (f"{outcome.indication}/{outcome.sub_indication}")
        )
        lines.append(f"| `{file}` | {'; '.join(reason.text for reason in reasons)} | {answer} |")
    passed = [case["file"] for case in EXPECTATIONS if outcome_of(case["file"]).passed]
    lines += ["", "## TOTAL_PASSED", ""] + [f"* `{file}`" for file in passed] + [""]
    return "\n".join(lines)


def test_the_corpus_document_is_current():
    assert CORPUS_DOC.read_text(encoding="utf-8") == render_corpus_document(), (
        "regenerate: .venv/bin/python -m tests.signing.test_xmldsig_corpus --write"
    )


if __name__ == "__main__":
    if "--write" in sys.argv:
        CORPUS_DOC.write_text(render_corpus_document(), encoding="utf-8")
        print(f"wrote {CORPUS_DOC.relative_to(REPO_ROOT)}")
    else:
        print(render_corpus_document())
