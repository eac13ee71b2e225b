"""The standards, accreditation and product-certificate registries, on SQLite and PostgreSQL."""

import json
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import func, select

from graph import service
from graph.models import (
    Accreditation,
    ImportAction,
    Standard,
    StandardIn,
    StandardStatus,
    normalize_standard_code,
)
from storage.database import session_scope
from storage.errors import NotFoundError

DATA = Path(__file__).parent / "data"


def _import_fixtures(engine) -> None:
    with session_scope(engine) as session:
        service.import_standards_document(session, content=(DATA / "standards.csv").read_bytes(), media_type="text/csv")
        service.import_standards_document(
            session, content=(DATA / "standards.json").read_bytes(), media_type="application/json"
        )


def _count(engine, table) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def test_codes_are_normalised_whatever_dash_or_spacing_the_source_used():
    assert normalize_standard_code("GB/T　27025—2019 ") == "GB/T 27025-2019"
    assert normalize_standard_code("JJF  1059.1－2012") == "JJF 1059.1-2012"


def test_csv_and_json_imports_store_every_standard_with_its_lists(hub):
    _import_fixtures(hub.engine)
    with session_scope(hub.engine) as session:
        standard = service.get_standard_or_raise(session, code="GB/T 27025—2019")
        assert standard.code == "GB/T 27025-2019"
        assert standard.title_zh == "检测和校准实验室能力的通用要求"
        assert standard.implemented_on == date(2020, 7, 1)
        assert standard.ics_codes == ["03.120.20"]
        assert standard.replaces == ["GB/T 27025-2008"]
        assert [clause["number"] for clause in standard.clauses] == ["7.2", "7.7"]
        assert standard.clauses[0]["title"] == "Selection, verification and validation of methods"
        assert service.get_standard_or_raise(session, code="GB 4706.1-2024").replaces == ["GB 4706.1-2005"]
    assert _count(hub.engine, Standard) == 8


def test_importing_again_updates_by_code_instead_of_duplicating(hub):
    _import_fixtures(hub.engine)
    changed = b"code,title,status\nGB/T 37538-2019,Online monitoring of e-commerce product quality,withdrawn\n"
    with session_scope(hub.engine) as session:
        report = service.import_standards_document(session, content=changed, media_type="text/csv")
    assert (report.created, report.updated) == (0, 1)
    assert report.items[0].action == ImportAction.updated
    with session_scope(hub.engine) as session:
        standard = service.get_standard_or_raise(session, code="GB/T 37538-2019")
        assert standard.status == StandardStatus.withdrawn
        assert standard.title == "Online monitoring of e-commerce product quality"
        assert standard.title_zh is None  # an import states the whole record
    assert _count(hub.engine, Standard) == 8


def test_a_batch_with_bad_rows_is_refused_whole_and_every_bad_row_reported(hub):
    csv = (
        b"code,status,published_on,ics_codes\n"
        b"GB/T 1-2020,current,2020-03-31,01.120\n"  # fine on its own
        b"GB/T 2-2020,in-force,2020-03-31,\n"  # unknown status
        b",current,,\n"  # no code
        b"GB/T 3-2020,current,31.03.2020,1.2\n"  # bad date and bad ICS code
        b"GB/T 1-2020,current,,\n"  # duplicate in the batch
    )
    with pytest.raises(service.ImportRejectedError) as rejected, session_scope(hub.engine) as session:
        service.import_standards_document(session, content=csv, media_type="text/csv")
    problems = rejected.value.problems
    assert sorted({problem.row for problem in problems}) == [2, 3, 4, 5]
    assert {problem.field for problem in problems if problem.row == 4} == {"published_on", "ics_codes.0"}
    assert "duplicate of row 1" in next(problem.message for problem in problems if problem.row == 5)
    assert _count(hub.engine, Standard) == 0


def test_unknown_csv_columns_are_refused_rather_than_silently_dropped():
    with pytest.raises(service.ImportRejectedError) as rejected:
        service.parse_standards_csv(b"code,titel\nGB/T 1-2020,Typo\n")
    assert "titel" in rejected.value.problems[0].message


def test_a_gb18030_spreadsheet_export_is_read():
    content = "code,title_zh\nGB/T 37538-2019,电子商务交易产品质量网上监测规范\n".encode("gb18030")
    [standard] = service.parse_standards_csv(content)
    assert standard.title_zh == "电子商务交易产品质量网上监测规范"


def test_search_finds_by_code_by_english_or_chinese_words_and_by_status(hub):
    _import_fixtures(hub.engine)
    with session_scope(hub.engine) as session:

        def codes(**criteria) -> list[str]:
            return [item.code for item in service.search_standards(session, **criteria).items]

        assert codes(q="GB/T 27025-2019")[0] == "GB/T 27025-2019"  # exact code first
        assert codes(q="27025") == ["GB/T 27025-2008", "GB/T 27025-2019"]
        assert codes(q="uncertainty measurement") == ["JJF 1059-1999", "JJF 1059.1-2012"]
        assert codes(q="铂电阻") == ["JJG 160-2007"]
        assert codes(q="不确定度", status=StandardStatus.current) == ["JJF 1059.1-2012"]
        assert codes(status=StandardStatus.replaced) == ["GB/T 27025-2008", "JJF 1059-1999"]
        assert codes(q="100%_") == []  # LIKE wildcards are matched literally
        page = service.search_standards(session, q="GB", limit=2)
        assert (page.total, len(page.items)) == (5, 2)


def test_a_replaced_standard_names_its_current_successor(hub):
    _import_fixtures(hub.engine)
    with session_scope(hub.engine) as session:
        answer = service.current_standard_for(session, code="JJF 1059-1999")
    assert not answer.is_current
    assert [link.code for link in answer.chain] == ["JJF 1059-1999", "JJF 1059.1-2012"]
    assert answer.current_codes == ["JJF 1059.1-2012"]


def test_an_inverse_link_is_recorded_when_only_the_successor_says_it_replaces(hub):
    _import_fixtures(hub.engine)
    with session_scope(hub.engine) as session:
        # The CSV gives 'replaces' on JJF 1059.1-2012 and 'replaced_by' on JJF 1059-1999; JSON only one side.
        assert service.get_standard_or_raise(session, code="GB 4706.1-2005").replaced_by == ["GB 4706.1-2024"]
        service.import_standards(
            session, items=[StandardIn(code="JJF 1059.1-2025", status="current", replaces=["JJF 1059.1-2012"])]
        )
    with session_scope(hub.engine) as session:
        assert service.get_standard_or_raise(session, code="JJF 1059.1-2012").replaced_by == ["JJF 1059.1-2025"]
        answer = service.current_standard_for(session, code="JJF 1059-1999")
    assert [link.code for link in answer.chain] == ["JJF 1059-1999", "JJF 1059.1-2012", "JJF 1059.1-2025"]
    assert answer.current_codes == ["JJF 1059.1-2025"]


def test_a_successor_not_yet_implemented_leaves_the_old_edition_in_force(hub):
    _import_fixtures(hub.engine)
    with session_scope(hub.engine) as session:
        before = service.current_standard_for(session, code="GB 4706.1-2005", on=date(2025, 1, 1))
        after = service.current_standard_for(session, code="GB 4706.1-2005", on=date(2026, 8, 1))
    assert before.is_current
    assert before.current_codes == ["GB 4706.1-2005"]
    assert not after.is_current
    assert after.current_codes == ["GB 4706.1-2024"]


def test_an_unregistered_successor_ends_the_chain_without_a_current_standard(hub):
    with session_scope(hub.engine) as session:
        service.import_standards(
            session, items=[StandardIn(code="GB/T 1.1-2009", status="replaced", replaced_by=["GB/T 1.1-2020"])]
        )
        answer = service.current_standard_for(session, code="GB/T 1.1-2009")
    assert [(link.code, link.registered) for link in answer.chain] == [
        ("GB/T 1.1-2009", True),
        ("GB/T 1.1-2020", False),
    ]
    assert answer.current_codes == []


def test_an_import_that_would_close_a_replacement_cycle_is_refused(hub):
    with session_scope(hub.engine) as session:
        service.import_standards(
            session,
            items=[
                StandardIn(code="T/A 1-2020", status="replaced", replaced_by=["T/A 1-2021"]),
                StandardIn(code="T/A 1-2021", status="replaced", replaced_by=["T/A 1-2022"]),
            ],
        )
    with pytest.raises(service.ImportRejectedError) as rejected, session_scope(hub.engine) as session:
        service.import_standards(session, items=[StandardIn(code="T/A 1-2022", replaced_by=["T/A 1-2020"])])
    assert "replacement cycle" in rejected.value.problems[0].message
    assert _count(hub.engine, Standard) == 2


def test_a_cycle_already_in_the_registry_is_detected_instead_of_looping(hub):
    with session_scope(hub.engine) as session:  # rows written around the importer's checks
        session.add(Standard(code="T/B 1-2020", status="replaced", replaced_by=["T/B 1-2021"]))
        session.add(Standard(code="T/B 1-2021", status="replaced", replaced_by=["T/B 1-2020"]))
    with pytest.raises(service.ReplacementCycleError) as cycle, session_scope(hub.engine) as session:
        service.current_standard_for(session, code="T/B 1-2020")
    assert cycle.value.cycle == ["T/B 1-2020", "T/B 1-2021", "T/B 1-2020"]


def test_an_unknown_standard_is_not_found(hub):
    with pytest.raises(NotFoundError), session_scope(hub.engine) as session:
        service.current_standard_for(session, code="GB 0-0000")


def test_accreditations_import_upserts_and_names_holders(hub):
    lab_id, _ = hub.make_org("Shenzhen Metrology Lab")
    items = json.loads((DATA / "accreditations.json").read_text())
    items[0]["holderOrganizationId"] = lab_id
    with session_scope(hub.engine) as session:
        first = service.import_accreditations(session, items=service.parse_accreditations(items))
    with session_scope(hub.engine) as session:
        again = service.import_accreditations(session, items=service.parse_accreditations(items))
        listed = service.list_accreditations(session, holder_organization_id=lab_id)
        by_method = service.list_accreditations(session, method_code="GB/T 27025—2019")
    assert (first.created, first.updated) == (2, 0)
    assert (again.created, again.updated) == (0, 2)
    assert [item.holder_name for item in listed] == ["Shenzhen Metrology Lab"]
    assert listed[0].scope[0].quantity_kind == "http://qudt.org/vocab/quantitykind/Temperature"
    assert listed[0].scope[0].unit == "http://qudt.org/vocab/unit/DEG_C"
    assert [item.number for item in by_method] == ["CNAS L0002"]
    assert _count(hub.engine, Accreditation) == 2


def test_an_accreditation_batch_naming_an_unknown_holder_stores_nothing(hub):
    items = json.loads((DATA / "accreditations.json").read_text())
    items[1]["holderOrganizationId"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(service.ImportRejectedError) as rejected, session_scope(hub.engine) as session:
        service.import_accreditations(session, items=service.parse_accreditations(items))
    assert [(problem.row, problem.field) for problem in rejected.value.problems] == [(2, "holderOrganizationId")]
    assert _count(hub.engine, Accreditation) == 0


def test_invalid_scope_entries_are_reported_per_item():
    items = json.loads((DATA / "accreditations.json").read_text())
    items[0]["scope"][0]["rangeMin"] = "500"  # above its rangeMax
    items[1]["scope"] = [{"description": "neither a quantity kind nor a method"}]
    with pytest.raises(service.ImportRejectedError) as rejected:
        service.parse_accreditations(items)
    assert [problem.row for problem in rejected.value.problems] == [1, 2]


def test_conformity_certificates_are_listed_by_the_standard_they_cite(hub):
    items = json.loads((DATA / "conformity-certificates.json").read_text())
    with session_scope(hub.engine) as session:
        report = service.import_conformity_certificates(session, items=service.parse_conformity_certificates(items))
        citing = service.list_conformity_certificates(session, standard_code="GB 4706.1-2005")
        ccc = service.list_conformity_certificates(session, scheme="ccc")
    assert report.created == len(items)
    assert [item.number for item in citing] == ["2019010701000001"]
    assert len(ccc) == 2


def test_a_successor_registered_first_is_linked_when_its_predecessor_arrives_later(hub):
    with session_scope(hub.engine) as session:
        service.import_standards(session, items=[StandardIn(code="GB/T 9-2020", replaces=["GB/T 9-2010"])])
    with session_scope(hub.engine) as session:
        report = service.import_standards(session, items=[StandardIn(code="GB/T 9-2010", status="replaced")])
        assert {item.key for item in report.items} == {"GB/T 9-2010"}
        assert service.get_standard_or_raise(session, code="GB/T 9-2010").replaced_by == ["GB/T 9-2020"]
        answer = service.current_standard_for(session, code="GB/T 9-2010")
    assert answer.current_codes == ["GB/T 9-2020"]
