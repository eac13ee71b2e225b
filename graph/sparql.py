"""SPARQL text analysis without evaluating it: query form, prefixes, outbound targets, protocol datasets.

Neither pyoxigraph nor the Oxigraph server exposes a parse-only API, yet the hub must know a query's form
(to negotiate its result format) and every `SERVICE`/`LOAD` target *before* anything runs (both engines make
the outbound HTTP request themselves: SSRF). This module is a careful SPARQL 1.1 lexer: it understands
comments, every string form, IRIs, variables and language tags, so a keyword inside a literal, a comment or
an IRI is never mistaken for one, and a real one is never hidden. The engine still parses the text itself;
when this lexer cannot make sense of it, the request is refused rather than guessed.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

from graph.store import QueryForm, ServiceNotAllowedError, SparqlRequestError, SparqlSyntaxError

_IRIREF = re.compile(r"<([^<>\"{}|^`\\\x00-\x20]*)>")
_VAR = re.compile(r"[?$][0-9A-Za-z_\u00b7\u00c0-\U000effff]+")
_LANGTAG = re.compile(r"@[A-Za-z]+(?:-[A-Za-z0-9]+)*")
# Keywords, prefixed names, blank node labels and numbers; a trailing '.' ends a triple, not the name.
_NAME = re.compile(r"[0-9A-Za-z_\u00b7\u00c0-\U000effff:%\\][0-9A-Za-z_\-.:%\\\u00b7\u00c0-\U000effff]*")
_UNICODE_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_OUTBOUND_WORD = re.compile(r"(?i)service|load")
_FORMS: dict[str, QueryForm] = {"SELECT": "select", "ASK": "ask", "CONSTRUCT": "construct", "DESCRIBE": "describe"}


@dataclass(frozen=True)
class Token:
    """One lexical unit: its kind, text and position in the source."""

    kind: str  # "iri", "var", "string", "name", "langtag", "punct"
    text: str
    start: int
    end: int

    @property
    def keyword(self) -> str | None:
        """The upper-cased keyword when the token is a bare word (no colon), else None."""
        if self.kind == "name" and ":" not in self.text:
            return self.text.upper()
        return None


def tokenize(text: str) -> list[Token]:
    """Split SPARQL text into tokens (comments and whitespace dropped); unterminated strings are errors."""
    tokens: list[Token] = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char.isspace():
            position += 1
            continue
        if char == "#":
            newline = text.find("\n", position)
            position = length if newline < 0 else newline + 1
            continue
        if char in "\"'":
            end = _string_end(text, position)
            tokens.append(Token("string", text[position:end], position, end))
            position = end
            continue
        if char == "<":
            match = _IRIREF.match(text, position)
            if match:
                tokens.append(Token("iri", match.group(1), position, match.end()))
                position = match.end()
                continue
        if char in "?$":
            match = _VAR.match(text, position)
            if match:
                tokens.append(Token("var", match.group(0)[1:], position, match.end()))
                position = match.end()
                continue
        if char == "@":
            match = _LANGTAG.match(text, position)
            if match:
                tokens.append(Token("langtag", match.group(0), position, match.end()))
                position = match.end()
                continue
        match = _NAME.match(text, position)
        if match:
            word = match.group(0)
            stripped = word.rstrip(".")
            if stripped:
                tokens.append(Token("name", stripped, position, position + len(stripped)))
                position += len(stripped)
                continue
        tokens.append(Token("punct", char, position, position + 1))
        position += 1
    return tokens


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    long_quote = quote * 3
    if text.startswith(long_quote, start):
        position = start + 3
        while True:
            found = text.find(long_quote, position)
            backslash = text.find("\\", position)
            if found < 0:
                raise SparqlSyntaxError(f"Unterminated long string starting at offset {start}.")
            if 0 <= backslash < found:
                position = backslash + 2
                continue
            # A run of more than three quotes closes on its last three characters.
            end = found + 3
            while end < len(text) and text[end] == quote:
                end += 1
            return end
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char in "\r\n":
            break
        if char == quote:
            return position + 1
        position += 1
    raise SparqlSyntaxError(f"Unterminated string starting at offset {start}.")


def _unescape_codepoints(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return chr(int(match.group(1) or match.group(2), 16))

    return _UNICODE_ESCAPE.sub(replace, text)


@dataclass(frozen=True)
class OutboundTarget:
    """A `SERVICE` or `LOAD` naming an endpoint the engine would contact."""

    keyword: str  # "SERVICE" or "LOAD"
    iri: str | None  # None when the target is a variable
    silent: bool
    start: int  # offset of the keyword
    end: int  # offset just past the whole SERVICE clause (its group) or the LOAD target


@dataclass(frozen=True)
class SparqlText:
    """What the hub needs to know about a query or update before running it."""

    form: QueryForm | None  # None for updates
    prefixes: dict[str, str]
    base: str | None
    targets: tuple[OutboundTarget, ...]
    dataset_clause: bool  # FROM / FROM NAMED (query) or USING / USING NAMED / WITH (update)
    tokens: tuple[Token, ...] = field(repr=False, default=())


def analyse(text: str, *, base_iri: str | None = None) -> SparqlText:
    """Lex a query or update and collect its form, prologue, outbound targets and dataset clauses."""
    tokens = tokenize(text)
    prefixes: dict[str, str] = {}
    base = base_iri
    form: QueryForm | None = None
    dataset_clause = False
    targets: list[OutboundTarget] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        keyword = token.keyword
        if keyword == "BASE" and index + 1 < len(tokens) and tokens[index + 1].kind == "iri":
            base = _resolve(tokens[index + 1].text, base)
        elif (
            keyword == "PREFIX"
            and index + 2 < len(tokens)
            and tokens[index + 1].kind == "name"
            and tokens[index + 1].text.endswith(":")
            and tokens[index + 2].kind == "iri"
        ):
            prefixes[tokens[index + 1].text[:-1]] = _resolve(tokens[index + 2].text, base)
        elif keyword in _FORMS and form is None:
            form = _FORMS[keyword]
        elif keyword in ("FROM", "USING", "WITH"):
            dataset_clause = True
        elif keyword in ("SERVICE", "LOAD"):
            targets.append(_outbound_target(tokens, index, prefixes, base))
        index += 1
    return SparqlText(
        form=form,
        prefixes=prefixes,
        base=base,
        targets=tuple(targets),
        dataset_clause=dataset_clause,
        tokens=tuple(tokens),
    )


def _resolve(iri: str, base: str | None) -> str:
    return urljoin(base, iri) if base else iri


def _outbound_target(tokens: list[Token], index: int, prefixes: dict[str, str], base: str | None) -> OutboundTarget:
    keyword = tokens[index].keyword or ""
    position = index + 1
    silent = position < len(tokens) and tokens[position].keyword == "SILENT"
    if silent:
        position += 1
    if position >= len(tokens):
        raise SparqlSyntaxError(f"{keyword} without a target.")
    target = tokens[position]
    iri: str | None
    if target.kind == "iri":
        iri = _resolve(target.text, base)
    elif target.kind == "var":
        iri = None
    elif target.kind == "name" and ":" in target.text:
        prefix, _, local = target.text.partition(":")
        if prefix not in prefixes:
            raise SparqlSyntaxError(f"The prefix {prefix!r} of the {keyword} target is not declared.")
        iri = prefixes[prefix] + local.replace("\\", "")
    else:
        raise SparqlSyntaxError(f"{keyword} must be followed by an IRI or a variable.")
    end = target.end
    if keyword == "SERVICE":
        end = _group_end(tokens, position + 1)
    return OutboundTarget(keyword=keyword, iri=iri, silent=silent, start=tokens[index].start, end=end)


def _group_end(tokens: list[Token], index: int) -> int:
    if index >= len(tokens) or tokens[index].text != "{":
        raise SparqlSyntaxError("SERVICE must be followed by a group graph pattern '{ … }'.")
    depth = 0
    for token in tokens[index:]:
        if token.kind != "punct":
            continue
        if token.text == "{":
            depth += 1
        elif token.text == "}":
            depth -= 1
            if depth == 0:
                return token.end
    raise SparqlSyntaxError("Unbalanced braces in a SERVICE clause.")


def guard_outbound(text: str, allowlist: Sequence[str], *, base_iri: str | None = None) -> tuple[str, SparqlText]:
    """Refuse SERVICE/LOAD targets off the allow-list; `SERVICE SILENT` ones become `{}` (a failed SILENT).

    Returns the text to run (unchanged unless a SILENT service was neutralised) and its analysis. The text
    is checked again with `\\uXXXX` escapes decoded, in case an engine decodes them before parsing.
    """
    allowed = set(allowlist)
    analysis = analyse(text, base_iri=base_iri)
    # SERVICE SILENT to a target off the list behaves as a service that failed: one empty solution.
    neutralised = [t for t in analysis.targets if t.keyword == "SERVICE" and t.silent and t.iri not in allowed]
    if neutralised:
        pieces: list[str] = []
        cursor = 0
        for target in neutralised:
            if target.start < cursor:  # nested inside one already removed
                continue
            pieces.append(text[cursor : target.start])
            pieces.append("{}")
            cursor = target.end
        pieces.append(text[cursor:])
        text = "".join(pieces)
        analysis = analyse(text, base_iri=base_iri)
    _refuse_unlisted(analysis, allowed)
    decoded = _unescape_codepoints(text)
    if decoded != text and _OUTBOUND_WORD.search(decoded):
        try:
            decoded_analysis = analyse(decoded, base_iri=base_iri)
        except SparqlSyntaxError:
            raise ServiceNotAllowedError(
                "The query mixes \\u escapes with SERVICE or LOAD in a way that cannot be checked; "
                "write the keyword and its target without escapes."
            ) from None
        _refuse_unlisted(decoded_analysis, allowed)
    return text, analysis


def _refuse_unlisted(analysis: SparqlText, allowed: set[str]) -> None:
    for target in analysis.targets:
        if target.iri in allowed:
            continue
        shown = f"<{target.iri}>" if target.iri else "a variable"
        raise ServiceNotAllowedError(
            f"{target.keyword} to {shown} is not allowed: the hub only contacts endpoints on its "
            "SERVICE allow-list (QIHUB_SPARQL_SERVICE_ALLOWLIST).",
            extra={"target": target.iri},
        )


_SELECT_STAR = re.compile(r"(?i)\bSELECT\s+(?:DISTINCT\s+|REDUCED\s+)?\*")


def select_star_order(text: str) -> list[str] | None:
    """For `SELECT *`, the variables in order of first appearance (engines may sort them); else None."""
    if not _SELECT_STAR.search(text):
        return None
    tokens = tokenize(text)
    star = next(
        (
            index
            for index, token in enumerate(tokens)
            if token.keyword == "SELECT" and any(t.text == "*" for t in tokens[index + 1 : index + 3])
        ),
        None,
    )
    if star is None:
        return None
    order: dict[str, None] = {}
    for token in tokens[star:]:
        if token.kind == "var":
            order.setdefault(token.text, None)
    return list(order)


def query_form(text: str) -> QueryForm:
    """SELECT, ASK, CONSTRUCT or DESCRIBE; a syntax error when none of them starts the query."""
    form = analyse(text).form
    if form is None:
        raise SparqlSyntaxError("The query is not a SELECT, ASK, CONSTRUCT or DESCRIBE query.")
    return form


def apply_update_dataset(text: str, using_graph_uris: Sequence[str], using_named_graph_uris: Sequence[str]) -> str:
    """Add the protocol's `using-graph-uri`/`using-named-graph-uri` as USING clauses of each DELETE/INSERT.

    SPARQL 1.1 Protocol §2.2.3: combining them with USING/USING NAMED/WITH in the update is an error.
    `DELETE WHERE` shorthand takes no USING clause and keeps the store's dataset.
    """
    if not using_graph_uris and not using_named_graph_uris:
        return text
    analysis = analyse(text)
    if analysis.dataset_clause:
        raise SparqlRequestError(
            "The update has USING, USING NAMED or WITH clauses: it may not also receive "
            "using-graph-uri or using-named-graph-uri parameters."
        )
    clauses = " ".join(
        [f"USING <{iri}>" for iri in using_graph_uris] + [f"USING NAMED <{iri}>" for iri in using_named_graph_uris]
    )
    pieces: list[str] = []
    cursor = 0
    depth = 0
    previous: Token | None = None
    for token in analysis.tokens:
        if token.kind == "punct" and token.text == "{":
            depth += 1
        elif token.kind == "punct" and token.text == "}":
            depth -= 1
        elif token.keyword == "WHERE" and depth == 0 and (previous is None or previous.keyword != "DELETE"):
            pieces.append(text[cursor : token.start])
            pieces.append(clauses + " ")
            cursor = token.start
        previous = token
    pieces.append(text[cursor:])
    return "".join(pieces)
