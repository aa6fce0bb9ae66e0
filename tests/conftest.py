"""Project-wide test settings: the `require` helper, the `--seed` option, the report header."""

import os

from tests._require import REQUIRE_ALL_ENV, require, require_all

__all__ = ["require"]


def pytest_addoption(parser):
    parser.addoption(
        "--seed",
        action="store",
        default=None,
        type=str,
        help="seed for the randomised kernel tests (default: each test picks its own and reports it)",
    )


def pytest_report_header(config):
    value = os.environ.get(REQUIRE_ALL_ENV)
    if require_all():
        state = "1: missing prerequisites (root, namespaces, chromium) FAIL their tests"
    elif value is None:
        state = "unset: missing prerequisites skip their tests"
    else:
        state = f"{value!r} is ignored (only 1 counts): missing prerequisites skip their tests"
    return [f"kplab: {REQUIRE_ALL_ENV}={state}"]
