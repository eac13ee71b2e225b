"""The conformance kit: a pytest plugin third parties run against their adapter plug-in (L5.3)."""

import json
import subprocess
import sys
from pathlib import Path

from adapters.builtin.opcua import OpcUaAdapter
from adapters.conformance.checks import CHECKS, run_conformance


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_sample_third_party_plugin_passes_the_kit_run_as_a_pytest_plugin(tmp_path):
    readings, commands = tmp_path / "readings", tmp_path / "commands"
    readings.mkdir()
    commands.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"directory": str(readings), "command_directory": str(commands)}))

    run = _pytest(
        tmp_path,
        "--qihub-adapter",
        "sample-balance",
        "--qihub-adapter-config",
        f"sample-balance={config}",
        "--qihub-write-back",
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert f"{len(CHECKS)} passed" in run.stdout
    for name, _criterion, _check in CHECKS:
        assert f"PASSED ::conformance[sample-balance]::{name}" in run.stdout
    # The write-back check really went to the source: the command file exists, once.
    assert [path.name for path in commands.iterdir()] == ["kit-1.json"]


def test_the_kit_reports_a_failing_check_with_its_reason(tmp_path):
    # A plug-in name nobody publishes: every check fails and says why.
    run = _pytest(tmp_path, "--qihub-adapter", "no-such-adapter")

    assert run.returncode == 1
    assert f"{len(CHECKS)} failed" in run.stdout
    assert "the plug-in cannot be loaded" in run.stdout


def test_the_plugin_adds_nothing_to_a_run_without_its_option(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")

    run = _pytest(tmp_path)

    assert run.returncode == 0, run.stdout
    assert "1 passed" in run.stdout
    assert "conformance[" not in run.stdout


def test_the_opcua_builtin_passes_the_offline_checks():
    outcomes = {outcome.name: outcome for outcome in run_conformance(OpcUaAdapter)}

    failed = {name: outcome.detail for name, outcome in outcomes.items() if not outcome.passed}
    assert failed == {}
    assert outcomes["write-back-idempotent"].skipped  # needs a live server: only with --qihub-write-back
    assert "3 fixtures" in outcomes["golden-fixtures"].detail
