"""Code lists (L3.5): the hub's vocabularies and how source codes (statuses, flags, alarm types) map onto them.

Every hub term is a SKOS concept of the hub ontology (`qh:<scheme>-<term>`, with English and Chinese labels in
ontologies/qihub.ttl), so fused records point at shared terms whatever source they came from. Source codes are
matched after folding case, spaces, dashes and underscores ("Sample_Received", "sample received" and
"SAMPLE-RECEIVED" are one code); an unmapped code is quarantined as `unknown-code`, never passed through.
Adapters publish the lists they use through `Adapter.code_lists()` (e.g. `source_code_list("senaite.sample")`).
"""

import re
import unicodedata
from dataclasses import dataclass

from adapters.framework import UNKNOWN_CODE, QuarantineError

QH = "https://qihub.example/ns#"


@dataclass(frozen=True)
class HubTerm:
    """One term of a hub vocabulary with its labels."""

    code: str
    en: str
    zh: str


@dataclass(frozen=True)
class Vocabulary:
    """A hub vocabulary (a SKOS concept scheme) and its terms."""

    scheme: str  # local name of the scheme's concepts' prefix, e.g. "sampleStatus"
    en: str
    zh: str
    terms: tuple[HubTerm, ...]

    def iri(self, code: str) -> str:
        """The concept IRI of one of its terms."""
        return f"{QH}{self.scheme}-{code}"

    @property
    def scheme_iri(self) -> str:
        """The IRI of its SKOS concept scheme (e.g. qh:SampleStatuses)."""
        return f"{QH}{_SCHEME_NAMES[self.scheme]}"

    @property
    def codes(self) -> frozenset[str]:
        """The codes of its terms."""
        return frozenset(term.code for term in self.terms)


_SCHEME_NAMES = {
    "sampleStatus": "SampleStatuses",
    "resultStatus": "ResultStatuses",
    "equipmentStatus": "EquipmentStatuses",
    "videoEventType": "VideoEventTypes",
    "calibrationResult": "CalibrationResults",
    "complaintStatus": "ComplaintStatuses",
    "environmentQuantity": "EnvironmentQuantities",
}


def _terms(*rows: tuple[str, str, str]) -> tuple[HubTerm, ...]:
    return tuple(HubTerm(code, en, zh) for code, en, zh in rows)


SAMPLE_STATUS = Vocabulary(
    "sampleStatus",
    "sample statuses",
    "样品状态",
    _terms(
        ("registered", "registered", "已登记"),
        ("due", "due (awaiting receipt)", "待接收"),
        ("received", "received", "已接收"),
        ("in-testing", "in testing", "检测中"),
        ("verified", "verified", "已审核"),
        ("published", "published (report issued)", "已发布报告"),
        ("cancelled", "cancelled", "已取消"),
        ("rejected", "rejected", "已拒收"),
        ("invalidated", "invalidated", "已作废"),
    ),
)
RESULT_STATUS = Vocabulary(
    "resultStatus",
    "test result statuses",
    "检测结果状态",
    _terms(
        ("unverified", "unverified", "待审核"),
        ("verified", "verified", "已审核"),
        ("retracted", "retracted", "已撤回"),
        ("rejected", "rejected", "已拒绝"),
    ),
)
EQUIPMENT_STATUS = Vocabulary(
    "equipmentStatus",
    "equipment statuses",
    "设备状态",
    _terms(
        ("idle", "idle", "空闲"),
        ("running", "running", "运行"),
        ("fault", "fault", "故障"),
        ("maintenance", "maintenance", "维护"),
        ("offline", "offline", "离线"),
    ),
)
VIDEO_EVENT_TYPE = Vocabulary(
    "videoEventType",
    "video event types",
    "视频事件类型",
    _terms(
        ("person-entered", "person entered", "人员进入"),
        ("person-left", "person left", "人员离开"),
        ("sample-handled", "sample handled", "样品操作"),
        ("ppe-missing", "protective equipment missing", "未穿戴防护用品"),
        ("intrusion", "intrusion into a restricted area", "区域入侵"),
        ("camera-tampering", "camera tampering", "摄像机遮挡或破坏"),
        ("motion", "motion detected", "移动侦测"),
    ),
)
CALIBRATION_RESULT = Vocabulary(
    "calibrationResult",
    "calibration results",
    "校准结论",
    _terms(
        ("pass", "pass", "合格"),
        ("fail", "fail", "不合格"),
        ("adjusted", "adjusted", "已调整"),
        ("limited", "limited use", "限用"),
    ),
)
COMPLAINT_STATUS = Vocabulary(
    "complaintStatus",
    "complaint statuses",
    "投诉状态",
    _terms(
        ("received", "received", "已受理登记"),
        ("accepted", "accepted", "已受理"),
        ("in-progress", "in progress", "处理中"),
        ("closed", "closed", "已办结"),
        ("rejected", "rejected", "不予受理"),
    ),
)
ENVIRONMENT_QUANTITY = Vocabulary(
    "environmentQuantity",
    "environmental quantities",
    "环境参数",
    _terms(
        ("temperature", "temperature", "温度"),
        ("relative-humidity", "relative humidity", "相对湿度"),
        ("co2", "carbon dioxide concentration", "二氧化碳浓度"),
        ("illuminance", "illuminance", "照度"),
        ("humidity-ratio", "humidity ratio", "含湿量"),
        ("pressure", "air pressure", "气压"),
        ("pm2-5", "PM2.5 mass concentration", "PM2.5 浓度"),
    ),
)
VOCABULARIES: dict[str, Vocabulary] = {
    vocabulary.scheme: vocabulary
    for vocabulary in (
        SAMPLE_STATUS,
        RESULT_STATUS,
        EQUIPMENT_STATUS,
        VIDEO_EVENT_TYPE,
        CALIBRATION_RESULT,
        COMPLAINT_STATUS,
        ENVIRONMENT_QUANTITY,
    )
}

# QUDT quantity kinds of the environmental quantities (the observed property's kind in the graph).
QUANTITY_KINDS: dict[str, str] = {
    "temperature": "Temperature",
    "relative-humidity": "RelativeHumidity",
    "co2": "MoleFraction",
    "illuminance": "Illuminance",
    "humidity-ratio": "MassRatio",
    "pressure": "Pressure",
    "pm2-5": "MassConcentration",
}


@dataclass(frozen=True)
class SourceCodeList:
    """How one source's codes of one kind become terms of a hub vocabulary."""

    name: str  # "<source>.<what>", e.g. "senaite.sample"
    vocabulary: Vocabulary
    codes: dict[str, str]  # source code → hub code


# Source code lists. SENAITE review states are from its workflow definitions (senaite.core); the generic lists
# cover the English and Chinese spellings LIMS exports, PLC/OPC UA status words and camera alarm types use.
SOURCE_CODE_LISTS: dict[str, SourceCodeList] = {
    code_list.name: code_list
    for code_list in (
        SourceCodeList(
            "senaite.sample",
            SAMPLE_STATUS,
            {
                "sample_registered": "registered",
                "scheduled_sampling": "registered",
                "to_be_sampled": "registered",
                "sample_due": "due",
                "sample_received": "received",
                "to_be_verified": "in-testing",
                "verified": "verified",
                "published": "published",
                "cancelled": "cancelled",
                "rejected": "rejected",
                "invalid": "invalidated",
            },
        ),
        SourceCodeList(
            "senaite.analysis",
            RESULT_STATUS,
            {
                "unassigned": "unverified",
                "assigned": "unverified",
                "to_be_verified": "unverified",
                "verified": "verified",
                "published": "verified",
                "retracted": "retracted",
                "rejected": "rejected",
            },
        ),
        SourceCodeList(
            "generic.sample",
            SAMPLE_STATUS,
            {
                "registered": "registered",
                "登记": "registered",
                "已登记": "registered",
                "due": "due",
                "待接收": "due",
                "received": "received",
                "已接收": "received",
                "收样": "received",
                "testing": "in-testing",
                "in testing": "in-testing",
                "检测中": "in-testing",
                "verified": "verified",
                "已审核": "verified",
                "published": "published",
                "issued": "published",
                "已发布": "published",
                "cancelled": "cancelled",
                "canceled": "cancelled",
                "已取消": "cancelled",
                "rejected": "rejected",
                "拒收": "rejected",
            },
        ),
        SourceCodeList(
            "generic.result",
            RESULT_STATUS,
            {
                "unverified": "unverified",
                "pending": "unverified",
                "待审核": "unverified",
                "verified": "verified",
                "approved": "verified",
                "已审核": "verified",
                "retracted": "retracted",
                "撤回": "retracted",
                "rejected": "rejected",
                "已拒绝": "rejected",
            },
        ),
        SourceCodeList(
            "generic.equipment",
            EQUIPMENT_STATUS,
            {
                "idle": "idle",
                "ready": "idle",
                "standby": "idle",
                "stopped": "idle",
                "空闲": "idle",
                "待机": "idle",
                "running": "running",
                "run": "running",
                "busy": "running",
                "measuring": "running",
                "execute": "running",
                "运行": "running",
                "运行中": "running",
                "fault": "fault",
                "error": "fault",
                "alarm": "fault",
                "aborted": "fault",
                "故障": "fault",
                "报警": "fault",
                "maintenance": "maintenance",
                "service": "maintenance",
                "calibrating": "maintenance",
                "维护": "maintenance",
                "保养": "maintenance",
                "offline": "offline",
                "disconnected": "offline",
                "off": "offline",
                "离线": "offline",
            },
        ),
        SourceCodeList(
            "generic.video-alarm",
            VIDEO_EVENT_TYPE,
            {
                "person_entered": "person-entered",
                "enter": "person-entered",
                "regionentrance": "person-entered",
                "人员进入": "person-entered",
                "person_left": "person-left",
                "exit": "person-left",
                "regionexiting": "person-left",
                "人员离开": "person-left",
                "sample_handled": "sample-handled",
                "样品操作": "sample-handled",
                "no_ppe": "ppe-missing",
                "ppe_missing": "ppe-missing",
                "未穿戴防护": "ppe-missing",
                "intrusion": "intrusion",
                "fielddetection": "intrusion",
                "linedetection": "intrusion",
                "区域入侵": "intrusion",
                "tampering": "camera-tampering",
                "shelteralarm": "camera-tampering",
                "videoloss": "camera-tampering",
                "遮挡报警": "camera-tampering",
                "motion": "motion",
                "vmd": "motion",
                "移动侦测": "motion",
            },
        ),
        SourceCodeList(
            "generic.calibration",
            CALIBRATION_RESULT,
            {
                "pass": "pass",
                "passed": "pass",
                "conform": "pass",
                "合格": "pass",
                "fail": "fail",
                "failed": "fail",
                "不合格": "fail",
                "adjusted": "adjusted",
                "已调整": "adjusted",
                "limited": "limited",
                "限用": "limited",
                "降级使用": "limited",
            },
        ),
        SourceCodeList(
            "generic.complaint",
            COMPLAINT_STATUS,
            {
                "received": "received",
                "new": "received",
                "已登记": "received",
                "accepted": "accepted",
                "已受理": "accepted",
                "in_progress": "in-progress",
                "processing": "in-progress",
                "处理中": "in-progress",
                "closed": "closed",
                "resolved": "closed",
                "已办结": "closed",
                "rejected": "rejected",
                "不予受理": "rejected",
            },
        ),
        SourceCodeList(
            "generic.environment-quantity",
            ENVIRONMENT_QUANTITY,
            {
                "temperature": "temperature",
                "temp": "temperature",
                "t": "temperature",
                "温度": "temperature",
                "humidity": "relative-humidity",
                "relative humidity": "relative-humidity",
                "rh": "relative-humidity",
                "湿度": "relative-humidity",
                "相对湿度": "relative-humidity",
                "co2": "co2",
                "二氧化碳": "co2",
                "light": "illuminance",
                "illuminance": "illuminance",
                "lux": "illuminance",
                "照度": "illuminance",
                "humidityratio": "humidity-ratio",
                "humidity ratio": "humidity-ratio",
                "含湿量": "humidity-ratio",
                "pressure": "pressure",
                "气压": "pressure",
                "pm2.5": "pm2-5",
                "pm25": "pm2-5",
            },
        ),
    )
}


def fold_code(code: str) -> str:
    """A source code folded for matching: case, width, spaces, dashes and underscores do not matter."""
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", code).casefold())


_FOLDED: dict[str, dict[str, str]] = {
    name: {fold_code(source): hub for source, hub in code_list.codes.items()}
    for name, code_list in SOURCE_CODE_LISTS.items()
}


def map_code(code_list: str, source_code: str) -> str:
    """The hub term of a source code in a code list; `QuarantineError("unknown-code")` when it has none."""
    folded = _FOLDED.get(code_list)
    if folded is None:
        raise KeyError(f"No code list {code_list!r}")
    hub = folded.get(fold_code(source_code))
    if hub is None:
        raise QuarantineError(UNKNOWN_CODE, f"{source_code!r} is not a known code of {code_list}.")
    return hub


def source_code_list(name: str) -> dict[str, str]:
    """One source code list as `Adapter.code_lists()` publishes it (source code → hub term)."""
    return dict(SOURCE_CODE_LISTS[name].codes)


def concept_iri(scheme: str, code: str) -> str:
    """The concept IRI of a hub term (`KeyError` when the scheme has no such term)."""
    vocabulary = VOCABULARIES[scheme]
    if code not in vocabulary.codes:
        raise KeyError(f"{code!r} is not a term of {scheme}")
    return vocabulary.iri(code)


def vocabulary_turtle() -> str:
    """The hub vocabularies as Turtle (SKOS concept schemes with en/zh labels), as kept in ontologies/qihub.ttl."""
    lines = []
    for vocabulary in VOCABULARIES.values():
        scheme = f"qh:{_SCHEME_NAMES[vocabulary.scheme]}"
        lines.append(
            f'{scheme} a skos:ConceptScheme ;\n    skos:prefLabel "{vocabulary.en}"@en , "{vocabulary.zh}"@zh .'
        )
        for term in vocabulary.terms:
            lines.append(
                f"qh:{vocabulary.scheme}-{term.code} a skos:Concept ; skos:inScheme {scheme} ; "
                f'skos:notation "{term.code}" ;\n    skos:prefLabel "{term.en}"@en , "{term.zh}"@zh .'
            )
        lines.append("")
    return "\n".join(lines)
