"""The `qihub` command line: validate, ingest, export, admin."""

import json
import subprocess
import sys

import pytest

from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
INVALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/invalid_schema.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples/DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"


def qihub(*args, data_dir):
    return subprocess.run(
        [sys.executable, "-m", "api", *map(str, args)],
        capture_output=True,
        text=True,
        env={"QIHUB_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        timeout=120,
    )


def test_validate_exits_0_when_all_valid(tmp_path):
    result = qihub("validate", VALID, GAUGE_BLOCK, data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_exits_1_when_any_invalid_and_prints_json_findings(tmp_path):
    result = qihub("validate", "--json", VALID, INVALID, data_dir=tmp_path)
    assert result.returncode == 1
    reports = json.loads(result.stdout)
    assert [report["file"] for report in reports] == [str(VALID), str(INVALID)]
    assert set(reports[1]) == {"file", "valid", "schemaValid", "schemaVersion", "findings"}
    assert reports[0]["valid"] is True
    assert reports[1]["schemaValid"] is False
    finding = reports[1]["findings"][0]
    assert set(finding) == {"rule", "severity", "message", "path", "line"}


def test_validate_exits_2_when_a_file_cannot_be_read(tmp_path):
    result = qihub("validate", VALID, tmp_path / "missing.xml", data_dir=tmp_path)
    assert result.returncode == 2


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_admin_ingest_and_export_roundtrip_locally(tmp_path, fmt):
    organization = qihub("admin", "create-org", "--name", "CLI lab", data_dir=tmp_path)
    assert organization.returncode == 0, organization.stderr
    org_id = organization.stdout.strip()
    key = qihub("admin", "create-key", "--org", org_id, data_dir=tmp_path)
    assert key.stdout.strip().startswith("qh_")
    ingested = qihub("ingest", "--org", org_id, VALID, INVALID, data_dir=tmp_path)
    assert ingested.returncode == 1  # one of the two is refused
    assert "1 registered, 1 refused" in ingested.stdout
    certificate_id = next(
        line.split("│")[3].strip() for line in ingested.stdout.splitlines() if "registered" in line and "│" in line
    )
    exported = qihub("export", certificate_id, "--format", fmt, data_dir=tmp_path)
    assert exported.returncode == 0, exported.stderr
    if fmt == "xml":
        assert exported.stdout.encode() == VALID.read_bytes()
    else:
        assert json.loads(exported.stdout)["content"]["administrativeData"]["coreData"]["uniqueIdentifier"] == "1234"
