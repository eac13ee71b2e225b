"""XSD validation of DCC documents against pinned local schemas, DCC 2.1.0 to 3.3.0.

Schemas live in `schemas/xsd/` (origin and licences: `schemas/xsd/NOTICE.md`). Every import is resolved
through `schemas/xsd/catalog.xml`; a schema URL that is not in the catalog is refused, never fetched.
Each version is compiled once (libxml2, a few milliseconds) and reused for every validation.
"""

import functools
import io
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

from lxml import etree
from pydantic import BaseModel, Field

from certificates.findings import Finding, Severity

SCHEMA_DIR: Final = Path(__file__).resolve().parents[1] / "schemas" / "xsd"
CATALOG_PATH: Final = SCHEMA_DIR / "catalog.xml"

SUPPORTED_VERSIONS: Final[tuple[str, ...]] = (
    "2.1.0",
    "2.1.1",
    "2.2.0",
    "2.3.0",
    "2.4.0",
    "3.0.0",
    "3.1.0",
    "3.1.1",
    "3.1.2",
    "3.2.0",
    "3.2.1",
    "3.3.0",
)

DCC_NAMESPACE: Final = "https://ptb.de/dcc"
# DCC 2.1.0 was published under a PTB intranet namespace; later releases use https://ptb.de/dcc.
DCC_INTRANET_NAMESPACE: Final = (
    "https://intranet.ptb.de/fileadmin/dokumente/intranet/abteilungen/abteilung_1/Digitaler_Kalibrierschein/DCC"
)
DCC_ROOT_TAGS: Final = frozenset(
    {
        f"{{{DCC_NAMESPACE}}}digitalCalibrationCertificate",
        f"{{{DCC_INTRANET_NAMESPACE}}}digitalCalibrationCertificate",
    }
)

# A broken 25 MB document can produce thousands of schema errors; list the first ones only.
MAX_XSD_FINDINGS: Final = 200

_XSI_SCHEMA_LOCATION: Final = "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
_DCC_XSD_URL = re.compile(r"/dcc/v(\d+\.\d+\.\d+)/dcc\.xsd$")
_CATALOG_NS: Final = "urn:oasis:names:tc:entity:xmlns:xml:catalog"


class SchemaUnavailableError(RuntimeError):
    """Raised when a schema import is not pinned locally (a packaging bug: the catalog is incomplete)."""


class SchemaReport(BaseModel):
    """Outcome of validating one document against one DCC schema version."""

    schema_version: str | None
    valid: bool
    findings: list[Finding] = Field(default_factory=list)


def schema_path(version: str) -> Path:
    """Return the pinned local `dcc.xsd` for a supported DCC release."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported DCC schema version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    return SCHEMA_DIR / "dcc" / f"v{version}" / "dcc.xsd"


@functools.cache
def _catalog() -> dict[str, Path]:
    """Public schema URL -> pinned local file, as listed in catalog.xml (read once)."""
    tree = etree.parse(str(CATALOG_PATH), etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    mapping: dict[str, Path] = {}
    for entry in tree.getroot():
        if entry.tag == f"{{{_CATALOG_NS}}}uri":
            public = entry.get("name")
        elif entry.tag == f"{{{_CATALOG_NS}}}system":
            public = entry.get("systemId")
        else:
            continue
        local = (CATALOG_PATH.parent / entry.get("uri", "")).resolve()
        if public and mapping.setdefault(public, local) != local:
            raise SchemaUnavailableError(f"{CATALOG_PATH.name} maps {public} to two different files")
    return mapping


def _pinned_file(url: str) -> Path | None:
    """Map a URL or path that libxml2 asks for onto a file inside SCHEMA_DIR, or None."""
    pinned = _catalog().get(url)
    if pinned is not None:
        return pinned
    parsed = urlparse(url)
    if parsed.scheme == "file":
        candidate = Path(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and url[1:2] == ":"):  # plain path (or C:\...)
        candidate = Path(url)
    else:
        return None
    candidate = candidate.resolve()
    return candidate if candidate.is_relative_to(SCHEMA_DIR) and candidate.is_file() else None


class _PinnedSchemaResolver(etree.Resolver):
    """Serves schema imports from SCHEMA_DIR via the catalog and refuses everything else."""

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        local = _pinned_file(system_url)
        if local is None:
            raise SchemaUnavailableError(f"schema {system_url!r} is not pinned in {CATALOG_PATH}; refusing to fetch it")
        return self.resolve_filename(str(local), context)


def _compile_schema_file(path: Path) -> etree.XMLSchema:
    """Compile one XSD, resolving all its imports through the pinned catalog."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_PinnedSchemaResolver())
    # Parsed from bytes so the entry file needs no resolver; the base URL keeps relative imports working.
    doc = etree.parse(io.BytesIO(path.read_bytes()), parser, base_url=str(path))
    try:
        return etree.XMLSchema(doc)
    except etree.XMLSchemaParseError as exc:
        raise SchemaUnavailableError(f"cannot compile {path}: {exc}") from exc


def _compile_schema(version: str) -> etree.XMLSchema:
    """Compile the pinned schema of one DCC release (uncached)."""
    return _compile_schema_file(schema_path(version))


class _SchemaCopies:
    """Compiled copies of one release's XSD, compiled once each and reused: one per concurrent validation.

    lxml keeps the error log on the XMLSchema object, so one object validates one document at a time. libxml2
    validates without the GIL, so threads (batch uploads, concurrent submissions) holding copies of their own
    validate in parallel. A copy takes ~0.7 MB and ~3 ms to compile; there are never more copies than
    validations of that release that once ran at the same time.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self._idle: list[etree.XMLSchema] = []
        self._lock = threading.Lock()

    @contextmanager
    def checked_out(self) -> Iterator[etree.XMLSchema]:
        """An idle copy (compiled now if none is idle), this caller's alone until the block ends."""
        with self._lock:
            schema = self._idle.pop() if self._idle else None
        if schema is None:
            # libxml2 does not compile schemas with imports safely in parallel (a concurrent compile failed
            # to resolve ds:Signature): copies are compiled one at a time, then validate in parallel.
            with _compile_lock:
                schema = _compile_schema(self.version)
        try:
            yield schema
        finally:
            with self._lock:
                self._idle.append(schema)


_copies: dict[str, _SchemaCopies] = {}
_copies_lock = threading.Lock()
_compile_lock = threading.Lock()


def compiled_schema(version: str) -> AbstractContextManager[etree.XMLSchema]:
    """A cached compiled XSD of a release, the caller's alone within the `with` block (thread-safe)."""
    copies = _copies.get(version)
    if copies is None:
        with _copies_lock:
            copies = _copies.setdefault(version, _SchemaCopies(version))
    return copies.checked_out()


def declared_schema_version(root: etree._Element) -> str | None:
    """Return the DCC version a document declares (schemaVersion, else schemaLocation, else namespace)."""
    declared = (root.get("schemaVersion") or "").strip()
    if declared:
        return declared
    # DCC 2.1.x/2.2.0 had no schemaVersion attribute; the schemaLocation URL names the release.
    for location in (root.get(_XSI_SCHEMA_LOCATION) or "").split():
        match = _DCC_XSD_URL.search(location)
        if match:
            return match.group(1)
    if root.tag == f"{{{DCC_INTRANET_NAMESPACE}}}digitalCalibrationCertificate":
        return "2.1.0"
    return None


def _root_path(root: etree._Element) -> str:
    return root.getroottree().getpath(root)


def validate_against_schema(root: etree._Element, *, version: str | None = None) -> SchemaReport:
    """Validate a DCC against the XSD of `version` (default: the version it declares) and report findings."""
    target = version or declared_schema_version(root)
    if not isinstance(root.tag, str) or root.tag not in DCC_ROOT_TAGS:
        finding = Finding(
            rule="not-a-dcc",
            severity=Severity.error,
            message=f"root element {root.tag!s} is not a DCC digitalCalibrationCertificate",
            path=_root_path(root),
            line=root.sourceline,
        )
        return SchemaReport(schema_version=target, valid=False, findings=[finding])
    if target not in SUPPORTED_VERSIONS:
        what = f"schema version {target!r} is not supported" if target else "no schema version is declared"
        finding = Finding(
            rule="schema-version-unknown",
            severity=Severity.error,
            message=f"{what}; supported: {', '.join(SUPPORTED_VERSIONS)}",
            path=_root_path(root),
            line=root.sourceline,
        )
        return SchemaReport(schema_version=target, valid=False, findings=[finding])

    with compiled_schema(target) as schema:
        valid = schema.validate(root)
        errors = list(schema.error_log)
    findings = [
        Finding(
            rule="xsd",
            severity=Severity.warning if error.level_name == "WARNING" else Severity.error,
            message=error.message,
            path=error.path or None,
            line=error.line or None,
        )
        for error in errors[:MAX_XSD_FINDINGS]
    ]
    if len(errors) > MAX_XSD_FINDINGS:
        findings.append(
            Finding(
                rule="xsd",
                severity=Severity.error,
                message=f"{len(errors) - MAX_XSD_FINDINGS} further schema errors not listed",
            )
        )
    return SchemaReport(schema_version=target, valid=valid, findings=findings)
