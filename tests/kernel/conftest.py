"""Kernel tests: the standard node built in real network namespaces (root only).

Every test in tests/kernel is marked `kernel`. The `lab` (IPv4) and `lab6` (IPv6) fixtures are
session-scoped ready `kplab.kernelcheck.Lab`s; each test loads its own rules (a load replaces
every table of the family). Without root, `ip netns`, iptables-restore or nft the tests skip
with the reason, or fail under KPLAB_REQUIRE_ALL=1 (see tests/_require.py).
"""
import os

import pytest

from tests._require import require

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(KERNEL_DIR + os.sep):
            item.add_marker(pytest.mark.kernel)


def kernel_prerequisites():
    """Skip (or fail under KPLAB_REQUIRE_ALL=1) unless a Lab can be built here."""
    __tracebackhide__ = True
    require(hasattr(os, "geteuid") and os.geteuid() == 0,
            "kernel tests need root (network namespaces, iptables, raw sockets)")
    from kplab.kernelcheck import available

    ok, why = available()
    require(ok, f"kernel tests cannot run on this machine: {why}")


@pytest.fixture(scope="session")
def lab():
    """The standard IPv4 node, built once for the session."""
    kernel_prerequisites()
    from kplab.kernelcheck import Lab

    with Lab() as built:
        yield built


@pytest.fixture(scope="session")
def lab6():
    """The standard node in IPv6 addresses, built once for the session."""
    kernel_prerequisites()
    from kplab.kernelcheck import Lab

    with Lab(ipv6=True) as built:
        yield built


@pytest.fixture
def kernel():
    """For tests that build their own Lab: only checks the prerequisites."""
    kernel_prerequisites()
