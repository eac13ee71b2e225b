"""The hub's one hardened XML parser: every untrusted byte string becomes an lxml tree only through here.

Defences, in order: a size cap before anything is read; an encoding check so that the prolog scan and
libxml2 see the same characters; a prolog scan that refuses any DOCTYPE before libxml2 sees it (so no
internal subset, entity declaration or external DTD is ever processed, not even transiently); a libxml2
parser that cannot expand entities, load DTDs, reach the network or fetch anything through a resolver;
a post-parse check for DTD remnants; and a depth limit. XInclude is never processed.
"""

import codecs
import re
import threading
from typing import Any, ClassVar, Final, NoReturn

from lxml import etree

from storage.errors import rebuild_error

DEFAULT_MAX_BYTES: Final = 25 * 1024 * 1024
DEFAULT_MAX_DEPTH: Final = 256

# libxml2 refuses single text nodes above 10 MB and nesting above 256 unless XML_PARSE_HUGE is set;
# below these sizes the stricter default parser is used.
_LIBXML_MAX_TEXT: Final = 10_000_000
_LIBXML_MAX_DEPTH: Final = 256
_LIBXML_HUGE_MAX_DEPTH: Final = 2048

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_XML_DECL_ENCODING = re.compile(
    rb"""\A<\?xml[ \t\r\n][^>]*?encoding[ \t\r\n]*=[ \t\r\n]*["']([A-Za-z][A-Za-z0-9._-]*)["']"""
)
_UNDEFINED_ENTITY = re.compile(r"Entity '[^']*' not defined")
# Markup used by the prolog scan; an encoding must keep these bytes as they are in ASCII.
_ASCII_PROBE: Final = "<?xml version='1.0' encoding='x'?><!-- --><!DOCTYPE x>\n\t "


class XmlRejected(Exception):  # noqa: N818 - the hub-wide name for a refused document
    """Raised when bytes are refused as XML; `code` is machine-readable, `detail` is for humans."""

    CODES: ClassVar[frozenset[str]] = frozenset(
        {"too-large", "empty", "malformed", "dtd-forbidden", "entity-forbidden", "too-deep", "not-xml"}
    )

    def __init__(self, code: str, detail: str, *, line: int | None = None) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.line = line

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling would call the constructor with the formatted message as its only argument.
        return (rebuild_error, (type(self), self.args, dict(self.__dict__)))


class _RefuseExternal(etree.Resolver):
    """Refuses every external resource libxml2 might ask for (DTDs, entities): nothing is ever fetched."""

    def resolve(self, system_url: str, public_id: str, context: object) -> NoReturn:
        raise XmlRejected("entity-forbidden", f"external resource {system_url!r} refused")


_local = threading.local()


class ThreadXPath(threading.local):
    """A compiled XPath with one copy per thread.

    lxml runs the evaluations of one XPath object one at a time (it locks the object), while copies evaluate in
    parallel without the GIL: a module-level XPath on the ingest path made two concurrent uploads queue.
    """

    def __init__(self, path: str) -> None:
        self._xpath = etree.XPath(path)

    def __call__(self, node: etree._Element) -> Any:
        """Evaluate on `node` with this thread's copy."""
        return self._xpath(node)


def _parser(*, huge: bool) -> etree.XMLParser:
    """Return this thread's parser (lxml parsers must not be shared between threads)."""
    parsers: dict[bool, etree.XMLParser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(huge)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8",  # we transcode first, so libxml2 never switches encoding mid-document
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            no_network=True,
            huge_tree=huge,
            recover=False,
            remove_blank_text=False,
        )
        parser.resolvers.add(_RefuseExternal())
        parsers[huge] = parser
    return parser


def _line_at(buf: bytes, offset: int) -> int:
    return buf.count(b"\n", 0, offset) + 1


def _as_utf8(data: bytes) -> bytes:
    """Return the document as UTF-8 without BOM, decoding other encodings in Python first."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :]
    head = data[:4]
    codec: str | None = None
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        codec = "utf-32"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"
    elif head == b"\x00\x00\x00<":
        codec = "utf-32-be"
    elif head == b"<\x00\x00\x00":
        codec = "utf-32-le"
    elif head == b"\x00<\x00?":
        codec = "utf-16-be"
    elif head == b"<\x00?\x00":
        codec = "utf-16-le"
    elif head == b"\x4c\x6f\xa7\x94":
        raise XmlRejected("not-xml", "EBCDIC-encoded XML is not accepted")
    else:
        declared = _XML_DECL_ENCODING.match(data[:1024])
        if declared is None:
            return data
        name = declared.group(1).decode("ascii")
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            raise XmlRejected("malformed", f"unknown encoding {name!r} in the XML declaration", line=1) from None
        if codec.startswith(("utf-16", "utf-32")):
            return data  # declared UTF-16/32 without a BOM in 8-bit bytes: libxml2 reads it as UTF-8 too
        if codec in {"utf-8", "ascii"}:
            return data
        try:
            ascii_compatible = _ASCII_PROBE.encode(codec) == _ASCII_PROBE.encode("ascii")
        except UnicodeError:
            ascii_compatible = False
        if not ascii_compatible:
            raise XmlRejected("malformed", f"encoding {name!r} is not accepted", line=1)
    try:
        return data.decode(codec).encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise XmlRejected("malformed", f"bytes are not valid {codec}: {exc.reason}") from None


def _scan_prolog(buf: bytes) -> None:
    """Refuse a DOCTYPE (or non-XML content) in the prolog before libxml2 sees it."""
    pos = _WHITESPACE.match(buf).end()  # type: ignore[union-attr]  # always matches
    if pos == len(buf):
        raise XmlRejected("empty", "the document contains no markup")
    if buf[pos : pos + 1] != b"<":
        raise XmlRejected("not-xml", "the content does not start with markup", line=_line_at(buf, pos))
    while pos < len(buf):
        if buf.startswith(b"<?", pos):
            end = buf.find(b"?>", pos + 2)
            if end < 0:
                return  # unterminated: libxml2 reports it as malformed
            pos = end + 2
        elif buf.startswith(b"<!--", pos):
            end = buf.find(b"-->", pos + 4)
            if end < 0:
                return
            pos = end + 3
        elif buf[pos : pos + 9].upper() == b"<!DOCTYPE":
            line = _line_at(buf, pos)
            raise XmlRejected(
                "dtd-forbidden",
                f"DOCTYPE declaration at line {line}: DTDs and entities are not accepted",
                line=line,
            )
        else:
            return  # the root element (or garbage libxml2 will reject)
        pos = _WHITESPACE.match(buf, pos).end()  # type: ignore[union-attr]


def _depth_probe(max_depth: int) -> str:
    # An element exists at depth max_depth + 1 iff this absolute path selects something.
    return "boolean(" + "/*" * (max_depth + 1) + ")"


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> etree._Element:
    """Parse untrusted XML bytes safely and return the root element (source lines kept); raise XmlRejected."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"parse_xml expects bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise XmlRejected("too-large", f"{len(data)} bytes exceed the limit of {max_bytes} bytes")
    if not data:
        raise XmlRejected("empty", "the document is empty")
    buf = _as_utf8(bytes(data))
    _scan_prolog(buf)

    huge = len(buf) > _LIBXML_MAX_TEXT or max_depth > _LIBXML_MAX_DEPTH
    libxml_depth = _LIBXML_HUGE_MAX_DEPTH if huge else _LIBXML_MAX_DEPTH
    try:
        root = etree.fromstring(buf, _parser(huge=huge))
    except etree.XMLSyntaxError as exc:
        message = exc.msg or str(exc)
        line = exc.lineno or None
        if "Excessive depth" in message:
            limit = min(max_depth, libxml_depth)
            raise XmlRejected("too-deep", f"elements are nested deeper than {limit} levels", line=line) from None
        if _UNDEFINED_ENTITY.search(message):
            raise XmlRejected("entity-forbidden", message, line=line) from None
        if "DOCTYPE" in message:
            raise XmlRejected("dtd-forbidden", message, line=line) from None
        raise XmlRejected("malformed", message, line=line) from None

    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise XmlRejected("dtd-forbidden", "the document carries a DOCTYPE: DTDs and entities are not accepted")
    # libxml2 already stops at its own depth limit; probe only when the caller asks for less.
    if max_depth < libxml_depth and root.xpath(_depth_probe(max_depth)):
        raise XmlRejected("too-deep", f"elements are nested deeper than {max_depth} levels")
    return root
