"""Real-browser tests: where their screenshots go, and a line at the end of the run saying so.

Screenshots and the JupyterLab server's log are kept under ``artifacts/browser/`` at the top of
the repository (``KPLAB_ARTIFACTS`` overrides it), so that CI can keep them as artifacts.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ENV = "KPLAB_ARTIFACTS"
_used = []


def artifacts_dir() -> Path:
    """The folder for screenshots and logs (made on first use)."""
    path = Path(os.environ.get(ARTIFACTS_ENV) or ROOT / "artifacts" / "browser").resolve()
    path.mkdir(parents=True, exist_ok=True)
    if path not in _used:
        _used.append(path)
    return path


@pytest.fixture(scope="session")
def artifacts():
    return artifacts_dir()


def pytest_terminal_summary(terminalreporter):
    for path in _used:
        terminalreporter.write_line(f"kplab browser tests: screenshots and lab.log in {path} "
                                    f"(set {ARTIFACTS_ENV} to change)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
