"""The searchable facts of a DCC: identifier, item manufacturer/model/serial, dates, languages."""

import re
from collections.abc import Iterator
from datetime import date

from lxml import etree
from pydantic import BaseModel

from certificates.xml import ThreadXPath

_SERIAL_WORDS = ("serial", "serien", "série", "serie", "s/n", "序列号", "出厂编号")
# XPath's normalize-space() collapses XML whitespace only (not e.g. U+00A0 or U+3000, which str.split would).
_XML_SPACE = re.compile(r"[ \t\r\n]+")
_XML_SPACE_CHARS = " \t\r\n"
# Text of every `name` below an identification, joined by spaces (only searched for the serial words).
_IDENTIFICATION_NAMES = ThreadXPath(".//*[local-name()='name']//text()")


class CertificateSummary(BaseModel):
    """What the registry indexes from a certificate."""

    unique_identifier: str | None = None
    item_name: str | None = None
    item_manufacturer: str | None = None
    item_model: str | None = None
    item_serial: str | None = None
    performance_begin: date | None = None
    performance_end: date | None = None
    issue_date: date | None = None
    mandatory_language: str | None = None
    has_signature: bool = False


# Elements are matched by local name in any (or no) namespace, so one extractor serves every DCC release,
# including 2.1.0's intranet namespace; lxml's `{*}` tag filter does that in C, without an XPath per field.


def _children(elements: Iterator[etree._Element], name: str) -> Iterator[etree._Element]:
    """The children named `name` of each element in turn: a location step, results in document order."""
    for element in elements:
        yield from element.iterchildren(f"{{*}}{name}")


def _path(element: etree._Element, *names: str) -> Iterator[etree._Element]:
    """The elements at the relative child path `names` below `element`, in document order."""
    found: Iterator[etree._Element] = iter((element,))
    for name in names:
        found = _children(found, name)
    return found


def _normalized(element: etree._Element | None) -> str | None:
    """XPath normalize-space() of an element's string value, None when absent or blank."""
    if element is None:
        return None
    text = (element.text or "") if not len(element) else "".join(element.itertext())
    return _XML_SPACE.sub(" ", text).strip(_XML_SPACE_CHARS) or None


def _first_text(element: etree._Element, *names: str) -> str | None:
    return _normalized(next(_path(element, *names), None))


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:  # template placeholders and empty dates occur in real files; the rules report them
        return None


def _in_language(elements: Iterator[etree._Element], language: str | None) -> etree._Element | None:
    """The first `content` child of the elements in the language (or untagged); any language if none is given."""
    for content in _children(elements, "content"):
        if not language or content.get("lang") in (language, None):
            return content
    return None


def _serial_number(item: etree._Element) -> str | None:
    fallback = None
    for identification in _path(item, "identifications", "identification"):
        names = " ".join(_IDENTIFICATION_NAMES(identification)).lower()
        value = _first_text(identification, "value")
        if not value:
            continue
        if any(word in names for word in _SERIAL_WORDS):
            return value
        issuer = _first_text(identification, "issuer")
        if fallback is None and issuer == "manufacturer":
            fallback = value
    return fallback


def summarize_certificate(root: etree._Element) -> CertificateSummary:
    """Extract the registry's index fields from a parsed DCC root."""
    core = list(_path(root, "administrativeData", "coreData"))

    def core_text(name: str) -> str | None:
        return _normalized(next(_children(iter(core), name), None))

    language = core_text("mandatoryLangCodeISO639_1") or core_text("usedLangCodeISO639_1")
    summary = CertificateSummary(
        unique_identifier=core_text("uniqueIdentifier"),
        performance_begin=_date(core_text("beginPerformanceDate")),
        performance_end=_date(core_text("endPerformanceDate")),
        issue_date=_date(core_text("issueDate")),
        mandatory_language=language,
        has_signature=next(root.iterchildren("{*}Signature"), None) is not None,
    )
    item = next(_path(root, "administrativeData", "items", "item"), None)
    if item is not None:
        summary.item_name = _normalized(_in_language(_path(item, "name"), language))
        summary.item_manufacturer = _normalized(_in_language(_path(item, "manufacturer", "name"), language))
        summary.item_model = _first_text(item, "model")
        summary.item_serial = _serial_number(item)
    return summary
