"""The standards, accreditation and product-certificate registries: import, search, "is this standard current?".

Imports are all or nothing: every row is validated first and a batch with any bad row raises
`ImportRejectedError` listing them all, before anything is written; checks that need the stored rows (holders
exist, no replacement cycle) raise it inside the caller's transaction, which then rolls back. Each stored or
updated row records an audit event ('standard', 'accreditation', 'conformity-certificate'); the knowledge
graph follows those events after the commit (`graph.registry_mapping`).

Standards CSV (UTF-8, BOM allowed; GB 18030 accepted as a fallback for spreadsheet exports), one row per
standard, header row required, columns in any order (snake_case or camelCase names):

| column | meaning |
|---|---|
| `code` (required) | the code with its edition year, e.g. `GB/T 27025-2019` (dashes and spaces are normalised) |
| `title`, `title_zh` | English and Chinese titles |
| `edition` | the edition, e.g. `2019` |
| `status` | `draft`, `current` (default), `replaced`, `withdrawn` |
| `published_on`, `implemented_on`, `withdrawn_on` | ISO dates `YYYY-MM-DD` |
| `issuing_body` | e.g. `SAMR/SAC` |
| `ics_codes`, `replaces`, `replaced_by` | lists separated by `;` |
| `clauses` | `;`-separated clauses, each `number title`, e.g. `7.2 Selection of methods; 7.7 Validity of results` |

JSON: an array of objects with the same fields (lists as arrays, clauses as `{"number", "title"}` objects), or
`{"standards": [...]}`.
"""

import csv
import io
import json
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import String, case, cast, func, or_
from sqlmodel import Session, col, select

from certificates.service import Actor
from graph.iris import accreditation_graph_iri, conformity_certificate_graph_iri, standard_graph_iri
from graph.models import (
    Accreditation,
    AccreditationIn,
    AccreditationRead,
    AccreditationStatus,
    ConformityCertificate,
    ConformityCertificateIn,
    ConformityCertificateRead,
    ConformityCertificateStatus,
    CurrentStandardAnswer,
    ImportAction,
    ImportedItem,
    ImportProblem,
    ImportReport,
    Standard,
    StandardIn,
    StandardLink,
    StandardPage,
    StandardRead,
    StandardStatus,
    normalize_standard_code,
)
from organizations.models import Organization
from storage.errors import ConflictError, InvalidInputError, NotFoundError
from storage.models import utc_now
from storage.service import record_event

STANDARD_SUBJECT = "standard"
ACCREDITATION_SUBJECT = "accreditation"
CONFORMITY_SUBJECT = "conformity-certificate"
MAX_IMPORT_ROWS = 5_000
MAX_PAGE_SIZE = 200
LIST_COLUMNS = {"ics_codes", "replaces", "replaced_by"}
STANDARD_COLUMNS = set(StandardIn.model_fields)

Item = TypeVar("Item", bound=BaseModel)


class ImportRejectedError(InvalidInputError):
    """A batch with bad rows: none of it was stored; `errors` lists every bad row."""

    code = "import-rejected"
    title = "The import was refused; nothing was stored"

    def __init__(self, problems: list[ImportProblem]) -> None:
        super().__init__(
            f"{len(problems)} problem(s) found; nothing was stored.",
            extra={"errors": [problem.model_dump(mode="json", by_alias=True) for problem in problems]},
        )
        self.problems = problems


class ReplacementCycleError(ConflictError):
    """The replaced-by links of the registry loop back on themselves, so no current standard can be named."""

    code = "replacement-cycle"
    title = "The replacement chain has a cycle"

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"The replaced-by chain loops: {' → '.join(cycle)}.", extra={"cycle": cycle})
        self.cycle = cycle


# --- parsing ----------------------------------------------------------------------------------------------


def _problems_of(error: ValidationError, *, row: int, code: str | None) -> list[ImportProblem]:
    return [
        ImportProblem(
            row=row,
            code=code,
            field=".".join(str(part) for part in item["loc"]) or None,
            message=item["msg"],
        )
        for item in error.errors()
    ]


def _validate_items(
    model: type[Item], raw_items: Iterable[tuple[int, Any]], *, key_of: Any
) -> tuple[list[Item], list[ImportProblem]]:
    items: list[Item] = []
    problems: list[ImportProblem] = []
    seen: dict[Any, int] = {}
    rows = 0
    for row, raw in raw_items:
        rows += 1
        label = None
        if isinstance(raw, dict):
            label = str(raw.get("code") or raw.get("number") or "") or None
        try:
            item = model.model_validate(raw)
        except ValidationError as error:
            problems.extend(_problems_of(error, row=row, code=label))
            continue
        key = key_of(item)
        if key in seen:
            problems.append(ImportProblem(row=row, code=label, message=f"duplicate of row {seen[key]} in this batch"))
            continue
        seen[key] = row
        items.append(item)
    if rows > MAX_IMPORT_ROWS:
        problems.append(ImportProblem(row=0, message=f"at most {MAX_IMPORT_ROWS} items per import"))
    return items, problems


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return content.decode("gb18030")
        except UnicodeDecodeError as error:
            raise ImportRejectedError(
                [ImportProblem(row=0, message="the file is neither UTF-8 nor GB 18030")]
            ) from error


def _csv_field_name(header: str) -> str:
    name = header.strip()
    # camelCase headers (titleZh) map to the snake_case columns (title_zh).
    snake = "".join(f"_{char.lower()}" if char.isupper() else char for char in name).lstrip("_")
    return snake if snake in STANDARD_COLUMNS else name


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.replace("；", ";").split(";") if part.strip()]


def _csv_row_to_raw(row: dict[str, str | None]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name, value in row.items():
        text = (value or "").strip()
        if not text:
            continue
        if name in LIST_COLUMNS:
            raw[name] = _split(text)
        elif name == "clauses":
            raw[name] = [
                {"number": number, "title": title or None}
                for number, _, title in (clause.partition(" ") for clause in _split(text))
            ]
        else:
            raw[name] = text
    return raw


def parse_standards_csv(content: bytes) -> list[StandardIn]:
    """Parse and validate a standards CSV (columns in the module docstring); any bad row rejects the file."""
    reader = csv.DictReader(io.StringIO(_decode(content), newline=""))
    if not reader.fieldnames:
        raise ImportRejectedError([ImportProblem(row=0, message="the CSV has no header row")])
    names = [_csv_field_name(name) for name in reader.fieldnames]
    unknown = [name for name in names if name not in STANDARD_COLUMNS]
    if "code" not in names or unknown:
        message = f"unknown column(s): {', '.join(unknown)}" if unknown else "the CSV needs a 'code' column"
        raise ImportRejectedError([ImportProblem(row=0, message=message)])
    reader.fieldnames = names
    raw_items: list[tuple[int, Any]] = []
    problems: list[ImportProblem] = []
    for number, row in enumerate(reader, start=1):
        if None in row:  # DictReader files surplus cells under the key None
            problems.append(ImportProblem(row=number, message="more cells than header columns"))
            continue
        if any((value or "").strip() for value in row.values()):
            raw_items.append((number, _csv_row_to_raw(row)))
    items, item_problems = _validate_items(StandardIn, raw_items, key_of=lambda item: item.code)
    problems.extend(item_problems)
    if problems:
        raise ImportRejectedError(problems)
    if not items:
        raise ImportRejectedError([ImportProblem(row=0, message="the CSV has no rows")])
    return items


def _json_items(content: bytes | Any, *, key: str) -> list[Any]:
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ImportRejectedError([ImportProblem(row=0, message=f"not JSON: {error}")]) from error
    if isinstance(content, dict) and isinstance(content.get(key), list):
        content = content[key]
    if not isinstance(content, list) or not content:
        raise ImportRejectedError([ImportProblem(row=0, message=f"expected a non-empty array or {{'{key}': [...]}}")])
    return content


def parse_items(model: type[Item], content: bytes | Any, *, key: str, key_of: Any) -> list[Item]:
    """Validate a JSON batch (array, or object with the array under `key`); any bad item rejects it all."""
    items, problems = _validate_items(model, enumerate(_json_items(content, key=key), start=1), key_of=key_of)
    if problems:
        raise ImportRejectedError(problems)
    return items


def parse_standards_json(content: bytes | Any) -> list[StandardIn]:
    """Parse and validate standards given as JSON; any bad item rejects the batch."""
    return parse_items(StandardIn, content, key="standards", key_of=lambda item: item.code)


# --- standards --------------------------------------------------------------------------------------------


def _row_fields(item: BaseModel) -> dict[str, Any]:
    """Column values: Python values (dates) for scalar columns, JSON-ready values for the JSON columns."""
    fields = item.model_dump()
    fields.update({name: value for name, value in item.model_dump(mode="json").items() if isinstance(value, list)})
    return fields


def _record(
    session: Session, actor: Actor | None, *, subject: str, subject_id: str, action: str, **details: Any
) -> None:
    record_event(
        session,
        subject_kind=subject,
        subject_id=subject_id,
        action=action,
        actor_organization_id=actor.organization.id if actor else None,
        actor_key_id=actor.key_id if actor else None,
        details=details,
    )


def _standards_by_code(session: Session, codes: Iterable[str]) -> dict[str, Standard]:
    wanted = sorted(set(codes))
    found: dict[str, Standard] = {}
    for start in range(0, len(wanted), 500):  # keep IN lists well under driver parameter limits
        chunk = wanted[start : start + 500]
        found.update({row.code: row for row in session.exec(select(Standard).where(col(Standard.code).in_(chunk)))})
    return found


def _rows_naming(session: Session, column: str, codes: list[str]) -> list[Standard]:
    """Registered standards whose `column` (replaces / replaced_by) lists one of `codes`."""
    found: list[Standard] = []
    attribute = getattr(Standard, column)
    for start in range(0, len(codes), 100):
        # JSON is stored as text with ASCII escapes on both databases: match the quoted, escaped code.
        needles = [json.dumps(code) for code in codes[start : start + 100]]
        condition = or_(*(cast(attribute, String).contains(needle, autoescape=True) for needle in needles))
        found += [
            row for row in session.exec(select(Standard).where(condition)) if set(getattr(row, column)) & set(codes)
        ]
    return found


def _find_cycle(start: str, successors_of: Any) -> list[str] | None:
    """A replaced-by cycle reachable from `start` (as the list of codes, first repeated at the end), or None."""
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(code: str) -> list[str] | None:
        if code in on_path:
            return [*path[path.index(code) :], code]
        if code in done:
            return None
        path.append(code)
        on_path.add(code)
        for successor in successors_of(code):
            cycle = visit(successor)
            if cycle:
                return cycle
        path.pop()
        on_path.discard(code)
        done.add(code)
        return None

    return visit(start)


def import_standards(session: Session, *, items: list[StandardIn], actor: Actor | None = None) -> ImportReport:
    """Upsert standards by code, completing the inverse replaces/replaced-by links of registered standards."""
    batch = uuid.uuid4().hex
    existing = _standards_by_code(
        session, [item.code for item in items] + [code for item in items for code in item.replaces + item.replaced_by]
    )
    created: set[str] = set()
    touched: dict[str, Standard] = {}
    now = utc_now()
    for item in items:
        fields = _row_fields(item)
        row = existing.get(item.code)
        if row is None:
            row = Standard(**fields)
            session.add(row)
            existing[item.code] = row
            created.add(item.code)
        else:
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = now
        touched[item.code] = row
    # 'B replaces A' also says 'A is replaced by B' (and vice versa): complete the other side, whichever of the
    # two standards is in this batch and whichever was registered first.
    links = [(item.code, code, "replaced_by") for item in items for code in item.replaces]
    links += [(item.code, code, "replaces") for item in items for code in item.replaced_by]
    codes = [item.code for item in items]
    for column, inverse in (("replaces", "replaced_by"), ("replaced_by", "replaces")):
        for row in _rows_naming(session, column, codes):
            links += [(row.code, code, inverse) for code in getattr(row, column) if code in touched]
    for code, other_code, link in links:
        other = existing.get(other_code)
        if other is not None and code not in getattr(other, link):
            setattr(other, link, [*getattr(other, link), code])
            other.updated_at = now
            touched[other_code] = other
    session.flush()
    for code in touched:
        cycle = _find_cycle(code, lambda current: _successors(session, existing, current))
        if cycle:
            raise ImportRejectedError(
                [ImportProblem(row=0, code=code, field="replacedBy", message=f"replacement cycle: {' → '.join(cycle)}")]
            )
    items_done: list[ImportedItem] = []
    for code, row in touched.items():
        action = ImportAction.created if code in created else ImportAction.updated
        _record(session, actor, subject=STANDARD_SUBJECT, subject_id=row.id, action=action, code=code, batch=batch)
        items_done.append(ImportedItem(id=row.id, key=code, action=action, graph=standard_graph_iri(code)))
    return _report(items_done)


def _report(items: list[ImportedItem]) -> ImportReport:
    created = sum(1 for item in items if item.action == ImportAction.created)
    return ImportReport(created=created, updated=len(items) - created, items=items)


def _successors(session: Session, cache: dict[str, Standard], code: str) -> list[str]:
    row = cache.get(code)
    if row is None:
        row = session.exec(select(Standard).where(Standard.code == code)).first()
        if row is None:
            return []
        cache[code] = row
    return list(row.replaced_by)


def import_standards_document(
    session: Session, *, content: bytes, media_type: str, actor: Actor | None = None
) -> ImportReport:
    """Import a CSV (`text/csv`) or JSON (`application/json`) document of standards."""
    items = parse_standards_csv(content) if media_type == "text/csv" else parse_standards_json(content)
    return import_standards(session, items=items, actor=actor)


def get_standard_or_raise(session: Session, *, code: str) -> Standard:
    """The standard with this code (spelling normalised), or NotFoundError."""
    normalized = normalize_standard_code(code)
    row = session.exec(select(Standard).where(Standard.code == normalized)).first()
    if row is None:
        raise NotFoundError(f"No standard {normalized!r} is registered.")
    return row


def _contains(column: Any, word: str) -> Any:
    return func.lower(column).contains(word.lower(), autoescape=True)


def search_standards(
    session: Session,
    *,
    q: str | None = None,
    status: StandardStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> StandardPage:
    """Standards whose code or titles contain every word of `q`, optionally of one status; exact code first."""
    conditions: list[Any] = []
    ordering: list[Any] = []
    query = normalize_standard_code(q or "")
    if query:
        for word in query.split(" "):
            conditions.append(
                or_(_contains(Standard.code, word), _contains(Standard.title, word), _contains(Standard.title_zh, word))
            )
        lowered = query.lower()
        code = func.lower(Standard.code)
        ordering.append(case((code == lowered, 0), (code.startswith(lowered, autoescape=True), 1), else_=2))
    if status is not None:
        conditions.append(Standard.status == status)
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    total = session.exec(select(func.count()).select_from(Standard).where(*conditions)).one()
    rows = session.exec(
        select(Standard).where(*conditions).order_by(*ordering, col(Standard.code)).offset(offset).limit(limit)
    )
    return StandardPage(
        items=[StandardRead.model_validate(row) for row in rows], total=total, limit=limit, offset=offset
    )


def _in_force(row: Standard, on: date) -> bool:
    return row.status == StandardStatus.current and (row.implemented_on is None or row.implemented_on <= on)


def current_standard_for(session: Session, *, code: str, on: date | None = None) -> CurrentStandardAnswer:
    """Is this standard in force on `on` (default today)? Follows replaced-by links; a loop is an error."""
    on = on or date.today()
    start = get_standard_or_raise(session, code=code)
    cache: dict[str, Standard] = {start.code: start}
    cycle = _find_cycle(start.code, lambda current: _successors(session, cache, current))
    if cycle:
        raise ReplacementCycleError(cycle)
    chain: list[StandardLink] = []
    queue = [start.code]
    seen = {start.code}
    while queue:
        current = queue.pop(0)
        row = cache.get(current)
        if row is None:
            chain.append(StandardLink(code=current, registered=False))
            continue
        chain.append(
            StandardLink(
                code=row.code,
                registered=True,
                status=StandardStatus(row.status),
                title=row.title or row.title_zh,
                implemented_on=row.implemented_on,
                replaced_by=list(row.replaced_by),
            )
        )
        for successor in row.replaced_by:
            if successor not in seen:
                seen.add(successor)
                _successors(session, cache, successor)  # loads it into the cache when registered
                queue.append(successor)

    def is_current(standard_code: str) -> bool:
        row = cache.get(standard_code)
        if row is None or not _in_force(row, on):
            return False
        return not any(cache.get(successor) and _in_force(cache[successor], on) for successor in row.replaced_by)

    return CurrentStandardAnswer(
        code=start.code,
        status=StandardStatus(start.status),
        is_current=is_current(start.code),
        chain=chain,
        current_codes=[link.code for link in chain if is_current(link.code)],
    )


# --- accreditations and product conformity certificates --------------------------------------------------


def _holders(session: Session, items: list[Any]) -> tuple[dict[str, Organization], list[ImportProblem]]:
    wanted = {item.holder_organization_id for item in items if item.holder_organization_id}
    found = {org.id: org for org in session.exec(select(Organization).where(col(Organization.id).in_(wanted)))}
    problems = [
        ImportProblem(row=row, field="holderOrganizationId", message=f"no organization {item.holder_organization_id}")
        for row, item in enumerate(items, start=1)
        if item.holder_organization_id and item.holder_organization_id not in found
    ]
    return found, problems


def _upsert(
    session: Session,
    *,
    table: type[Any],
    items: list[Any],
    key_fields: tuple[str, str],
    subject: str,
    graph_of: Any,
    actor: Actor | None,
) -> ImportReport:
    holders, problems = _holders(session, items)
    seen: dict[tuple[str, ...], int] = {}
    for row_number, item in enumerate(items, start=1):
        key = tuple(getattr(item, name) for name in key_fields)
        if key in seen:
            problems.append(ImportProblem(row=row_number, message=f"duplicate of row {seen[key]} in this batch"))
        seen.setdefault(key, row_number)
    if problems:
        raise ImportRejectedError(problems)
    batch = uuid.uuid4().hex
    done: list[ImportedItem] = []
    now = utc_now()
    for item in items:
        fields = _row_fields(item)
        if item.holder_organization_id and not item.holder_name:
            fields["holder_name"] = holders[item.holder_organization_id].name
        key = tuple(fields[name] for name in key_fields)
        row = session.exec(
            select(table).where(*(getattr(table, name) == value for name, value in zip(key_fields, key, strict=True)))
        ).first()
        if row is None:
            row = table(**fields)
            session.add(row)
            session.flush()
            action = ImportAction.created
        else:
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = now
            action = ImportAction.updated
        _record(session, actor, subject=subject, subject_id=row.id, action=action, key=list(key), batch=batch)
        done.append(ImportedItem(id=row.id, key=" ".join(key), action=action, graph=graph_of(*key)))
    return _report(done)


def import_accreditations(
    session: Session, *, items: list[AccreditationIn], actor: Actor | None = None
) -> ImportReport:
    """Upsert accreditations by (body, number); holders named by organization id must exist."""
    return _upsert(
        session,
        table=Accreditation,
        items=items,
        key_fields=("body", "number"),
        subject=ACCREDITATION_SUBJECT,
        graph_of=accreditation_graph_iri,
        actor=actor,
    )


def import_conformity_certificates(
    session: Session, *, items: list[ConformityCertificateIn], actor: Actor | None = None
) -> ImportReport:
    """Upsert product conformity certificates by (scheme, number)."""
    return _upsert(
        session,
        table=ConformityCertificate,
        items=items,
        key_fields=("scheme", "number"),
        subject=CONFORMITY_SUBJECT,
        graph_of=conformity_certificate_graph_iri,
        actor=actor,
    )


def parse_accreditations(content: bytes | Any) -> list[AccreditationIn]:
    """Validate a JSON batch of accreditations (array or `{"accreditations": [...]}`)."""
    return parse_items(
        AccreditationIn, content, key="accreditations", key_of=lambda item: (item.body.casefold(), item.number)
    )


def parse_conformity_certificates(content: bytes | Any) -> list[ConformityCertificateIn]:
    """Validate a JSON batch of product certificates (array or `{"certificates": [...]}`)."""
    return parse_items(
        ConformityCertificateIn, content, key="certificates", key_of=lambda item: (item.scheme.casefold(), item.number)
    )


def list_accreditations(
    session: Session,
    *,
    body: str | None = None,
    holder_organization_id: str | None = None,
    status: AccreditationStatus | None = None,
    method_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[AccreditationRead]:
    """Accreditations by body, holder, status or a method/standard named in their scope."""
    statement = select(Accreditation)
    if body:
        statement = statement.where(func.lower(Accreditation.body) == body.lower())
    if holder_organization_id:
        statement = statement.where(Accreditation.holder_organization_id == holder_organization_id)
    if status:
        statement = statement.where(Accreditation.status == status)
    if method_code:
        # JSON is stored as text with ASCII escapes on both databases: match the quoted, escaped code.
        needle = json.dumps(normalize_standard_code(method_code))
        statement = statement.where(cast(Accreditation.scope, String).contains(needle, autoescape=True))
    statement = statement.order_by(col(Accreditation.body), col(Accreditation.number))
    rows = session.exec(statement.offset(offset).limit(max(1, min(limit, MAX_PAGE_SIZE))))
    return [AccreditationRead.model_validate(row) for row in rows]


def list_conformity_certificates(
    session: Session,
    *,
    scheme: str | None = None,
    holder_organization_id: str | None = None,
    status: ConformityCertificateStatus | None = None,
    standard_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ConformityCertificateRead]:
    """Product certificates by scheme, holder, status or a standard they cite."""
    statement = select(ConformityCertificate)
    if scheme:
        statement = statement.where(func.lower(ConformityCertificate.scheme) == scheme.lower())
    if holder_organization_id:
        statement = statement.where(ConformityCertificate.holder_organization_id == holder_organization_id)
    if status:
        statement = statement.where(ConformityCertificate.status == status)
    if standard_code:
        needle = json.dumps(normalize_standard_code(standard_code))
        statement = statement.where(
            cast(ConformityCertificate.standard_codes, String).contains(needle, autoescape=True)
        )
    statement = statement.order_by(col(ConformityCertificate.scheme), col(ConformityCertificate.number))
    rows = session.exec(statement.offset(offset).limit(max(1, min(limit, MAX_PAGE_SIZE))))
    return [ConformityCertificateRead.model_validate(row) for row in rows]
