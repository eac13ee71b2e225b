"""pytest plugin of the conformance kit: `pytest --qihub-adapter NAME` runs the L1–L4 checks against a plug-in.

It is registered as the `pytest11` entry point `qihub_conformance`, so every pytest run in an environment with
qihub installed loads it; it does nothing unless `--qihub-adapter` is given. Then it adds one test item per
check (`conformance[NAME]::<check>`) to the session; nothing else about the run changes.

A third party runs the kit on its plug-in like this::

    pip install qihub my-qihub-adapter          # the hub and the package publishing `qihub.adapters: my-lims`
    pytest -p no:cacheprovider --qihub-adapter my-lims            # in any directory; -q for a short report
    pytest --qihub-adapter my-lims --qihub-adapter-config my-lims=config.json --qihub-write-back

The configuration defaults to the first `examples` entry of the plug-in's configuration schema. Write-back is
exercised only with `--qihub-write-back` (it calls the source the configuration points at, e.g. a test fake);
the command's target and payload come from `x-command-example` in the configuration schema.
"""

import json
from pathlib import Path
from typing import Any

import pytest

OPTION = "--qihub-adapter"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The kit's options (inert until `--qihub-adapter` is given)."""
    group = parser.getgroup("qihub-conformance", "qihub adapter conformance kit")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="NAME",
        help="Run the conformance kit against the adapter plug-in published as NAME (repeatable).",
    )
    group.addoption(
        "--qihub-adapter-config",
        action="append",
        default=[],
        metavar="NAME=JSON|PATH",
        help="Configuration for a plug-in under test (JSON text or a JSON file); default: its schema's example.",
    )
    group.addoption(
        "--qihub-write-back",
        action="store_true",
        default=False,
        help="Also check idempotent write-back against the configured source.",
    )


def _configs(config: pytest.Config) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in config.getoption("--qihub-adapter-config"):
        name, _, value = item.partition("=")
        text = Path(value).read_text() if value and Path(value).is_file() else value
        found[name] = json.loads(text)
    return found


class ConformanceItem(pytest.Item):
    """One check of the kit against one plug-in."""

    def __init__(self, *, runner: "KitRunner", check: str, criterion: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runner = runner
        self.check = check
        self.criterion = criterion

    def runtest(self) -> None:
        """Run the check (the kit's hub is shared by the checks of one plug-in)."""
        outcome = self.runner.run(self.check)
        self.user_properties.append(("criterion", self.criterion))
        self.user_properties.append(("detail", outcome.detail))
        if outcome.skipped:
            pytest.skip(outcome.detail)
        if not outcome.passed:
            raise ConformanceFailedError(f"{self.criterion} {self.check}: {outcome.detail}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The check's reason, without a traceback of the kit itself."""
        if isinstance(excinfo.value, ConformanceFailedError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int, str]:
        """Where the item comes from, for pytest's report."""
        return "qihub-conformance", 0, f"{self.runner.name}::{self.check} ({self.criterion})"


class ConformanceFailedError(Exception):
    """A conformance check failed."""


class KitRunner:
    """Runs the checks of one plug-in in order, in one temporary hub, once each."""

    def __init__(self, name: str, config: dict[str, Any] | None, write_back: bool, work_dir: Path) -> None:
        self.name = name
        self.config = config
        self.write_back = write_back
        self.work_dir = work_dir
        self.kit: Any = None
        self.outcomes: dict[str, Any] = {}
        self.load_error: str | None = None

    def _kit(self) -> Any:
        from adapters.conformance.checks import KitContext, example_config
        from adapters.discovery import get_adapter_class_or_raise

        if self.kit is None and self.load_error is None:
            try:
                adapter_class = get_adapter_class_or_raise(self.name)
            except Exception as error:
                self.load_error = f"{type(error).__name__}: {error}"
                return None
            config = self.config if self.config is not None else example_config(adapter_class.manifest)
            self.kit = KitContext(adapter_class, config, self.work_dir, self.write_back)
        return self.kit

    def run(self, check: str) -> Any:
        """The outcome of one check (run on first request)."""
        from adapters.conformance.checks import CHECKS, CheckOutcome, run_check

        if check in self.outcomes:
            return self.outcomes[check]
        kit = self._kit()
        for name, criterion, function in CHECKS:
            if name == check:
                if kit is None:
                    outcome = CheckOutcome(name, criterion, False, f"the plug-in cannot be loaded: {self.load_error}")
                else:
                    outcome = run_check(kit, name, criterion, function)
                self.outcomes[check] = outcome
                return outcome
        raise KeyError(check)

    def close(self) -> None:
        """Release the temporary hub."""
        if self.kit is not None and self.kit.hub is not None:
            self.kit.hub.close()


_RUNNERS: list[KitRunner] = []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the kit's items for every `--qihub-adapter` (nothing when the option is absent)."""
    names: list[str] = config.getoption(OPTION)
    if not names:
        return
    from adapters.conformance.checks import CHECKS

    configs = _configs(config)
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    base = Path(cache.mkdir("qihub-conformance")) if cache is not None else None
    import tempfile

    for name in dict.fromkeys(names):
        work_dir = Path(tempfile.mkdtemp(prefix=f"qihub-kit-{name}-", dir=base))
        runner = KitRunner(name, configs.get(name), bool(config.getoption("--qihub-write-back")), work_dir)
        _RUNNERS.append(runner)
        for check, criterion, _function in CHECKS:
            items.append(
                ConformanceItem.from_parent(
                    session, name=f"conformance[{name}]::{check}", runner=runner, check=check, criterion=criterion
                )
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the kit's temporary hubs."""
    while _RUNNERS:
        _RUNNERS.pop().close()
