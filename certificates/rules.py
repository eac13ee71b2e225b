"""Semantic rules for DCC documents (what the XSD cannot express), for every DCC version 2.1.0-3.3.0.

The rules mirror PTB's Schematron (`dcc.sch` in dcclib 0.4.0) and add checks users need (D-SI unit
syntax, date order, uncertainty sanity, list lengths). Elements are matched by local name within the
document's DCC namespace (the root's) and the D-SI namespace (any version, incl. the 2.1.x intranet
and smartcom URIs), so foreign content (ds:Signature, MathML, extensions) is never inspected.
Deliberate deviations from dcc.sch are noted at the rule; `RULES` lists every rule for the docs.
Speed (ingest runs this on every upload): lxml filters the tree in C, so Python sees only the elements the
rules look at, once; XPaths and Finding objects are built only for the elements that get a finding. A 25 KB
certificate takes ~0.6 ms; a third of that is lxml and pydantic (id XPath, tag filter, getpath, validation).
A verdict-only run (batch ingest: a valid document's warnings are not part of its answer) skips the rules and
parts of rules that can only give warnings; the full run is made if the findings are asked for after all.
"""

import math
import re
from collections import defaultdict
from datetime import date
from functools import lru_cache
from itertools import pairwise

from lxml import etree

from certificates.dsi_units import canonical_dsi_unit, check_dsi_unit
from certificates.findings import Finding, Severity
from certificates.xml import ThreadXPath


def _words(text: str) -> frozenset[str]:
    """Return the set of whitespace-separated words in `text` (keeps long vocabularies readable)."""
    return frozenset(text.split())


CURRENT_SCHEMA_VERSION = "3.3.0"

E, W = Severity.error, Severity.warning

# rule id -> (severity, description); the order is the order of the documentation table.
_RULE_TABLE: dict[str, tuple[Severity, str]] = {
    "ref-id-unresolved": (E, "every token of a `refId` attribute names an existing `id` (dcc.sch)"),
    "id-duplicate": (E, "`id` attribute values are unique in the document"),
    "id-unreferenced": (W, "every `id` is referenced by some `refId` (dcc.sch)"),
    "lang-code-invalid": (E, "used/mandatory language codes are ISO 639-1 codes (dcc.sch)"),
    "lang-code-duplicate": (
        E,
        "a language code is declared at most once in `usedLangCodeISO639_1` (dcc.sch)",
    ),
    "mandatory-lang-undeclared": (E, "each `mandatoryLangCodeISO639_1` is also a `usedLangCodeISO639_1`"),
    "country-code-invalid": (E, "`countryCodeISO3166_1` is an ISO 3166-1 alpha-2 code (dcc.sch)"),
    "content-lang-undeclared": (E, "each `dcc:content/@lang` is a declared `usedLangCodeISO639_1` (dcc.sch)"),
    "content-lang-missing": (
        E,
        "an element with language-tagged `dcc:content` has a text in every mandatory language (dcc.sch)",
    ),
    "content-lang-incomplete": (
        W,
        "an element with language-tagged `dcc:content` has a text in every used language; dcc.sch: error",
    ),
    "content-lang-duplicate": (W, "an element has at most one `dcc:content` per language; dcc.sch: error"),
    "content-lang-attribute-missing": (W, "`dcc:content` outside names carries a `lang` attribute (dcc.sch)"),
    "used-methods-missing": (
        E,
        "result quantities have `usedMethods` (globally, per list or per quantity) (dcc.sch; ISO/IEC 17025)",
    ),
    "used-software-missing": (
        W,
        "result quantities have `usedSoftware` (globally, per list or per quantity)",
    ),
    "influence-conditions-missing": (
        W,
        "result quantities have `influenceConditions` (globally, per list or per quantity); dcc.sch: error",
    ),
    "schema-version-outdated": (
        W,
        f"`schemaVersion` is the current release {CURRENT_SCHEMA_VERSION} (dcc.sch)",
    ),
    "software-release-format": (
        W,
        "software `release` looks like `v1.2.3` / `A 1.0`; dcc.sch: error",
    ),
    "unique-identifier-empty": (E, "`coreData/uniqueIdentifier` is present and not blank"),
    "date-invalid": (E, "performance, receipt and issue dates are ISO dates (catches template placeholders)"),
    "date-order": (
        E,
        "beginPerformanceDate ≤ endPerformanceDate ≤ issueDate (dcc.sch checks the first pair)",
    ),
    "receipt-date-order": (W, "the item is received (receiptDate) no later than the calibration ends"),
    "dsi-unit-invalid": (
        E,
        "every unit (`si:unit`, `si:unitXMLList`, list/phase units) outside `si:hybrid` is valid D-SI",
    ),
    "dsi-unit-spelling": (W, "D-SI identifiers are lower case (`\\degreeCelsius` → `\\degreecelsius`)"),
    "dsi-unit-unmarked": (
        W,
        "a non-D-SI unit in an `si:hybrid` alternative carries the non-D-SI marker (leading bar)",
    ),
    "hybrid-without-dsi-unit": (
        E,
        "at least one alternative of an `si:hybrid` uses D-SI units only (D-SI XSD)",
    ),
    "non-si-unit-undeclared": (
        E,
        "a bar-marked non-SI unit in `si:hybrid` is declared in a `dcc:statement/dcc:nonSIUnit` (dcc.sch)",
    ),
    "non-si-definition-unpaired": (
        E,
        "each `dcc:nonSIUnit` has a preceding `dcc:nonSIDefinition` and vice versa (dcc.sch)",
    ),
    "uncertainty-negative": (E, "uncertainty values (standard, expanded, relative) are not negative"),
    "coverage-missing": (
        E,
        "expanded uncertainties carry coverage factor and probability (intervals: probability)",
    ),
    "coverage-probability-range": (E, "coverage probability p satisfies 0 < p ≤ 1"),
    "coverage-factor-range": (E, "coverage factor k satisfies k ≥ 1"),
    "relative-uncertainty-without-absolute": (
        E,
        "a relative uncertainty accompanies an absolute one (dcc.sch)",
    ),
    "relative-uncertainty-mismatch": (
        E,
        "a single relative uncertainty equals U / abs(value) within its rounding (dcc.sch, with a tolerance)",
    ),
    "xmllist-length": (
        E,
        "in an `*XMLList` quantity, labels, units, uncertainties… have 1 entry or one per value (dcc.sch)",
    ),
    "hybrid-length-mismatch": (
        E,
        "the alternative representations inside one `si:hybrid` have equal lengths",
    ),
    "unit-list-redundant": (W, "a `si:unitXMLList` repeating one unit could be a single unit (dcc.sch)"),
    "list-whitespace": (
        W,
        "XML lists and `refId`/`refType` use single spaces, no leading/trailing blanks; dcc.sch: error",
    ),
}

RULES: dict[str, str] = {rule: description for rule, (_, description) in _RULE_TABLE.items()}
SEVERITIES: dict[str, Severity] = {rule: severity for rule, (severity, _) in _RULE_TABLE.items()}

# ISO 639-1 (the list dcc.sch uses; matched exactly, not as a substring as dcc.sch does).
ISO_639_1 = _words(
    "aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz "
    "ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii "
    "ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi "
    "mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw "
    "sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk "
    "ur uz ve vi vo wa wo xh yi yo za zh zu"
)
# ISO 3166-1 alpha-2, all 249 assigned codes (dcc.sch's list omits some, e.g. AF, AL, DZ) plus XK (Kosovo).
ISO_3166_1 = _words(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV "
    "BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES "
    "ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE "
    "IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY "
    "MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU "
    "NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM "
    "SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE "
    "VG VI VN VU WF WS XK YE YT ZA ZM ZW"
)

# dcc.sch's release pattern, e.g. "v1.2.3" or "A 1.0".
_RELEASE = re.compile(r"[a-zA-Z] ?([0-9]{1,3}\.){0,3}[0-9]{1,3}")
# dcc.sch's list pattern: tokens separated by exactly one whitespace character, nothing around them.
_TIDY_LIST = re.compile(r"(\S+\s)*\S+")
_XS_DATE = re.compile(r"(-?\d{4,})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?")

# Leaf lists whose spacing dcc.sch checks.
_SPACED_LISTS = _words(
    "valueXMLList unitXMLList labelXMLList dateTimeXMLList uncertaintyXMLList coverageFactorXMLList "
    "coverageProbabilityXMLList distributionXMLList standardUncXMLList intervalMinXMLList "
    "intervalMaxXMLList"
)
_UNIT_ELEMENTS = frozenset({"unit", "listUnit", "unitPhase", "listUnitPhase"})
_UNIT_LISTS = frozenset({"unitXMLList", "unitPhaseXMLList"})
_UNCERTAINTY_VALUES = _words(
    "uncertainty standardUnc valueStandardMU valueExpandedMU uncertaintyXMLList standardUncXMLList "
    "valueStandardMUXMLList valueExpandedMUXMLList"
)
# container -> (needs coverageFactor, needs coverageProbability); *XMLList containers need the *XMLList forms.
_COVERAGE_CONTAINERS = {
    "expandedUnc": (True, True),
    "expandedMU": (True, True),
    "ellipsoidalRegion": (True, True),
    "rectangularRegion": (True, True),
    "coverageInterval": (False, True),
    "coverageIntervalMU": (False, True),
    "expandedUncXMLList": (True, True),
    "expandedMUXMLList": (True, True),
    "ellipsoidalRegionMUXMLList": (True, True),
    "rectangularRegionMUXMLList": (True, True),
    "ellipsoidalRegionXMLList": (True, True),
    "rectangularRegionXMLList": (True, True),
    "coverageIntervalXMLList": (False, True),
    "coverageIntervalMUXMLList": (False, True),
}
# Multivariate parts of XMLList quantities: covariance entries are not per-value lists.
_MULTIVARIATE = _words(
    "measurementUncertaintyMultivariateXMLList measurementUncertaintyBivariateXMLList "
    "ellipsoidalRegionXMLList rectangularRegionXMLList covarianceMatrixXMLList"
)
_DCC_NAMES = _words(
    "content usedLangCodeISO639_1 mandatoryLangCodeISO639_1 countryCodeISO3166_1 uniqueIdentifier "
    "beginPerformanceDate endPerformanceDate issueDate receiptDate measurementResult list quantity release "
    "nonSIUnit nonSIDefinition relativeUncertainty"
)
_SI_NAMES = (
    _SPACED_LISTS
    | _UNIT_ELEMENTS
    | _UNIT_LISTS
    | _UNCERTAINTY_VALUES
    | frozenset(_COVERAGE_CONTAINERS)
    | frozenset({"coverageFactor", "coverageFactorXMLList", "coverageProbability", "coverageProbabilityXMLList"})
    | frozenset({"realListXMLList", "complexListXMLList", "hybrid"})
)


# Every id-like attribute in the document, with its owner. ids count on any element, as in dcc.sch (a refId
# may point at a MathML formula), so this cannot use the tag filter below. `/descendant::*` visits elements
# only and is ~30 % faster than `//`, which also visits every text node.
_ID_ATTRIBUTES = ThreadXPath("/descendant::*/@id | /descendant::*/@refId | /descendant::*/@refType")
# lxml filters by local name in C, so Python only sees the elements the rules look at. dcc:content (half of
# them) gets its own single-tag walk: it needs no dispatch, and every extra pattern slows the C filter.
_WANTED_TAGS = tuple(sorted(f"{{*}}{name}" for name in (_DCC_NAMES - {"content"}) | _SI_NAMES))
_UNIT_NAMES = _UNIT_ELEMENTS | _UNIT_LISTS
# Checks visit names in these fixed orders (a set's order changes with the hash seed, and with it the order of
# findings that share a line, e.g. in a document written on one line).
_UNIT_ORDER = ("unit", "listUnit", "unitPhase", "listUnitPhase", "unitXMLList", "unitPhaseXMLList")
_UNCERTAINTY_ORDER = tuple(sorted(_UNCERTAINTY_VALUES))
_SPACED_ORDER = tuple(sorted(_SPACED_LISTS))
_UNIT_TAGS = tuple(f"{{*}}{name}" for name in _UNIT_NAMES)

# The model's own validator, called without `Finding(**fields)`'s Python-level overhead: 0.8 µs instead of
# 1.4 µs, and a certificate often has dozens of findings (`model_construct` is slower still: 3 µs).
_validate_finding = Finding.__pydantic_validator__.validate_python

Kind = tuple[str, str]  # ("dcc" | "si" | "", local name)
Hit = tuple[int | None, str, etree._Element, str]  # (source line, rule, element, message) of a finding


def _is_si_namespace(ns: str) -> bool:
    """Tell whether `ns` is a D-SI namespace of any version (ptb.de/si, smartcom d-si, 2.1.0 intranet)."""
    low = ns.lower().rstrip("/")
    return low.startswith("https://ptb.de/si") or "/d-si/" in low or low.endswith("/si")


@lru_cache(maxsize=4096)  # the same tags recur in every certificate; bounded because tags come from uploads
def _tag_kind(dcc_ns: str, tag: str) -> Kind:
    """Classify the qualified tag `{ns}local` of a document whose DCC namespace is `dcc_ns`."""
    ns, _, local = tag.rpartition("}")
    ns = ns[1:]
    return ("dcc" if ns == dcc_ns else "si" if _is_si_namespace(ns) else "", local)


class _Kinds(dict[object, Kind]):
    """Tag -> ("dcc" | "si" | "", local name) in one document; the lookup is a plain dict hit after the first."""

    def __init__(self, dcc_ns: str) -> None:
        super().__init__()
        self.dcc_ns = dcc_ns

    def __missing__(self, tag: object) -> Kind:
        kind = _tag_kind(self.dcc_ns, tag) if isinstance(tag, str) else ("", "")  # comments, PIs: neither
        self[tag] = kind
        return kind


class _Buckets(dict[str, list[etree._Element]]):
    """Tag -> the list of `_Doc.dcc` / `_Doc.si` collecting such elements; each tag is classified once."""

    def __init__(self, doc: "_Doc") -> None:
        super().__init__()
        self.doc = doc

    def __missing__(self, tag: str) -> list[etree._Element]:
        where, local = self.doc.kinds[tag]
        if where == "dcc" and local in _DCC_NAMES:
            bucket = self.doc.dcc[local]
        elif where == "si" and local in _SI_NAMES:
            bucket = self.doc.si[local]
        else:
            bucket = []  # a foreign element that shares a local name: collected nowhere
        self[tag] = bucket
        return bucket


class _Doc:
    """What the rules need from one document, collected in one walk of the tree, and the findings made."""

    def __init__(self, root: etree._Element, *, full: bool = True) -> None:
        self.root = root
        self.full = full  # False: only what can give an error-level finding (the verdict) is checked
        self.kinds = _Kinds(etree.QName(root).namespace or "")
        self.dcc: defaultdict[str, list[etree._Element]] = defaultdict(list)
        self.si: defaultdict[str, list[etree._Element]] = defaultdict(list)
        self.ids: defaultdict[str, list[etree._Element]] = defaultdict(list)
        self.ref_ids: list[tuple[etree._Element, str]] = []
        self.ref_types: list[tuple[etree._Element, str]] = []
        self.hits: list[Hit] = []
        self._named_children: dict[etree._Element, dict[str, etree._Element]] = {}
        for attribute in _ID_ATTRIBUTES(root):
            name = attribute.attrname
            if name == "id":
                self.ids[str(attribute)].append(attribute.getparent())
            elif name == "refId":
                self.ref_ids.append((attribute.getparent(), str(attribute)))
            else:
                self.ref_types.append((attribute.getparent(), str(attribute)))
        self.dcc["content"] = list(root.iter(f"{{{self.kinds.dcc_ns}}}content"))
        buckets = _Buckets(self)
        for el in root.iter(_WANTED_TAGS):
            buckets[el.tag].append(el)

    def local(self, el: etree._Element) -> str:
        """Return the local name of an element of this document."""
        return self.kinds[el.tag][1]

    def named_children(self, el: etree._Element) -> dict[str, etree._Element]:
        """Return local name -> first DCC/D-SI child of `el` (cached: several rules look at the same element)."""
        found = self._named_children.get(el)
        if found is None:
            found = self._named_children[el] = {}
            kinds = self.kinds
            for c in el:  # a Python loop beats lxml's tag filter on the few children DCC elements have
                where, local = kinds[c.tag]
                if where and local not in found:
                    found[local] = c
        return found

    def child(self, el: etree._Element, name: str) -> etree._Element | None:
        """Return the first DCC/D-SI child of `el` named `name`, or None."""
        return self.named_children(el).get(name)

    def children(self, el: etree._Element, name: str) -> list[etree._Element]:
        """Return the DCC/D-SI children of `el` named `name`."""
        kinds = self.kinds
        return [c for c in el if kinds[c.tag] in (("dcc", name), ("si", name))]

    def report(self, rule: str, el: etree._Element, message: str) -> None:
        """Record a finding of `rule` at `el`; the Finding itself is built by `RuleHits.findings`."""
        self.hits.append((el.sourceline, rule, el, message))


class RuleHits:
    """The rules' hits on one document; the Finding objects (with their XPaths) are built only on demand."""

    # A caller that needs only the verdict (the batch ingest of a valid document, whose warnings it does not
    # answer with) skips building them: a fifth of the rules' cost on a certificate with dozens of warnings.

    def __init__(self, root: etree._Element, hits: list[Hit], *, complete: bool = True) -> None:
        self._root = root
        self._hits = hits
        self._complete = complete  # False: a verdict-only run, without the warning-only checks

    @property
    def has_error(self) -> bool:
        """Whether any hit is an error-level finding."""
        return any(SEVERITIES[rule] == Severity.error for _, rule, _, _ in self._hits)

    def findings(self) -> list[Finding]:
        """Return the findings sorted by line, then rule (stable: ties keep the order of the checks)."""
        if not self._complete:
            self._hits = _run(self._root, full=True)
            self._complete = True
        hits = sorted(self._hits, key=_line_and_rule)
        tree = self._root.getroottree()
        paths: dict[etree._Element, str] = {}  # getpath costs µs per deep element; some get several findings
        findings = []
        for line, rule, el, message in hits:
            path = paths.get(el)
            if path is None:
                path = paths[el] = tree.getpath(el)
            fields = {"rule": rule, "severity": SEVERITIES[rule], "message": message, "path": path, "line": line}
            findings.append(_validate_finding(fields))
        return findings


def _line_and_rule(hit: Hit) -> tuple[int, str]:
    """Sort key of a finding: source line (0 when unknown), then rule id."""
    return (hit[0] or 0, hit[1])


def _text(el: etree._Element | None) -> str:
    """Return the stripped text of an element ('' when absent)."""
    return (el.text or "").strip() if el is not None else ""


def _tokens(el: etree._Element | None) -> list[str]:
    """Return the whitespace-separated tokens of an XML list element."""
    return (el.text or "").split() if el is not None else []


def _number(token: str) -> float | None:
    """Parse an xs:double token, None if it is not a number."""
    try:
        return float(token)
    except ValueError:
        return None


# --- references and identifiers -------------------------------------------------------------------


def _check_ids(doc: _Doc) -> None:
    """Unresolved refIds, duplicate ids, unreferenced ids."""
    referenced: set[str] = set()
    for el, value in doc.ref_ids:
        for token in value.split():
            referenced.add(token)
            if token not in doc.ids:
                doc.report("ref-id-unresolved", el, f"refId {token!r} does not name any id in the document")
    full = doc.full
    for value, elements in doc.ids.items():
        for el in elements[1:]:
            doc.report("id-duplicate", el, f"id {value!r} is used {len(elements)} times")
        # only DCC/D-SI ids: a MathML formula id need not be referenced
        if full and value not in referenced and doc.kinds[elements[0].tag][0]:
            doc.report("id-unreferenced", elements[0], f"id {value!r} is not referenced by any refId")


# --- languages and country ------------------------------------------------------------------------


def _check_languages(doc: _Doc) -> None:
    """Declared language codes, country code, and the language tags of dcc:content."""
    used = doc.dcc["usedLangCodeISO639_1"]
    declared = [_text(el) for el in used]
    declared_set = set(declared)
    seen: set[str] = set()
    for el, code in zip(used, declared, strict=True):
        if code not in ISO_639_1:
            doc.report("lang-code-invalid", el, f"{code!r} is not an ISO 639-1 language code")
        if code in seen:
            doc.report("lang-code-duplicate", el, f"language {code!r} is declared more than once")
        seen.add(code)
    for el in doc.dcc["mandatoryLangCodeISO639_1"]:
        code = _text(el)
        if code not in ISO_639_1:
            doc.report("lang-code-invalid", el, f"{code!r} is not an ISO 639-1 language code")
        elif code not in declared_set:
            doc.report(
                "mandatory-lang-undeclared",
                el,
                f"mandatory language {code!r} is not among the used languages",
            )
    for el in doc.dcc["countryCodeISO3166_1"]:
        if _text(el) not in ISO_3166_1:
            doc.report("country-code-invalid", el, f"{_text(el)!r} is not an ISO 3166-1 alpha-2 code")

    # Group the tagged texts by parent element (the elements are looked up again only if a finding needs them).
    content_tag = f"{{{doc.kinds.dcc_ns}}}content"
    full = doc.full
    langs_by_parent: dict[etree._Element, list[str]] = {}
    untagged_grandparents: dict[etree._Element, bool] = {}  # grandparent -> exempt; siblings share one
    # The texts of one element are consecutive: the identity test spares most dict look-ups (lxml hands out the
    # same proxy for an element while a reference to it is held).
    last_parent: etree._Element | None = None
    last_langs: list[str] = []
    for el in doc.dcc["content"]:
        lang = el.get("lang")
        if lang is None:
            if not full:
                continue  # content-lang-attribute-missing is a warning
            parent = el.getparent()
            grandparent = parent.getparent() if parent is not None else None
            if grandparent is None:
                continue
            exempt = untagged_grandparents.get(grandparent)
            if exempt is None:
                exempt = untagged_grandparents[grandparent] = _has_naming_child(doc, grandparent)
            if not exempt:
                doc.report("content-lang-attribute-missing", el, "dcc:content without a lang attribute")
            continue
        if lang not in declared_set:
            doc.report(
                "content-lang-undeclared",
                el,
                f"lang {lang!r} is not a declared language ({', '.join(declared) or 'none declared'})",
            )
        parent = el.getparent()
        if parent is last_parent:
            last_langs.append(lang)
            continue
        if parent is None:
            continue
        langs = langs_by_parent.get(parent)
        if langs is None:
            langs = langs_by_parent[parent] = []
        langs.append(lang)
        last_parent, last_langs = parent, langs

    mandatory = list(dict.fromkeys(_text(el) for el in doc.dcc["mandatoryLangCodeISO639_1"]))
    if not full and not mandatory:
        return  # only mandatory languages can be missing with an error
    optional = [code for code in dict.fromkeys(declared) if code not in mandatory]
    every_language = {*mandatory, *optional}
    count = len(every_language)
    for parent, langs in langs_by_parent.items():
        # the usual case, one text per language: nothing is missing and nothing repeated
        if len(langs) == count and set(langs) == every_language:
            continue
        given = ", ".join(langs)
        if missing := [code for code in mandatory if code not in langs]:
            doc.report(
                "content-lang-missing",
                parent,
                f"texts in [{given}] lack mandatory language(s) [{', '.join(missing)}]",
            )
        if not full:
            continue  # the rest are warnings
        # Deviation: dcc.sch wants every used language (error); the XSD requires only the mandatory ones.
        if missing := [code for code in optional if code not in langs]:
            doc.report(
                "content-lang-incomplete",
                parent,
                f"texts in [{given}] lack used language(s) [{', '.join(missing)}]",
            )
        # Deviation: dcc.sch makes a repeated language an error, but richContentType interleaves several
        # content paragraphs with files and formulas, and PTB's examples 2.1-3.0 use several per language.
        if len(set(langs)) < len(langs):
            tagged = [c for c in parent.iterchildren(content_tag) if c.get("lang") is not None]
            seen_langs: set[str] = set()
            for el, lang in zip(tagged, langs, strict=True):
                if lang in seen_langs:
                    doc.report("content-lang-duplicate", el, f"another dcc:content with lang {lang!r}")
                seen_langs.add(lang)


_NAMING = frozenset({"name", "further", "referral"})


def _has_naming_child(doc: _Doc, el: etree._Element) -> bool:
    """dcc.sch's test for untagged dcc:content, literally: its grandparent has a name, further or referral."""
    kinds = doc.kinds
    for child in el:
        where, local = kinds[child.tag]
        if where and local in _NAMING:
            return True
    return False


# --- methods, software, influence conditions (dcc.sch placement patterns) ---------------------------

_DECLARATIONS = {
    "usedMethods": "used-methods-missing",
    "usedSoftware": "used-software-missing",
    "influenceConditions": "influence-conditions-missing",
}
_REQUIRED_DECLARATIONS = {"usedMethods": "used-methods-missing"}  # the one whose absence is an error


def _check_declarations(doc: _Doc) -> None:
    """Result quantities without usedMethods / usedSoftware / influenceConditions anywhere above them."""
    # Methods are required (dcc.sch, ISO/IEC 17025 7.8.2.1). Deviation: dcc.sch also makes missing influence
    # conditions an error, but 17025 asks only for conditions that influence the result, and the DKD
    # good-practice example gives them for one of three results, so: warning.
    declarations = _DECLARATIONS if doc.full else _REQUIRED_DECLARATIONS
    declared_globally = {
        result: declarations.keys() & doc.named_children(result).keys() for result in doc.dcc["measurementResult"]
    }
    no_globals: set[str] = set()
    contexts = _Contexts(doc)
    for lst in doc.dcc["list"]:
        in_results, in_metadata, mres = contexts.of_parent(lst)
        if not in_results or in_metadata:
            continue
        globals_ = declared_globally.get(mres, no_globals)
        own = doc.named_children(lst)
        undeclared = [(name, rule) for name, rule in declarations.items() if name not in globals_ and name not in own]
        if not undeclared:
            continue
        quantities = doc.children(lst, "quantity")
        for name, rule in undeclared:
            if len(quantities) > sum(name in doc.named_children(q) for q in quantities):
                doc.report(rule, lst, f"list has quantities without {name} (none declared for list or result)")
    for quantity in doc.dcc["quantity"]:
        parent = quantity.getparent()
        grandparent = parent.getparent() if parent is not None else None
        if grandparent is None or doc.local(parent) != "data" or doc.local(grandparent) != "result":
            continue
        globals_ = declared_globally.get(contexts.of_parent(quantity)[2], no_globals)
        if len(globals_) == len(declarations):
            continue  # all declared for the whole result
        own = doc.named_children(quantity)
        for name, rule in declarations.items():
            if name not in globals_ and name not in own:
                doc.report(rule, quantity, f"result quantity without {name} (none declared for the result)")


# (inside dcc:measurementResults, inside dcc:metaData, nearest dcc:measurementResult) of an element
_Context = tuple[bool, bool, etree._Element | None]


class _Contexts:
    """Where elements sit among the result containers; memoised because lists and quantities share ancestors."""

    def __init__(self, doc: _Doc) -> None:
        self.kinds = doc.kinds
        self.memo: dict[etree._Element, _Context] = {}

    def of_parent(self, el: etree._Element) -> _Context:
        """Return the context given by the ancestors of `el`."""
        parent = el.getparent()
        return self.of(parent) if parent is not None else (False, False, None)

    def of(self, el: etree._Element) -> _Context:
        """Return the context given by `el` itself and its ancestors."""
        # climb to the nearest ancestor already known (a loop, not recursion: documents may be deep) ...
        chain: list[etree._Element] = []
        context = self.memo.get(el)
        while context is None:
            chain.append(el)
            parent = el.getparent()
            if parent is None:
                context = (False, False, None)
            else:
                el = parent
                context = self.memo.get(el)
        # ... then fill in the contexts on the way back down
        for node in reversed(chain):
            in_results, in_metadata, mres = context
            where, local = self.kinds[node.tag]
            if where:
                in_results = in_results or local == "measurementResults"
                in_metadata = in_metadata or local == "metaData"
                mres = node if local == "measurementResult" else mres
            context = self.memo[node] = (in_results, in_metadata, mres)
        return context


# --- core data ------------------------------------------------------------------------------------


def _parse_date(text: str) -> date | None:
    """Parse an xs:date (timezone ignored), None if it is not one."""
    match = _XS_DATE.fullmatch(text)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _check_core_data(doc: _Doc) -> None:
    """Schema version, unique identifier, release format and the order of the core dates."""
    full = doc.full
    version = doc.root.get("schemaVersion")
    if full and version != CURRENT_SCHEMA_VERSION:
        declared = f"schemaVersion {version!r}" if version else "no schemaVersion attribute (DCC before 2.3)"
        doc.report(
            "schema-version-outdated",
            doc.root,
            f"{declared}; the current release is {CURRENT_SCHEMA_VERSION}",
        )
    identifiers = doc.dcc["uniqueIdentifier"]
    if not identifiers:
        doc.report("unique-identifier-empty", doc.root, "no dcc:uniqueIdentifier")
    for el in identifiers:
        if not _text(el):
            doc.report("unique-identifier-empty", el, "dcc:uniqueIdentifier is blank")
    for el in doc.dcc["release"] if full else ():
        # Deviation: dcc.sch makes this an error; releases like "0.7.1" in PTB's examples are fine data.
        if not _RELEASE.fullmatch(el.text or ""):
            doc.report("software-release-format", el, f"release {el.text!r} is not like 'v1.2.3' or 'A 1.0'")

    dates: dict[str, tuple[etree._Element, date]] = {}
    for name in ("receiptDate", "beginPerformanceDate", "endPerformanceDate", "issueDate"):
        for el in doc.dcc[name]:
            if doc.local(el.getparent()) != "coreData":
                continue
            parsed = _parse_date(_text(el))
            if parsed is None:
                doc.report("date-invalid", el, f"{name} {_text(el)!r} is not a date (YYYY-MM-DD)")
            else:
                dates[name] = (el, parsed)
    order = [name for name in ("beginPerformanceDate", "endPerformanceDate", "issueDate") if name in dates]
    for earlier, later in pairwise(order):
        if dates[later][1] < dates[earlier][1]:
            doc.report(
                "date-order",
                dates[later][0],
                f"{later} {dates[later][1]} is before {earlier} {dates[earlier][1]}",
            )
    if full and "receiptDate" in dates and "endPerformanceDate" in dates:
        received, ended = dates["receiptDate"][1], dates["endPerformanceDate"][1]
        if received > ended:
            doc.report(
                "receipt-date-order",
                dates["receiptDate"][0],
                f"receiptDate {received} is after the calibration ended {ended}",
            )


# --- units ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a certificate repeats a handful of units; bounded because units come from uploads
def _unit_verdict(unit: str) -> str | None:
    """Classify a unit string: None (D-SI), "spelling" (D-SI but for letter case) or "invalid"."""
    if check_dsi_unit(unit) is None:
        return None
    return "spelling" if canonical_dsi_unit(unit) is not None else "invalid"


def _hybrid_alternative(doc: _Doc, el: etree._Element) -> etree._Element | None:
    """Return the child of an si:hybrid that contains `el` (one alternative representation), or None."""
    child = el
    for anc in el.iterancestors():
        where, local = doc.kinds[anc.tag]
        if local == "hybrid" and where:
            return child
        child = anc
    return None


def _unit_strings(el: etree._Element, local: str) -> list[str]:
    """Return the unit strings of a unit element named `local` (lists give one per distinct token)."""
    if local in _UNIT_LISTS:
        return list(dict.fromkeys(_tokens(el))) or [""]
    return [el.text or ""]


def _check_units(doc: _Doc) -> None:
    """D-SI syntax of every unit (hybrid alternatives may be non-SI); non-SI declarations; redundant lists."""
    for name in _UNIT_ORDER:
        for el in doc.si.get(name, ()):
            for unit in _unit_strings(el, name):
                verdict = _unit_verdict(unit)
                if verdict is None:
                    continue
                if verdict == "spelling":
                    doc.report("dsi-unit-spelling", el, f"unit {unit!r} should be written {canonical_dsi_unit(unit)!r}")
                # D-SI lets the other alternatives of a hybrid use any unit if one is machine-readable.
                elif _hybrid_alternative(doc, el) is not None:
                    doc.report(
                        "dsi-unit-unmarked",
                        el,
                        f"non-D-SI unit {unit!r} in a hybrid: mark it as '|{unit.strip()}'",
                    )
                else:
                    doc.report("dsi-unit-invalid", el, f"unit {unit!r}: {check_dsi_unit(unit)}")
            if name == "unitXMLList" and doc.full:
                tokens = _tokens(el)
                if len(tokens) > 1 and len(set(tokens)) == 1:
                    doc.report("unit-list-redundant", el, f"all {len(tokens)} units are {tokens[0]!r}; one is enough")
    for hybrid in doc.si["hybrid"]:
        machine_readable = False
        for alternative in hybrid:
            if not isinstance(alternative.tag, str):
                continue
            units = [unit for el in alternative.iter(_UNIT_TAGS) for unit in _unit_strings(el, doc.local(el))]
            # '|'-marked units are explicitly not D-SI, so they do not make an alternative machine-readable
            if units and all(_unit_verdict(u) != "invalid" and not u.strip().startswith("|") for u in units):
                machine_readable = True
                break
        if not machine_readable:
            doc.report("hybrid-without-dsi-unit", hybrid, "no alternative of this hybrid uses D-SI units")

    declared_non_si = {_text(el) for el in doc.dcc["nonSIUnit"]}
    for el in doc.si["unit"]:
        unit = _text(el)
        if not unit.startswith("|") or unit in declared_non_si:
            continue
        parent = el.getparent()
        holder = parent.getparent() if parent is not None else None
        if holder is not None and doc.local(parent) == "real" and doc.local(holder) == "hybrid":
            doc.report("non-si-unit-undeclared", el, f"non-SI unit {unit!r} has no dcc:nonSIUnit statement")
    for el in doc.dcc["nonSIUnit"]:
        if sum(doc.local(s) == "nonSIDefinition" for s in el.itersiblings(preceding=True)) != 1:
            doc.report("non-si-definition-unpaired", el, f"nonSIUnit {_text(el)!r} lacks one nonSIDefinition")
    for el in doc.dcc["nonSIDefinition"]:
        if sum(doc.local(s) == "nonSIUnit" for s in el.itersiblings()) != 1:
            doc.report("non-si-definition-unpaired", el, "nonSIDefinition is not followed by one nonSIUnit")


# --- uncertainty ----------------------------------------------------------------------------------


def _negative_tokens(el: etree._Element) -> list[str]:
    """Return the tokens of an XML list that are negative numbers."""
    text = el.text or ""
    if "-" not in text:
        return []  # a negative number needs a minus sign: skip parsing the usual non-negative lists
    return [t for t in text.split() if (v := _number(t)) is not None and v < 0]


def _check_uncertainty(doc: _Doc) -> None:
    """Non-negative uncertainties; coverage factor and probability present and in range."""
    for name in _UNCERTAINTY_ORDER:
        for el in doc.si.get(name, ()):
            if negative := _negative_tokens(el):
                doc.report("uncertainty-negative", el, f"negative uncertainty {', '.join(negative[:5])}")
    for relative in doc.dcc["relativeUncertainty"]:
        for el in relative.iter("{*}value", "{*}valueXMLList"):
            if negative := _negative_tokens(el):
                doc.report("uncertainty-negative", el, f"negative relative uncertainty {', '.join(negative[:5])}")
    for name, (needs_factor, needs_probability) in _COVERAGE_CONTAINERS.items():
        suffix = "XMLList" if name.endswith("XMLList") else ""
        for el in doc.si.get(name, ()):
            present = doc.named_children(el)
            missing = [
                part + suffix
                for part, needed in (
                    ("coverageFactor", needs_factor),
                    ("coverageProbability", needs_probability),
                )
                if needed and part + suffix not in present
            ]
            if missing:
                doc.report("coverage-missing", el, f"{name} without {' and '.join(missing)}")
    for name in ("coverageFactor", "coverageFactorXMLList"):
        for el in doc.si.get(name, ()):
            bad = [t for t in _tokens(el) if (v := _number(t)) is not None and not v >= 1]
            if bad:
                doc.report("coverage-factor-range", el, f"coverage factor {', '.join(bad[:5])} is below 1")
    for name in ("coverageProbability", "coverageProbabilityXMLList"):
        for el in doc.si.get(name, ()):
            bad = [t for t in _tokens(el) if (v := _number(t)) is not None and not 0 < v <= 1]
            if bad:
                doc.report(
                    "coverage-probability-range",
                    el,
                    f"coverage probability {', '.join(bad[:5])} is not in (0, 1]",
                )
    _check_relative_uncertainty(doc)


_ABSOLUTE_UNCERTAINTY = (
    "measurementUncertaintyUnivariate",
    "expandedUnc",
    "coverageInterval",
    "measurementUncertaintyUnivariateXMLList",
    "expandedUncXMLList",
    "coverageIntervalXMLList",
)
_RELATIVE_SCALE = {"\\one": 1.0, "\\percent": 1e-2, "\\ppm": 1e-6}


def _half_last_digit(token: str) -> float:
    """Half a unit in the last written digit of a decimal token (its rounding interval)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def _check_relative_uncertainty(doc: _Doc) -> None:
    """dcc.sch's relative uncertainty rules, for any D-SI uncertainty form and with rounding tolerance."""
    for relative in doc.dcc["relativeUncertainty"]:
        quantity = relative.getparent()
        if quantity is None:
            continue
        value_holder = doc.child(quantity, "real")
        if value_holder is None:
            value_holder = doc.child(quantity, "realListXMLList")
        if value_holder is None:
            continue
        absolute = next((u for n in _ABSOLUTE_UNCERTAINTY if (u := doc.child(value_holder, n)) is not None), None)
        if absolute is None:
            doc.report(
                "relative-uncertainty-without-absolute",
                relative,
                "relative uncertainty given without an absolute one",
            )
            continue
        single = doc.child(relative, "relativeUncertaintySingle")
        if single is None or doc.local(value_holder) != "real":
            continue
        rel_token = _text(doc.child(single, "value"))
        scale = _RELATIVE_SCALE.get(_text(doc.child(single, "unit")))
        value = _number(_text(doc.child(value_holder, "value")))
        unc_el = next(
            (
                u
                for n in ("valueExpandedMU", "uncertainty", "valueStandardMU", "standardUnc")
                for u in absolute.iter(f"{{*}}{n}")
            ),
            None,
        )
        rel, unc = _number(rel_token), _number(_text(unc_el))
        # not comparable (other unit, non-numeric, zero value): the other rules report what is wrong
        if rel is None or unc is None or value is None or scale is None:
            continue
        if value == 0 or not all(math.isfinite(x) for x in (rel, unc, value)):
            continue
        expected = unc / abs(value) / scale
        # The given value is rounded; accept anything inside its rounding interval, widened by 1 %.
        if abs(rel - expected) > _half_last_digit(rel_token) + 0.01 * abs(expected):
            doc.report(
                "relative-uncertainty-mismatch",
                single,
                f"relative uncertainty {rel_token} differs from U / abs(value) = {expected:.4g}",
            )


# --- XML lists ------------------------------------------------------------------------------------


def _leaf_lists(doc: _Doc, el: etree._Element, leaves: list[tuple[etree._Element, str]]) -> None:
    """Collect (leaf, local name) of the per-value leaf lists below an XMLList quantity, skipping multivariate parts."""
    kinds = doc.kinds
    for child in el:
        local = kinds[child.tag][1]  # "" for comments and PIs
        if not local or local in _MULTIVARIATE:
            continue
        if len(child):
            _leaf_lists(doc, child, leaves)
        elif local.endswith("XMLList"):
            leaves.append((child, local))


_VALUE_LISTS = ("valueXMLList", "valueRealXMLList", "valueMagnitudeXMLList")


def _value_count(doc: _Doc, el: etree._Element) -> int | None:
    """Number of values of an XMLList quantity (None when it has no value list)."""
    children = doc.named_children(el)
    for name in _VALUE_LISTS:
        values = children.get(name)
        if values is not None:
            return len(_tokens(values))
    return None


def _check_lists(doc: _Doc) -> None:
    """Equal lengths inside XMLList quantities and across the representations of a hybrid; tidy spacing."""
    holders = doc.si["realListXMLList"] + doc.si["complexListXMLList"]
    relative_holders = [
        c
        for relative in doc.dcc["relativeUncertainty"]
        for c in relative
        if doc.local(c) == "relativeUncertaintyXmlList"
    ]
    for holder in holders + relative_holders:
        n = _value_count(doc, holder)
        if n is None:
            continue
        if n == 0:
            doc.report("xmllist-length", holder, "the value list is empty")
            continue
        leaves: list[tuple[etree._Element, str]] = []
        _leaf_lists(doc, holder, leaves)
        for leaf, local in leaves:
            if local in _VALUE_LISTS:
                continue
            count = len(_tokens(leaf))
            if count != 1 and count != n:
                doc.report("xmllist-length", leaf, f"{local} has {count} entries for {n} values (1 or {n})")
        if relative_holders and holder in relative_holders:
            quantity_list = doc.child(holder.getparent().getparent(), "realListXMLList")
            values = _value_count(doc, quantity_list) if quantity_list is not None else None
            if values is not None and n not in (1, values):
                doc.report(
                    "xmllist-length",
                    holder,
                    f"{n} relative uncertainties for {values} values (1 or {values})",
                )
        children = doc.named_children(holder)
        for name in ("valueImagXMLList", "valuePhaseXMLList"):
            other = children.get(name)
            if other is not None and len(_tokens(other)) != n:
                doc.report("xmllist-length", other, f"{name} has {len(_tokens(other))} entries for {n} values")

    for hybrid in doc.si["hybrid"]:
        lengths: dict[int, str] = {}
        for child in hybrid:
            if not isinstance(child.tag, str):
                continue
            local = doc.local(child)
            if local in ("real", "complex", "constant"):
                length: int | None = 1
            elif local in ("realListXMLList", "complexListXMLList"):
                length = _value_count(doc, child)
            elif local in ("realList", "complexList"):
                length = len(doc.children(child, local.removesuffix("List")))
            else:
                length = None  # nested si:list: no single length
            if length is not None:
                lengths.setdefault(length, local)
        if len(lengths) > 1:
            described = ", ".join(f"{n} ({local})" for n, local in lengths.items())
            doc.report("hybrid-length-mismatch", hybrid, f"representations have different lengths: {described}")

    if not doc.full:
        return  # spacing findings are warnings
    # Deviation: dcc.sch makes spacing an error, but XSD list types collapse whitespace: the data is intact.
    for name in _SPACED_ORDER:
        for el in doc.si.get(name, ()):
            if not _TIDY_LIST.fullmatch(el.text or ""):
                doc.report("list-whitespace", el, f"{name} {el.text!r} has irregular spacing")
    for attribute, pairs in (("refId", doc.ref_ids), ("refType", doc.ref_types)):
        for el, value in pairs:
            if not _TIDY_LIST.fullmatch(value):
                doc.report("list-whitespace", el, f"@{attribute} {value!r} has irregular spacing")


_CHECKS = (
    _check_ids,
    _check_languages,
    _check_declarations,
    _check_core_data,
    _check_units,
    _check_uncertainty,
    _check_lists,
)


def _run(root: etree._Element, *, full: bool) -> list[Hit]:
    doc = _Doc(root, full=full)
    for check in _CHECKS:
        check(doc)
    return doc.hits


def run_rules(root: etree._Element, *, verdict_only: bool = False) -> RuleHits:
    """Run the semantic rules on a parsed DCC (verdict_only: only those that can fail it); findings on demand."""
    return RuleHits(root, _run(root, full=not verdict_only), complete=not verdict_only)


def check_rules(root: etree._Element) -> list[Finding]:
    """Run every semantic rule on a parsed DCC and return the findings in document order."""
    return run_rules(root).findings()
