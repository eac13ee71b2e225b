"""The searchable facts of a DCC: identifier, item manufacturer/model/serial, dates, languages."""

from datetime import date

from lxml import etree
from pydantic import BaseModel

# Match by local name so one extractor serves every DCC release, including 2.1.0's intranet namespace.
_CORE = "*[local-name()='administrativeData']/*[local-name()='coreData']"
_ITEM = "*[local-name()='administrativeData']/*[local-name()='items']/*[local-name()='item']"
_SERIAL_WORDS = ("serial", "serien", "série", "serie", "s/n", "序列号", "出厂编号")


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


def _text(root: etree._Element, xpath: str) -> str | None:
    found = root.xpath(f"normalize-space(({xpath})[1])")
    return str(found) or None


def _date(root: etree._Element, xpath: str) -> date | None:
    text = _text(root, xpath)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:  # template placeholders and empty dates occur in real files; the rules report them
        return None


def _content_xpath(language: str | None) -> str:
    if language:
        return f"*[local-name()='content'][@lang='{language}' or not(@lang)]"
    return "*[local-name()='content']"


def _serial_number(item: etree._Element) -> str | None:
    identifications = item.xpath("*[local-name()='identifications']/*[local-name()='identification']")
    fallback = None
    for identification in identifications:
        names = " ".join(identification.xpath(".//*[local-name()='name']//text()")).lower()
        value = identification.xpath("normalize-space(*[local-name()='value'])")
        if not value:
            continue
        if any(word in names for word in _SERIAL_WORDS):
            return str(value)
        issuer = identification.xpath("normalize-space(*[local-name()='issuer'])")
        if fallback is None and issuer == "manufacturer":
            fallback = str(value)
    return fallback


def summarize_certificate(root: etree._Element) -> CertificateSummary:
    """Extract the registry's index fields from a parsed DCC root."""
    language = _text(root, f"{_CORE}/*[local-name()='mandatoryLangCodeISO639_1']") or _text(
        root, f"{_CORE}/*[local-name()='usedLangCodeISO639_1']"
    )
    content = _content_xpath(language)
    items = root.xpath(_ITEM)
    item = items[0] if items else None
    summary = CertificateSummary(
        unique_identifier=_text(root, f"{_CORE}/*[local-name()='uniqueIdentifier']"),
        performance_begin=_date(root, f"{_CORE}/*[local-name()='beginPerformanceDate']"),
        performance_end=_date(root, f"{_CORE}/*[local-name()='endPerformanceDate']"),
        issue_date=_date(root, f"{_CORE}/*[local-name()='issueDate']"),
        mandatory_language=language,
        has_signature=bool(root.xpath("*[local-name()='Signature']")),
    )
    if item is not None:
        summary.item_name = _text(item, f"*[local-name()='name']/{content}")
        summary.item_manufacturer = _text(item, f"*[local-name()='manufacturer']/*[local-name()='name']/{content}")
        summary.item_model = _text(item, "*[local-name()='model']")
        summary.item_serial = _serial_number(item)
    return summary
