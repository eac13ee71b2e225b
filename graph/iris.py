"""Deterministic IRIs from authoritative identifiers, shared by every mapping (certificates, standards, labs).

The same certificate, lab or standard always gets the same IRI, so re-mapping replaces instead of duplicating
and graphs from different sources join on them.
"""

import hashlib
import re
from urllib.parse import quote

# The hub's own vocabulary; `.example` because no public namespace is registered yet (kept stable).
QH = "https://qihub.example/ns#"
ID_BASE = "https://qihub.example/id/"
GRAPH_BASE = "https://qihub.example/graph/"
METADATA_GRAPH = f"{GRAPH_BASE}metadata"


def _slug(text: str) -> str:
    cleaned = re.sub(r"\s+", " ", text.strip())
    return quote(cleaned.replace(" ", "_"), safe="-_.~")


def _digest(*parts: str | None) -> str:
    joined = "\x1f".join((part or "").strip().casefold() for part in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:24]


def certificate_iri(certificate_id: str) -> str:
    """The registered certificate (its registry id is authoritative)."""
    return f"{ID_BASE}certificate/{certificate_id}"


def certificate_graph_iri(certificate_id: str) -> str:
    """The named graph holding one certificate's mapping."""
    return f"{GRAPH_BASE}certificate/{certificate_id}"


def organization_iri(organization_id: str) -> str:
    """A registered organization (lab, regulator, platform)."""
    return f"{ID_BASE}organization/{organization_id}"


def instrument_iri(manufacturer: str | None, model: str | None, serial: str | None) -> str:
    """An instrument identified by manufacturer, model and serial number (case- and space-insensitive)."""
    return f"{ID_BASE}instrument/{_digest(manufacturer, model, serial)}"


def standard_iri(code: str) -> str:
    """A standard by its code, edition included when the code carries it (e.g. 'GB/T 27025-2019')."""
    return f"{ID_BASE}standard/{_slug(code)}"


def accreditation_iri(body: str, number: str) -> str:
    """An accreditation by its body and number."""
    return f"{ID_BASE}accreditation/{_slug(body)}/{_slug(number)}"


def conformity_certificate_iri(scheme: str, number: str) -> str:
    """A product conformity certificate by scheme and number."""
    return f"{ID_BASE}conformity-certificate/{_slug(scheme)}/{_slug(number)}"


def standard_graph_iri(code: str) -> str:
    """The named graph holding one standard's mapping (rewritten whenever the standard is imported again)."""
    return f"{GRAPH_BASE}standard/{_slug(code)}"


def accreditation_graph_iri(body: str, number: str) -> str:
    """The named graph holding one accreditation and its scope."""
    return f"{GRAPH_BASE}accreditation/{_slug(body)}/{_slug(number)}"


def conformity_certificate_graph_iri(scheme: str, number: str) -> str:
    """The named graph holding one product conformity certificate."""
    return f"{GRAPH_BASE}conformity-certificate/{_slug(scheme)}/{_slug(number)}"


def clause_iri(code: str, number: str) -> str:
    """A numbered clause of a standard (e.g. clause '7.8.4.3' of 'ISO/IEC 17025:2017')."""
    return f"{standard_iri(code)}/clause/{_slug(number)}"


def named_organization_iri(name: str) -> str:
    """An organization known only by name: an accreditation or certification body, an unregistered holder."""
    return f"{ID_BASE}organization-name/{_digest(name)}"
