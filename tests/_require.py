"""Skip a test whose prerequisites are missing, or fail it when CI demands everything.

Tests that need root and network namespaces (``kernel``) or Chromium (``browser``) call
``require(condition, reason)``. On a developer's machine a missing prerequisite skips the test.
With ``KPLAB_REQUIRE_ALL=1`` (set by ``.ci/run``) it fails instead, so CI cannot go green by
quietly skipping the tests it was meant to run.
"""

import os

import pytest

REQUIRE_ALL_ENV = "KPLAB_REQUIRE_ALL"


def require_all() -> bool:
    """True when missing prerequisites must fail tests instead of skipping them."""
    return os.environ.get(REQUIRE_ALL_ENV) == "1"


def require(condition: bool, reason: str) -> None:
    """Go on if `condition` holds; otherwise skip the test, or fail it under KPLAB_REQUIRE_ALL=1.

    Example: ``require(os.geteuid() == 0, "needs root for network namespaces")``.
    """
    __tracebackhide__ = True  # report the calling test, not this helper
    if condition:
        return
    if require_all():
        pytest.fail(f"required by {REQUIRE_ALL_ENV}=1: {reason}", pytrace=False)
    pytest.skip(reason)
