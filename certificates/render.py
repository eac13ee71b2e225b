"""Human-readable HTML view of a stored DCC: one self-contained page (inline CSS, no external assets).

The page is built from `dcc_to_json`, so it reads every DCC release the exporter reads (2.1 to 3.3) and
shows what the JSON shape covers. Texts come in the certificate's mandatory language when it has one.
Jinja2 autoescaping is always on: all document text, including `dcc:content`, is escaped.
"""

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from lxml import etree

from certificates.dcc_json import dcc_to_json

_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Status words the registry uses, mapped to the banner's colour; anything else is shown neutral.
_STATUS_TONES = {
    "issued": "ok",
    "valid": "ok",
    "active": "ok",
    "verified": "ok",
    "revoked": "bad",
    "invalid": "bad",
    "rejected": "bad",
    "withdrawn": "bad",
    "superseded": "warn",
    "draft": "warn",
    "pending": "warn",
    "submitted": "warn",
    "expired": "warn",
}

_PREFIXES = {
    "quecto": "q", "ronto": "r", "yocto": "y", "zepto": "z", "atto": "a", "femto": "f", "pico": "p",
    "nano": "n", "micro": "µ", "milli": "m", "centi": "c", "deci": "d", "deca": "da", "hecto": "h",
    "kilo": "k", "mega": "M", "giga": "G", "tera": "T", "peta": "P", "exa": "E", "zetta": "Z",
    "yotta": "Y", "ronna": "R", "quetta": "Q", "kibi": "Ki", "mebi": "Mi", "gibi": "Gi", "tebi": "Ti",
}  # fmt: skip
_UNITS = {
    "metre": "m", "kilogram": "kg", "gram": "g", "second": "s", "ampere": "A", "kelvin": "K",
    "mole": "mol", "candela": "cd", "one": "1", "radian": "rad", "steradian": "sr", "hertz": "Hz",
    "newton": "N", "pascal": "Pa", "joule": "J", "watt": "W", "coulomb": "C", "volt": "V", "farad": "F",
    "ohm": "Ω", "siemens": "S", "weber": "Wb", "tesla": "T", "henry": "H", "degreecelsius": "°C",
    "lumen": "lm", "lux": "lx", "becquerel": "Bq", "gray": "Gy", "sievert": "Sv", "katal": "kat",
    "percent": "%", "ppm": "ppm", "minute": "min", "hour": "h", "day": "d", "degree": "°",
    "arcminute": "′", "arcsecond": "″", "hectare": "ha", "litre": "l", "tonne": "t", "electronvolt": "eV",
    "dalton": "Da", "bar": "bar", "bel": "B", "neper": "Np", "bit": "bit", "byte": "B",
    "astronomicalunit": "au", "millimetremercury": "mmHg",
}  # fmt: skip
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_UNIT_TOKEN = re.compile(r"\\([A-Za-z]+)(?:\{([^{}]*)\})?")


def pretty_unit(unit: str) -> str:
    """Render a D-SI unit string with symbols (`\\milli\\metre` → `mm`); unknown syntax is returned as is."""
    tokens = _UNIT_TOKEN.findall(unit)
    if not tokens or "".join(f"\\{name}" + (f"{{{arg}}}" if arg else "") for name, arg in tokens) != unit:
        return unit
    numerator: list[str] = []
    denominator: list[str] = []
    terms = numerator
    prefix = ""
    for name, argument in tokens:
        word = name.lower()
        if word == "per" and not prefix:
            terms = denominator
        elif word == "tothe" and terms and not prefix:
            power = argument.strip()
            terms[-1] += power.translate(_SUPERSCRIPT) if re.fullmatch(r"-?\d+", power) else f"^{power}"
        elif word in _PREFIXES and not prefix:
            prefix = _PREFIXES[word]
        elif word in _UNITS:
            terms.append(prefix + _UNITS[word])
            prefix = ""
        else:
            return unit
    if prefix or not numerator:
        return unit
    text = "·".join(numerator)
    return f"{text}/{'·'.join(denominator)}" if denominator else text


def _clean(text: str) -> str:
    """Collapse the hard line wraps and indentation that XML sources carry inside texts."""
    return " ".join(text.split())


@dataclass
class _Row:
    """One line of a result table."""

    name: str = ""
    span: int = 1  # rows the name cell spans (a list quantity gives one row per value)
    value: str = ""
    unit: str = ""
    unit_code: str = ""
    uncertainty: str = ""
    k: str = ""
    p: str = ""
    note: str = ""
    first: bool = True


@dataclass
class _Section:
    """A titled group of rows and texts (a result, a condition, a statement)."""

    title: str
    description: str = ""
    texts: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    rows: list[_Row] = field(default_factory=list)


class _Page:
    """Turns the exported JSON into the template's plain values, in one language."""

    def __init__(self, document: dict[str, Any]) -> None:
        admin = document.get("administrativeData") or {}
        core = admin.get("coreData") or {}
        self.languages = [*core.get("mandatoryLanguages", []), *core.get("usedLanguages", [])]
        self.language = self.languages[0] if self.languages else "en"

    def text(self, value: Any) -> str:
        """The text in the page language, else the first declared language present, else any."""
        if isinstance(value, str):
            return _clean(value)
        if not isinstance(value, dict) or not value:
            return ""
        for language in self.languages:
            if language in value:
                return _clean(str(value[language]))
        return _clean(str(next(iter(value.values()))))

    def contact(self, contact: Any) -> dict[str, Any] | None:
        if not isinstance(contact, dict):
            return None
        location = contact.get("location") or {}
        street = " ".join(str(location[key]) for key in ("street", "streetNo") if key in location)
        town = " ".join(str(location[key]) for key in ("postCode", "city") if key in location)
        lines = [
            line
            for line in (
                street,
                f"PO Box {location['postOfficeBox']}" if "postOfficeBox" in location else "",
                town,
                str(location.get("state", "")),
                str(location.get("countryCode", "")),
                self.text(location.get("further")),
            )
            if line
        ]
        return {
            "name": self.text(contact.get("name")),
            "email": contact.get("email", ""),
            "phone": contact.get("phone", ""),
            "link": contact.get("link", ""),
            "address": lines,
        }

    def identifications(self, identifications: Any) -> list[tuple[str, str]]:
        out = []
        for identification in identifications or []:
            label = self.text(identification.get("name")) or str(identification.get("issuer", "Identifier"))
            out.append((label, str(identification.get("value", ""))))
        return out

    # --- quantities

    def quantity_rows(self, quantity: dict[str, Any], *, prefix: str = "") -> list[_Row]:
        name = self.text(quantity.get("name")) or self.text(quantity.get("description")) or "–"
        if prefix:
            name = f"{prefix} – {name}"
        rows: list[_Row]
        if "real" in quantity:
            rows = [self.real_row(quantity["real"])]
        elif "realListXMLList" in quantity:
            rows = self.list_rows(quantity["realListXMLList"])
        elif "hybrid" in quantity:
            rows = self.hybrid_rows(quantity["hybrid"])
        elif "noQuantity" in quantity:
            rows = [_Row(value=self.text(quantity["noQuantity"]))]
        elif "charsXMLList" in quantity:
            rows = [_Row(value=" ".join(quantity["charsXMLList"]))]
        else:
            rows = [_Row()]
        conformity = self.conformity(quantity)
        for index, row in enumerate(rows):
            row.first = index == 0
            if index < len(conformity) and conformity[index]:
                row.note = (row.note + " " if row.note else "") + f"conformity: {conformity[index]}"
        rows[0].name = name
        rows[0].span = len(rows)
        return rows

    def conformity(self, quantity: dict[str, Any]) -> list[str]:
        for meta in quantity.get("measurementMetaData", []):
            if "conformity" in meta:
                return [str(meta["conformity"])]
            if "conformityXMLList" in meta:
                return [str(value) for value in meta["conformityXMLList"]]
        return []

    def real_row(self, real: dict[str, Any]) -> _Row:
        unit = str(real.get("unit", ""))
        row = _Row(value=str(real.get("value", "")), unit=pretty_unit(unit), unit_code=unit)
        self.put_uncertainty(row, real.get("uncertainty") or {})
        if "label" in real:
            row.note = str(real["label"])
        return row

    def put_uncertainty(self, row: _Row, uncertainty: dict[str, Any]) -> None:
        if "expanded" in uncertainty:
            expanded = uncertainty["expanded"]
            row.uncertainty = f"± {expanded.get('uncertainty', '')}"
            row.k = str(expanded.get("coverageFactor", ""))
            row.p = str(expanded.get("coverageProbability", ""))
        elif "standard" in uncertainty:
            row.uncertainty = f"u = {uncertainty['standard'].get('uncertainty', '')}"
        elif "coverageInterval" in uncertainty:
            interval = uncertainty["coverageInterval"]
            row.uncertainty = f"[{interval.get('intervalMin', '')}, {interval.get('intervalMax', '')}]"
            row.p = str(interval.get("coverageProbability", ""))

    def list_rows(self, real_list: dict[str, Any]) -> list[_Row]:
        values = [str(value) for value in real_list.get("valueXMLList", [])] or [""]
        units = [str(unit) for unit in real_list.get("unitXMLList", [])] or [""]
        labels = real_list.get("labelXMLList", [])
        uncertainty = real_list.get("uncertainty") or {}
        kind = next(iter(uncertainty), None)
        parts = uncertainty.get(kind, {}) if kind else {}

        def pick(items: list[Any], index: int) -> str:
            # D-SI lists broadcast a single unit or uncertainty to every value.
            if not items:
                return ""
            return str(items[index] if index < len(items) else items[-1])

        rows = []
        for index, value in enumerate(values):
            unit = pick(units, index)
            row = _Row(value=value, unit=pretty_unit(unit), unit_code=unit, note=pick(labels, index))
            if kind == "expanded":
                row.uncertainty = f"± {pick(parts.get('uncertaintyXMLList', []), index)}"
                row.k = pick(parts.get("coverageFactorXMLList", []), index)
                row.p = pick(parts.get("coverageProbabilityXMLList", []), index)
            elif kind == "standard":
                row.uncertainty = f"u = {pick(parts.get('uncertaintyXMLList', []), index)}"
            elif kind == "coverageInterval":
                low = pick(parts.get("intervalMinXMLList", []), index)
                high = pick(parts.get("intervalMaxXMLList", []), index)
                row.uncertainty = f"[{low}, {high}]"
                row.p = pick(parts.get("coverageProbabilityXMLList", []), index)
            rows.append(row)
        return rows

    def hybrid_rows(self, hybrid: dict[str, Any]) -> list[_Row]:
        """The first alternative gives the rows; the others are noted beside each value."""
        if hybrid.get("real"):
            alternatives = [[self.real_row(real)] for real in hybrid["real"]]
        elif hybrid.get("realListXMLList"):
            alternatives = [self.list_rows(real_list) for real_list in hybrid["realListXMLList"]]
        else:
            return [_Row()]
        rows = alternatives[0]
        for index, row in enumerate(rows):
            others = [f"{alt[index].value} {alt[index].unit}" for alt in alternatives[1:] if index < len(alt)]
            if others:
                row.note = " ".join(filter(None, [row.note, "= " + " = ".join(others)]))
        return rows

    def data_rows(self, data: Any, *, prefix: str = "") -> tuple[list[_Row], list[str]]:
        rows: list[_Row] = []
        texts: list[str] = []
        for entry in data or []:
            if "quantity" in entry:
                rows.extend(self.quantity_rows(entry["quantity"], prefix=prefix))
            elif "list" in entry:
                dcc_list = entry["list"]
                list_name = self.text(dcc_list.get("name"))
                inner = f"{prefix} – {list_name}" if prefix and list_name else (list_name or prefix)
                list_rows, list_texts = self.data_rows(dcc_list.get("data"), prefix=inner)
                rows.extend(list_rows)
                texts.extend(list_texts)
            elif "text" in entry:
                texts.append(self.text(entry["text"]))
        return rows, [text for text in texts if text]

    # --- sections

    def statement(self, statement: dict[str, Any]) -> _Section:
        rows, texts = self.data_rows(statement.get("data"))
        facts = [("Norm", norm) for norm in statement.get("norms", [])]
        facts += [("Reference", reference) for reference in statement.get("references", [])]
        for key, label in (("convention", "Convention"), ("date", "Date"), ("conformity", "Conformity")):
            if key in statement:
                facts.append((label, str(statement[key])))
        if "traceable" in statement:
            facts.append(("Traceable", "yes" if statement["traceable"] else "no"))
        if "respAuthority" in statement:
            facts.append(("Authority", self.text(statement["respAuthority"].get("name"))))
        declaration = self.text(statement.get("declaration"))
        return _Section(
            title=self.text(statement.get("name")),
            description=self.text(statement.get("description")),
            texts=[text for text in [declaration, *texts] if text],
            facts=facts,
            rows=rows,
        )

    def item(self, item: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
        rows: list[_Row] = []
        for quantity in item.get("itemQuantities", []):
            rows.extend(self.quantity_rows(quantity))
        facts = []
        manufacturer = item.get("manufacturer") or {}
        if manufacturer:
            facts.append(("Manufacturer", self.text(manufacturer.get("name"))))
        if "model" in item:
            facts.append(("Model", str(item["model"])))
        facts.extend(self.identifications(item.get("identifications")))
        for equipment_class in item.get("equipmentClasses", []):
            reference = f"{equipment_class.get('reference', '')} {equipment_class.get('classID', '')}"
            facts.append(("Class", reference.strip()))
        out = [
            {
                "name": self.text(item.get("name")) or "Item",
                "description": self.text(item.get("description")),
                "facts": facts,
                "rows": rows,
                "depth": depth,
            }
        ]
        for sub_item in item.get("subItems", []):
            out.extend(self.item(sub_item, depth + 1))
        return out

    def measurement_result(self, result: dict[str, Any]) -> dict[str, Any]:
        methods = []
        for method in result.get("usedMethods", []):
            norms = ", ".join(method.get("norms", []))
            methods.append(
                {
                    "name": self.text(method.get("name")),
                    "description": self.text(method.get("description")),
                    "norms": norms,
                }
            )
        condition_rows: list[_Row] = []
        for condition in result.get("influenceConditions", []):
            rows, _ = self.data_rows(condition.get("data"), prefix=self.text(condition.get("name")))
            condition_rows.extend(rows)
        equipment = [
            {
                "name": self.text(item.get("name")),
                "facts": self.identifications(item.get("identifications")),
            }
            for item in result.get("measuringEquipments", [])
        ]
        sections = []
        for part in result.get("results", []):
            rows, texts = self.data_rows(part.get("data"))
            sections.append(
                _Section(
                    title=self.text(part.get("name")),
                    description=self.text(part.get("description")),
                    texts=texts,
                    rows=rows,
                )
            )
        return {
            "name": self.text(result.get("name")) or "Measurement results",
            "description": self.text(result.get("description")),
            "methods": methods,
            "equipment": equipment,
            "conditions": condition_rows,
            "results": sections,
            "meta": [self.statement(meta) for meta in result.get("measurementMetaData", [])],
        }


def _core_facts(core: dict[str, Any]) -> list[tuple[str, str]]:
    begin, end = core.get("beginPerformanceDate", ""), core.get("endPerformanceDate", "")
    performance = begin if begin == end else " – ".join(filter(None, [begin, end]))
    facts = [
        ("Certificate number", core.get("uniqueIdentifier", "")),
        ("Date of issue", core.get("issueDate", "")),
        ("Date(s) of calibration", performance),
        ("Item received", core.get("receiptDate", "")),
        ("Place of calibration", core.get("performanceLocation", "")),
        ("Country", core.get("countryCode", "")),
        ("Languages", ", ".join(core.get("usedLanguages", []))),
    ]
    change = core.get("reportAmendedSubstituted") or {}
    if change:
        replaced = f"{change.get('typeOfChange', '')}: {change.get('replacedUniqueIdentifier', '')}"
        facts.append(("Replaces", replaced))
    return [(label, str(value)) for label, value in facts if value]


@cache
def _environment() -> Environment:
    # autoescape=True (not select_autoescape): every template rendered here is HTML.
    environment = Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment


def render_certificate_html(
    root: etree._Element,
    *,
    title: str | None = None,
    status: str | None = None,
    details: dict[str, str] | None = None,
) -> str:
    """Render a DCC as a readable, self-contained HTML page with an optional status banner."""
    document = dcc_to_json(root)
    page = _Page(document)
    admin = document.get("administrativeData") or {}
    core = admin.get("coreData") or {}
    identifier = str(core.get("uniqueIdentifier", ""))
    lab = admin.get("calibrationLaboratory") or {}
    persons = [
        {
            "name": page.text(person.get("name")),
            "role": str(person.get("role", "")),
            "main_signer": bool(person.get("mainSigner")),
        }
        for person in admin.get("respPersons", [])
    ]
    items = [entry for item in admin.get("items", []) for entry in page.item(item)]
    context = {
        "lang": page.language,
        "title": title or (f"Calibration certificate {identifier}" if identifier else "Calibration certificate"),
        "status": status or "",
        "status_tone": _STATUS_TONES.get((status or "").strip().lower(), "neutral"),
        "details": list((details or {}).items()),
        "schema_version": root.get("schemaVersion") or "",
        "identifier": identifier,
        "core": _core_facts(core),
        "core_identifications": page.identifications(core.get("identifications")),
        "items": items,
        "lab": page.contact(lab.get("contact")),
        "lab_code": str(lab.get("code", "")),
        "customer": page.contact(admin.get("customer")),
        "persons": persons,
        "statements": [page.statement(statement) for statement in admin.get("statements", [])],
        "results": [page.measurement_result(result) for result in document.get("measurementResults", [])],
    }
    return _environment().get_template("certificate.html").render(**context)
