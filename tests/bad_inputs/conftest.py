"""Bad-input tests: the kernel judge fixture and the fuzzing settings.

- `judge`: a `KernelJudge` on a scratch `kplab.kernelcheck.Lab` (root and network namespaces;
  skipped on a laptop, failed under KPLAB_REQUIRE_ALL=1, see tests/_require.py). Tests that use
  it are marked `kernel`.
- Fuzzing: `KPLAB_FUZZ_EXAMPLES=N` sets how many mutants each fuzz test tries (CI: 300); the
  examples are derandomized (the same mutants on every run) unless `pytest --seed N` asks for
  another stream. A failure prints the mutant and how to replay it.
"""
import os

import pytest

from tests._require import require

#: Mutants per fuzz test in CI; set KPLAB_FUZZ_EXAMPLES for a longer campaign.
DEFAULT_EXAMPLES = 300


def fuzz_examples() -> int:
    text = os.environ.get("KPLAB_FUZZ_EXAMPLES", "")
    return int(text) if text.strip().isdigit() else DEFAULT_EXAMPLES


def fuzz_seed(config):
    """The hypothesis seed from `pytest --seed N` (or N-M: its first number), or None."""
    text = config.getoption("--seed")
    if not text:
        return None
    first = text.split(",")[0].split("-")[0]
    return int(first) if first.strip().isdigit() else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "judge" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="session")
def judge():
    """iptables-restore (nf_tables) in a Lab's own namespaces, for acceptance checks."""
    require(hasattr(os, "geteuid") and os.geteuid() == 0, "the kernel judge needs root (network namespaces)")
    from kplab.kernelcheck import available

    ok, why = available()
    require(ok, f"the kernel judge cannot run on this machine: {why}")
    from kplab.kernelcheck import Lab

    from tests.bad_inputs._kernel import KernelJudge

    with Lab() as lab:
        yield KernelJudge(lab)
