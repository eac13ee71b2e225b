"""Deterministic IRIs of what adapters describe, from the authoritative identifiers of each thing.

Companion of graph.iris (instruments and standards come from there): organisations by their 统一社会信用代码,
labs by their CNAS/CMA number, samples and orders by the lab's coding rules (lab + code), rooms and sensors by
their hub-wide codes. Two adapters describing the same thing mint the same IRI, so
their graphs join; readings keyed by sensor + quantity + time are the same node however often they are fused.
"""

import hashlib
import re
from functools import lru_cache
from urllib.parse import quote

from graph.iris import GRAPH_BASE, ID_BASE

UNKNOWN_SCOPE = "_"  # stands for "no lab given" inside an IRI path


@lru_cache(maxsize=8192)  # rooms, sensors, labs and items repeat in every batch
def _slug(text: str) -> str:
    cleaned = re.sub(r"\s+", " ", text.strip())
    return quote(cleaned.replace(" ", "_"), safe="-_.~")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _number(text: str) -> str:
    # "cnas  l0001" and "CNAS L0001" are one accreditation number.
    return re.sub(r"\s+", " ", text.strip()).upper()


def adapter_graph_iri(instance_id: str) -> str:
    """The named graph holding everything one adapter instance fused."""
    return f"{GRAPH_BASE}adapter/{_slug(instance_id)}"


def adapter_instance_iri(instance_id: str) -> str:
    """An adapter instance as deployed."""
    return f"{ID_BASE}adapter-instance/{_slug(instance_id)}"


def adapter_software_iri(adapter: str, version: str) -> str:
    """A plug-in at one version (the prov:SoftwareAgent its records are attributed to)."""
    return f"{ID_BASE}adapter/{_slug(adapter)}/{_slug(version)}"


def landing_message_iri(message_id: int) -> str:
    """A raw message of the landing zone (what a fused record was derived from)."""
    return f"{ID_BASE}landing-message/{message_id}"


def credit_code_organization_iri(credit_code: str) -> str:
    """A Chinese legal entity by its 统一社会信用代码 (18 characters; case-insensitive)."""
    return f"{ID_BASE}uscc/{_slug(credit_code.strip().upper())}"


def lab_iri(lab_number: str) -> str:
    """A lab by its CNAS or CMA number (e.g. 'CNAS L0001'; case and spacing do not matter)."""
    return f"{ID_BASE}lab/{_slug(_number(lab_number))}"


def sample_iri(lab_number: str | None, sample_code: str) -> str:
    """A sample by its lab and the sample code the lab's coding rules gave it."""
    lab = _slug(_number(lab_number)) if lab_number else UNKNOWN_SCOPE
    return f"{ID_BASE}sample/{lab}/{_slug(sample_code)}"


def order_iri(lab_number: str | None, order_code: str) -> str:
    """A test order (委托单) by its lab and order code."""
    lab = _slug(_number(lab_number)) if lab_number else UNKNOWN_SCOPE
    return f"{ID_BASE}order/{lab}/{_slug(order_code)}"


def result_iri(lab_number: str | None, result_id: str) -> str:
    """One test result (an observation) by its lab and the LIMS's result id."""
    lab = _slug(_number(lab_number)) if lab_number else UNKNOWN_SCOPE
    return f"{ID_BASE}test-result/{lab}/{_slug(result_id)}"


def item_property_iri(lab_number: str | None, keyword: str) -> str:
    """A lab's test item (analysis service keyword): the property its results observe."""
    lab = _slug(_number(lab_number)) if lab_number else UNKNOWN_SCOPE
    return f"{ID_BASE}test-item/{lab}/{_slug(keyword)}"


def room_iri(room: str) -> str:
    """A room by its hub-wide room code (environment limits are keyed by the same code)."""
    return f"{ID_BASE}room/{_slug(room)}"


def sensor_iri(sensor_id: str) -> str:
    """An environment sensor or camera by its device id (hub-wide, like a MAC address or serial)."""
    return f"{ID_BASE}sensor/{_slug(sensor_id)}"


def observable_property_iri(name: str) -> str:
    """A hub observable property (environmental quantity, equipment state, video activity)."""
    return f"{ID_BASE}property/{_slug(name)}"


def environment_observation_iri(sensor_id: str, quantity: str, observed_at: str) -> str:
    """One environment reading: sensor, quantity and time (ISO 8601, UTC) identify it."""
    return f"{ID_BASE}environment-observation/{_digest(sensor_id, quantity, observed_at)}"


def equipment_status_iri(instrument: str, observed_at: str) -> str:
    """One reported state of an instrument (the instrument's IRI and the time identify it)."""
    return f"{ID_BASE}equipment-status/{_digest(instrument, observed_at)}"


def video_event_iri(camera_id: str, event_id: str) -> str:
    """A video analytics event by its camera and the camera's event id."""
    return f"{ID_BASE}video-event/{_slug(camera_id)}/{_slug(event_id)}"


def calibration_event_iri(certificate_number: str) -> str:
    """A calibration by the number of the certificate reporting it."""
    return f"{ID_BASE}calibration-event/{_slug(_number(certificate_number))}"


def complaint_iri(complaint_id: str) -> str:
    """A complaint by its id (platform-wide)."""
    return f"{ID_BASE}complaint/{_slug(complaint_id)}"
