"""Seeded synthetic DCCs for the SPARQL benchmark: real DCC 3.3.0 XML, shaped like the labs' certificates.

One template is built once from the hub's own example submission (`tests/certificates/data/
submission-thermometer.json`) with `certificates.dcc_json.build_dcc_xml`, so it is schema-valid DCC XML with
the same structure as a real thermometer certificate: one item, a calibration with two methods and a
reference standard, influence conditions, a result table of reference values (hybrid, two units), indicated
values, errors with expanded uncertainties and acceptance limits, and a self-heating value: 21 D-SI values in
the results section, 28 in all. Each certificate is the template with its own identifier, lab, item
(manufacturer, model, serial), dates, unit family and values: building XML per certificate through the JSON
builder would cost ~40 ms each, a byte substitution costs microseconds, and the mapper still parses and maps
genuine DCC XML.

Traceability: certificates 0..NMI_COUNT-1 are national standards calibrated by national metrology institutes;
the next LAB_COUNT * STANDARDS_PER_LAB are the labs' working standards (derived from an NMI certificate);
every other certificate names one of its lab's working standards as reference equipment, which the mapper's
`resolve_reference` (given the standards' certificates) turns into `prov:wasDerivedFrom` links (depth 2).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from certificates.dcc_json import build_dcc_xml
from certificates.models import Certificate, CertificateStatus

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBMISSION = REPO_ROOT / "tests/certificates/data/submission-thermometer.json"

NMI_COUNT = 5
LAB_COUNT = 20
STANDARDS_PER_LAB = 3
REFERENCE_COUNT = NMI_COUNT + LAB_COUNT * STANDARDS_PER_LAB
MANUFACTURERS = ["Fluke", "WIKA", "Endress+Hauser", "Yokogawa", "Keysight", "Vaisala", "Beamex", "Hioki"]
MODELS = [f"M-{number}" for number in range(1, 25)]
# D-SI unit pairs replacing the template's (\kelvin, \degreecelsius), with a value scale per family.
UNIT_FAMILIES: list[tuple[str, str, float]] = [
    ("\\kelvin", "\\degreecelsius", 1.0),
    ("\\kilo\\pascal", "\\bar", 0.01),
    ("\\volt", "\\milli\\volt", 1000.0),
    ("\\metre", "\\milli\\metre", 1000.0),
]

# Sentinels written into the template; each is replaced per certificate.
UID, SERIAL, MODEL, MAKER = "QHXUIDX", "QHXSERIALX", "QHXMODELX", "QHXMAKERX"
LAB_NAME, LAB_CODE, EQ_SERIAL = "QHXLABNAMEX", "QHXLABCODEX", "QHXEQSERIALX"
DATES = {"receipt": "2001-01-01", "begin": "2001-01-02", "end": "2001-01-03", "issue": "2001-01-04"}
RECALIBRATION = "2001-01-05"
POINTS = 5


@dataclass(frozen=True)
class Lab:
    """A calibration lab (or a national metrology institute) of the synthetic population."""

    organization_id: str
    name: str
    code: str


@dataclass(frozen=True)
class SyntheticCertificate:
    """One generated certificate: its DCC XML and the registry entry the mapper needs next to it."""

    xml: bytes
    certificate: Certificate
    lab: Lab


def _template_submission() -> dict:
    submission = json.loads(SUBMISSION.read_text())
    admin = submission["administrativeData"]
    core = admin["coreData"]
    core["uniqueIdentifier"] = UID
    core["receiptDate"], core["beginPerformanceDate"] = DATES["receipt"], DATES["begin"]
    core["endPerformanceDate"], core["issueDate"] = DATES["end"], DATES["issue"]
    item = admin["items"][0]
    item["manufacturer"]["name"] = MAKER
    item["model"] = MODEL
    item["identifications"][0]["value"] = SERIAL
    admin["calibrationLaboratory"]["code"] = LAB_CODE
    admin["calibrationLaboratory"]["contact"]["name"] = LAB_NAME
    for statement in admin["statements"]:
        if statement.get("refType") == "basic_recalibration":
            statement["date"] = RECALIBRATION
    result = submission["measurementResults"][0]
    # ~20 values in the results section; the acceptance limits and the humidity condition are left out.
    result["influenceConditions"] = result["influenceConditions"][:1]
    result["results"][0]["data"][0]["list"]["data"][2]["quantity"].pop("measurementMetaData", None)
    equipment = result["measuringEquipments"][0]
    equipment["identifications"] = [
        {"issuer": "manufacturer", "value": EQ_SERIAL, "name": {"en": "Serial number"}},
    ]
    return submission


@cache
def template() -> bytes:
    """The DCC XML every synthetic certificate is made from (built once)."""
    return build_dcc_xml(_template_submission())


def _value_lists() -> dict[str, list[str]]:
    """The template's result value lists, as they appear in the XML (space-separated)."""
    table = _template_submission()["measurementResults"][0]["results"][0]["data"][0]["list"]["data"]
    reference = table[0]["quantity"]["hybrid"]["realListXMLList"]
    indicated = table[1]["quantity"]["realListXMLList"]
    error = table[2]["quantity"]["realListXMLList"]
    return {
        "reference_si": reference[0]["valueXMLList"],
        "reference_alt": reference[1]["valueXMLList"],
        "indicated": indicated["valueXMLList"],
        "error": error["valueXMLList"],
        "uncertainty": error["uncertainty"]["expanded"]["uncertaintyXMLList"],
    }


def _labs(rng: random.Random) -> tuple[list[Lab], list[Lab]]:
    def lab(kind: str, number: int) -> Lab:
        return Lab(str(uuid.UUID(int=rng.getrandbits(128))), f"{kind} {number:02d}", f"CNAS L{number:04d}")

    nmis = [lab("National Metrology Institute", number) for number in range(1, NMI_COUNT + 1)]
    labs = [lab("Calibration Lab", number) for number in range(1, LAB_COUNT + 1)]
    return nmis, labs


def _decimal(value: float, places: int) -> str:
    return f"{value:.{places}f}"


def generate(count: int, *, seed: int = 20261122) -> Iterator[SyntheticCertificate]:
    """`count` certificates, the same ones for the same seed (the first REFERENCE_COUNT are standards)."""
    rng = random.Random(seed)
    base = template()
    lists = _value_lists()
    nmis, labs = _labs(rng)
    for index in range(count):
        if index < NMI_COUNT:
            lab, reference_serial = nmis[index], None
            maker, model, serial = "Fluke", "5699", f"NS-{index:03d}"
        elif index < REFERENCE_COUNT:
            position = index - NMI_COUNT
            lab = labs[position // STANDARDS_PER_LAB]
            reference_serial = f"NS-{position % NMI_COUNT:03d}"
            maker, model, serial = "Fluke", "5615", f"WS-{position:04d}"
        else:
            lab_number = rng.randrange(LAB_COUNT)
            lab = labs[lab_number]
            reference_serial = f"WS-{lab_number * STANDARDS_PER_LAB + rng.randrange(STANDARDS_PER_LAB):04d}"
            maker, model, serial = rng.choice(MANUFACTURERS), rng.choice(MODELS), f"SN-{index:07d}"
        si_unit, alt_unit, scale = UNIT_FAMILIES[index % len(UNIT_FAMILIES)]
        end = date(2020, 1, 1) + timedelta(days=rng.randrange(6 * 365))
        dates = {
            "receipt": end - timedelta(days=7),
            "begin": end - timedelta(days=1),
            "end": end,
            "issue": end + timedelta(days=2),
        }
        points = sorted(rng.uniform(0, 400) for _ in range(POINTS))
        errors = [rng.gauss(0, 0.05) for _ in range(POINTS)]
        values = {
            "reference_si": [_decimal(point + 273.15, 3) for point in points],
            "reference_alt": [_decimal(point * scale, 3) for point in points],
            "indicated": [_decimal((point + error) * scale, 3) for point, error in zip(points, errors, strict=True)],
            "error": [_decimal(error, 3) for error in errors],
            "uncertainty": [_decimal(rng.uniform(0.01, 0.08), 3) for _ in range(POINTS)],
        }
        identifier = f"BENCH-{index:07d}"
        xml = base
        for key, template_values in lists.items():
            xml = xml.replace(" ".join(template_values).encode(), " ".join(values[key]).encode(), 1)
        substitutions = {
            UID: identifier,
            SERIAL: serial,
            MODEL: model,
            MAKER: maker,
            LAB_NAME: lab.name,
            LAB_CODE: lab.code,
            EQ_SERIAL: reference_serial or "NONE",
            RECALIBRATION: (end + timedelta(days=365)).isoformat(),
            "\\kelvin": si_unit,
            "\\degreecelsius": alt_unit,
            **{DATES[key]: day.isoformat() for key, day in dates.items()},
        }
        for old, new in substitutions.items():
            xml = xml.replace(old.encode(), new.encode())
        certificate = Certificate(
            id=str(uuid.UUID(int=rng.getrandbits(128))),
            organization_id=lab.organization_id,
            unique_identifier=identifier,
            item_manufacturer=maker,
            item_model=model,
            item_serial=serial,
            performance_begin=dates["begin"],
            performance_end=dates["end"],
            issue_date=dates["issue"],
            status=CertificateStatus.issued,
            public=True,
            schema_version="3.3.0",
            sha256=f"{index:064x}",
            content_type="application/xml",
            size=len(xml),
        )
        yield SyntheticCertificate(xml=xml, certificate=certificate, lab=lab)
